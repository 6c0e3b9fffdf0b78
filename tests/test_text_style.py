"""Style from words: CLIPstyler's losses on the pixels, with a tiny random open_clip model (offline)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import InterpolationMode, perspective

from conftest import make_rgb, make_stripes
from stylelab import transfer
from stylelab.api import as_tensor
from stylelab.backbones.clip_text import DEFAULT_TEXT_MODEL, create_text_model, default_text_model
from stylelab.cli import main
from stylelab.errors import StylelabError, WeightsUnavailableError
from stylelab.images import save_image
from stylelab.losses.text import (
    DIRECTION_EPS, TEMPLATES, TextStyleLoss, directional_loss, random_views, text_embedding, warp_perspective,
)

TINY = "open_clip:stylelab-tiny"
TINY_CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
RUN = dict(weights="random", size=48, device="cpu", text_model=TINY, text_crops=4)


@pytest.fixture(autouse=True)
def tiny_clip(monkeypatch):
    """A two-layer CLIP in open_clip's own architecture table, so the tests run in seconds."""
    from open_clip import factory

    monkeypatch.setitem(factory._MODEL_CONFIGS, "stylelab-tiny", TINY_CONFIG)


@pytest.fixture(scope="module")
def content():
    return as_tensor(make_rgb(40, 48))


def test_directional_loss_by_hand():
    torch.manual_seed(0)
    e, s = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    d = F.normalize(torch.randn(8, dtype=torch.float64), dim=0)
    delta = e - s
    by_hand = 1 - (delta @ d) / delta.norm(dim=1)
    assert torch.allclose(directional_loss(e, s, d), by_hand)
    # At zero displacement (the first evaluation, from the content itself) it stays finite and linear.
    small = s + 1e-4 * d
    assert torch.allclose(directional_loss(small, s, d), 1 - 1e-4 / torch.tensor(DIRECTION_EPS, dtype=torch.float64))


def test_perspective_matches_torchvision_inside_and_has_gradients():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    start, end = [[0, 0], [15, 0], [15, 15], [0, 15]], [[2, 1], [14, 3], [13, 15], [1, 12]]
    ours = warp_perspective(x, start, end)
    theirs = perspective(x.detach(), start, end, interpolation=InterpolationMode.BILINEAR, fill=0)
    # Inside the warped square (away from its border, where torchvision blends its fill mask) they agree.
    inside = -F.max_pool2d(-warp_perspective(torch.ones(1, 1, 16, 16), start, end), 3, 1, 1) > 0.999
    assert inside.sum() > 60
    assert torch.allclose(ours.detach()[inside.expand_as(ours)], theirs[inside.expand_as(theirs)], atol=1e-5)
    ours.sum().backward()
    assert x.grad.abs().sum() > 0


def test_crops_are_reproducible_with_the_seed():
    a = random_views(torch.Generator().manual_seed(3), 64, 80, 6, 16, 0.5)
    b = random_views(torch.Generator().manual_seed(3), 64, 80, 6, 16, 0.5)
    c = random_views(torch.Generator().manual_seed(4), 64, 80, 6, 16, 0.5)
    assert a == b and a != c
    for top, left, _, end in a:
        assert 0 <= top <= 64 - 16 and 0 <= left <= 80 - 16
        assert all(0 <= v < 16 for point in end for v in point)
    # Small crops (8 px, a 32 px picture) warp to finite pixels whatever corners are drawn.
    for _, _, start, end in random_views(torch.Generator().manual_seed(0), 24, 32, 200, 8, 0.5):
        assert torch.isfinite(warp_perspective(torch.rand(1, 3, 8, 8), start, end)).all()


def test_prompts_give_different_targets_and_templates_are_averaged(content):
    model = create_text_model(TINY, "random", seed=0)
    water, mosaic = (TextStyleLoss(model, content, t, crops=2) for t in ("a watercolor painting", "a mosaic"))
    assert not torch.allclose(water.direction, mosaic.direction)
    by_hand = F.normalize(model.encode_text([t.format("a mosaic") for t in TEMPLATES]).mean(0), dim=0)
    assert torch.allclose(text_embedding(model, "a mosaic"), by_hand)
    assert torch.allclose(mosaic.direction.norm(), torch.tensor(1.0))


def test_rejection_threshold_zeroes_good_patches(content):
    model = create_text_model(TINY, "random", seed=0)
    image = content + 0.1 * torch.rand_like(content)
    loose = TextStyleLoss(model, content, "a mosaic", crops=3, threshold=0.0, direction_weight=0, patch_weight=1)
    strict = TextStyleLoss(model, content, "a mosaic", crops=3, threshold=2.1, direction_weight=0, patch_weight=1)
    views = loose.crops_of(image)
    per_crop = directional_loss(model.encode_image(views.flatten(0, 1)).unflatten(0, views.shape[:2]),
                                loose.content, loose.direction)
    assert torch.allclose(loose(image), per_crop.mean(0), atol=1e-6)  # nothing rejected below threshold 0
    assert torch.equal(strict(image), torch.zeros(1))  # 1 - cos <= 2 < 2.1: every crop rejected


def test_text_alone_drives_the_result_and_the_loss_falls(content):
    events = {}
    outputs = {}
    for text in ("a watercolor painting", "a mosaic of tiny tiles"):
        events[text] = []
        outputs[text] = transfer(content, style_text=text, iterations=12, callback=events[text].append, **RUN).image
    water = [e.text_loss for e in events["a watercolor painting"]]
    assert min(water[-3:]) < 0.5 * water[0], water
    assert all(e.style_loss == 0 for e in events["a mosaic of tiny tiles"])  # no style image: no Gatys term
    assert (outputs["a watercolor painting"] - outputs["a mosaic of tiny tiles"]).abs().max() > 1e-3
    again = transfer(content, style_text="a mosaic of tiny tiles", iterations=12, **RUN).image
    assert torch.equal(again, outputs["a mosaic of tiny tiles"])  # the seed fixes crops and init


def test_text_and_style_image_are_both_weighted(content):
    style = as_tensor(make_stripes(48, 48))
    seen = []
    transfer(content, style, style_text="a mosaic", text_weight=2.5, iterations=2, callback=seen.append,
             content_weight=1.0, style_weight=10.0, balance="auto", **RUN)
    first = seen[0]
    assert first.text_loss > 0 and first.style_loss > 0
    assert first.loss == pytest.approx(first.content_loss + 10.0 * first.style_loss + 2.5 * first.text_loss,
                                       rel=1e-5)
    without = transfer(content, style, style_text="a mosaic", text_weight=0.0, iterations=6, **RUN).image
    images_only = transfer(content, style, iterations=6, **RUN).image
    with_text = transfer(content, style, style_text="a mosaic", text_weight=2.5, iterations=6, **RUN).image
    assert torch.allclose(without, images_only, atol=1e-6)  # weight 0 is the image-only run
    assert (with_text - images_only).abs().max() > 1e-3


def test_text_model_defaults_and_checkpoints(tmp_path, content):
    assert default_text_model("open_clip:RN50:yfcc15m") == "open_clip:RN50:yfcc15m"
    assert default_text_model("clip-vit-b16") == "open_clip:ViT-B-16"
    assert default_text_model("vgg19") == DEFAULT_TEXT_MODEL == "open_clip:ViT-B-32"
    model = create_text_model(TINY, "random", seed=7)
    path = tmp_path / "tiny-clip.pt"
    torch.save(model.model.state_dict(), path)  # open_clip's own checkpoint format: the whole model's state_dict
    loaded = create_text_model(TINY, str(path), seed=0)
    assert loaded.weights_source == f"checkpoint {path}"
    image = torch.rand(1, 3, 32, 32)
    assert torch.allclose(loaded.encode_image(image), model.encode_image(image), atol=1e-6)
    assert torch.allclose(loaded.encode_text(["a mosaic"]), model.encode_text(["a mosaic"]), atol=1e-6)
    visual_only = tmp_path / "visual.pt"
    torch.save(model.model.visual.state_dict(), visual_only)
    with pytest.raises(StylelabError, match="visual.pt"):
        create_text_model(TINY, str(visual_only))
    with pytest.raises(WeightsUnavailableError, match="no pretrained weights for stylelab-tiny"):
        create_text_model(TINY, "pretrained")


def test_pretrained_text_model_offline_is_one_line_within_seconds():
    import time

    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as error:
        create_text_model("open_clip:ViT-B-32", "pretrained")  # OpenAI's weights, not in the (private) cache
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "\n" not in message and "ViT-B-32" in message and "text_weights=random" in message


@pytest.mark.parametrize("options, message", [
    ({"style_text": ""}, "style_text= must be words describing the style"),
    ({"style_text": "   "}, "style_text= must be words describing the style"),
    ({}, "no style was given: pass style images or style_text="),
    ({"style_text": "ink", "text_model": "vgg19"}, "text_model= must be an open_clip model"),
    ({"style_text": "ink", "text_model": "open_clip:NoSuchNet"}, "open_clip has no model 'NoSuchNet'"),
    ({"style_text": "ink", "text_weight": -1.0}, "text_weight= must be a finite number >= 0"),
    ({"style_text": "ink", "text_weights": "/nonexistent/clip.pt"}, "text_weights=/nonexistent/clip.pt: no such file"),
])
def test_bad_text_options_are_refused_before_any_work(content, options, message):
    with pytest.raises(StylelabError, match=message):
        transfer(content, **{**RUN, **options})


def test_cli_text_style_alone_and_refusals(tmp_path, capsys):
    content = tmp_path / "c.png"
    save_image(as_tensor(make_rgb(40, 48)), content)
    out = tmp_path / "out.png"
    base = ["transfer", str(content), "-o", str(out), "--weights", "random", "--size", "48", "--iterations", "3",
            "--text-model", TINY, "--text-crops", "2", "--device", "cpu"]
    assert main([*base, "--style-text", "a watercolor painting"]) == 0
    err = capsys.readouterr().err
    assert out.is_file() and f"text model {TINY}: weights random init (seed 0)" in err
    out.unlink()
    assert main([*base, "--style-text", ""]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--style-text must be words describing the style" in err
    assert "Traceback" not in err and not out.exists()
    assert main(base) == 2
    assert "no style: give CONTENT STYLE" in capsys.readouterr().err and not out.exists()
