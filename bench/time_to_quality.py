"""Time to a finished picture: how long each setting takes to reach the plain method's final loss.

    python bench/time_to_quality.py --sizes 256,512                                      # random VGG19
    python bench/time_to_quality.py --backbone vgg16 --weights vgg16-hed.pth --sizes 256,512   # trained
    python bench/time_to_quality.py --sizes 128 --iterations 40 --candidates plain,default     # quick

The **plain run** is single-scale L-BFGS from the content image for --iterations evaluations (500: the seed's
setting; ``stylelab.PLAIN``, ``--plain`` on the command line: today's run exactly). Its final total loss at
the output size is the bar. For every
candidate (a named set of ``transfer`` options, see CANDIDATES) the bench records the loss of every evaluation
with the wall time since ``transfer`` was called (targets, image preparation and coarse scales included) and
reports the time at which the output-size loss first reaches the bar, the final loss, the pictures side
by side, and how far each picture is from the plain one (PSNR and the largest difference in 8-bit levels). Repeats alternate plain and candidates in one process (``--repeats``), so drift hits both alike.

Exploration candidates stop as soon as they reach the bar (``stop_at_bar``); ``default`` (the product's
defaults) always runs to its own end, since its finish time is what a user waits.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

import torch

import stylelab
from stylelab import transfer
from stylelab.api import as_tensor, scale_schedule
from stylelab.backbones.convolution import convolution_in_effect
from stylelab.images import save_image
from stylelab.optimize import StopOptimization
from stylelab.runtime import describe_precision, numerics_in_effect, resolve_device
from stylelab.samples import sample_content, sample_style
from stylelab.study.environment import environment
from stylelab.study.metrics import ssim

PLAIN = dict(stylelab.PLAIN)  # the seed's run exactly (api.py); the bar
DEFAULT_SCALES = inspect.signature(transfer).parameters["scales"].default
# name -> (transfer options, whether the run may stop once it reached the bar)
CANDIDATES = {
    "plain": (PLAIN, False),
    "default": ({}, False),  # the product's defaults: what `stylelab transfer` does with no flags
    "pyramid-500": ({"scales": "auto", "coarse_iterations": 500, "tolerance": 0.0}, True),
    "pyramid-200": ({"scales": "auto", "coarse_iterations": 200, "tolerance": 0.0}, True),
    "pyramid-100": ({"scales": "auto", "coarse_iterations": 100, "tolerance": 0.0}, True),
    "pyramid-50": ({"scales": "auto", "coarse_iterations": 50, "tolerance": 0.0}, True),
    "pyramid-200-h20": ({"scales": "auto", "coarse_iterations": 200, "tolerance": 0.0, "lbfgs_history": 20}, True),
    "pyramid-64-200": ({"scales": "64", "coarse_iterations": 200, "tolerance": 0.0}, True),
    "plain-h20": ({**PLAIN, "lbfgs_history": 20}, True),
    "plain-h300": ({**PLAIN, "lbfgs_history": 300}, True),
    "tolerance-0.005": ({**PLAIN, "tolerance": 0.005}, False),  # stops by itself: its finish is what a user waits
    "winograd": ({**PLAIN, "convolution": "winograd"}, False),  # every eligible 3×3 convolution by Winograd
    # the same arithmetic in another order (NHWC): how far pictures part by rounding alone (the chaos floor)
    "plain-nhwc": ({**PLAIN, "channels_last": True}, False),
    # the backbone in bf16 (AMX on recent Xeons), NHWC; its own losses are bf16 ones, so it is judged in fp32
    "bf16-nhwc": ({**PLAIN, "precision": "bf16", "channels_last": True}, False),
    "bf16-nhwc-800": ({**PLAIN, "precision": "bf16", "channels_last": True, "iterations": 800}, False),
    # the defaults in fp32 whatever the CPU (precision auto takes bf16 + NHWC where the CPU has AMX)
    "default-fp32": ({"precision": "fp32"}, False),
    # the defaults (the warm-up included) with the backbone in bf16 + NHWC on any CPU; judged in fp32
    "default-bf16-nhwc": ({"precision": "bf16", "channels_last": True}, False),
    # continuation in β: the defaults with β × 0.1 for the first 30 evaluations, then β and a fresh L-BFGS
    "warmup-0.1-30": ({"style_warmup": 30}, True),
    # the default's warm-up at 500 evaluations (style_warmup="auto"), stopping once it is at the bar
    "warmup-0.1-60": ({"style_warmup": 60}, True),
}


def candidate_options(name: str, size: int) -> tuple[dict, bool]:
    options, stop_at_bar = CANDIDATES[name]
    options = dict(options)
    if options.get("scales") == "64":  # a deeper pyramid: from 64 px, doubling
        edges, edge = [], 64
        while edge * 2 <= size:
            edges.append(edge)
            edge *= 2
        options["scales"] = [*edges, size]
    return options, stop_at_bar


def judged(options: dict) -> bool:
    """A run whose reported losses are not strict fp32 ones: its pictures are scored again in fp32."""
    return _numerics(options)[0] != "fp32"


def _numerics(options: dict) -> tuple[str, bool]:
    """The precision and memory layout a candidate runs with on the CPU (``auto`` resolved)."""
    defaults = inspect.signature(transfer).parameters
    return numerics_in_effect(options.get("precision", defaults["precision"].default),
                              options.get("channels_last", defaults["channels_last"].default), torch.device("cpu"))


class Judge:
    """The plain run's fp32 loss of a picture (its targets, its kernels): one fp32 evaluation at ``init=picture``.
    Used for runs whose own losses are not fp32 ones, so every candidate is held to the same bar."""

    def __init__(self, content, style, common):
        self.content, self.style, self.common = content, style, common
        self.scores: dict[int, float] = {}  # trace index -> fp32 loss of its picture

    def __call__(self, picture: torch.Tensor) -> float:
        losses = []
        transfer(self.content, self.style, init=picture, callback=lambda e: losses.append(e.loss), report_every=1,
                 **{**self.common, **PLAIN, "iterations": 1})
        return losses[0]

    def first_below(self, points, snapshots, level: float) -> tuple[int, float] | None:
        """The first trace index whose picture's fp32 loss is <= level, by bisection (the loss falls along the
        run; if it does not, the index found is a later crossing, so the time reported errs long)."""
        def loss(i: int) -> float:
            if i not in self.scores:
                self.scores[i] = self(snapshots[i])
            return self.scores[i]

        if not points or loss(len(points) - 1) > level:
            return None
        lo, hi = -1, len(points) - 1  # loss(hi) <= level; lo: not known to be
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if loss(mid) <= level else (mid, hi)
        return hi, loss(hi)


class Trace:
    """Every evaluation's loss at the output size, with seconds since the run started; optional stop at a bar
    or after ``give_up`` seconds (an exploration candidate that is already too slow)."""

    def __init__(self, size: int, start: float, bar: float | None, give_up: float | None = None,
                 keep_pictures: bool = False):
        self.size, self.start, self.bar, self.give_up = size, start, bar, give_up
        self.output_size_evaluations = 0
        self.points: list[tuple[int, float, float]] = []  # (evaluation at this size, seconds, loss)
        self.pictures: list[torch.Tensor] = []  # each output-size evaluation's picture, when it will be judged
        self.keep_pictures = keep_pictures
        self.evaluations = 0

    def __call__(self, event) -> None:
        self.evaluations += 1
        if max(event.image.shape[-2:]) != self.size:
            return
        self.output_size_evaluations += 1
        if event.warmup:  # a warm-up's loss weighs the style less: not the objective's, not recorded
            return
        self.points.append((self.output_size_evaluations, time.perf_counter() - self.start, event.loss))
        if self.keep_pictures:
            self.pictures.append(event.image.clone())
        if self.bar is not None and event.loss <= self.bar:
            raise StopOptimization
        if self.give_up is not None and self.points[-1][1] > self.give_up:
            raise StopOptimization


def run(name, options, stop_at_bar, bar, content, style, common, give_up=None) -> tuple[dict, torch.Tensor]:
    judge = Judge(content, style, common) if judged(options) else None
    if judge is not None and stop_at_bar:
        raise ValueError(f"{name}: a judged run cannot stop at the bar (its own losses are not fp32 ones)")
    start = time.perf_counter()
    trace = Trace(common["size"], start, bar if stop_at_bar else None, give_up if stop_at_bar else None,
                  keep_pictures=judge is not None)
    result = transfer(content, style, callback=trace, report_every=1, **{**common, **options})
    seconds = time.perf_counter() - start
    output_size_evaluations = trace.output_size_evaluations
    own_losses = None
    if judge is not None and trace.points:  # the trace's losses become fp32 ones where they were judged
        own_losses = {"final": trace.points[-1][2], "best": min(p[2] for p in trace.points)}
        levels = {} if bar is None else {"bar": bar, **{f"{m:g}": bar * (1 + m) for m in MARGINS}}
        found = {key: judge.first_below(trace.points, trace.pictures, level) for key, level in levels.items()}
        last = len(trace.points) - 1  # the final picture, judged in any case
        if last not in judge.scores:  # (first_below has judged it whenever there is a bar)
            judge.scores[last] = judge(trace.pictures[last])
        # the trace keeps only the judged points, now with fp32 losses: final and best are judged ones
        points = [(*trace.points[i][:2], loss) for i, loss in sorted(judge.scores.items())]
        index = {i: n for n, i in enumerate(sorted(judge.scores))}
        found = {key: None if hit is None else (index[hit[0]], hit[1]) for key, hit in found.items()}
        trace.points = points
        reached_at = found.get("bar")
        reached = None if reached_at is None else points[reached_at[0]][:2]
        within = {key: (None if hit is None else round(points[hit[0]][1], 2))
                  for key, hit in found.items() if key != "bar"}
    else:
        reached = next(((k, t) for k, t, loss in trace.points if bar is not None and loss <= bar), None)
        within = {f"{margin:g}": first_below(trace.points, bar * (1 + margin))
                  for margin in MARGINS} if bar is not None else {}
    row = {
        "candidate": name, "options": {k: v for k, v in options.items()},
        "convolution": convolution_in_effect({**common, **options}.get("convolution", "auto"),
                                             resolve_device(common.get("device", "auto"))),  # what ran, not asked
        "precision": describe_precision(*_numerics(options)),
        "schedule": scale_schedule(common["size"], options.get("scales", DEFAULT_SCALES),
                                   options.get("iterations", common["iterations"]),
                                   options.get("coarse_iterations")),
        "seconds": round(seconds, 2), "evaluations": trace.evaluations,
        "output_size_evaluations": output_size_evaluations,
        "final_loss": trace.points[-1][2] if trace.points else None,
        "best_loss": min(p[2] for p in trace.points) if trace.points else None,
        "judged_in_fp32": None if judge is None else {"pictures": len(judge.scores), "own_losses": own_losses},
        "seconds_to_bar": None if reached is None else round(reached[1], 2),
        "seconds_to_within": within,
        "output_size_evaluations_to_bar": None if reached is None else reached[0],  # k: counted from 1
        "stopped_at_bar": stop_at_bar and reached is not None,
        "gave_up": bool(stop_at_bar and reached is None and give_up and trace.points
                        and trace.points[-1][1] > give_up),
        "best_over_bar": None if bar is None or not trace.points else min(p[2] for p in trace.points) / bar,
        "ssim_content": ssim(result.image, content),
        "trace": [(k, round(t, 3), loss) for k, t, loss in trace.points],
    }
    return row, result.image


MARGINS = (0.01, 0.02, 0.05)  # also reported: the time to within 1 %, 2 %, 5 % of the bar


def first_below(points, level: float) -> float | None:
    return next((round(t, 2) for _, t, loss in points if loss <= level), None)


def picture_difference(image: torch.Tensor, plain: torch.Tensor) -> dict:
    """How far a picture is from the plain run's, as a viewer would see it: PSNR over the 8-bit picture and the
    largest difference in 8-bit levels (a level is 1/255)."""
    a, b = (torch.round(i.clamp(0, 1) * 255) for i in (image, plain))
    mse = float(((a - b) ** 2).mean())
    return {"psnr_to_plain": None if mse == 0 else round(10 * math.log10(255 ** 2 / mse), 2),
            "max_levels_to_plain": int((a - b).abs().max()),
            "share_pixels_off_by_more_than_2_levels": round(float(((a - b).abs() > 2).float().mean()), 5)}


def side_by_side(images: list[torch.Tensor], path: Path) -> None:
    height = min(i.shape[-2] for i in images)
    tiles = [torch.nn.functional.interpolate(i, size=(height, round(i.shape[-1] * height / i.shape[-2])),
                                             mode="bilinear", align_corners=False) for i in images]
    save_image(torch.cat(tiles, dim=-1), path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--iterations", type=int, default=500, help="the plain run's evaluations (the bar)")
    p.add_argument("--candidates", default="default",
                   help=f"comma-separated, from {', '.join(CANDIDATES)} (plain always runs)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--give-up", type=float, default=None, metavar="SHARE",
                   help="stop an exploration candidate once it ran SHARE × the plain run's time without reaching "
                        "the bar (default: never)")
    p.add_argument("--bar-from", default=None, metavar="JSON",
                   help="exploration only: take the plain run (its loss, time and picture's size) from an earlier "
                        "report of the same settings instead of running it again; the report says so")
    p.add_argument("--backbone", default="vgg19")
    p.add_argument("--weights", default="random")
    p.add_argument("--content")
    p.add_argument("--style")
    p.add_argument("--out", default="bench/results", help="folder for the pictures and the JSON")
    p.add_argument("--tag", default=None, help="file name stem (default: backbone and weights)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    content = as_tensor(args.content) if args.content else sample_content()
    style = as_tensor(args.style) if args.style else sample_style()
    names = [n for n in args.candidates.split(",") if n and n != "plain"]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{args.backbone}-{Path(args.weights).stem}"
    report = {"environment": environment(torch.device("cpu")), "backbone": args.backbone, "weights": args.weights,
              "iterations": args.iterations, "repeats": args.repeats, "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")]:
        common = {"backbone": args.backbone, "weights": args.weights, "size": size, "iterations": args.iterations,
                  "device": "cpu", "seed": 0}
        rows, pictures = [], {}
        earlier = None
        if args.bar_from:
            earlier = json.loads(Path(args.bar_from).read_text())["sizes"][str(size)]["rows"]
            earlier = next(r for r in earlier if r["candidate"] == "plain")
        for repeat in range(args.repeats):  # plain, then each candidate; again
            if earlier is None:
                plain, picture = run("plain", PLAIN, False, None, content, style, common)
            else:  # not measured here: an earlier process's plain run, its picture not at hand
                plain, picture = {**earlier, "from": args.bar_from}, None
            bar = plain["final_loss"]
            plain["seconds_to_bar"] = plain["seconds"]
            plain["seconds_to_within"] = {f"{m:g}": first_below(plain["trace"], bar * (1 + m)) for m in MARGINS}
            rows.append({**plain, "repeat": repeat, "bar": bar})
            if picture is not None:
                pictures.setdefault("plain", picture)
            print(f"{size} px repeat {repeat}: plain {plain['seconds']:.1f} s, loss {bar:.5g}", file=sys.stderr,
                  flush=True)
            for name in names:
                options, stop_at_bar = candidate_options(name, size)
                give_up = None if args.give_up is None else args.give_up * plain["seconds"]
                row, picture = run(name, options, stop_at_bar, bar, content, style, common, give_up)
                if "plain" in pictures and picture.shape == pictures["plain"].shape:
                    row.update(picture_difference(picture, pictures["plain"]))
                rows.append({**row, "repeat": repeat, "bar": bar})
                pictures.setdefault(name, picture)
                print(f"  {name}: to bar {row['seconds_to_bar']} s of plain {plain['seconds']:.1f} s "
                      f"(final loss {row['final_loss']:.5g}, best/bar {row['best_over_bar']:.4f}, "
                      f"{row['seconds']:.1f} s, PSNR to plain {row.get('psnr_to_plain')} dB)", file=sys.stderr, flush=True)
                report["sizes"][size] = {"order": list(pictures), "rows": rows}
                (out / f"time-to-quality-{tag}.json").write_text(json.dumps(report, indent=1) + "\n")
        side_by_side(list(pictures.values()), out / f"time-to-quality-{tag}-{size}.jpg")
        report["sizes"][size] = {"order": list(pictures), "rows": rows}
        (out / f"time-to-quality-{tag}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = [f"{report['backbone']} ({report['weights']}), {report['environment']['device']}, torch "
             f"{report['environment']['torch']}; bar: the plain run's loss after {report['iterations']} evaluations",
             "", "| size | setting | scales × evaluations | to the plain loss, s | share of plain | to within 1 / 2 / 5 %, "
             "s | total s | final loss | SSIM content | PSNR to plain, dB (max levels) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size, block in report["sizes"].items():
        plains = {r["repeat"]: r["seconds"] for r in block["rows"] if r["candidate"] == "plain"}
        for r in block["rows"]:
            to_bar = r["seconds_to_bar"]
            share = "–" if to_bar is None else f"{to_bar / plains[r['repeat']]:.2f}"
            schedule = " → ".join(f"{e}×{b}" for e, b in r["schedule"])
            lines.append(f"| {size} | {r['candidate']} | {schedule} | {'not reached' if to_bar is None else to_bar} "
                         f"| {share} | {' / '.join(str(v) for v in r['seconds_to_within'].values())} "
                         f"| {r['seconds']} | {r['final_loss']:.5g} | {r['ssim_content']:.3f} "
                         f"| {r.get('psnr_to_plain', '–')} ({r.get('max_levels_to_plain', '–')}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
