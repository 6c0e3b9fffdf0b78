"""The optimization loop: pixels of one image optimized against content and style targets.

The image is an fp32 leaf tensor in [0, 1] sRGB; the backbone does its own normalization.
Progress is reported as a ``ProgressEvent`` passed to a callback after every loss evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .backbones.base import Backbone
from .errors import NonFiniteLossError, StylelabError
from .losses import content_loss, softmax_transform, style_layer_loss, style_loss, total_loss, total_variation

OPTIMIZERS = ("lbfgs", "adam")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
LBFGS_HISTORY = 100  # torch's default, as in Gatys et al.'s reference code


@dataclass(frozen=True)
class LossSpec:
    """Which layers, with which per-layer weights, and the α/β of eq. 2.4."""

    content_layers: Mapping[str, float]
    style_layers: Mapping[str, float]
    content_weight: float  # α
    style_weight: float  # β
    tv_weight: float = 0.0
    feature_transform: str = "none"  # "none" or "softmax" (SWAG), applied before Grams and content


FEATURE_TRANSFORMS = ("none", "softmax")


def check_feature_transform(name: str) -> None:
    if name not in FEATURE_TRANSFORMS:
        raise StylelabError(f"unknown feature transform {name!r}; choose {', '.join(FEATURE_TRANSFORMS)}")


@dataclass(frozen=True)
class ProgressEvent:
    """One loss evaluation. Losses are unweighted by α/β; ``loss`` is the weighted total."""

    iteration: int  # 1-based count of loss evaluations (L-BFGS "iterations" in the seed's sense)
    iterations: int  # how many are planned
    elapsed: float  # seconds since the optimization started (targets excluded)
    loss: float
    content_loss: float
    style_loss: float
    tv_loss: float
    content_layers: dict[str, float] = field(default_factory=dict)
    style_layers: dict[str, float] = field(default_factory=dict)
    image: Tensor | None = None  # the image just evaluated, (1, 3, H, W) in [0, 1]; do not modify


class StopOptimization(Exception):
    """Raise from a callback to end the run early; the current image is returned."""


class StyleObjective:
    """Targets computed once; calling it on an image returns (total, parts to report)."""

    def __init__(self, backbone: Backbone, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float],
                 spec: LossSpec):
        check_feature_transform(spec.feature_transform)
        self.backbone, self.spec = backbone, spec
        self.layers = list(dict.fromkeys([*spec.content_layers, *spec.style_layers]))
        with torch.no_grad():
            feats = self.features(content, list(spec.content_layers))
            self.content_targets = {n: feats[n].detach() for n in spec.content_layers}
            self.style_targets: dict[str, Tensor] = {}
            for style, b in zip(styles, blend):
                feats = self.features(style, list(spec.style_layers))
                for n in spec.style_layers:
                    # Several styles blend at the level of their Gram statistics, never as pixels.
                    a = b * backbone.style_gram(n, feats[n])
                    self.style_targets[n] = self.style_targets[n] + a if n in self.style_targets else a

    def features(self, image: Tensor, names: list[str]) -> dict[str, Tensor]:
        feats = self.backbone(image, names)
        if self.spec.feature_transform == "softmax":
            feats = {n: softmax_transform(f) for n, f in feats.items()}
        return feats

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.features(image, self.layers)
        content_parts = []
        for n in self.spec.content_layers:
            f = feats[n]
            # Departure from eq. 2.1: divided by N·M (the mean, as in the reference code's MSE) so that
            # α/β keep their meaning at every image size; eq. 2.3 is already size-normalized.
            content_parts.append(content_loss(f, self.content_targets[n]) / f[0].numel())
        style_parts = []
        for n in self.spec.style_layers:
            g = self.backbone.style_gram(n, feats[n])  # (B, N, N), already divided by M
            style_parts.append(style_layer_loss(g, self.style_targets[n], g.shape[1], 1))
        c_w = self.spec.content_layers
        content = sum(c_w[n] * part for n, part in zip(c_w, content_parts)) if c_w else image.new_zeros(1)
        style = style_loss(dict(zip(self.spec.style_layers, style_parts)), self.spec.style_layers)
        tv = total_variation(image)
        total = total_loss(content, style, self.spec.content_weight, self.spec.style_weight)
        total = (total + self.spec.tv_weight * tv).sum()
        parts = torch.stack([total, content.sum(), style.sum(), tv.sum(),
                             *[p.sum() for p in content_parts], *[p.sum() for p in style_parts]])
        return total, parts.detach()


INIT_MODES = ("content", "random", "style-stats")  # or an image (path, PIL image, tensor)


def initial_image(init: str | Tensor, content: Tensor, seed: int) -> Tensor:
    """"content" (Gatys et al.'s usual start), "random" (seeded uniform noise) or a given image."""
    if isinstance(init, Tensor):
        return init.to(content.device, torch.float32).clone()
    if init == "content":
        return content.clone()
    if init == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    raise StylelabError(f"unknown init {init!r}; choose content, random, style-stats or an image path")


def optimize(objective: StyleObjective, image: Tensor, *, iterations: int, optimizer: str = "lbfgs",
             lr: float | None = None, callback: Callable[[ProgressEvent], None] | None = None) -> Tensor:
    """Optimize ``image`` (a copy) for ``iterations`` loss evaluations; return the result in [0, 1]."""
    if optimizer not in OPTIMIZERS:
        raise StylelabError(f"unknown optimizer {optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    x = image.detach().to(torch.float32).clone(memory_format=torch.contiguous_format).requires_grad_(True)  # fp32
    names = [*objective.spec.content_layers, *objective.spec.style_layers]
    n_content = len(objective.spec.content_layers)
    count, start = 0, time.perf_counter()

    def closure() -> Tensor:
        nonlocal count
        if count >= iterations:  # L-BFGS never asks for more than max_eval; Adam's loop is exact
            raise StopOptimization
        opt.zero_grad(set_to_none=True)
        total, parts = objective(x)
        total.backward()
        count += 1
        values = parts.cpu().tolist()  # one device sync per evaluation for all reported numbers
        if not math.isfinite(values[0]):
            raise NonFiniteLossError(
                f"loss became {values[0]} at iteration {count} of {iterations} (content {values[1]:.4g}, "
                f"style {values[2]:.4g}); lower --style-weight/--content-weight or check the weights"
            )
        if callback is not None:
            layer_values = values[4:]
            callback(ProgressEvent(
                iteration=count, iterations=iterations, elapsed=time.perf_counter() - start,
                loss=values[0], content_loss=values[1], style_loss=values[2], tv_loss=values[3],
                content_layers=dict(zip(names[:n_content], layer_values[:n_content])),
                style_layers=dict(zip(names[n_content:], layer_values[n_content:])),
                image=x.detach(),
            ))
        return total

    if optimizer == "lbfgs":
        # Exactly ``iterations`` evaluations, no early stop: negative tolerances disable L-BFGS's
        # convergence tests, no line search means one evaluation per iteration.
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=iterations, max_eval=iterations, tolerance_grad=-1,
                                tolerance_change=-1, history_size=LBFGS_HISTORY)
        try:
            opt.step(closure)
        except StopOptimization:
            pass
    else:
        opt = torch.optim.Adam([x], lr=lr)
        try:
            for _ in range(iterations):
                closure()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0, 1)  # projected gradient: Adam steps can leave the valid pixel range
        except StopOptimization:
            pass
    # L-BFGS works unconstrained (as in the reference code); the result is clamped once at the end.
    return x.detach().clamp(0, 1)
