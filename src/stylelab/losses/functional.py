"""Gatys et al.'s losses as pure functions (the seed's §2.1, eqs. 2.1–2.4).

Shapes: a feature tensor ``F`` is (B, N, M): B images, N filters (channels),
M positions (H·W for a convolutional map). Every loss returns one value per image,
shape (B,), so a batch of images can be optimized together; callers sum.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def _check_rank(name: str, t: Tensor, rank: int, layout: str) -> None:
    if t.ndim != rank:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(t.shape)}")


def flatten_maps(maps: Tensor) -> Tensor:
    """(B, C, H, W) convolutional maps -> (B, N=C, M=H·W) feature matrices F^l.

    Channels-last maps (NHWC memory) give a view with the channels fastest, not a copy: the Gram's products
    read either layout, and the gradient then comes back in the network's own layout (a copy here would cost
    a pass over the maps and hand the backward an NCHW gradient to add to its NHWC ones)."""
    _check_rank("maps", maps, 4, "(B, C, H, W)")
    if not maps.is_contiguous() and maps.is_contiguous(memory_format=torch.channels_last):
        b, c, h, w = maps.shape
        return maps.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    return maps.flatten(2)


def gram_matrix(features: Tensor) -> Tensor:
    """Eq. 2.2: G_ij = sum_k F_ik F_jk. (B, N, M) -> (B, N, N), unnormalized."""
    _check_rank("features", features, 3, "(B, N, M)")
    return torch.bmm(features, features.transpose(1, 2))


class _NormalizedGram(torch.autograd.Function):
    """G/M with a backward of one matrix product: d(F·Fᵀ/M)/dF applied to dG is (dG + dGᵀ)·F / M.

    Autograd would differentiate bmm(F, Fᵀ) as two products (dG·F and (Fᵀ·dG)ᵀ) plus their sum, each an
    (N, M) pass over the features; the division by M is taken on the small (N, N) side. Same arithmetic.
    """

    @staticmethod
    def forward(ctx, features: Tensor) -> Tensor:
        ctx.save_for_backward(features)
        return torch.bmm(features, features.transpose(1, 2)) / features.shape[-1]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (features,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(1, 2)) / features.shape[-1]
        if features.stride(1) == 1 and features.shape[1] > 1:  # channels fastest (NHWC maps): keep that layout
            return torch.bmm(features.transpose(1, 2), symmetric).transpose(1, 2)  # (S·F)ᵀ = Fᵀ·S, S symmetric
        return torch.bmm(symmetric, features)


def normalized_gram(features: Tensor) -> Tensor:
    """G / M: the Gram matrix of eq. 2.2 averaged over the M positions.

    With it, eq. 2.3 reads sum_ij (G/M - A/M)^2 / (4 N^2), which is eq. 2.3 exactly when
    both images have M positions, and stays meaningful when the style image's size
    differs from the output's (each Gram is divided by its own M). Dividing before
    subtracting also keeps fp32 well inside its range at high resolution.
    """
    _check_rank("features", features, 3, "(B, N, M)")
    return _NormalizedGram.apply(features)


def masked_gram(features: Tensor, weights: Tensor) -> Tensor:
    """Gatys et al. 2017's guided Gram (spatial control): Σ_k w_k F_ik F_jk / Σ_k w_k.

    The Gram, divided by the number of positions, of the positions a mask selects (softly, by weights in
    [0, 1]); with all weights 1 it is ``normalized_gram``. features (B, N, M), weights (B or 1, M) -> (B, N, N).
    """
    _check_rank("features", features, 3, "(B, N, M)")
    if weights.ndim != 2 or weights.shape[-1] != features.shape[-1]:
        raise ValueError(f"weights must be (B, M={features.shape[-1]}), got {tuple(weights.shape)}")
    total = weights.sum(-1).clamp_min(torch.finfo(features.dtype).tiny).view(-1, 1, 1)  # an empty region: 0
    return torch.bmm(features * weights.unsqueeze(1), features.transpose(1, 2)) / total


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Eq. 2.1: 1/2 sum_ij (F_ij - P_ij)^2, per image. Any shape (B, ...)."""
    if features.shape[1:] != target.shape[1:]:
        raise ValueError(f"content features {tuple(features.shape)} and target {tuple(target.shape)} differ")
    return 0.5 * (features - target).pow(2).flatten(1).sum(1)


def style_layer_loss(gram: Tensor, target_gram: Tensor, n: int, m: int) -> Tensor:
    """Eq. 2.3: E_l = 1/(4 N_l^2 M_l^2) sum_ij (G_ij - A_ij)^2, per image.

    ``gram`` is (B, N, N); ``target_gram`` is (B, N, N) or (1, N, N) (broadcast).
    """
    _check_rank("gram", gram, 3, "(B, N, N)")
    if gram.shape[-2:] != target_gram.shape[-2:]:
        raise ValueError(f"Gram {tuple(gram.shape)} and target {tuple(target_gram.shape)} differ")
    return (gram - target_gram).pow(2).sum((1, 2)) / (4.0 * n * n * m * m)


def style_loss(layer_losses: Mapping[str, Tensor], layer_weights: Mapping[str, float]) -> Tensor:
    """L_style = sum_l w_l E_l (the weighted sum before eq. 2.4)."""
    missing = set(layer_losses) - set(layer_weights)
    if missing:
        raise ValueError(f"no weight for style layers {sorted(missing)}")
    return sum(layer_weights[name] * loss for name, loss in layer_losses.items())


def total_loss(content: Tensor, style: Tensor, alpha: float, beta: float) -> Tensor:
    """Eq. 2.4: L_total = alpha L_content + beta L_style."""
    return alpha * content + beta * style


def total_variation(image: Tensor) -> Tensor:
    """Squared total variation per image, mean over pixels: smooths high-frequency noise.

    Not in the seed; the usual regularizer of neural-style implementations. (B, C, H, W) -> (B,).
    """
    _check_rank("image", image, 4, "(B, C, H, W)")
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).flatten(1).mean(1)
    return dx + dy


def softmax_transform(features: Tensor) -> Tensor:
    """SWAG's activation smoothing (Wang, Li & Vasconcelos, CVPR 2021): a softmax over each feature
    map's activations, i.e. per image and channel over the positions. Not in the seed.

    (B, C, H, W) maps: softmax over H·W; (B, T, D) tokens: softmax over the T tokens of each channel.
    Departure: the result is multiplied by the number of positions, so its mean is 1 rather than
    1/M; a constant factor per layer (like a layer weight) that keeps the losses in fp32's useful range.
    """
    if features.ndim == 4:
        flat = features.flatten(2)
        return (flat.softmax(-1) * flat.shape[-1]).view_as(features)
    if features.ndim == 3:
        return features.softmax(1) * features.shape[1]
    raise ValueError(f"features must be (B, C, H, W) or (B, T, D), got {tuple(features.shape)}")


# -- statistics beyond the Gram matrix (not in the seed) ----------------------------------------------------


def mean_covariance(features: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per image, the mean (B, N) and covariance (B, N, N) of the M feature vectors F[:, :, k] (columns);
    with ``weights`` (B or 1, M) in [0, 1], of the positions they select (softly). Divided by M (or Σ w), not
    M − 1: the statistic of the picture's own distribution, as a Gram is."""
    _check_rank("features", features, 3, "(B, N, M)")
    if weights is None:
        mean = features.mean(-1)
        centred = features - mean.unsqueeze(-1)
        return mean, torch.bmm(centred, centred.transpose(1, 2)) / features.shape[-1]
    total = weights.sum(-1).clamp_min(torch.finfo(features.dtype).tiny).view(-1, 1)
    mean = (features * weights.unsqueeze(1)).sum(-1) / total
    centred = features - mean.unsqueeze(-1)
    return mean, torch.bmm(centred * weights.unsqueeze(1), centred.transpose(1, 2)) / total.unsqueeze(-1)


def sqrtm_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of symmetric positive semi-definite (B, N, N) matrices (eigenvalues below 0,
    from rounding, count as 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.transpose(-1, -2)


def gaussian_wasserstein2(mean: Tensor, cov: Tensor, target_mean: Tensor, target_cov: Tensor,
                          target_cov_sqrt: Tensor | None = None) -> Tensor:
    """Squared 2-Wasserstein distance between Gaussians N(μ, Σ) and N(μ', Σ'), per image (B,):
    ‖μ − μ'‖² + tr Σ + tr Σ' − 2 tr (Σ'^½ Σ Σ'^½)^½.

    The last trace is taken from the eigenvalues of the symmetric PSD form Σ'^½ Σ Σ'^½ (same eigenvalues as
    Σ Σ'), so no non-symmetric square root is needed; eigenvalues are clamped at a tiny value relative to the
    largest, where the square root's derivative would be infinite. ``target_cov_sqrt`` may be given (computed
    once per target). Also the square root of the target: in float64 when it is computed here.
    """
    root = sqrtm_psd(target_cov) if target_cov_sqrt is None else target_cov_sqrt
    # The cross term nearly cancels the traces when the Gaussians are close: it is taken in float64, where
    # a float32 eigendecomposition of large activations would leave the distance negative.
    root = root.double()
    middle = root @ cov.double() @ root
    middle = (middle + middle.transpose(-1, -2)) / 2  # exact symmetry for eigvalsh
    values = torch.linalg.eigvalsh(middle)
    eps = torch.finfo(torch.float64).eps * values.abs().amax(-1, keepdim=True)  # relative: no scale of its own
    cross = values.clamp_min(eps).sqrt().sum(-1)
    traces = (cov.diagonal(dim1=-2, dim2=-1).sum(-1) + target_cov.diagonal(dim1=-2, dim2=-1).sum(-1)).double()
    distance = (mean - target_mean).double().square().sum(-1) + traces - 2 * cross
    return distance.clamp_min(0).to(cov.dtype)


def sorted_projections(features: Tensor, directions: Tensor) -> Tensor:
    """(B, N, M) features projected on K unit directions (N, K), each projection's M values sorted: the
    empirical quantile functions (B, K, M) that the sliced Wasserstein distance compares."""
    _check_rank("features", features, 3, "(B, N, M)")
    return torch.einsum("bnm,nk->bkm", features, directions).sort(-1).values


def resample_quantiles(quantiles: Tensor, count: int) -> Tensor:
    """(B, K, M') sorted values -> (B, K, count): the quantile function read at ``count`` evenly spaced levels
    (linear interpolation), so distributions of different sizes (a style image of another size) compare."""
    if quantiles.shape[-1] == count:
        return quantiles
    return torch.nn.functional.interpolate(quantiles, size=count, mode="linear", align_corners=True)


def sliced_wasserstein(features: Tensor, directions: Tensor, target_quantiles: Tensor) -> Tensor:
    """Heitz et al. (CVPR 2021): the mean over K directions of the squared 1-D Wasserstein-2 distance between the
    projections of ``features`` (B, N, M) and the target's sorted projections (B or 1, K, M'), per image (B,)."""
    mine = sorted_projections(features, directions)
    return (mine - resample_quantiles(target_quantiles, mine.shape[-1])).square().mean((1, 2))
