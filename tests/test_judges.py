"""Weight-needing metrics: LPIPS against the `lpips` package, FID against scipy, ArtFID's formula, the Gram
judge, and loading from checkpoints the tests write in the official formats (never the network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torchvision
from scipy import linalg

from stylelab.api import as_tensor
from stylelab.errors import WeightsUnavailableError
from stylelab.study.evaluate import Judges
from stylelab.study.judges import (
    ART_INCEPTION, GramJudge, art_fid, build_inception, frechet_distance, inception_features, load_art_inception,
    load_lpips,
)
from stylelab.weights import hub_checkpoint_dir

from conftest import make_rgb, make_stripes
from test_metrics import noisy


def write_alexnet_checkpoint() -> dict:
    """A random AlexNet saved where torchvision's weights API caches IMAGENET1K_V1."""
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = hub_checkpoint_dir() / os.path.basename(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def write_art_inception(tmp_path) -> None:
    """A random Inception-v3 with ArtFID's two heads, in the Hugging Face hub cache layout."""
    torch.manual_seed(0)
    net = torchvision.models.Inception3(aux_logits=True, init_weights=True)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "AuxLogits."))}
    for head in ("fc1", "fc2"):
        state[f"{head}.weight"], state[f"{head}.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
        state[f"AuxLogits{head[-1]}.fc.weight"] = torch.zeros(1000, 768)
    repo = tmp_path / "hf" / ("models--" + ART_INCEPTION[0].replace("/", "--"))
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    torch.save(state, repo / "snapshots" / "abc123" / ART_INCEPTION[1])


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


@pytest.mark.filterwarnings("ignore:.*(pretrained|weights).*deprecated:UserWarning")  # lpips uses the old API
def test_lpips_matches_the_lpips_package():
    import lpips

    state = write_alexnet_checkpoint()
    ours = load_lpips("pretrained")  # through torchvision's cache, as a real download would be read
    reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    convs = [m for m in reference.net.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv, i in zip(convs, (0, 3, 6, 8, 10)):
        conv.weight.data.copy_(state[f"features.{i}.weight"])
        conv.bias.data.copy_(state[f"features.{i}.bias"])
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x * 2 - 1, y * 2 - 1).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-4, atol=1e-7)


def test_lpips_invariants():
    write_alexnet_checkpoint()
    net = load_lpips("pretrained")
    image = as_tensor(make_rgb(64, 64))
    assert net(image, image).item() == 0.0
    values = [net(image, noisy(image, s)).item() for s in (0.02, 0.08, 0.3)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_lpips_offline_without_weights_says_which_parameter():
    with pytest.raises(WeightsUnavailableError, match="lpips_weights=PATH"):
        load_lpips("pretrained")


def test_frechet_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(30, 6, generator=g, dtype=torch.float64)
    f2 = torch.randn(25, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    mu1, mu2, s1, s2 = f1.mean(0).numpy(), f2.mean(0).numpy(), np.cov(f1.T.numpy()), np.cov(f2.T.numpy())
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-9)
    shifted = [frechet_distance(f1, f1 + d) for d in (0.1, 0.5, 2.0)]
    assert all(a < b for a, b in zip(shifted, shifted[1:]))


def test_art_fid_formula():
    assert art_fid(0.5, 10.0) == pytest.approx(16.5)
    assert art_fid(0.0, 0.0) == 1.0


def test_art_inception_from_the_hub_cache(hf_cache):
    write_art_inception(hf_cache)
    net = load_art_inception("pretrained")
    images = [torch.rand(1, 3, 80, 96), torch.rand(1, 3, 64, 64)]  # the 64 px one is upscaled to 75
    feats = inception_features(net, images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    reference = build_inception()
    reference.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(feats[0], reference(images[0])[0].double())


def test_art_inception_offline_without_weights(hf_cache):
    with pytest.raises(WeightsUnavailableError, match="inception_weights=PATH"):
        load_art_inception("pretrained")


def test_gram_judge_zero_on_the_style_and_grows():
    judge = GramJudge("vgg19", "random")
    style = as_tensor(make_stripes(64, 64))
    assert judge.distance(style, style) == pytest.approx(0.0, abs=1e-12)
    values = [judge.distance(noisy(style, s), style) for s in (0.05, 0.2, 0.5)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_judges_report_unavailable_and_still_measure():
    judges = Judges(judge_weights="pretrained")
    assert {"lpips_content", "gram_style"} <= set(judges.unavailable)
    out, content, style = as_tensor(make_rgb(48, 64)), as_tensor(make_rgb(48, 64, 1)), as_tensor(make_stripes(64, 64))
    values = judges.measure(out, content, style)
    assert values["lpips_content"] is None and values["gram_style"] is None
    assert values["ssim_content"] is not None and values["color_hist_style"] > 0
    assert "unavailable" in judges.describe()["lpips_content"]


def test_set_metrics_art_fid(hf_cache):
    write_alexnet_checkpoint()
    write_art_inception(hf_cache)
    judges = Judges(judge_weights="random")
    outputs = [as_tensor(make_rgb(80, 80, s)) for s in range(3)]
    contents = [as_tensor(make_rgb(80, 80, 10 + s)) for s in range(3)]
    styles = [as_tensor(make_stripes(80, 80)), as_tensor(make_rgb(80, 80, 7))]
    values = judges.set_metrics(outputs, contents, styles)
    assert values["fid"] > 0 and values["lpips_mean"] > 0
    assert values["art_fid"] == pytest.approx((1 + values["lpips_mean"]) * (1 + values["fid"]))
    assert judges.set_metrics(outputs[:1], contents[:1], styles)["fid"] is None  # one output: no FID
