"""The frame loop of video style transfer (Ruder et al., GCPR 2016), resumable through a folder of frames.

``plan_video`` checks everything (input, output, styles, frame range, audio copy, network, the frames already
made) and writes nothing; ``run_video`` stylizes the frames that are missing, one PNG each in OUT.frames/
(000001.png, … numbered from 1), and once every frame is there encodes OUT. A rerun of the same command skips
the frames on disk; options.json in the folder records the settings that made them, so that frames made with
other settings are never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor
from tqdm import tqdm

from .. import __version__
from ..api import as_tensor, resolve_layers, transfer
from ..backbones import Backbone, create_backbone
from ..callbacks import Chain, ProgressBar
from ..errors import StylelabError
from ..images import check_writable, load_image, save_image, size_for_long_edge, spare_inputs, write_atomically
from ..backbones.convolution import check_convolution
from ..runtime import check_precision, resolve_device
from . import FIRST_FRAME_INITS, FRAME_ITERATIONS
from .flow import FLOW_PRESETS, FlowEstimator, consistency_mask, warp
from .frames import VideoInfo, check_audio_copy, output_format, probe, read_frames, write_video
from .temporal import TEMPORAL_WEIGHT, TemporalTerm

_FRAME_FILE = re.compile(r"\d{6,}\.png")
SETTINGS_FILE = "options.json"
# Options that change where the run happens, not the frames it makes: left out of options.json.
_NOT_SETTINGS = {"device", "channels_last", "report_every"}


def cache_dir(output: str | os.PathLike) -> Path:
    """OUT.mp4 -> OUT.frames (next to it)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.frames")


def frame_file(cache: Path, number: int) -> Path:
    return cache / f"{number:06d}.png"


def frame_files(cache: Path) -> list[Path]:
    """The frame images in ``cache`` (any number)."""
    return sorted(p for p in cache.iterdir() if _FRAME_FILE.fullmatch(p.name)) if cache.is_dir() else []


@dataclass
class VideoPlan:
    """A checked video job: nothing has been written yet."""

    info: VideoInfo
    styles: list[Tensor]
    output: Path
    cache: Path
    size: tuple[int, int]  # (H, W) of every stylized frame: even sides (H.264's 4:2:0), the backbone's multiple
    first: int  # frames to stylize, 1-based inclusive
    last: int
    net: Backbone
    iterations: int
    frame_iterations: int
    temporal_weight: float
    flow: str
    init: str
    seed: int
    fresh: bool
    options: dict  # further transfer() options
    settings: dict = field(default_factory=dict)  # what options.json records

    @property
    def whole(self) -> bool:
        return self.first == 1 and self.last == self.info.frames


@dataclass
class VideoRun:
    written: Path | None  # the video, once every frame exists
    stylized: int  # frames made by this run
    cached: int  # frames of the range found on disk
    seconds: float  # optimization time of the frames made
    frames: int  # frames of the video
    stopped: bool = False


def _digest(path: Path, whole: bool = True) -> str:
    """sha256 of a file; for a video its size and first and last MiB (fast on big files, and robust to a copy
    or a touch, which a modification time is not)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if whole:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            size = os.fstat(f.fileno()).st_size
            h.update(str(size).encode())
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()


def frame_size(info: VideoInfo, long_edge: int, multiple: int) -> tuple[int, int]:
    """(H, W) with the long edge at about ``long_edge``, each side a multiple of lcm(multiple, 2)."""
    step = math.lcm(max(1, multiple), 2)
    h, w = size_for_long_edge(info.height, info.width, long_edge)
    return max(step, round(h / step) * step), max(step, round(w / step) * step)


def _check_number(name: str, value, low: float, whole: bool) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
    if bad or not math.isfinite(value) or value < low:
        raise StylelabError(f"{name}= must be a {'whole ' if whole else 'finite '}number >= {low:g}, got {value!r}")


def plan_video(video: str | os.PathLike, styles: Sequence[str | os.PathLike], output: str | os.PathLike, *,
               size: int = 512, iterations: int = 500, frame_iterations: int = FRAME_ITERATIONS,
               temporal_weight: float = TEMPORAL_WEIGHT, frames: tuple[int | None, int | None] | None = None,
               flow: str = "medium", init: str = "content", fresh: bool = False, backbone: str = "vgg19",
               weights: str = "pretrained", seed: int = 0, **options) -> VideoPlan:
    """Check a video job before any work: one ``StylelabError`` for the first problem, nothing written.

    ``frames``: (first, last), 1-based inclusive, None for the start / end. ``options``: transfer()'s other
    options (style_blend, original_colors, content_weight, precision, device, …; scales is always "none")."""
    output, video = Path(output), Path(video)
    output_format(output)
    check_writable(output)
    cache = cache_dir(output)
    if cache.exists() and not cache.is_dir():
        raise StylelabError(f"{cache} should hold the frames but is a file; move it or choose another output")
    if not styles:
        raise StylelabError("no style: give VIDEO STYLE [STYLE…]")
    style_tensors = [as_tensor(s) for s in styles]  # unreadable styles fail here
    for name, value, low, whole in (("iterations", iterations, 1, True), ("frame_iterations", frame_iterations, 1, True),
                                    ("temporal_weight", temporal_weight, 0, False), ("size", size, 1, True)):
        _check_number(name, value, low, whole)
    if flow not in FLOW_PRESETS:
        raise StylelabError(f"unknown flow {flow!r}; choose {', '.join(FLOW_PRESETS)}")
    if init not in FIRST_FRAME_INITS:
        raise StylelabError(f"init= for a video's first frame is one of {', '.join(FIRST_FRAME_INITS)}, got {init!r}")
    if options.get("scales", "none") not in ("none", None):
        raise StylelabError("video frames run single-scale: scales= is not an option here")
    options.pop("scales", None)
    info = probe(video)
    inputs = [video, *(Path(s) for s in styles if isinstance(s, (str, os.PathLike)))]
    spare_inputs([output, *frame_files(cache), cache / SETTINGS_FILE], inputs)
    first, last = frames or (None, None)
    first, last = 1 if first is None else first, info.frames if last is None else last
    if not 1 <= first <= last <= info.frames:
        raise StylelabError(f"frames {first}:{last} are out of range: {video} has {info.frames} frames (1:{info.frames})")
    check_audio_copy(info, output_format(output))
    device = resolve_device(options.get("device", "auto"))
    check_precision(options.get("precision", "auto"), device)
    if options.get("precision", "auto") == "auto":
        # A video's frames stay fp32 under auto: bf16 was judged on still pictures, where a run's rounding may
        # part it from another; between frames that parting would be flicker, which is not measured under bf16.
        options["precision"] = "fp32"
    check_convolution(options.get("convolution", "auto"), device)
    net = create_backbone(backbone, weights, seed=seed, pooling=options.get("pooling"))
    content_layers, style_layers = resolve_layers(net, options.get("content_layers"), options.get("style_layers"),
                                                  options.get("balance") or net.default_balance)
    net.truncate([*content_layers, *style_layers])  # built once for every frame: only the layers it needs
    hw = frame_size(info, size, net.input_multiple)
    settings = {
        "stylelab": __version__,
        "video": _digest(video, whole=False),  # by content: a renamed or moved input is the same input
        "styles": [_digest(Path(s)) if isinstance(s, (str, os.PathLike)) else
                   hashlib.sha256(as_tensor(s).numpy().tobytes()).hexdigest() for s in styles],
        "frame_size": [hw[1], hw[0]],
        "backbone": net.name, "weights": str(weights), "seed": seed, "iterations": iterations,
        "frame_iterations": frame_iterations, "temporal_weight": temporal_weight, "flow": flow, "init": init,
        **{k: v for k, v in sorted(options.items()) if k not in _NOT_SETTINGS},
    }
    settings = json.loads(json.dumps(settings, default=str))  # as it reads back from the file
    plan = VideoPlan(info, style_tensors, output, cache, hw, first, last, net, iterations, frame_iterations,
                     float(temporal_weight), flow, init, seed, fresh, options, settings)
    if not fresh:
        _check_cache(plan)
    return plan


def _check_cache(plan: VideoPlan) -> None:
    """Frames on disk are reused only when options.json says the same settings made them."""
    files, record = frame_files(plan.cache), plan.cache / SETTINGS_FILE
    if not record.exists():
        if files:
            raise StylelabError(f"{plan.cache} holds {len(files)} frame(s) but no {SETTINGS_FILE} saying how they "
                                "were made; pass --fresh to discard them, or choose another output")
        return
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise StylelabError(f"cannot read {record} ({exc}); pass --fresh to start over") from None
    if saved != plan.settings:
        keys = sorted(k for k in {*saved, *plan.settings} if saved.get(k) != plan.settings.get(k))
        raise StylelabError(f"{plan.cache} holds frames made with other settings ({', '.join(keys)}); pass --fresh "
                            "to discard them, or choose another output")


def _quantized(image: Tensor) -> Tensor:
    """As the PNG holds it: a resumed run then continues from exactly what an uninterrupted one had."""
    return image.clamp(0, 1).mul(255).round().div(255)


class FrameBar(ProgressBar):
    """The transfer's bar for one frame, on the line below the frames bar, cleared when the frame is done."""

    def __call__(self, event) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc=self.description, unit="it", disable=self.disable,
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.2, position=1, leave=False)
        super().__call__(event)
        if "temporal" in event.terms:
            self.bar.set_postfix_str(f"loss {event.loss:.4g} (content {event.content_loss:.3g}, style "
                                     f"{event.style_loss:.3g}, temporal {event.terms['temporal']:.3g})", refresh=False)


def run_video(plan: VideoPlan, *, quiet: bool = False, stops=None, log: Callable[[str], None] | None = None,
              transfer_fn: Callable | None = None) -> VideoRun:
    """Stylize the frames of ``plan``'s range not yet on disk, then (all frames there) write the video.

    ``stops``: a progress callback that may stop the run (the CLI's Ctrl-C handler, with ``signum``); the frame
    in progress is then dropped and the ones done are kept. ``transfer_fn``: stands in for ``transfer``."""
    log = log or (lambda message: None)
    transfer_fn = transfer_fn or transfer  # looked up now, so that a test can count the calls
    cache = plan.cache
    if plan.fresh:
        for path in [*frame_files(cache), cache / SETTINGS_FILE]:
            path.unlink(missing_ok=True)
    flow = FlowEstimator(plan.flow)
    total = plan.last - plan.first + 1
    cached = sum(frame_file(cache, n).is_file() for n in range(plan.first, plan.last + 1))
    if cached:
        log(f"{cached} of {total} frame(s) already in {cache}: continuing")
    outer = tqdm(total=total, initial=cached, desc="frames", unit="frame", disable=quiet, file=sys.stderr,
                 dynamic_ncols=True, position=0)
    stylized, seconds, stopped, decoded = 0, 0.0, False, 0
    previous_input: Tensor | None = None
    previous_styled: Tensor | None = None  # frame n−1 stylized, when this run holds it
    try:
        for number, frame in enumerate(read_frames(plan.info.path, plan.size), 1):
            decoded = number
            if number > plan.last:
                break
            path = frame_file(cache, number)
            if number < plan.first or path.is_file():
                previous_input, previous_styled = frame, None
                continue
            before = frame_file(cache, number - 1)
            if previous_styled is None and previous_input is not None and before.is_file():
                previous_styled = load_image(before)
                if tuple(previous_styled.shape[-2:]) != plan.size:
                    raise StylelabError(f"{before} is not {plan.size[1]}x{plan.size[0]}; pass --fresh to start over")
            result = _stylize_frame(plan, number, frame, previous_input, previous_styled, flow, quiet, stops,
                                    transfer_fn)
            if stops is not None and getattr(stops, "signum", None) is not None:
                stopped = True  # the frame was not finished: a rerun makes it again
                break
            seconds += result.seconds
            image = _quantized(result.image)
            if not cache.is_dir():
                cache.mkdir()
            if not (cache / SETTINGS_FILE).exists():
                text = json.dumps(plan.settings, indent=1) + "\n"
                write_atomically(cache / SETTINGS_FILE, lambda tmp: Path(tmp).write_text(text))
            save_image(image, path)
            stylized += 1
            outer.update()
            previous_input, previous_styled = frame, image
    finally:
        outer.close()
    frames = plan.info.frames
    if not stopped and decoded < min(plan.last, frames):  # fewer frames decoded than the container counted
        log(f"{plan.info.path} decoded to {decoded} frames, not the {frames} its container lists")
        frames = decoded
    done = stylized + cached
    if stylized:
        log(f"{stylized} frame(s) in {seconds:.1f} s ({seconds / stylized:.2f} s/frame)")
    if stopped:
        return VideoRun(None, stylized, cached, seconds, frames, stopped=True)
    missing = [n for n in range(1, frames + 1) if not frame_file(cache, n).is_file()]
    if missing:
        log(f"frames {plan.first}–{plan.last} are in {cache} ({done} of them); {len(missing)} of the video's "
            f"{frames} frames are missing, so {plan.output} is written once they are (run without --frames)")
        return VideoRun(None, stylized, cached, seconds, frames)
    written = write_video(plan.output, [frame_file(cache, n) for n in range(1, frames + 1)], plan.info.rate,
                          plan.info.path if plan.info.audio else None, plan.info.start)
    audio = f", audio ({plan.info.audio}) copied" if plan.info.audio else ""
    log(f"wrote {written} ({frames} frames {plan.size[1]}x{plan.size[0]} at {float(plan.info.rate):.4g} fps{audio})")
    return VideoRun(written, stylized, cached, seconds, frames)


def _stylize_frame(plan: VideoPlan, number: int, frame: Tensor, previous_input: Tensor | None,
                   previous_styled: Tensor | None, flow: FlowEstimator, quiet: bool, stops, transfer_fn):
    """One frame: the first (or one without its predecessor on disk) from --init with --iterations; the others
    from the previous result warped by the backward flow, with the temporal loss, for --frame-iterations."""
    terms, init, iterations = None, plan.init, plan.iterations
    if previous_styled is not None and previous_input is not None:
        forward, backward = flow.pair(previous_input, frame)
        init = warp(previous_styled, backward).clamp(0, 1)
        iterations = plan.frame_iterations
        if plan.temporal_weight > 0:
            terms = TemporalTerm(init, consistency_mask(forward, backward), plan.temporal_weight,
                                 luminance=plan.options.get("original_colors") == "luminance")
    bar = FrameBar(iterations, description=f"frame {number}", disable=quiet)
    try:
        return transfer_fn(frame, plan.styles, backbone=plan.net, size=max(plan.size), iterations=iterations,
                           init=init, seed=plan.seed, scales="none", extra_terms=terms,
                           callback=Chain(bar, stops), **plan.options)
    finally:
        bar.close()
