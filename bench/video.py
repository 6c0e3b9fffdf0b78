"""Temporal consistency of `stylelab video` (Ruder et al. 2016): a real clip (a pan across an image, encoded as
H.264 through PyAV) stylized three ways, each output measured by the warping error of Lai et al. (ECCV 2018):

* independent: every frame on its own (from the content, --iterations each), as `stylelab transfer` would;
* warped init, γ = 0: each frame from the previous result warped by the flow, no temporal loss;
* warped init + temporal loss (γ = --temporal-weight, stylelab's default unless given): Ruder et al.'s method.

E_warp = mean over t of Σ M ‖O_t − ω(O_{t−1})‖² / Σ M, flow (DIS) and consistency mask M from the input frames;
lower is steadier. Also seconds per frame (optimization only, and wall time with flow, I/O and targets).

    python bench/video.py --size 96 --frames 12 --weights random --iterations 40 --frame-iterations 15
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

from stylelab import transfer
from stylelab.images import load_image, resize, save_image
from stylelab.samples import sample_content, sample_style
from stylelab.video.flow import FlowEstimator
from stylelab.video.frames import read_frames, write_video
from stylelab.video.metrics import warping_error
from stylelab.video.run import frame_file, plan_video, run_video
from stylelab.video.temporal import TEMPORAL_WEIGHT


def make_clip(image: torch.Tensor, frames: int, shift: int, folder: Path, fps: int = 12) -> Path:
    """A pan: a fixed-size window moving ``shift`` source pixels right per frame, encoded as H.264 .mp4."""
    _, _, h, w = image.shape
    width = w - shift * (frames - 1)
    if width < w // 2:
        raise SystemExit(f"--shift {shift} × {frames} frames leaves too small a window of a {w} px wide image")
    width -= width % 2
    h -= h % 2
    files = []
    for t in range(frames):
        files.append(save_image(image[..., :h, t * shift:t * shift + width], folder / f"in{t:04d}.png"))
    return write_video(folder / "clip.mp4", files, Fraction(fps))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", help="content image to pan across (default: stylelab's sample landscape, 192x256)")
    p.add_argument("--style", help="style image (default: stylelab's sample strokes)")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--shift", type=int, default=4, help="source pixels the window moves per frame")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--iterations", type=int, default=40, help="first frame (and each independent frame)")
    p.add_argument("--frame-iterations", type=int, default=15)
    p.add_argument("--temporal-weight", type=float, default=TEMPORAL_WEIGHT)
    p.add_argument("--backbone", default="vgg19")
    p.add_argument("--weights", default="random")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    image = load_image(args.image) if args.image else sample_content()
    style = load_image(args.style) if args.style else sample_style()
    # fp32, as the product's video frames run under precision auto (video/run.py)
    common = dict(backbone=args.backbone, weights=args.weights, seed=args.seed, device=args.device, precision="fp32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(image, args.frames, args.shift, tmp)
        style_path = save_image(style, tmp / "style.png")
        flow = FlowEstimator()

        def measure(name: str, outputs: list[torch.Tensor], inputs: list[torch.Tensor], optimize_s: float,
                    wall_s: float) -> None:
            rows.append({"setting": name, "warping_error": warping_error(outputs, inputs, flow),
                         "s_per_frame": optimize_s / len(outputs), "wall_s_per_frame": wall_s / len(outputs)})
            print(f"{name}: E_warp {rows[-1]['warping_error']:.5f}, {rows[-1]['s_per_frame']:.2f} s/frame "
                  f"({rows[-1]['wall_s_per_frame']:.2f} wall)", file=sys.stderr)

        inputs = None
        for name, gamma in (("warped init, γ = 0", 0.0), (f"warped init + temporal loss, γ = {args.temporal_weight:g}",
                                                         args.temporal_weight)):
            start = time.perf_counter()
            plan = plan_video(clip, [style_path], tmp / f"out{gamma:g}.mp4", size=args.size,
                              iterations=args.iterations, frame_iterations=args.frame_iterations,
                              temporal_weight=gamma, **common)
            run = run_video(plan, quiet=True)
            wall = time.perf_counter() - start
            inputs = list(read_frames(clip, plan.size))
            outputs = [load_image(frame_file(plan.cache, n)) for n in range(1, len(inputs) + 1)]
            measure(name, outputs, inputs, run.seconds, wall)
        start, seconds, outputs = time.perf_counter(), 0.0, []
        for frame in inputs:  # the same frames, each stylized alone
            result = transfer(frame, style, size=max(frame.shape[-2:]), iterations=args.iterations, **common)
            seconds += result.seconds
            outputs.append(resize(result.image, tuple(frame.shape[-2:])).mul(255).round().div(255))
        measure("independent frames", outputs, inputs, seconds, time.perf_counter() - start)
        rows.insert(0, rows.pop())
        rows.append({"setting": "input clip (reference)", "warping_error": warping_error(inputs, inputs, flow),
                     "s_per_frame": None, "wall_s_per_frame": None})

    h, w = inputs[0].shape[-2:]
    print(f"\n{len(inputs)} frames {w}x{h}, pan {args.shift} source px/frame, {args.backbone} ({args.weights}), "
          f"iterations {args.iterations} / {args.frame_iterations}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("\n| setting | warping error ↓ | s/frame (optimization) | s/frame (wall) |\n| --- | --- | --- | --- |")
    for r in rows:
        fmt = (lambda v: "—" if v is None else f"{v:.2f}")
        print(f"| {r['setting']} | {r['warping_error']:.5f} | {fmt(r['s_per_frame'])} | {fmt(r['wall_s_per_frame'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "frame_size": [w, h], "rows": rows}, indent=1)
                                   + "\n")


if __name__ == "__main__":
    main()
