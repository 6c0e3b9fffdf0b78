"""Colour control (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving color in neural artistic style
transfer"): luminance-only transfer and colour-histogram matching; plus a style-statistics start image.

Tensors are (1, 3, H, W) sRGB in [0, 1] unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import StylelabError

ORIGINAL_COLORS = ("none", "luminance", "histogram")

# NTSC YIQ, the colour space of Gatys et al. 2016's luminance-only transfer.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


def check_original_colors(mode: str) -> None:
    if mode not in ORIGINAL_COLORS:
        raise StylelabError(f"unknown original-colors mode {mode!r}; choose {', '.join(ORIGINAL_COLORS)}")


def rgb_to_yiq(image: Tensor) -> Tensor:
    m = _RGB_TO_YIQ.to(image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    m = torch.linalg.inv(_RGB_TO_YIQ).to(image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def luminance_image(image: Tensor) -> Tensor:
    """Y of YIQ repeated on three channels: the grey image a network sees in luminance-only transfer."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: Tensor, content_y: Tensor) -> Tensor:
    """Eq. 1 of Gatys et al. 2016: the style's luminance shifted and scaled to the content's mean and std."""
    s_mu, s_sd = style_y.mean(), style_y.std(correction=0).clamp_min(1e-8)
    c_mu, c_sd = content_y.mean(), content_y.std(correction=0)
    return ((style_y - s_mu) * (c_sd / s_sd) + c_mu).clamp(0, 1)


def with_content_chrominance(output: Tensor, content: Tensor) -> Tensor:
    """The output's luminance Y with the content's chrominance I, Q (back to RGB, clamped)."""
    yiq = rgb_to_yiq(content.to(output.dtype))
    yiq[:, :1] = rgb_to_yiq(output)[:, :1]
    return yiq_to_rgb(yiq).clamp(0, 1)


def _sqrt_and_inverse_sqrt(cov: Tensor) -> tuple[Tensor, Tensor]:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-10)
    return (vecs * vals.sqrt()) @ vecs.T, (vecs * vals.rsqrt()) @ vecs.T


def match_color_histogram(style: Tensor, content: Tensor, clamp: bool = True) -> Tensor:
    """Linear colour transfer: the style's pixels mapped so their mean and covariance equal the content's.

    x' = Σc^½ Σs^-½ (x − μs) + μc, with symmetric matrix square roots (the "image analogies" variant of
    Gatys et al. 2016 §2.1), computed in float64.
    """
    s = style.double()[0].reshape(3, -1)
    c = content.double()[0].reshape(3, -1)
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    eye = 1e-6 * torch.eye(3, dtype=torch.float64)  # flat images have singular covariances
    sqrt_c, _ = _sqrt_and_inverse_sqrt(torch.cov(c, correction=0) + eye)
    _, inv_sqrt_s = _sqrt_and_inverse_sqrt(torch.cov(s, correction=0) + eye)
    out = (sqrt_c @ inv_sqrt_s @ (s - mu_s) + mu_c).reshape_as(style[0])[None].to(style.dtype)
    return out.clamp(0, 1) if clamp else out


def style_stats_noise(styles: Sequence[Tensor], blend: Sequence[float], shape: torch.Size, seed: int) -> Tensor:
    """Seeded Gaussian noise with the (blended) styles' per-channel mean and std, clamped to [0, 1]."""
    mean = sum(b * s.mean((0, 2, 3)) for s, b in zip(styles, blend))
    std = sum(b * s.std((0, 2, 3), correction=0) for s, b in zip(styles, blend))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator)
    return (noise * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)).clamp(0, 1)
