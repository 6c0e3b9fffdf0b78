"""The optimization loop: the pixels of a batch of images optimized against content and style targets.

The images are an fp32 leaf tensor (B, 3, H, W) in [0, 1] sRGB, each image its own problem; the
backbone does its own normalization. Progress is reported as a ``ProgressEvent`` passed to a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .backbones.base import Backbone, Features
from .errors import NonFiniteLossError, StylelabError
from .lbfgs import BatchedLBFGS
from .losses import (
    ContentLoss, Statistic, StyleLoss, TotalVariation, concat_statistics, create_style_loss, require_positions,
    softmax_transform, style_loss, total_loss,
)
from .runtime import autocast_dtype, strict_fp32

LBFGS_HISTORY = 100  # torch's default, as in Gatys et al.'s reference code
LBFGS_CURVATURE = "scaled"  # the pair test (lbfgs.py); "torch": torch.optim.LBFGS's absolute one, the plain run
# A warm-up (continuation in β): its evaluations weigh the style by this factor; then β, with the optimizer started
# afresh, since a pair (s, y) taken across the switch would mix two objectives (kept, they drove the loss to nan).
WARMUP_STYLE_FACTOR = 0.1
# style_warmup="auto" (the default): this share of the first scale's evaluations (60 of 500: of 15, 30, 60, 90 and
# 120 of 500 at 256 px on a trained VGG16, 60 reached the plain loss soonest), for runs that start from the content
# image with at least WARMUP_MIN_BUDGET evaluations there (at 100 and 200 a warm-up gained nothing; bench/RESULTS.md).
WARMUP_SHARE = 0.12
WARMUP_MIN_BUDGET = 300


def auto_warmup(budget: int) -> int:
    """The warm-up "auto" gives a first scale of ``budget`` evaluations that starts from the content image."""
    return round(WARMUP_SHARE * budget) if budget >= WARMUP_MIN_BUDGET else 0


BALANCES = ("none", "auto")
# α and β with the automatic balance, where every layer's term is relative to its target's magnitude.
AUTO_CONTENT_WEIGHT, AUTO_STYLE_WEIGHT = 1.0, 10.0


@dataclass(frozen=True)
class LossSpec:
    """Which layers, with which per-layer weights, the α/β of eq. 2.4, the style statistic and the balance."""

    content_layers: Mapping[str, float]
    style_layers: Mapping[str, float]
    content_weight: float  # α
    style_weight: float  # β
    tv_weight: float = 0.0
    feature_transform: str = "none"  # "none" or "softmax" (SWAG), applied before the statistics and content
    style_loss: str = "gram"  # a name of losses.STYLE_LOSSES
    balance: str = "none"  # "auto": each layer's term divided by its target's magnitude


def check_balance(name: str) -> None:
    if name not in BALANCES:
        raise StylelabError(f"unknown balance {name!r}; choose {', '.join(BALANCES)}")


FEATURE_TRANSFORMS = ("none", "softmax")


def check_feature_transform(name: str) -> None:
    if name not in FEATURE_TRANSFORMS:
        raise StylelabError(f"unknown feature transform {name!r}; choose {', '.join(FEATURE_TRANSFORMS)}")


@dataclass(frozen=True)
class ProgressEvent:
    """A report after a loss evaluation. Losses are unweighted by α/β; ``loss`` is the weighted total.

    For a batch, the losses are sums over its images and ``per_image`` holds one event per image.
    """

    iteration: int  # 1-based count of loss evaluations (L-BFGS "iterations" in the seed's sense)
    iterations: int  # how many are planned
    elapsed: float  # seconds since the optimization started (targets excluded)
    loss: float
    content_loss: float
    style_loss: float
    tv_loss: float
    terms: dict[str, float] = field(default_factory=dict)  # extra terms (unweighted): "text", "temporal", …
    content_layers: dict[str, float] = field(default_factory=dict)
    style_layers: dict[str, float] = field(default_factory=dict)
    image: Tensor | None = None  # the image(s) just evaluated, (B, 3, H, W) in [0, 1]; do not modify
    per_image: tuple["ProgressEvent", ...] = ()
    warmup: bool = False  # a warm-up evaluation: ``loss`` weighs the style by WARMUP_STYLE_FACTOR · β

    @property
    def text_loss(self) -> float:
        """The written style's term (unweighted), 0 without one."""
        return self.terms.get("text", 0.0)


class StopOptimization(Exception):
    """Raise from a callback to end the run early; the current image is returned."""


class StyleObjective:
    """Targets computed once; calling it on images returns (total, per-image parts to report).

    ``content`` is (B, 3, H, W): B images optimized together, each against its own content. ``styles`` is
    one list of style images shared by the batch, or one list per image; each list's statistics are blended by
    ``blend`` (by the style loss's own rule, never as pixels). ``style_loss`` owns the statistic (Gram by
    default). ``precision="bf16"`` runs the backbone under bf16 autocast; statistics and losses stay fp32.

    ``masks`` (spatial control, Gatys et al. 2017; one image, shared styles): one (1, 1, H, W) weight map in
    [0, 1] per style, at the content's size. Style r is then matched only where its mask is, by the statistic of
    that region, and each region's term is weighted by the mask's area (one full mask = the unmasked loss).

    ``spec.balance == "auto"``: every content and style layer's term is divided by its target's magnitude (the
    term's value for zero features), so rescaling one layer's features by any k leaves the loss unchanged and
    one α/β means the same on every network.
    """

    def __init__(self, backbone: Backbone, content: Tensor, styles: Sequence[Tensor] | Sequence[Sequence[Tensor]],
                 blend: Sequence[float], spec: LossSpec, *, style_loss: StyleLoss | None = None,
                 precision: str = "fp32", masks: Sequence[Tensor] | None = None,
                 terms: Mapping[str, tuple[Callable[[Tensor], Tensor], float]] | None = None):
        check_feature_transform(spec.feature_transform)
        check_balance(spec.balance)
        per_image = len(styles) > 0 and not isinstance(styles[0], Tensor)  # no styles: a written style alone
        sets = list(styles) if per_image else [styles]
        if per_image and len(sets) != content.shape[0]:
            raise StylelabError(f"{content.shape[0]} images need {content.shape[0]} style lists, got {len(sets)}")
        if any(len(style_set) != len(blend) for style_set in sets):
            raise StylelabError(f"{len(blend)} blend weights for style lists of {[len(x) for x in sets]} images")
        if masks is not None and (per_image or content.shape[0] != 1 or len(masks) != len(styles)):
            raise StylelabError(f"masks need one image and one mask per style: {content.shape[0]} image(s), "
                                f"{len(styles)} style(s), {len(masks)} mask(s)")
        self.backbone, self.spec = backbone, spec
        # Extra terms by name: (image -> (B,) loss, weight), e.g. "text" (losses.text) or a video's "temporal".
        self.terms = {name: (fn, float(weight)) for name, (fn, weight) in (terms or {}).items()}
        self.style_loss = style_loss or create_style_loss(spec.style_loss)
        if masks is not None:
            require_positions(self.style_loss)
        self.content_part, self.tv_part = ContentLoss(), TotalVariation()
        self.masks = None if masks is None else [m.to(content.device, torch.float32) for m in masks]
        self.autocast = autocast_dtype(precision)
        self.layers = list(dict.fromkeys([*spec.content_layers, *spec.style_layers]))
        with torch.no_grad():
            feats = self.features(content, list(spec.content_layers))
            self.content_targets = {n: feats[n].detach() for n in spec.content_layers}
            per_set = [[self.statistics(style) for style in style_set] for style_set in sets]  # once per style
            targets = [self.blended(stats, blend) for stats in per_set]
            # With masks each style keeps its own statistic for its own region; the blend is the balance's reference.
            self.region_targets = None if masks is None else [self.blended([stats], [1.0]) for stats in per_set[0]]
            self.style_targets = {n: concat_statistics([t[n] for t in targets]) for n in spec.style_layers}
            self.content_scale = {n: self._scale(self.content_part.magnitude(t))
                                  for n, t in self.content_targets.items()}
            self.style_scale = {n: self._scale(self.style_loss.magnitude(t)) for n, t in self.style_targets.items()}

    def _scale(self, magnitude: Tensor) -> Tensor | float:
        if self.spec.balance == "none":
            return 1.0
        return 1.0 / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)

    def statistics(self, style: Tensor) -> dict[str, Statistic]:
        """Each style layer's statistic of one style image (not yet prepared as a target)."""
        feats = self.features(style, list(self.spec.style_layers))
        return {n: self.style_loss.statistic(feats, n) for n in self.spec.style_layers}

    def blended(self, stats: Sequence[dict[str, Statistic]], blend: Sequence[float]) -> dict[str, Statistic]:
        """Several styles' statistics combined by the style loss's blending rule, prepared as targets."""
        return {n: self.style_loss.prepare(self.style_loss.blend([s[n] for s in stats], blend))
                for n in self.spec.style_layers}

    def features(self, image: Tensor, names: list[str]) -> Features:
        if self.autocast is None:
            feats = self.backbone(image, names)
        else:
            # Departure for speed (opt-in): the network in bf16, everything after it in fp32.
            with torch.autocast(image.device.type, dtype=self.autocast):
                feats = self.backbone(image, names)
            feats = Features({n: f.float() for n, f in feats.items()},
                             {n: t.float() for n, t in feats.prefix.items()})
        if self.spec.feature_transform == "softmax":
            feats = Features({n: softmax_transform(f) for n, f in feats.items()}, feats.prefix)
        return feats

    def __call__(self, image: Tensor, style_factor: float = 1.0) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> (sum of the B weighted totals, (B, P) detached parts: total, content, style,
        tv, each extra term, then each content layer and each style layer; ``term_names`` names the columns).
        ``style_factor`` scales β (a warm-up's)."""
        feats = self.features(image, self.layers)
        content_parts = [self.content_part.distance(feats[n], self.content_targets[n]) * self.content_scale[n]
                         for n in self.spec.content_layers]
        style_parts = [self.style_layer_part(n, feats) * self.style_scale[n] for n in self.spec.style_layers]
        c_w = self.spec.content_layers
        zero = image.new_zeros(image.shape[0])
        content = sum(c_w[n] * part for n, part in zip(c_w, content_parts)) if c_w else zero
        style = style_loss(dict(zip(self.spec.style_layers, style_parts)), self.spec.style_layers)
        tv = self.tv_part(image)
        total = total_loss(content, style, self.spec.content_weight, style_factor * self.spec.style_weight)
        total = total + self.spec.tv_weight * tv  # (B,)
        extra = [fn(image) for fn, _ in self.terms.values()]
        for value, (_, weight) in zip(extra, self.terms.values()):
            total = total + weight * value
        parts = torch.stack([total, content + zero, style + zero, tv, *extra, *content_parts, *style_parts], dim=1)
        return total.sum(), parts.detach()

    @property
    def term_names(self) -> list[str]:
        """The names of the parts' columns."""
        return ["total", "content", "style", "tv", *self.terms, *(f"content:{n}" for n in self.spec.content_layers),
                *(f"style:{n}" for n in self.spec.style_layers)]

    def style_layer_part(self, name: str, features: Features) -> Tensor:
        """A style layer's term per image, (B,); with masks the area-weighted sum over the styles' regions."""
        if self.masks is None:
            return self.style_loss.distance(self.style_loss.statistic(features, name), self.style_targets[name])
        parts = []
        grid = features[name].shape[-2:]
        for mask, targets in zip(self.masks, self.region_targets):
            weights = F.adaptive_avg_pool2d(mask, grid).flatten(1)  # the mask averaged onto the layer's positions
            stat = self.style_loss.statistic(features, name, weights)
            parts.append(mask.mean() * self.style_loss.distance(stat, targets[name]))
        return torch.stack(parts).sum(0)


def lbfgs_step(x: Tensor, lr: float, history: int, curvature: str) -> Callable[[Tensor], None]:
    """Our batched L-BFGS: exactly one evaluation per iteration, no line search, no early stop."""
    return BatchedLBFGS(x, lr=lr, history=history, curvature=curvature).step


def adam_step(x: Tensor, lr: float, history: int, curvature: str) -> Callable[[Tensor], None]:
    """Adam on the pixels, projected back into [0, 1] after each step (its steps can leave the range)."""
    adam = torch.optim.Adam([x], lr=lr)

    def step(grad: Tensor) -> None:
        adam.step()
        with torch.no_grad():
            x.clamp_(0, 1)

    return step


# name: (make_step(x, lr, L-BFGS history, L-BFGS curvature test) -> step(grad), default learning rate)
OPTIMIZERS: dict[str, tuple[Callable[[Tensor, float, int, str], Callable[[Tensor], None]], float]] = {
    "lbfgs": (lbfgs_step, 1.0),
    "adam": (adam_step, 0.02),
}


INIT_MODES = ("content", "random", "style-stats")  # or an image (path, PIL image, tensor)


def initial_image(init: str | Tensor, content: Tensor, seed: int) -> Tensor:
    """"content" (Gatys et al.'s usual start), "random" (seeded uniform noise) or a given image."""
    if isinstance(init, Tensor):
        return init.to(content.device, torch.float32).expand_as(content).clone()
    if init == "content":
        return content.clone()
    if init == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    raise StylelabError(f"unknown init {init!r}; choose content, random, style-stats or an image path")


def default_report_every(device: torch.device) -> int:
    """Report (and copy losses to the host) after every evaluation, except on CUDA: there, a host sync
    per evaluation stops the CPU from queueing the next evaluation's kernels while the GPU works."""
    return 10 if device.type == "cuda" else 1


CONVERGENCE_WINDOW = 20  # evaluations over which --tolerance measures the improvement


def converged(totals: Tensor, tolerance: float, window: int = CONVERGENCE_WINDOW) -> bool:
    """Whether every image's best loss improved by less than ``tolerance`` (relative) over the last ``window``
    evaluations; ``totals`` is (evaluations so far, B). The best, not the last: L-BFGS's loss is not monotone."""
    if tolerance <= 0 or totals.shape[0] <= window:
        return False
    before = totals[:-window].min(0).values
    recent = totals[-window:].min(0).values
    return bool(((before - recent) < tolerance * before.abs()).all())


def optimize(objective: StyleObjective, image: Tensor, *, iterations: int, optimizer: str = "lbfgs",
             lr: float | None = None, callback: Callable[[ProgressEvent], None] | None = None,
             report_every: int | None = None, history: int = LBFGS_HISTORY, curvature: str = LBFGS_CURVATURE,
             tolerance: float = 0.0, warmup: int = 0) -> Tensor:
    """Optimize ``image`` (a copy; (B, 3, H, W), every image its own problem) for ``iterations`` loss
    evaluations; return the result in [0, 1].

    ``history`` L-BFGS pairs are kept (allocated in full at the second evaluation, so a run that does not
    fit in memory fails in its first seconds); ``curvature`` is the test a pair must pass (lbfgs.py: "scaled",
    the default, or "torch", torch.optim.LBFGS's absolute one: the plain run). Losses are kept on the device and
    copied to the host every ``report_every`` evaluations (and after the last): then they are checked to be
    finite and ``callback`` gets a ``ProgressEvent``. ``tolerance`` > 0 stops early, at a report, once every
    image's loss improved by less than that fraction over the last ``CONVERGENCE_WINDOW`` evaluations (0:
    exactly ``iterations``). ``warmup`` > 0: the first ``warmup`` of the ``iterations`` evaluations weigh the style by
    ``WARMUP_STYLE_FACTOR`` (their events say ``warmup``), then the optimizer starts afresh on the full objective
    (departure from Gatys et al.: a continuation in β; bench/RESULTS.md, 2026-12-07).
    """
    if optimizer not in OPTIMIZERS:
        raise StylelabError(f"unknown optimizer {optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    x = image.detach().to(torch.float32).clone(memory_format=torch.contiguous_format).requires_grad_(True)  # fp32
    report_every = default_report_every(x.device) if report_every is None else max(1, int(report_every))
    names = [*objective.spec.content_layers, *objective.spec.style_layers]
    n_content = len(objective.spec.content_layers)
    make_step, default_lr = OPTIMIZERS[optimizer]
    lr = default_lr if lr is None else lr
    step = make_step(x, lr, history, curvature)

    trace = None  # (iterations, B, P) losses, filled on the device
    reported, start = 0, time.perf_counter()

    def report(count: int) -> None:
        rows = trace[reported:count].cpu()  # the one host sync
        bad = (~torch.isfinite(rows[:, :, 0])).nonzero()
        if len(bad):
            at, item = int(bad[0, 0]), int(bad[0, 1])
            row = rows[at, item].tolist()
            which = f" of image {item + 1}" if x.shape[0] > 1 else ""
            raise NonFiniteLossError(
                f"loss{which} became {row[0]} at iteration {reported + at + 1} of {iterations} (content "
                f"{row[1]:.4g}, style {row[2]:.4g}); lower style_weight= or content_weight=, or check the weights"
            )
        if callback is not None:
            callback(_event(rows[-1], count, iterations, time.perf_counter() - start, names, n_content, x.detach(),
                            list(objective.terms), warmup=count <= warmup))

    try:
        for count in range(1, iterations + 1):
            if warmup and count == warmup + 1:  # the full objective from here, with a fresh optimizer
                step = make_step(x, lr, history, curvature)
            x.grad = None
            total, parts = objective(x, WARMUP_STYLE_FACTOR if count <= warmup else 1.0)
            total.backward()
            if trace is None:
                trace = parts.new_empty(iterations, *parts.shape)
            trace[count - 1] = parts
            if count % report_every == 0 or count == iterations:
                report(count)
                reported = count
                if tolerance > 0 and count > warmup and converged(trace[warmup:count, :, 0].cpu(), tolerance):
                    break
            if count < iterations:  # the returned image is the last one evaluated
                with strict_fp32():  # the optimizer's own dot products never in TF32
                    step(x.grad)
    except StopOptimization:
        pass
    # L-BFGS works unconstrained (as in the reference code); the result is clamped once at the end.
    return x.detach().clamp(0, 1)


def _event(parts: Tensor, count: int, iterations: int, elapsed: float, names: list[str], n_content: int,
           image: Tensor, extra: list[str], warmup: bool = False) -> ProgressEvent:
    """(B, P) host losses -> the batch's event (sums) with one event per image when B > 1."""

    def make(values: list[float], image: Tensor, per_image=()) -> ProgressEvent:
        layers = values[4 + len(extra):]
        return ProgressEvent(
            iteration=count, iterations=iterations, elapsed=elapsed, loss=values[0], content_loss=values[1],
            style_loss=values[2], tv_loss=values[3], terms=dict(zip(extra, values[4:4 + len(extra)])), content_layers=dict(zip(names[:n_content], layers[:n_content])),
            style_layers=dict(zip(names[n_content:], layers[n_content:])), image=image, per_image=per_image,
            warmup=warmup,
        )

    if parts.shape[0] == 1:
        return make(parts[0].tolist(), image)
    singles = tuple(make(row.tolist(), image[i:i + 1]) for i, row in enumerate(parts))
    return make(parts.double().sum(0).tolist(), image, singles)
