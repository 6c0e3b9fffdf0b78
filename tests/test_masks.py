"""Spatial control (Gatys et al. 2017): a mask per style places each style on its own region of the content."""

import pytest
import torch

from conftest import make_stripes
from stylelab import StylelabError, transfer
from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.cli import main
from stylelab.images import pil_to_tensor, save_image
from stylelab.losses import GramLoss, flatten_maps, masked_gram, normalized_gram
from stylelab.optimize import LossSpec, StyleObjective

RUN = dict(weights="random", size=64, device="cpu")


def test_masked_gram_by_hand():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 10, dtype=torch.float64)
    ones = torch.ones(1, 10, dtype=torch.float64)
    torch.testing.assert_close(masked_gram(f, ones), normalized_gram(f))
    binary = torch.zeros(1, 10, dtype=torch.float64)
    binary[0, [1, 4, 5]] = 1
    torch.testing.assert_close(masked_gram(f, binary), normalized_gram(f[:, :, [1, 4, 5]]))
    soft = torch.rand(2, 10, dtype=torch.float64)
    by_hand = torch.stack([sum(soft[b, k] * torch.outer(f[b, :, k], f[b, :, k]) for k in range(10)) / soft[b].sum()
                           for b in range(2)])
    torch.testing.assert_close(masked_gram(f, soft), by_hand)
    assert masked_gram(f, torch.zeros(1, 10, dtype=torch.float64)).abs().max() == 0  # an empty region: no Gram
    with pytest.raises(ValueError, match="weights must be"):
        masked_gram(f, torch.ones(1, 9))


@pytest.mark.parametrize("backbone, layer", [("vgg19", "relu2_1"), ("clip-vit-b16", "block1")])
def test_a_full_mask_is_the_plain_gram_and_a_half_mask_the_halfs(backbone, layer):
    net = create_backbone(backbone, "random")
    features = net(torch.rand(1, 3, 64, 96), [layer])
    maps = features[layer]  # (1, C, h, w) on the image grid, for the ViT too
    h, w = maps.shape[-2:]
    gram = GramLoss()
    torch.testing.assert_close(gram.statistic(features, layer, torch.ones(1, h * w))[0],
                               gram.statistic(features, layer)[0])
    left = torch.zeros(1, h, w)
    left[..., : w // 2] = 1
    half = flatten_maps(maps[..., : w // 2].contiguous())
    torch.testing.assert_close(gram.statistic(features, layer, left.flatten(1))[0], normalized_gram(half),
                               rtol=1e-4, atol=1e-6)


def test_one_full_mask_gives_the_unmasked_loss():
    net = create_backbone("vgg19", "random")
    content_layers, style_layers = resolve_layers(net, None, None)
    spec = LossSpec(content_layers, style_layers, 1.0, 1e3)
    content, style = torch.rand(1, 3, 48, 64), pil_to_tensor(make_stripes(64, 64))
    x = torch.rand(1, 3, 48, 64)
    plain = StyleObjective(net, content, [style], [1.0], spec)(x)[1]
    masked = StyleObjective(net, content, [style], [1.0], spec, masks=[torch.ones(1, 1, 48, 64)])(x)[1]
    torch.testing.assert_close(masked, plain, rtol=1e-5, atol=0)


def _red_and_blue():
    stripes = pil_to_tensor(make_stripes(64, 64))
    return stripes * torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1), \
        stripes.flip(-1) * torch.tensor([0.2, 0.2, 1.0]).view(1, 3, 1, 1)


def test_each_style_goes_to_its_region():
    red, blue = _red_and_blue()
    left = torch.zeros(1, 3, 48, 64)
    left[..., :32] = 1
    content = torch.full((1, 3, 48, 64), 0.5)
    image = transfer(content, [red, blue], masks=[left, 1 - left], init="random", iterations=30, **RUN).image
    red_minus_blue = image[:, 0] - image[:, 2]  # (1, H, W)
    assert red_minus_blue[..., :32].mean() > 0.2 and red_minus_blue[..., 32:].mean() < -0.2
    blended = transfer(content, [red, blue], init="random", iterations=30, **RUN).image
    mixed = blended[:, 0] - blended[:, 2]
    assert abs(mixed[..., :32].mean() - mixed[..., 32:].mean()) < 0.2  # without masks both halves get both


def test_masks_across_a_pyramid_and_bad_masks():
    red, blue = _red_and_blue()
    top = torch.zeros(1, 3, 48, 64)
    top[..., :24, :] = 1
    content = torch.rand(1, 3, 48, 64)
    result = transfer(content, [red, blue], masks=[top, 1 - top], scales=[32, 64], iterations=3, **RUN)
    assert result.image.shape == (1, 3, 48, 64) and torch.isfinite(result.image).all()
    cases = [
        (dict(masks=[top]), r"2 style\(s\) need as many masks"),
        (dict(masks=[top, torch.zeros_like(top)]), "mask 2 selects nothing"),
        (dict(masks=[top, 1 - top], each_style=True), "not with several contents, each-style or a style blend"),
        (dict(masks=[top, 1 - top], style_blend=[1, 1]), "style blend"),
    ]
    for options, message in cases:
        with pytest.raises(StylelabError, match=message):
            transfer(content, [red, blue], iterations=1, **RUN, **options)
    with pytest.raises(StylelabError, match="several contents"):
        transfer([content, content], [red, blue], masks=[top, 1 - top], iterations=1, **RUN)
    with pytest.raises(StylelabError, match="style_loss=token-gram has no image positions"):
        transfer(content, [red, blue], masks=[top, 1 - top], iterations=1, backbone="clip-vit-b16", gram="token",
                 **RUN)


def test_cli_masks(tmp_path, capsys, content_path):
    red, blue = _red_and_blue()
    paths = {}
    for name, image in (("red", red), ("blue", blue)):
        paths[name] = save_image(image, tmp_path / f"{name}.png")
    left = torch.zeros(1, 3, 48, 64)
    left[..., :32] = 1
    paths["left"], paths["right"] = save_image(left, tmp_path / "left.png"), save_image(1 - left, tmp_path / "r.png")
    out = tmp_path / "out.png"
    fast = ["--weights", "random", "--size", "48", "--iterations", "3", "--device", "cpu", "--quiet"]
    assert main(["transfer", str(content_path), str(paths["red"]), str(paths["blue"]), "--mask", str(paths["left"]),
                 "--mask", str(paths["right"]), "-o", str(out), *fast]) == 0 and out.exists()
    assert main(["transfer", str(content_path), str(paths["red"]), str(paths["blue"]), "--mask", str(paths["left"]),
                 "-o", str(tmp_path / "bad.png"), *fast]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "stylelab: error: 2 style(s) need as many masks, one per style in order; got 1"
    assert not (tmp_path / "bad.png").exists()
