"""Pictures of what a backbone sees: per-layer grids of channels and a 3-component PCA colour view.

The seed's Figs 3.6–3.11 (VGG relu4_2, RN50 layer1 bottleneck 1 by hooks and by forward-vision) are
``stylelab features IMAGE --backbone NAME --layers …``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..backbones import Backbone
from .sheets import contact_sheet

TILE_GAP = 2


def normalize_channels(maps: Tensor) -> Tensor:
    """(C, h, w) -> each channel min-max scaled to [0, 1] (a constant channel becomes 0)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


def channel_grid(maps: Tensor, count: int, tile: int) -> Tensor:
    """The first ``count`` channels of (C, h, w) as a grey grid (1, 3, H, W), each tile ``tile`` px high.

    Tiles are enlarged with nearest-neighbour sampling so every feature-map cell stays a visible square.
    """
    maps = normalize_channels(maps[:count].float())
    n, h, w = maps.shape
    scale = max(1, tile // h)
    th, tw = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(3, rows * th + (rows - 1) * TILE_GAP, cols * tw + (cols - 1) * TILE_GAP)
    tiles = F.interpolate(maps[:, None], scale_factor=scale, mode="nearest")[:, 0]
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (th + TILE_GAP), c * (tw + TILE_GAP)
        grid[:, y : y + th, x : x + tw] = tiles[i]
    return grid[None]


def pca_components(maps: Tensor, k: int = 3) -> Tensor:
    """(C, h, w) -> (k, h, w): positions projected on the top-k principal axes of the channel vectors.

    Float64 SVD of the centred (positions × channels) matrix; each axis's sign is fixed so that its
    largest loading is positive (a deterministic picture).
    """
    c, h, w = maps.shape
    x = maps.double().flatten(1).T  # (M positions, C channels)
    x = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:k]  # (k, C)
    flip = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * flip
    proj = x @ axes.T  # (M, k)
    if proj.shape[1] < k:  # fewer channels or positions than k: pad with zeros
        proj = torch.cat([proj, proj.new_zeros(proj.shape[0], k - proj.shape[1])], 1)
    return proj.T.reshape(k, h, w)


def pca_image(maps: Tensor, height: int) -> Tensor:
    """The 3-component PCA view as RGB (1, 3, H, W), each component min-max scaled, nearest-enlarged."""
    rgb = normalize_channels(pca_components(maps)).float()
    scale = max(1, height // rgb.shape[-2])
    return F.interpolate(rgb[None], scale_factor=scale, mode="nearest")


@dataclass(frozen=True)
class LayerPicture:
    layer: str
    channels: int
    grid_size: tuple[int, int]
    shown: int
    grid: Tensor  # (1, 3, H, W)
    pca: Tensor | None


@torch.no_grad()
def layer_pictures(net: Backbone, image: Tensor, layers: Sequence[str], count: int = 16, tile: int = 64,
                   pca: bool = False) -> list[LayerPicture]:
    """Run ``image`` (1, 3, H, W) through ``net`` once and picture each of ``layers``."""
    feats = net(image, list(layers))
    pictures = []
    for name in layers:
        maps = feats[name][0].cpu()  # (C, h, w): every backbone's features are maps on the image grid
        shown = min(count, maps.shape[0])
        grid = channel_grid(maps, shown, tile)
        pictures.append(LayerPicture(name, maps.shape[0], tuple(maps.shape[-2:]), shown, grid,
                                     pca_image(maps, grid.shape[-2]) if pca else None))
    return pictures


def features_sheet(net: Backbone, image: Tensor, pictures: Sequence[LayerPicture], image_label: str
                   ) -> Image.Image:
    """One row per layer: the input, the channel grid, and the PCA view when asked for."""
    with_pca = any(p.pca is not None for p in pictures)
    height = max(p.grid.shape[-2] for p in pictures)
    cells, captions, labels = [], [], []
    for p in pictures:
        row = [image, p.grid] + ([p.pca] if with_pca else [])
        cells.append(row)
        labels.append(f"{net.name}\n{p.layer}")
        captions.append(["input", f"{p.layer}: channels 0-{p.shown - 1} of {p.channels}, "
                                  f"{p.grid_size[0]}x{p.grid_size[1]}, each normalized"]
                        + (["PCA: first 3 components as RGB"] if with_pca else []))
    sheet, _ = contact_sheet(cells, cell_height=height, row_labels=labels, captions=captions,
                             title=f"{net.name} ({net.weights_source}): {image_label}")
    return sheet
