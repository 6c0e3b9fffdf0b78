"""Many transfers in a row, resumable: each finished run leaves DIR/runs/ID.png and DIR/runs/ID.json.

A run is skipped when its JSON exists, its image exists and its key (inputs' bytes + options) matches;
so an interrupted sweep continues where it stopped, and a changed option reruns only what it changes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..api import scale_schedule, transfer, warmup_evaluations
from ..backbones import Backbone, create_backbone
from ..backbones.convolution import convolution_in_effect
from ..callbacks import Chain, ProgressBar
from ..images import load_image, save_image, write_atomically
from ..optimize import LBFGS_CURVATURE, ProgressEvent
from ..runtime import describe_precision, numerics_in_effect, resolve_device
from .environment import PeakMemory, environment
from .evaluate import Judges


@dataclass(frozen=True)
class RunSpec:
    """One transfer: an id (file stem), the inputs and the options passed to ``stylelab.transfer``."""

    id: str
    content: Path
    style: Path
    options: dict = field(default_factory=dict)

    def key(self) -> str:
        digest = hashlib.sha256()
        for path in (self.content, self.style):
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        digest.update(json.dumps(self.options, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


class CurveRecorder:
    """(iteration, seconds, loss) after every evaluation, for loss-versus-iteration/time plots."""

    def __init__(self):
        self.points: list[tuple[int, float, float]] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.points.append((event.iteration, round(event.elapsed, 5), event.loss))


def _load_previous(spec: RunSpec, runs_dir: Path, key: str) -> dict | None:
    record_path, image_path = runs_dir / f"{spec.id}.json", runs_dir / f"{spec.id}.png"
    if not (record_path.is_file() and image_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None  # else: run again


def run_all(specs: Sequence[RunSpec], out_dir: Path, judges: Judges, *, fresh: bool = False, quiet: bool = False,
            log: Callable[[str], None] = lambda m: None, networks: dict[tuple, Backbone] | None = None
            ) -> list[dict]:
    """Run (or reuse) every spec in order; returns one JSON-ready record per run.

    ``networks`` (keyed by ``network_key``) shares built networks between calls, e.g. a report's experiments."""
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    records = []
    built: dict[tuple, Backbone] = {} if networks is None else networks  # weights loaded once for all runs
    for k, spec in enumerate(specs, 1):
        key = spec.key()
        previous = None if fresh else _load_previous(spec, runs_dir, key)
        if previous is not None:
            log(f"run {k}/{len(specs)} {spec.id}: finished earlier, kept (use fresh= to redo)")
            records.append(previous)
            continue
        log(f"run {k}/{len(specs)} {spec.id}: {spec.options.get('backbone', 'vgg19')}")
        net_key = network_key(spec.options)
        if net_key not in built:
            built[net_key] = create_backbone(net_key[0], net_key[1], seed=net_key[2], pooling=net_key[3])
        records.append(_run_one(spec, key, runs_dir, judges, f"run {k}/{len(specs)}", quiet, log, built[net_key]))
    return records


def network_key(options: dict) -> tuple:
    """What identifies a built network among a run's options: (backbone, weights, seed, pooling)."""
    return (options.get("backbone", "vgg19"), options.get("weights", "pretrained"), options.get("seed", 0),
            options.get("pooling"))


def pending(specs: Sequence[RunSpec], out_dir: Path, fresh: bool = False) -> list[RunSpec]:
    """The specs that ``run_all`` would run rather than keep."""
    runs_dir = out_dir / "runs"
    return [s for s in specs if fresh or _load_previous(s, runs_dir, s.key()) is None]


def _run_one(spec: RunSpec, key: str, runs_dir: Path, judges: Judges, description: str, quiet: bool,
             log: Callable[[str], None], net: Backbone | None = None) -> dict:
    options = dict(spec.options)
    schedule = scale_schedule(options.get("size", 512), options.get("scales", "none"), options.get("iterations", 500),
                              options.get("coarse_iterations"))
    bar = ProgressBar(sum(budget for _, budget in schedule), description, disable=quiet)
    curve = CurveRecorder()
    device = resolve_device(options.get("device", "auto"))
    try:
        with PeakMemory(device) as memory:
            result = transfer(spec.content, spec.style, callback=Chain(bar, curve), log=log,
                              **{**options, **({"backbone": net} if net is not None else {})})
    finally:
        bar.close()
    image_path = save_image(result.image, runs_dir / f"{spec.id}.png")
    content, style = load_image(spec.content), load_image(spec.style)
    final = result.final
    record = {
        "id": spec.id,
        "key": key,
        "image": f"runs/{image_path.name}",
        "content": str(spec.content),
        "style": str(spec.style),
        "backbone": result.backbone,
        "weights": result.weights_source,
        "options": {k: v for k, v in options.items() if k != "device"},
        "content_layers": dict(result.loss.content_layers),
        "style_layers": dict(result.loss.style_layers),
        "content_weight": result.loss.content_weight,
        "style_weight": result.loss.style_weight,
        "tv_weight": result.loss.tv_weight,
        "size": list(result.image.shape[-2:]),
        "iterations": result.iterations,
        "mode": run_mode(schedule, options.get("tolerance", 0.0), options.get("lbfgs_curvature", LBFGS_CURVATURE),
                         warmup_evaluations(options.get("style_warmup", "auto"), schedule[0][1],
                                            options.get("init", "content"))),
        "seconds": result.seconds,
        "seconds_per_iteration": result.seconds / result.iterations,
        "peak_memory_mib": memory.mib,
        "peak_memory_kind": memory.kind,
        "final": None if final is None else {"loss": final.loss, "content": final.content_loss,
                                             "style": final.style_loss, "tv": final.tv_loss},
        "metrics": judges.measure(result.image, content, style),
        "environment": environment(device, describe_precision(*numerics_in_effect(  # what ran, not what was asked
                                                                  options.get("precision", "auto"),
                                                                  options.get("channels_last"), device),
                                                              convolution_in_effect(
                                                                  options.get("convolution", "auto"), device))),
        "curve": curve.points,
    }
    write_atomically(runs_dir / f"{spec.id}.json", lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
    return record


def run_mode(schedule: Sequence[tuple[int, int]], tolerance: float, curvature: str = "torch",
             warmup: int = 0) -> str:
    """"plain" (one scale, fixed evaluations, torch's L-BFGS pair test: the seed's method) or the scales with
    their evaluations, the stopping rule, the scaled pair test and the style warm-up where they depart from it."""
    if len(schedule) == 1 and not tolerance and curvature == "torch" and not warmup:
        return "plain"
    scales = " → ".join(f"{edge}×{budget}" for edge, budget in schedule)
    return (scales + (f", tolerance {tolerance:g}" if tolerance else "")
            + (", scaled L-BFGS pair test" if curvature == "scaled" else "")
            + (f", style warm-up {warmup}" if warmup else ""))


def write_results(out_dir: Path, command: str, device: torch.device, judges: Judges, records: Sequence[dict],
                  table: str, extra: dict | None = None) -> None:
    """DIR/results.json (everything) and DIR/results.md (the table, the environment, the judges).

    Each run keeps its own environment too: runs kept from an earlier invocation may come from elsewhere.
    """
    env = environment(device)
    data = {"command": command, "environment": env, "judges": judges.describe(), **(extra or {}), "runs": records}
    write_atomically(out_dir / "results.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))
    lines = [f"# {command}", "", table, "", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "Metrics: " + "; ".join(f"{k}: {v}" for k, v in judges.describe().items()), ""]
    write_atomically(out_dir / "results.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))


def command_line() -> str:
    return "stylelab " + " ".join(sys.argv[1:])


def _layers(spec: dict[str, float]) -> str:
    return ",".join(spec)


def runs_table(records: Sequence[dict]) -> str:
    """One Markdown row per run: configuration, time, losses, metrics (↑/↓: which way is better)."""
    from .evaluate import METRICS, format_value

    head = ["run", "mode", "backbone", "content layers", "style layers", "device", "time s", "ms/it", "peak MiB",
            "loss", "content", "style"] + [f"{n} {'↑' if METRICS[n][1] else '↓'}" for n in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in records:
        final = r.get("final") or {}
        peak = r.get("peak_memory_mib")
        cells = [r["id"], r.get("mode", "plain"), r["backbone"], _layers(r["content_layers"]), _layers(r["style_layers"]),
                 r["environment"]["device"], f"{r['seconds']:.2f}", f"{1000 * r['seconds_per_iteration']:.1f}",
                 "n/a" if peak is None else f"{peak:.0f}", format_value(final.get("loss")),
                 format_value(final.get("content")), format_value(final.get("style"))]
        cells += [format_value(r["metrics"].get(n)) for n in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(record: dict) -> str:
    """A short line under each picture: time, iterations/s, SSIM to the content."""
    ssim = record["metrics"].get("ssim_content")
    return f"{record['seconds']:.1f} s, {record['iterations'] / max(record['seconds'], 1e-9):.3g} it/s" + \
        (f", SSIM {ssim:.2f}" if ssim is not None else "")
