"""Seconds per evaluation with and without keeping freed memory for reuse (``stylelab.heap.kept_heap``).

One process runs one arm, since glibc's thresholds, once set, stay set; alternate processes from outside, e.g.

    farm-bench -n 4 --timeout 1200 -- sh -c 'exec python bench/heap.py --weights W >>/tmp/kept 2>&1' \\
        --vs "sh -c 'exec python bench/heap.py --weights W --off >>/tmp/off 2>&1'"

Each run prints its median seconds per evaluation over the evaluations after the burn-in.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from unittest import mock

import torch

import stylelab
from stylelab import api, heap
from stylelab.samples import sample_content, sample_style


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--off", action="store_true", help="glibc's own behaviour: freed memory goes back at once")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--weights", default="random")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--evaluations", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=3)
    p.add_argument("--convolution", default="auto", help="auto (the default) or direct (the plain run's)")
    args = p.parse_args(argv)

    stamps: list[float] = []
    depths: list[int] = []  # heap._depth at each evaluation: 1 when the heap is kept, 0 when not

    def on_evaluation(event) -> None:
        stamps.append(time.perf_counter())
        depths.append(heap._depth)

    keep = mock.patch.object(api, "kept_heap", lambda enabled=True: contextlib.nullcontext()) if args.off \
        else contextlib.nullcontext()
    with keep:
        stylelab.transfer(sample_content(), sample_style(), backbone=args.backbone, weights=args.weights,
                          size=args.size, iterations=args.evaluations, style_warmup=0,
                          convolution=args.convolution, callback=on_evaluation)
    gaps = sorted(b - a for a, b in zip(stamps[args.burn_in:], stamps[args.burn_in + 1:]))
    assert set(depths) == {0 if args.off else 1}, depths
    print(f"{'off' if args.off else 'kept'} {args.backbone} {args.weights} {args.size} px "
          f"convolution {args.convolution}: median {gaps[len(gaps) // 2]:.3f} s/evaluation over {len(gaps)} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
