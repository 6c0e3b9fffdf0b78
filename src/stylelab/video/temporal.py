"""Ruder et al.'s short-term temporal loss (GCPR 2016, §4.1), as an extra term of ``transfer``.

L_temporal(x, ω, c) = (1/D) Σ_k c_k (x_k − ω_k)², D = H·W·3: the squared difference of the frame being
stylized to the previous stylized frame warped into it, kept only where the consistency mask c says the
flow can be trusted. Pixels are in [0, 1] (the paper's code used 0–255).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from ..colour import luminance_image

# γ, the default --temporal-weight. Ruder et al. weigh the temporal term 200 times the content term (their
# code's defaults, to our recollection: content 5, temporal 1e3). Their units differ from ours in three ways:
# pixels 0–255 (×255² for the same pixel difference), our content loss is ½·MSE (×½), and their network (the
# raw Caffe VGG19, 0–255 input) has features about 224× larger than torchvision's VGG19 (our default): the
# content/style balances that neural-style (α = 5, β = 100) and PyTorch's tutorial (α = 1, β = 1e6) hand-tune
# for the two networks, with the same normalization, differ by 5e4 ≈ 224². So with α = 1:
# γ = 200 · 255² / (2 · 5e4) ≈ 130. An estimate, not a measurement (no trained VGG19 was at hand): raise it for
# steadier video, lower it when new motion smears; another backbone has other feature scales.
TEMPORAL_WEIGHT = 130.0


def temporal_loss(image: Tensor, warped: Tensor, mask: Tensor) -> Tensor:
    """(B, 3, H, W) images, (1|B, 3, H, W) warped previous frame, (1|B, 1, H, W) mask c -> (B,) losses."""
    difference = (image - warped).square() * mask
    return difference.flatten(1).sum(1) / image[0].numel()  # / D = 3·H·W


class TemporalTerm:
    """``extra_terms`` for one frame: {"temporal": (image -> (B,) loss, γ)}.

    ``luminance``: with --original-colors luminance the optimized image is grey, so the target is the warped
    frame's luminance (its colour comes back from the content afterwards)."""

    def __init__(self, warped: Tensor, mask: Tensor, weight: float, luminance: bool = False):
        self.warped = (luminance_image(warped) if luminance else warped).detach()
        self.mask, self.weight = mask.detach(), float(weight)

    def __call__(self, content: Tensor) -> dict[str, tuple[Callable[[Tensor], Tensor], float]]:
        hw = tuple(content.shape[-2:])
        warped, mask = self.warped, self.mask
        if tuple(warped.shape[-2:]) != hw:  # the frames are sized to the output's size; this is a safety net
            warped = F.interpolate(warped, size=hw, mode="bilinear", align_corners=False)
            mask = F.interpolate(mask, size=hw, mode="nearest")
        warped, mask = warped.to(content.device), mask.to(content.device)
        return {"temporal": (lambda image: temporal_loss(image, warped, mask), self.weight)}
