"""Weights-free image metrics: structure kept (SSIM) and colour taken (histogram and statistics distances).

Pure functions on (1, 3, H, W) float tensors in [0, 1]. SSIM compares pixel to pixel, so the second image is
resized to the first; the colour metrics compare distributions, so each image keeps its own size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import StylelabError
from ..images import resize

# ITU-R BT.601 luma, the weights of the original SSIM paper's greyscale conversion.
LUMA = (0.299, 0.587, 0.114)


def _check_pair(x: Tensor, y: Tensor, same_size: bool = True) -> tuple[Tensor, Tensor]:
    for name, t in (("first", x), ("second", y)):
        if t.ndim != 4 or t.shape[:2] != (1, 3):
            raise StylelabError(f"metrics take (1, 3, H, W) images; the {name} is {tuple(t.shape)}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    if same_size and x.shape != y.shape:
        y = resize(y, tuple(x.shape[-2:]))
    return x, y


def luminance(image: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W)."""
    w = image.new_tensor(LUMA).view(1, 3, 1, 1)
    return (image * w).sum(1, keepdim=True)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 SSIM on luminance, Gaussian window 11/1.5, K1=0.01, K2=0.03, data range 1.

    The mean over all window positions that fit inside the image ("valid" filtering, as the reference
    MATLAB code). Images smaller than the window use a window as large as the shorter side.
    """
    x, y = _check_pair(x, y)
    x, y = luminance(x), luminance(y)
    window = min(window, x.shape[-2], x.shape[-1])
    g = _gaussian_window(window, sigma, x.dtype)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = F.conv2d(x, g), F.conv2d(y, g)
    var_x = F.conv2d(x * x, g) - mu_x**2
    var_y = F.conv2d(y * y, g) - mu_y**2
    cov = F.conv2d(x * y, g) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())


def rgb_uv_histogram(image: Tensor, bins: int = 64, extent: float = 3.0, eps: float = 1e-6) -> Tensor:
    """Afifi et al.'s RGB-uv histogram (HistoGAN, 2021): (3, bins, bins), summing to 1.

    For each channel c, every pixel lands at (u, v) = (log c/c', log c/c'') with weight = its intensity
    sqrt(R²+G²+B²), so dark pixels (whose chroma is noise) count little. Hard bins over [-extent, extent].
    """
    rgb = image.detach().double().cpu()[0].reshape(3, -1) + eps  # (3, P)
    log = rgb.log()
    weight = rgb.square().sum(0).sqrt()
    hists = []
    for c in range(3):
        a, b = [k for k in range(3) if k != c]
        u, v = log[c] - log[a], log[c] - log[b]
        h, _ = torch.histogramdd(torch.stack([u, v], 1), bins=[bins, bins],
                                 range=[-extent, extent, -extent, extent], weight=weight)
        hists.append(h)
    h = torch.stack(hists)
    return h / h.sum().clamp_min(1e-12)


def hellinger(p: Tensor, q: Tensor) -> float:
    """Hellinger distance between two distributions (each sums to 1): in [0, 1], 0 iff equal."""
    bc = (p * q).sqrt().sum()  # Bhattacharyya coefficient
    return float((1 - bc).clamp_min(0).sqrt())


def color_histogram_distance(x: Tensor, y: Tensor, bins: int = 64) -> float:
    """Hellinger distance between the RGB-uv histograms of two images (any sizes): 0 = same colours."""
    x, y = _check_pair(x, y, same_size=False)
    return hellinger(rgb_uv_histogram(x, bins), rgb_uv_histogram(y, bins))


def color_stats_distance(x: Tensor, y: Tensor) -> float:
    """‖μ_x − μ_y‖ + ‖σ_x − σ_y‖ over the RGB channels: how far the colour mean and spread are."""
    x, y = _check_pair(x, y, same_size=False)
    fx, fy = x[0].reshape(3, -1), y[0].reshape(3, -1)
    mean = (fx.mean(1) - fy.mean(1)).norm()
    std = (fx.std(1, correction=0) - fy.std(1, correction=0)).norm()
    return float(mean + std)


WEIGHTS_FREE = {
    # name: (function, compared with, higher is better)
    "ssim_content": (ssim, "content", True),
    "color_hist_style": (color_histogram_distance, "style", False),
    "color_stats_style": (color_stats_distance, "style", False),
}


def weights_free_metrics(output: Tensor, content: Tensor, style: Tensor) -> dict[str, float]:
    """All weights-free metrics of one output against its content and style."""
    refs = {"content": content, "style": style}
    return {name: fn(output, refs[against]) for name, (fn, against, _) in WEIGHTS_FREE.items()}
