"""Feature pictures: channel normalization, grid geometry, PCA against numpy, ViT tokens on their grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylelab.backbones import create_backbone
from stylelab.study.features import TILE_GAP, channel_grid, layer_pictures, normalize_channels, pca_components


def test_each_channel_normalized():
    maps = torch.randn(5, 6, 7) * torch.arange(1, 6).view(5, 1, 1) + 3
    n = normalize_channels(maps)
    assert torch.allclose(n.flatten(1).min(1).values, torch.zeros(5))
    assert torch.allclose(n.flatten(1).max(1).values, torch.ones(5))
    assert torch.equal(normalize_channels(torch.ones(1, 2, 2)), torch.zeros(1, 2, 2))  # constant: no NaN


def test_channel_grid_geometry_and_tiles():
    maps = torch.randn(10, 4, 6)
    grid = channel_grid(maps, count=7, tile=16)  # 7 tiles -> 3 columns, 3 rows; scale 16 // 4 = 4
    th, tw = 16, 24
    assert grid.shape == (1, 3, 3 * th + 2 * TILE_GAP, 3 * tw + 2 * TILE_GAP)
    for i in range(7):
        r, c = divmod(i, 3)
        tile = grid[0, 0, r * (th + TILE_GAP):r * (th + TILE_GAP) + th, c * (tw + TILE_GAP):c * (tw + TILE_GAP) + tw]
        expected = normalize_channels(maps[:7])[i].repeat_interleave(4, 0).repeat_interleave(4, 1)
        assert torch.allclose(tile, expected)
    assert (grid[0, :, 2 * (th + TILE_GAP):, 1 * (tw + TILE_GAP):] == 1).all()  # unused cells stay white


def test_pca_matches_numpy():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(8, 5, 7, generator=g) + torch.linspace(0, 3, 8).view(8, 1, 1) * torch.randn(1, 5, 7, generator=g)
    got = pca_components(maps).reshape(3, -1).numpy()
    x = maps.double().reshape(8, -1).T.numpy()
    x = x - x.mean(0)
    vals, vecs = np.linalg.eigh(x.T @ x)
    axes = vecs[:, ::-1][:, :3].T  # top 3 eigenvectors of the scatter matrix
    axes *= np.sign(axes[np.arange(3), np.abs(axes).argmax(1)])[:, None]
    assert np.allclose(got, (x @ axes.T).T, atol=1e-8)


def test_vit_tokens_laid_on_their_grid():
    net = create_backbone("clip-vit-b16", "random")
    net.truncate(["block0"])
    image = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        features = net(image, ["block0"])
        tokens = net.visual.transformer.resblocks[0](net.embed(net.preprocess(image)))  # (1, 1 + 2·3, 768) by hand
    maps = features["block0"]
    assert maps.shape == (1, 768, 2, 3) and features.prefix["block0"].shape == (1, 1, 768)
    for i in range(2):
        for j in range(3):
            assert torch.equal(maps[0, :, i, j], tokens[0, 1 + i * 3 + j])
    assert torch.equal(features.prefix["block0"], tokens[:, :1]) and torch.equal(features.tokens("block0"), tokens)


@pytest.mark.parametrize("backbone", ["vgg19", "clip-rn50", "clip-rn50-sequential", "clip-vit-b16"])
def test_layer_pictures_every_backbone(backbone):
    net = create_backbone(backbone, "random")
    layer = net.layer_names[1]
    net.truncate([layer])
    pics = layer_pictures(net, torch.rand(1, 3, 64, 64), [layer], count=4, pca=True)
    assert pics[0].shown == 4 and pics[0].pca.shape[1] == 3
    assert pics[0].grid.min() == 0 and pics[0].grid.max() == 1
