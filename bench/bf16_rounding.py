"""Where bf16 loses evaluations: a bf16 + channels_last run with one rounding removed, judged in fp32.

    python bench/bf16_rounding.py VARIANT EVALUATIONS [--content C --style S] [--backbone vgg16 --weights W]

A bf16 run needs more evaluations than the fp32 plain run to reach the plain run's loss (bench/RESULTS.md). This
bench tests where that comes from by changing one thing in an otherwise ``--precision bf16 --channels-last``
plain run, then scores every 10th picture from ``--judge-from`` (300) on, and the last, by the plain run's fp32
loss (time_to_quality's ``Judge``), as a share of ``--bar`` when given. An exploration, not a product option: the variants patch
the library for this process only.

* ``base``: bf16 autocast as the product runs it.
* ``split-input``: the convolutions on the image (3 input channels) see it at about 16 bits of mantissa, not
  bf16's 8: the input is split x = hi + lo into two bf16 tensors and the convolution runs once on both stacked
  as channels, with the kernel repeated (linear, so the sum is conv(x) to ~2⁻¹⁶). Autocast rounds the image to
  bf16, so a late L-BFGS step smaller than that rounding does not reach the network at all.
* ``split-input-sum``: the same split as two bf16 convolutions, conv(hi) + conv(lo), each rounded to bf16 and
  summed in bf16 (the same sum in other roundings; 2.6× the stacked one's time for this convolution).
* ``split-input-gram-bf16``: as ``split-input``, and the fp32 Gram products on oneDNN's bf16 arithmetic
  (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``): the forward is exact (bf16-valued features), the
  backward rounds dG to bf16.
* ``split-input-continuation``: as ``split-input``, with β × 0.1 for the first 60 evaluations (an earlier
  round's 256 px lever), the L-BFGS pairs kept across the switch, as that round ran it (the product's
  ``style_warmup`` starts L-BFGS afresh there instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stylelab  # noqa: E402
import stylelab.api as api  # noqa: E402
from stylelab.api import as_tensor  # noqa: E402
from stylelab.optimize import StyleObjective  # noqa: E402
from stylelab.samples import sample_content, sample_style  # noqa: E402
from time_to_quality import Judge  # noqa: E402

VARIANTS = ("base", "split-input", "split-input-sum", "split-input-gram-bf16", "split-input-continuation")


class SplitInputConv2d(nn.Conv2d):
    """Under bf16 autocast: conv(hi ⊕ lo, w ⊕ w) = conv(hi, w) + conv(lo, w) ≈ conv(x, w) with x = hi + lo."""

    sum_of_two = False  # True: the two convolutions apart, summed (split-input-sum)

    def _conv_forward(self, x, weight, bias):
        if not (torch.is_autocast_enabled("cpu") and x.dtype == torch.float32 and self.groups == 1):
            return super()._conv_forward(x, weight, bias)
        with torch.autocast("cpu", enabled=False):
            hi = x.bfloat16()
            lo = (x - hi.float()).detach().bfloat16()  # the gradient reaches x through hi alone
            w, b = weight.bfloat16(), None if bias is None else bias.bfloat16()
            if self.sum_of_two:
                return (F.conv2d(hi, w, b, self.stride, self.padding, self.dilation)
                        + F.conv2d(lo, w, None, self.stride, self.padding, self.dilation))
            return F.conv2d(torch.cat([hi, lo], 1), torch.cat([w, w], 1), b, self.stride, self.padding, self.dilation)


def patch(variant: str):
    """Changes the library for ``variant``; returns what undoes it (the judge must score with the library as is)."""
    saved = api.create_backbone, StyleObjective.__call__, torch.backends.mkldnn.matmul.fp32_precision

    def undo() -> None:
        api.create_backbone, StyleObjective.__call__, torch.backends.mkldnn.matmul.fp32_precision = saved

    if variant.startswith("split-input"):
        build = api.create_backbone

        def create(*args, **kwargs):
            net = build(*args, **kwargs)
            for module in net.modules():
                if type(module) is nn.Conv2d and module.in_channels == 3:
                    module.__class__ = SplitInputConv2d
                    module.sum_of_two = variant == "split-input-sum"
            return net

        api.create_backbone = create
    if variant.endswith("gram-bf16"):
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    if variant.endswith("continuation"):
        call = StyleObjective.__call__

        def continued(self, image, *rest):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 1:
                self.full_spec = self.spec
                self.spec = dataclasses.replace(self.spec, style_weight=0.1 * self.spec.style_weight)
            elif self.calls == 61:
                self.spec = self.full_spec
            return call(self, image, *rest)

        StyleObjective.__call__ = continued
    return undo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("evaluations", type=int)
    p.add_argument("--content", help="default: the generated sample content")
    p.add_argument("--style", help="default: the generated sample style")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--weights", default="bench/weights/vgg16-hed.pth")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--bar", type=float, default=None, help="the plain run's final fp32 loss")
    p.add_argument("--judge-from", type=int, default=300, help="first evaluation judged (then every 10)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    content = as_tensor(args.content) if args.content else sample_content()
    style = as_tensor(args.style) if args.style else sample_style()
    common = dict(backbone=args.backbone, weights=args.weights, size=args.size)
    snapshots, stamps, start = {}, [], time.perf_counter()
    judged = set(range(args.judge_from, args.evaluations + 1, 10)) | {args.evaluations}

    def record(event) -> None:
        stamps.append(time.perf_counter() - start)
        if event.iteration in judged:
            snapshots[event.iteration] = event.image.clone()

    undo = patch(args.variant)
    failure = None
    try:
        api.transfer(content, style, iterations=args.evaluations, callback=record, report_every=1,
                     **common, **{**stylelab.PLAIN, "precision": "bf16", "channels_last": True})
    except stylelab.StylelabError as error:  # e.g. a non-finite loss: recorded, and what ran is still judged
        failure = str(error)
    steps = [b - a for a, b in zip(stamps, stamps[1:])][2:]
    median = f"{statistics.median(steps):.3f} s" if steps else "–"
    print(f"{args.variant}: {len(stamps)} evaluations, median {median} each"
          + (f"; stopped: {failure}" if failure else ""), flush=True)
    undo()
    judge = Judge(content, style, common)
    scores = {}
    for i in sorted(snapshots):
        scores[i] = judge(snapshots[i])
        share = f" ({scores[i] / args.bar:.5f} × bar)" if args.bar else ""
        print(f"evaluation {i}: fp32 loss {scores[i]:.6f}{share}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"variant": args.variant, "seconds": stamps, "failure": failure,
                                               "fp32_loss": scores, "bar": args.bar}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
