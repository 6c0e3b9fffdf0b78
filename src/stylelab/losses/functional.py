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
    """(B, C, H, W) convolutional maps -> (B, N=C, M=H·W) feature matrices F^l."""
    _check_rank("maps", maps, 4, "(B, C, H, W)")
    return maps.flatten(2)


def gram_matrix(features: Tensor) -> Tensor:
    """Eq. 2.2: G_ij = sum_k F_ik F_jk. (B, N, M) -> (B, N, N), unnormalized."""
    _check_rank("features", features, 3, "(B, N, M)")
    return torch.bmm(features, features.transpose(1, 2))


def normalized_gram(features: Tensor) -> Tensor:
    """G / M: the Gram matrix of eq. 2.2 averaged over the M positions.

    With it, eq. 2.3 reads sum_ij (G/M - A/M)^2 / (4 N^2), which is eq. 2.3 exactly when
    both images have M positions, and stays meaningful when the style image's size
    differs from the output's (each Gram is divided by its own M). Dividing before
    subtracting also keeps fp32 well inside its range at high resolution.
    """
    return gram_matrix(features) / features.shape[-1]


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
