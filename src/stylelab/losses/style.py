"""Style losses as parts: each owns its statistic (what a style target is), how several styles blend, and the
per-image distance of an image's statistic to a target. The feature network knows nothing of them.

Statistics are tuples of batch-first tensors (one statistic per image), so targets of several images concatenate
and a (1, …) target broadcasts over a batch. ``magnitude`` is the distance of a target from a zero statistic: the
automatic balance divides by it, which makes each layer's term independent of the scale of its features.

    name                 statistic                                   masks   paper
    gram                 Gram matrix / M (eqs. 2.2–2.3)               yes     Gatys et al. 2016; the seed
    token-gram           F·Fᵀ over all tokens, prefix included        no      the seed's eq. 2.5
    mean-cov             mean and covariance; Gaussian W2             yes     as crowsonkb/style-transfer-pytorch
    sliced-wasserstein   sorted projections on K directions           no      Heitz et al., CVPR 2021
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import StylelabError
from .functional import (
    flatten_maps, gaussian_wasserstein2, gram_matrix, masked_gram, mean_covariance, normalized_gram, resample_quantiles,
    sorted_projections, sqrtm_psd, style_layer_loss,
)

Statistic = tuple[Tensor, ...]


class StyleLoss:
    """The interface: subclasses implement ``statistic``, ``distance`` and ``magnitude``; ``blend`` and
    ``prepare`` have defaults."""

    name = ""
    supports_masks = True  # can a mask select a region's statistic
    needs_content_size = False  # the statistic depends on the token count: style images take the output's size

    def statistic(self, features, layer: str, mask: Tensor | None = None) -> Statistic:
        """Per image, from ``features`` (a ``Features`` dict; maps (B, C, h, w)); ``mask`` (B or 1, h·w) weights."""
        raise NotImplementedError

    def blend(self, stats: Sequence[Statistic], weights: Sequence[float]) -> Statistic:
        """Several styles' statistics combined by ``weights`` (summing to 1); by default the weighted sum."""
        return tuple(sum(w * s[i] for w, s in zip(weights, stats)) for i in range(len(stats[0])))

    def prepare(self, target: Statistic) -> Statistic:
        """A target made ready for many ``distance`` calls (e.g. a square root computed once)."""
        return target

    def distance(self, stat: Statistic, target: Statistic) -> Tensor:
        """(B,) distances of the images' statistics to the (prepared) target."""
        raise NotImplementedError

    def magnitude(self, target: Statistic) -> Tensor:
        """(B,) distance of the (prepared) target from a zero statistic: the scale the balance divides by."""
        raise NotImplementedError


def _matrix(features, layer: str) -> Tensor:
    """A layer's maps as the (B, N, M) matrix F^l: channels × positions (tokens are already (B, N, M))."""
    maps = features[layer]
    return flatten_maps(maps) if maps.ndim == 4 else maps.flatten(2)


class GramLoss(StyleLoss):
    """Eqs. 2.2–2.3: E_l = Σ (G/M − A/M)² / (4 N²), G the Gram matrix of F^l; masks give Gatys et al. 2017's
    guided Gram of the region."""

    name = "gram"

    def statistic(self, features, layer, mask=None):
        f = _matrix(features, layer)
        return (normalized_gram(f) if mask is None else masked_gram(f, mask),)

    def distance(self, stat, target):
        g, a = stat[0], target[0]
        return style_layer_loss(g, a, g.shape[1], 1)

    def magnitude(self, target):
        a = target[0]
        return a.square().sum((1, 2)) / (4.0 * a.shape[1] ** 2)


class TokenGramLoss(StyleLoss):
    """The seed's eq. 2.5 for a ViT: G = F·Fᵀ over all T tokens (prefix tokens included), a T×T matrix,
    divided by the embedding size as the seed's code did (``norm="seed"``) or not (``"none"``, the seed's
    "removed the div"). It compares positions, so the style image must have the output's token count."""

    name = "token-gram"
    supports_masks = False
    needs_content_size = True
    NORMS = ("seed", "none")

    def __init__(self, norm: str = "seed"):
        if norm not in self.NORMS:
            raise StylelabError(f"unknown gram norm {norm!r}; choose {', '.join(self.NORMS)}")
        self.norm = norm

    def statistic(self, features, layer, mask=None):
        tokens = features.tokens(layer)  # (B, T, D): prefix tokens first, then the grid row-major
        return (normalized_gram(tokens) if self.norm == "seed" else gram_matrix(tokens),)

    def distance(self, stat, target):
        g, a = stat[0], target[0]
        if g.shape[-1] != a.shape[-1]:
            raise StylelabError(f"token Grams of {g.shape[-1]} and {a.shape[-1]} tokens: the style must have the "
                                "output's size")
        return style_layer_loss(g, a, g.shape[1], 1)

    magnitude = GramLoss.magnitude


class MeanCovLoss(StyleLoss):
    """The squared 2-Wasserstein distance between the Gaussians fitted to the feature vectors of the image and
    of the style (mean and covariance), as crowsonkb/style-transfer-pytorch's StyleLossW2. Departure: divided
    by N (per channel), so layers of different widths weigh alike. Several styles blend as a mixture: mean and
    second moment averaged (the covariance of the mixture, not the average of the covariances)."""

    name = "mean-cov"

    def statistic(self, features, layer, mask=None):
        return mean_covariance(_matrix(features, layer), mask)

    def blend(self, stats, weights):
        mean = sum(w * m for w, (m, _) in zip(weights, stats))
        second = sum(w * (c + m.unsqueeze(-1) * m.unsqueeze(-2)) for w, (m, c) in zip(weights, stats))
        return mean, second - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    def prepare(self, target):
        mean, cov = target[:2]
        return mean, cov, sqrtm_psd(cov.double()).to(cov.dtype)  # once per target: in float64

    def distance(self, stat, target):
        mean, cov = stat
        t_mean, t_cov, t_root = target
        return gaussian_wasserstein2(mean, cov, t_mean, t_cov, t_root) / mean.shape[-1]

    def magnitude(self, target):
        mean, cov = target[:2]
        return (mean.square().sum(-1) + cov.diagonal(dim1=-2, dim2=-1).sum(-1)) / mean.shape[-1]


class SlicedWassersteinLoss(StyleLoss):
    """Heitz et al. (CVPR 2021): the feature vectors projected on K random unit directions and compared as
    sorted 1-D distributions (the exact 1-D Wasserstein-2), K = the layer's channel count as in the paper.

    Departure: the paper draws new directions at every iteration; here each layer's directions are drawn once
    from ``seed`` (and the layer's name), so L-BFGS optimizes one fixed objective. Several styles blend as the
    1-D Wasserstein barycenter per direction (their quantile functions averaged)."""

    name = "sliced-wasserstein"
    supports_masks = False

    def __init__(self, seed: int = 0, directions: int | None = None):
        self.seed, self.count = seed, directions
        self._directions: dict[tuple, Tensor] = {}

    def directions(self, layer: str, channels: int, device, dtype) -> Tensor:
        key = (layer, channels, device, dtype)
        if key not in self._directions:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(layer.encode()))
            d = torch.randn(channels, self.count or channels, generator=generator, dtype=torch.float64)
            self._directions[key] = (d / d.norm(dim=0, keepdim=True)).to(device, dtype)
        return self._directions[key]

    def statistic(self, features, layer, mask=None):
        f = _matrix(features, layer)
        return (sorted_projections(f, self.directions(layer, f.shape[1], f.device, f.dtype)),)  # sort keeps grads

    def blend(self, stats, weights):
        count = max(s[0].shape[-1] for s in stats)
        return (sum(w * resample_quantiles(s[0], count) for w, s in zip(weights, stats)),)

    def distance(self, stat, target):
        return (stat[0] - resample_quantiles(target[0], stat[0].shape[-1])).square().mean((1, 2))

    def magnitude(self, target):
        return target[0].square().mean((1, 2))


STYLE_LOSSES: dict[str, Callable[..., StyleLoss]] = {
    cls.name: cls for cls in (GramLoss, TokenGramLoss, MeanCovLoss, SlicedWassersteinLoss)}


def create_style_loss(name: str, **options) -> StyleLoss:
    """The style loss registered as ``name``, with its options (``norm`` for token-gram, ``seed`` for
    sliced-wasserstein); options a loss does not take are ignored, since the caller sets them for all."""
    try:
        cls = STYLE_LOSSES[name]
    except KeyError:
        raise StylelabError(f"unknown style loss {name!r}; choose {', '.join(STYLE_LOSSES)}") from None
    taken = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in taken and v is not None})


def require_positions(loss: StyleLoss) -> None:
    """Masks select image positions: refuse them for a statistic that has none."""
    if not loss.supports_masks:
        masking = ", ".join(name for name, cls in STYLE_LOSSES.items() if cls.supports_masks)
        raise StylelabError(f"style_loss={loss.name} has no image positions to mask: masks need {masking}")


def concat_statistics(stats: Sequence[Statistic]) -> Statistic:
    """Targets of several images (each (1, …)) as one batch (B, …)."""
    return tuple(torch.cat(parts) for parts in zip(*stats))

