"""Evaluations to the plain run's loss for style warm-ups of other lengths and factors (how ``style_warmup="auto"``
was chosen; bench/RESULTS.md, 2026-12-07, second round). Counts, not seconds: they do not depend on the machine's
load, so this can run beside other work; time_to_quality.py measures the seconds.

    python bench/warmup_trials.py --backbone vgg16 --weights bench/weights/vgg16-hed.pth --size 256 \\
        --content ../shared/images/content/tubingen.jpg --style ../shared/images/style/composition_vii.jpg \\
        --trials 0.1:30,0.1:60,1:30

The plain run (``stylelab.PLAIN``, ``--iterations`` evaluations) sets the bar unless ``--bar`` gives it. A trial
``FACTOR:LENGTH`` is the defaults with ``style_warmup=LENGTH`` and the warm-up's β multiplied by FACTOR instead of
the product's ``WARMUP_STYLE_FACTOR`` (FACTOR 1: only the fresh L-BFGS at LENGTH, the control); it runs up to
``--limit`` evaluations and stops at the bar.
"""

from __future__ import annotations

import argparse
import time

import stylelab
import stylelab.optimize
from stylelab import transfer
from stylelab.optimize import StopOptimization


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--weights", default="random")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--content", required=True)
    p.add_argument("--style", required=True)
    p.add_argument("--iterations", type=int, default=500, help="the plain run's evaluations")
    p.add_argument("--limit", type=int, default=560, help="a trial's evaluations at most")
    p.add_argument("--bar", type=float, help="the plain run's final loss, if known (skips the plain run)")
    p.add_argument("--trials", required=True, help="comma-separated FACTOR:LENGTH, e.g. 0.1:30,0.1:60")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    trials = [(float(f), int(n)) for f, n in (t.split(":") for t in args.trials.split(","))]
    # fp32 throughout: a trial is scored by its own losses against plain's fp32 bar
    common = dict(backbone=args.backbone, weights=args.weights, size=args.size, report_every=1, precision="fp32")
    bar = args.bar
    if bar is None:
        losses: list[float] = []
        start = time.perf_counter()
        transfer(args.content, args.style, iterations=args.iterations, callback=lambda e: losses.append(e.loss),
                 **{**common, **stylelab.PLAIN})
        bar = losses[-1]
        print(f"plain: {args.iterations} evaluations, loss {bar!r} (the bar), {time.perf_counter() - start:.1f} s")
    product_factor = stylelab.optimize.WARMUP_STYLE_FACTOR
    for factor, length in trials:
        full: list[tuple[int, float]] = []  # (evaluation, loss) of the full objective

        def record(event):
            if not event.warmup:
                full.append((event.iteration, event.loss))
                if event.loss <= bar:
                    raise StopOptimization

        stylelab.optimize.WARMUP_STYLE_FACTOR = factor  # read by optimize() at each evaluation
        try:
            start = time.perf_counter()
            transfer(args.content, args.style, iterations=args.limit, style_warmup=length, callback=record, **common)
        finally:
            stylelab.optimize.WARMUP_STYLE_FACTOR = product_factor
        at, loss = full[-1]
        reached = f"at evaluation {at}" if loss <= bar else f"not by {at} ({loss / bar:.5f} × the bar)"
        print(f"β × {factor:g} for {length}: the bar {reached}, {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
