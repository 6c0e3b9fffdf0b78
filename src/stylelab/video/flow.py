"""Optical flow between input frames (OpenCV's DIS), backward warping, and Ruder et al.'s consistency mask.

Conventions. A flow is a (2, H, W) float32 tensor of pixel displacements (x, y). ``flow(a, b)`` maps frame ``a``
onto frame ``b``: the point p of ``a`` is seen at p + flow(p) in ``b`` (OpenCV's convention: a(p) ≈ b(p + flow(p))).
For frames t−1 and t, Ruder et al. (GCPR 2016, §4.1) call w = flow(t−1, t) the forward flow and
ŵ = flow(t, t−1) the backward flow; the previous stylized frame is brought to frame t by sampling it at
p + ŵ(p) (``warp``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import StylelabError

FLOW_PRESETS = ("medium", "fast")  # DIS presets: medium is the more accurate, fast about 3x quicker


def _grey(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W) uint8, the input DIS takes (Rec. 601 luma, as OpenCV's RGB2GRAY)."""
    rgb = frame[0].detach().float().clamp(0, 1).cpu()
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return np.ascontiguousarray(luma.mul(255).round().byte().numpy())


class FlowEstimator:
    """DIS optical flow (Kroeger et al. 2016) through ``cv2.DISOpticalFlow``; one instance per video."""

    def __init__(self, preset: str = "medium"):
        import cv2  # opencv-python-headless: imported here so that the rest of stylelab does not need it

        if preset not in FLOW_PRESETS:
            raise StylelabError(f"unknown flow preset {preset!r}; choose {', '.join(FLOW_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow.create(
            cv2.DISOPTICAL_FLOW_PRESET_MEDIUM if preset == "medium" else cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """flow(a, b): (2, H, W), a(p) ≈ b(p + flow(p))."""
        if a.shape != b.shape:
            raise ValueError(f"frames differ in size: {tuple(a.shape)} and {tuple(b.shape)}")
        flow = self._dis.calc(_grey(a), _grey(b), None)  # (H, W, 2) float32
        return torch.from_numpy(flow).permute(2, 0, 1).contiguous()

    def pair(self, previous: Tensor, current: Tensor) -> tuple[Tensor, Tensor]:
        """(forward w, backward ŵ) between the input frames t−1 and t."""
        return self(previous, current), self(current, previous)


def _sample_grid(flow: Tensor) -> Tensor:
    """(2, H, W) flow -> (1, H, W, 2) grid_sample coordinates of p + flow(p) (align_corners=True: −1 and 1
    are the centres of the first and last pixels, so integer displacements sample pixels exactly)."""
    _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x = (xs + flow[0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack([x, y], -1).unsqueeze(0)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` (B, C, H, W) at p + flow(p) (bilinear; outside the frame the nearest edge pixel).

    With the backward flow ŵ this brings the previous frame to the current one: ω(x_prev)."""
    grid = _sample_grid(flow.float().cpu()).to(image.device).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def inside(flow: Tensor) -> Tensor:
    """(H, W) bool: p + flow(p) falls in the frame (with half a pixel's slack for rounding)."""
    _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x, y = xs + flow[0], ys + flow[1]
    return (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)


def _gradient_squared(component: Tensor) -> Tensor:
    """|∇f|² of an (H, W) map: central differences inside, one-sided at the borders (as numpy.gradient)."""
    def along(f: Tensor, dim: int) -> Tensor:
        if f.shape[dim] < 2:
            return torch.zeros_like(f)
        g = torch.empty_like(f)
        first, last = f.narrow(dim, 1, 1) - f.narrow(dim, 0, 1), f.narrow(dim, -1, 1) - f.narrow(dim, -2, 1)
        g.narrow(dim, 0, 1).copy_(first)
        g.narrow(dim, -1, 1).copy_(last)
        n = f.shape[dim]
        if n > 2:
            g.narrow(dim, 1, n - 2).copy_((f.narrow(dim, 2, n - 2) - f.narrow(dim, 0, n - 2)) / 2)
        return g

    return along(component, 1).square() + along(component, 0).square()


def consistency_mask(forward: Tensor, backward: Tensor) -> Tensor:
    """Ruder et al.'s per-pixel weights c for frame t, (1, 1, H, W) in {0, 1}.

    With w̃(p) = w(p + ŵ(p)) (the forward flow sampled where p came from, bilinearly), c(p) = 0 where
      * disocclusion, the forward–backward check: |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5
        (a point seen in both frames goes there and back: w̃ ≈ −ŵ, up to a tolerance growing with the motion);
      * motion boundary: |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002, ŵ = (û, v̂)
        (the flow there is unreliable);
      * and, our addition, p + ŵ(p) falls outside frame t−1: content that entered the frame has no previous
        look (the paper's check would compare the clamped edge flow and pass it);
    and 1 elsewhere. Flows in pixels."""
    if forward.shape != backward.shape or forward.ndim != 3 or forward.shape[0] != 2:
        raise ValueError(f"flows must be (2, H, W) alike, got {tuple(forward.shape)} and {tuple(backward.shape)}")
    forward, backward = forward.float().cpu(), backward.float().cpu()
    w_tilde = warp(forward.unsqueeze(0), backward)[0]  # w̃(p) = w(p + ŵ(p))
    disoccluded = (w_tilde + backward).square().sum(0) > 0.01 * (w_tilde.square().sum(0) + backward.square().sum(0)) + 0.5
    boundary = _gradient_squared(backward[0]) + _gradient_squared(backward[1]) > 0.01 * backward.square().sum(0) + 0.002
    keep = ~disoccluded & ~boundary & inside(backward)
    return keep.float()[None, None]
