"""Weights-free metrics against independent numpy/scipy computations, and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from stylelab.api import as_tensor
from stylelab.study.metrics import (
    color_histogram_distance, color_stats_distance, hellinger, luminance, rgb_uv_histogram, ssim,
)

from conftest import make_rgb, make_stripes


def noisy(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (image + sigma * torch.randn(image.shape, generator=g)).clamp(0, 1)


def blurred(image: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(image, [radius] * 4, mode="replicate"), k, 1)


@pytest.fixture
def image():
    return as_tensor(make_rgb(48, 64))


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 by hand: Gaussian 11/1.5, valid convolution, float64."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def filt(a):
        return convolve2d(a, w[::-1, ::-1], mode="valid")

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_ssim_matches_reference(image):
    other = noisy(image, 0.1)
    ref = ssim_reference(luminance(image.double())[0, 0].numpy(), luminance(other.double())[0, 0].numpy())
    assert ssim(image, other) == pytest.approx(ref, abs=1e-10)


def test_ssim_identity_and_monotone(image):
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    by_noise = [ssim(image, noisy(image, s)) for s in (0.02, 0.05, 0.1, 0.2)]
    by_blur = [ssim(image, blurred(image, r)) for r in (1, 2, 4)]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:])), by_noise
    assert all(a > b for a, b in zip(by_blur, by_blur[1:])), by_blur
    assert ssim(image, noisy(image, 0.1)) == ssim(image, noisy(image, 0.1))  # deterministic


def test_rgb_uv_histogram_by_hand():
    image = as_tensor(make_stripes(16, 16)).double()
    rgb = image[0].reshape(3, -1).numpy() + 1e-6
    weight = np.sqrt((rgb**2).sum(0))
    expected = []
    for c, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
        u, v = np.log(rgb[c] / rgb[a]), np.log(rgb[c] / rgb[b])
        h, _, _ = np.histogram2d(u, v, bins=32, range=[[-3, 3], [-3, 3]], weights=weight)
        expected.append(h)
    expected = np.stack(expected)
    expected /= expected.sum()
    got = rgb_uv_histogram(image, bins=32).numpy()
    assert np.abs(got - expected).max() < 1e-9  # bin edges: numpy and torch agree away from the edges
    assert got.sum() == pytest.approx(1.0)


def test_hellinger_by_hand():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])
    assert hellinger(p, q) == pytest.approx(np.sqrt(1 - 2 * np.sqrt(0.125)))
    assert hellinger(p, p) == 0.0


def test_color_distances_identity_monotone_and_by_hand(image):
    style = as_tensor(make_stripes(64, 64))
    for fn in (color_histogram_distance, color_stats_distance):
        assert fn(style, style) == pytest.approx(0.0, abs=1e-7)
        values = [fn(style, noisy(style, s)) for s in (0.05, 0.15, 0.4)]
        assert all(a < b for a, b in zip(values, values[1:])), (fn.__name__, values)
        assert fn(image, style) == fn(image, style)
    assert 0 < color_histogram_distance(image, style) <= 1
    fx, fy = image[0].double().reshape(3, -1).numpy(), style[0].double().reshape(3, -1).numpy()
    expected = np.linalg.norm(fx.mean(1) - fy.mean(1)) + np.linalg.norm(fx.std(1) - fy.std(1))
    assert color_stats_distance(image, style) == pytest.approx(expected, rel=1e-9)
