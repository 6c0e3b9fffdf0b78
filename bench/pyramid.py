"""High resolution: the multi-scale pyramid against one full-size run, time and weights-free quality.

    python bench/pyramid.py                                   # 1024 and 2048 px, 500 iterations per scale
    python bench/pyramid.py --sizes 1024,2048 --iterations 10 --content c.jpg --style s.jpg   # quick (CPU)

Per final size: the pyramid (256 px, doubling, up to the size; --iterations at every scale) and a single
run at the final size with the same total number of iterations. Reported: total seconds, the seconds of
each scale, peak memory, final loss, SSIM to the content and the colour-histogram distance to the style.
Random-init weights unless --weights says otherwise (timing does not depend on the values; quality does).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from stylelab import transfer
from stylelab.api import as_tensor
from stylelab.runtime import resolve_device
from stylelab.samples import sample_content, sample_style
from stylelab.study.environment import PeakMemory, environment
from stylelab.study.metrics import color_histogram_distance, ssim


def pyramid_scales(size: int, start: int = 256) -> list[int]:
    scales, s = [], start
    while s < size:
        scales.append(s)
        s *= 2
    return scales + [size]


def run(content, style, device, scales, iterations, weights, backbone):
    marks = []

    def per_scale(event):
        if event.iteration % iterations == 0:
            marks.append(event.elapsed)

    with PeakMemory(device) as memory:
        result = transfer(content, style, backbone=backbone, weights=weights, size=scales[-1], scales=scales,
                          iterations=iterations, device=device, callback=per_scale)
    seconds_per_scale = [round(b - a, 3) for a, b in zip([0.0, *marks], marks)]
    return {
        "scales": scales, "iterations_per_scale": iterations, "seconds": round(result.seconds, 3),
        "seconds_per_scale": seconds_per_scale, "peak_memory_mib": memory.mib, "peak_memory_kind": memory.kind,
        "final_loss": result.final.loss, "ssim_content": ssim(result.image, content),
        "color_hist_style": color_histogram_distance(result.image, style),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--iterations", type=int, default=500, help="per scale (the single run gets the same total)")
    p.add_argument("--backbone", default="vgg19")
    p.add_argument("--weights", default="random")
    p.add_argument("--content")
    p.add_argument("--style")
    p.add_argument("--device", default="auto")
    p.add_argument("--json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    content = as_tensor(args.content) if args.content else sample_content()
    style = as_tensor(args.style) if args.style else sample_style()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        scales = pyramid_scales(size)
        pyramid = run(content, style, device, scales, args.iterations, args.weights, args.backbone)
        single = run(content, style, device, [size], args.iterations * len(scales), args.weights, args.backbone)
        rows.append({"size": size, "pyramid": pyramid, "single": single})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    env = environment(device)
    print(f"\n{args.backbone} ({args.weights} weights), {env['device']}, torch {env['torch']}, {env['date']}")
    print("| size | mode | scales | total iterations | seconds | per scale (s) | peak MiB | SSIM content ↑ "
          "| colour hist ↓ |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        for mode in ("pyramid", "single"):
            r = row[mode]
            print(f"| {row['size']} | {mode} | {','.join(map(str, r['scales']))} | "
                  f"{r['iterations_per_scale'] * len(r['scales'])} | {r['seconds']:.1f} | "
                  f"{', '.join(f'{s:.1f}' for s in r['seconds_per_scale'])} | {r['peak_memory_mib']:.0f} | "
                  f"{r['ssim_content']:.3f} | {r['color_hist_style']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "backbone": args.backbone, "weights": args.weights, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
