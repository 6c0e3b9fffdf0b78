"""Sample images the project makes itself, so the demo needs no downloads and no data folder."""

from __future__ import annotations

import numpy as np
import torch


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(rgb, 0, 1).astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()


def sample_content(height: int = 192, width: int = 256) -> torch.Tensor:
    """A small landscape: sky, sun, hills, two houses with roofs and windows."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    img = np.empty((height, width, 3))
    img[...] = np.stack([0.45 + 0.3 * y, 0.65 + 0.25 * y, 0.95 - 0.1 * y], -1)  # sky gradient
    sun = (x - 0.78) ** 2 + ((y - 0.22) * height / width) ** 2 < 0.006
    img[sun] = (1.0, 0.85, 0.3)
    hill_far = y > 0.55 + 0.08 * np.sin(6 * x + 1)
    img[hill_far] = np.stack([0.25 + 0 * y, 0.55 - 0.2 * y, 0.3 + 0 * y], -1)[hill_far]
    hill_near = y > 0.72 + 0.05 * np.sin(9 * x)
    img[hill_near] = np.stack([0.2 + 0.1 * x, 0.42 + 0 * x, 0.15 + 0 * x], -1)[hill_near]
    for left, w, top, colour in ((0.15, 0.18, 0.55, (0.85, 0.8, 0.7)), (0.45, 0.14, 0.6, (0.75, 0.45, 0.35))):
        body = (x > left) & (x < left + w) & (y > top) & (y < 0.85)
        img[body] = colour
        roof = (y <= top) & (y > top - 0.12) & (np.abs(x - (left + w / 2)) < (y - (top - 0.12)) * w / 0.24 + 1e-9)
        img[roof] = (0.55, 0.15, 0.1)
        window = (np.abs(x - (left + w / 2)) < w * 0.15) & (np.abs(y - (top + 0.1)) < 0.04)
        img[window] = (0.2, 0.3, 0.5)
    return _to_tensor(img)


def sample_style(height: int = 256, width: int = 256, seed: int = 0) -> torch.Tensor:
    """Swirling brush-like strokes in blue and yellow (a nod to The Starry Night)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / float(max(height, width))
    field = np.zeros((height, width))
    for _ in range(6):  # a few vortices bend the stroke direction
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(-8, 8)
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        field += s * np.exp(-r2 / 0.03) * np.arctan2(y - cy, x - cx)
    strokes = np.sin(40 * (x * np.cos(field) + y * np.sin(field)) + 3 * rng.standard_normal((height, width)) * 0.1)
    grain = np.sin(120 * x + 7 * np.sin(25 * y)) * 0.15
    t = 0.5 + 0.5 * np.tanh(2 * (strokes + grain))
    dark, mid, light = np.array([0.05, 0.1, 0.35]), np.array([0.15, 0.35, 0.75]), np.array([0.95, 0.85, 0.3])
    img = np.where(t[..., None] < 0.5, dark + (mid - dark) * (2 * t[..., None]),
                   mid + (light - mid) * (2 * t[..., None] - 1))
    return _to_tensor(img)
