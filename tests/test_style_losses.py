"""Style losses as parts (issue 12): each statistic against an independent computation (float64 by hand, scipy),
gradients, blending, masks, the automatic balance's invariance, and the CLI's --style-loss / --balance."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from conftest import make_rgb, make_stripes
from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.backbones.base import Features
from stylelab.cli import main
from stylelab.images import pil_to_tensor
from stylelab.losses import (
    STYLE_LOSSES, GramLoss, MeanCovLoss, SlicedWassersteinLoss, create_style_loss, gaussian_wasserstein2,
    mean_covariance, sliced_wasserstein, sorted_projections,
)
from stylelab.optimize import LossSpec, StyleObjective


def features(b=2, c=5, h=3, w=4, seed=0) -> Features:
    g = torch.Generator().manual_seed(seed)
    return Features({"l": torch.randn(b, c, h, w, generator=g, dtype=torch.float64)})


# -- each statistic against an independent computation ---------------------------------------------------------


def test_gram_loss_is_eq_2_3_by_hand():
    x, s = features(), features(b=1, seed=1)
    loss = GramLoss()
    got = loss.distance(loss.statistic(x, "l"), loss.statistic(s, "l"))
    f, a = x["l"].flatten(2).numpy(), s["l"].flatten(2).numpy()[0]
    n, m = f.shape[1], f.shape[2]
    for b in range(2):
        by_hand = ((f[b] @ f[b].T - a @ a.T) ** 2).sum() / (4 * n**2 * m**2)  # eq. 2.3 with equal M
        assert got[b].item() == pytest.approx(by_hand, rel=1e-12)


def test_mean_covariance_is_numpys():
    x = features()
    mean, cov = mean_covariance(x["l"].flatten(2))
    for b in range(2):
        samples = x["l"][b].flatten(1).numpy()  # (N, M): variables × observations
        np.testing.assert_allclose(mean[b].numpy(), samples.mean(1), rtol=1e-12)
        np.testing.assert_allclose(cov[b].numpy(), np.cov(samples, bias=True), rtol=1e-10, atol=1e-12)
    weights = torch.rand(1, 12, dtype=torch.float64)
    w_mean, w_cov = mean_covariance(x["l"].flatten(2), weights)
    samples, wn = x["l"][0].flatten(1).numpy(), weights[0].numpy()
    np.testing.assert_allclose(w_cov[0].numpy(), np.cov(samples, aweights=wn, bias=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w_mean[0].numpy(), (samples * wn).sum(1) / wn.sum(), rtol=1e-12)


def test_gaussian_w2_matches_scipy_sqrtm():
    x, s = features(c=6, h=4, w=5), features(b=1, c=6, h=4, w=5, seed=3)
    loss = MeanCovLoss()
    target = loss.prepare(loss.statistic(s, "l"))
    got = loss.distance(loss.statistic(x, "l"), target)
    (m2, c2) = (t[0].numpy() for t in mean_covariance(s["l"].flatten(2)))
    root2 = scipy.linalg.sqrtm(c2).real
    for b in range(2):
        m1, c1 = (t[b].numpy() for t in mean_covariance(x["l"].flatten(2)))
        cross = scipy.linalg.sqrtm(root2 @ c1 @ root2).real
        w2 = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * cross)
        assert got[b].item() == pytest.approx(w2 / 6, rel=1e-8)  # divided by N = 6 channels
    same = loss.distance(loss.statistic(s, "l"), target)
    assert abs(same.item()) < 1e-10  # a Gaussian is at distance 0 from itself


def test_mean_cov_blend_is_the_mixture():
    """Two styles blended 50/50 give the mean and covariance of their pooled feature vectors."""
    a, b = features(b=1, seed=4), features(b=1, seed=5)
    loss = MeanCovLoss()
    mean, cov = loss.blend([loss.statistic(a, "l"), loss.statistic(b, "l")], [0.5, 0.5])
    pooled = torch.cat([a["l"].flatten(2), b["l"].flatten(2)], -1)
    p_mean, p_cov = mean_covariance(pooled)
    torch.testing.assert_close(mean, p_mean)
    torch.testing.assert_close(cov, p_cov)


def test_sliced_wasserstein_by_hand():
    x, s = features(c=4), features(b=1, c=4, h=5, w=4, seed=6)  # the style has 20 positions, the image 12
    loss = SlicedWassersteinLoss(seed=7)
    directions = loss.directions("l", 4, torch.device("cpu"), torch.float64)
    torch.testing.assert_close(directions.norm(dim=0), torch.ones(4, dtype=torch.float64))
    got = loss.distance(loss.statistic(x, "l"), loss.statistic(s, "l"))
    d = directions.numpy()
    style = np.sort(d.T @ s["l"][0].flatten(1).numpy(), axis=1)  # (K, 20) quantiles of each projection
    levels = np.linspace(0, 1, 12)
    for b in range(2):
        mine = np.sort(d.T @ x["l"][b].flatten(1).numpy(), axis=1)  # (K, 12)
        theirs = np.stack([np.interp(levels, np.linspace(0, 1, 20), row) for row in style])
        assert got[b].item() == pytest.approx(((mine - theirs) ** 2).mean(), rel=1e-10)
    torch.testing.assert_close(got, sliced_wasserstein(x["l"].flatten(2), directions,
                                                       sorted_projections(s["l"].flatten(2), directions)))


def test_sliced_wasserstein_directions_are_seeded_per_layer():
    one, two = SlicedWassersteinLoss(seed=1), SlicedWassersteinLoss(seed=1)
    cpu = torch.device("cpu")
    assert torch.equal(one.directions("a", 8, cpu, torch.float32), two.directions("a", 8, cpu, torch.float32))
    assert not torch.equal(one.directions("a", 8, cpu, torch.float32), one.directions("b", 8, cpu, torch.float32))
    assert not torch.equal(one.directions("a", 8, cpu, torch.float32),
                           SlicedWassersteinLoss(seed=2).directions("a", 8, cpu, torch.float32))


@pytest.mark.parametrize("name", [n for n in STYLE_LOSSES if n != "token-gram"])
def test_gradients_are_right(name):
    loss = create_style_loss(name, seed=0)
    target = loss.prepare(loss.statistic(features(b=1, c=3, h=2, w=3, seed=8), "l"))
    maps = features(b=1, c=3, h=2, w=3)["l"].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: loss.distance(loss.statistic(Features({"l": m}), "l"), target),
                                    (maps,), eps=1e-6, atol=1e-5)


def test_unknown_style_loss_lists_the_valid_ones():
    from stylelab.errors import StylelabError

    with pytest.raises(StylelabError, match="unknown style loss 'l1'; choose gram, token-gram, mean-cov, "
                                            "sliced-wasserstein"):
        create_style_loss("l1")


# -- the automatic balance --------------------------------------------------------------------------------------


class Rescaled(nn.Module):
    """A backbone whose features at ``layer`` are multiplied by ``k``: what another network's scale looks like."""

    def __init__(self, net, layer: str, k: float):
        super().__init__()
        self.net, self.layer, self.k = net, layer, k

    def forward(self, image, names):
        out = self.net(image, names)
        return Features({n: f * self.k if n == self.layer else f for n, f in out.items()}, out.prefix)


@pytest.fixture(scope="module")
def vgg64():
    return create_backbone("vgg19", "random").double()


@pytest.mark.parametrize("name", [n for n in STYLE_LOSSES if n != "token-gram"])
@pytest.mark.parametrize("k", [1e-3, 1e3])
def test_auto_balance_is_invariant_to_a_layers_scale(vgg64, name, k):
    content = pil_to_tensor(make_rgb(32, 32)).double()
    style = pil_to_tensor(make_stripes(32, 32)).double()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layers = {"content": {"relu2_2": 1.0}, "style": {"relu1_1": 1.0, "relu2_1": 1.0}}
    losses = {}
    for balance in ("auto", "none"):
        spec = LossSpec(layers["content"], layers["style"], 1.0, 10.0, style_loss=name, balance=balance)
        plain = StyleObjective(vgg64, content, [style], [1.0], spec)(x)[0]
        for layer in ("relu2_2", "relu2_1"):  # a content layer and a style layer
            rescaled = StyleObjective(Rescaled(vgg64, layer, k), content, [style], [1.0], spec)(x)[0]
            losses[balance, layer] = (plain.item(), rescaled.item())
    for layer in ("relu2_2", "relu2_1"):
        before, after = losses["auto", layer]
        assert after == pytest.approx(before, rel=1e-9), layer
        before, after = losses["none", layer]
        assert after != pytest.approx(before, rel=1e-2), layer  # without the balance the scale shows


@functools.lru_cache(maxsize=None)
def _random_backbone(name: str):
    return create_backbone(name, "random")


@pytest.mark.parametrize("backbone", ["vgg19", "vgg16", "clip-rn50", "clip-rn50-sequential", "clip-vit-b16",
                                      "resnet50", "timm:resnet18", "timm:convnext_atto", "timm:vit_tiny_patch16_224",
                                      "open_clip:RN50"])
@pytest.mark.parametrize("name", [n for n in STYLE_LOSSES if n != "token-gram"])
def test_auto_balance_puts_every_style_layer_on_one_scale(backbone, name):
    """At the first evaluation (from the content) each style layer's weighted share is within 10x of the others."""
    net = _random_backbone(backbone)
    content_layers, style_layers = resolve_layers(net, None, None, balance="auto")
    spec = LossSpec(content_layers, style_layers, 1.0, 10.0, style_loss=name, balance="auto")
    content = pil_to_tensor(make_rgb(64, 64))
    style = pil_to_tensor(make_stripes(64, 64))
    objective = StyleObjective(net, content, [style], [1.0], spec)
    parts = objective(content)[1][0]
    shares = [style_layers[n] * parts[objective.term_names.index(f"style:{n}")].item() for n in style_layers]
    assert max(shares) <= 10 * min(shares), dict(zip(style_layers, shares))


# -- through the command line -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STYLE_LOSSES))
def test_every_style_loss_runs_from_the_cli_and_falls(capsys, tmp_path, content_path, style_path, name):
    backbone = "clip-vit-b16" if name == "token-gram" else "vgg19"
    trace = tmp_path / "trace.json"
    code = main(["transfer", str(content_path), str(style_path), "-o", str(tmp_path / "out.png"), "--weights",
                 "random", "--size", "48", "--iterations", "20", "--device", "cpu", "--backbone", backbone,
                 "--style-loss", name, "--balance", "auto", "--trace", str(trace)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(trace.read_text())
    assert data["style_loss"] == name and data["balance"] == "auto"
    records = data["iterations"]
    assert records[-1]["style"] < 0.5 * records[0]["style"], (records[0]["style"], records[-1]["style"])


def test_masks_need_a_positional_statistic(capsys, tmp_path, content_path, style_path):
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("RGB", (64, 48), "white").save(mask)
    argv = ["transfer", str(content_path), str(style_path), "-o", str(tmp_path / "out.png"), "--weights", "random",
            "--size", "32", "--iterations", "2", "--mask", str(mask)]
    assert main(argv + ["--style-loss", "mean-cov"]) == 0
    capsys.readouterr()
    assert main(argv + ["--style-loss", "sliced-wasserstein"]) == 2
    err = capsys.readouterr().err
    assert "--style-loss sliced-wasserstein has no image positions to mask" in err and "Traceback" not in err
