"""CLIP backbones (random-init open_clip towers): hooks against manual forwards, ViT positional
interpolation, token/channel Grams by hand, checkpoint formats, fp32, in-place ReLUs, end to end."""

import copy
import json
import warnings

import pytest
import torch
from PIL import Image

from stylelab.backbones import create_backbone
from stylelab.backbones.clip import CLIP_MEAN, CLIP_STD
from stylelab.cli import main
from stylelab.errors import StylelabError, WeightsUnavailableError
from stylelab import transfer
from stylelab.backbones.base import Features
from stylelab.losses import GramLoss, TokenGramLoss


@pytest.fixture(scope="module")
def rn50():
    return create_backbone("clip-rn50", "random", seed=1)


@pytest.fixture(scope="module")
def vit():
    return create_backbone("clip-vit-b16", "random", seed=1)


def _normalize(image):
    return (image - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def _manual_rn50(visual, x):
    """The ModifiedResNet forward written out by hand, recording what each layer name means."""
    out = {}
    x = visual.act1(visual.bn1(visual.conv1(x)))
    out["relu1"] = x.clone()
    x = visual.act2(visual.bn2(visual.conv2(x)))
    out["relu2"] = x.clone()
    x = visual.act3(visual.bn3(visual.conv3(x)))
    out["relu3"] = x.clone()
    x = visual.avgpool(x)
    out["stem"] = x
    for k in range(1, 5):
        for i, block in enumerate(getattr(visual, f"layer{k}")):
            x = block(x)
            out[f"layer{k}.{i}"] = x
    return out


def test_rn50_hooks_equal_a_manual_forward(rn50):
    image = torch.rand(2, 3, 64, 64)
    names = ["relu1", "relu2", "relu3", "stem", "layer1.0", "layer1.1", "layer2.3", "layer3.0", "layer4.2"]
    hooked = rn50(image, names)
    with torch.no_grad():
        manual = _manual_rn50(rn50.visual, _normalize(image))
    for name in names:
        torch.testing.assert_close(hooked[name], manual[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("backbone", ["clip-rn50", "clip-vit-b16"])
def test_layer_listing_matches_feature_shapes(backbone, rn50, vit):
    net = rn50 if backbone == "clip-rn50" else vit
    image = torch.rand(1, 3, 64, 96)
    feats = net(image, net.layer_names)
    for info in net.layers:
        f = feats[info.name]
        if f.ndim == 4:
            assert f.shape[1] == info.channels and (64 // f.shape[2], 96 // f.shape[3]) == (info.stride,) * 2
        else:  # tokens (B, 1 + patches, D)
            assert f.shape == (1, 1 + (64 // info.stride) * (96 // info.stride), info.channels)
    assert len(rn50.layers) == 4 + 3 + 4 + 6 + 3 and len(vit.layers) == 12


def test_sequential_variant_drops_residuals(rn50):
    seq = create_backbone("clip-rn50-sequential", "random", seed=1)
    image = torch.rand(1, 3, 64, 64)
    names = ["relu1", "relu2", "relu3", "stem", "layer1.0", "layer2.0"]
    a, b = rn50(image, names), seq(image, names)
    for name in ["relu1", "relu2", "relu3", "stem"]:  # the stem has no residuals: identical
        torch.testing.assert_close(a[name], b[name])
    for name in ["layer1.0", "layer2.0"]:
        assert a[name].shape == b[name].shape
        assert (a[name] - b[name]).abs().mean() > 1e-3 * a[name].abs().mean()
    block = seq.visual.layer1[0]  # by hand: the bottleneck's main path, without its shortcut
    x = block.act1(block.bn1(block.conv1(b["stem"])))
    x = block.avgpool(block.act2(block.bn2(block.conv2(x))))
    main_path = block.act3(block.bn3(block.conv3(x)))
    torch.testing.assert_close(b["layer1.0"], main_path)


def test_truncating_the_sequential_variant_keeps_its_features_and_drops_the_rest():
    seq = create_backbone("clip-rn50-sequential", "random", seed=1)
    image = torch.rand(1, 3, 64, 64)
    names = ["relu3", "layer1.1"]
    before, count = seq(image, names), sum(p.numel() for p in seq.parameters())
    seq.truncate(names)
    after = seq(image, names)
    for name in names:
        torch.testing.assert_close(after[name], before[name])
    assert sum(p.numel() for p in seq.parameters()) < count / 10  # layer2..4 and the attention pool are gone
    assert len(seq.visual.layer1) == 2 and isinstance(seq.visual.layer2, torch.nn.Identity)
    with pytest.raises(StylelabError, match="truncated away"):
        seq(image, ["layer2.0"])


def test_vit_hooks_equal_the_towers_own_blocks_at_224(vit):
    image = torch.rand(1, 3, 224, 224)
    hooked = vit(image, ["block0", "block5", "block11"])
    with torch.no_grad():
        x = vit.visual._embeds(_normalize(image))  # open_clip's own embedding, no interpolation
        manual = {}
        for i, block in enumerate(vit.visual.transformer.resblocks):
            x = block(x)
            manual[f"block{i}"] = x
    assert hooked["block0"].shape == (1, 768, 14, 14) and hooked.prefix["block0"].shape == (1, 1, 768)
    for name in hooked:
        torch.testing.assert_close(hooked.tokens(name), manual[name], rtol=1e-4, atol=1e-4, msg=name)


def test_vit_positional_interpolation_is_identity_at_224(vit):
    x = _normalize(torch.rand(1, 3, 224, 224))
    with torch.no_grad():
        plain, interpolated = vit.embed(x), vit.embed(x, always_interpolate=True)
    torch.testing.assert_close(plain, interpolated, rtol=0, atol=1e-5)


def test_vit_other_sizes_and_bad_sizes(vit):
    feats = vit(torch.rand(1, 3, 80, 48), ["block2"])
    assert feats["block2"].shape == (1, 768, 5, 3) and feats.prefix["block2"].shape == (1, 1, 768)
    assert vit.positional_embedding((5, 3)).shape == (16, 768)
    with pytest.raises(StylelabError, match="multiples of 16"):
        vit(torch.rand(1, 3, 72, 48), ["block0"])


def test_channel_and_token_grams_by_hand():
    tokens = torch.randn(2, 5, 768, dtype=torch.float64)  # (B, 1 + 4 patches, D)
    patches = tokens[:, 1:, :]
    features = Features({"b": patches.transpose(1, 2).reshape(2, 768, 2, 2)}, prefix={"b": tokens[:, :1]})
    channel = torch.einsum("btc,btd->bcd", patches, patches) / 4  # Gram over channels / M patches
    torch.testing.assert_close(GramLoss().statistic(features, "b")[0], channel)
    token = torch.einsum("bsd,btd->bst", tokens, tokens)  # eq. 2.5: F·Fᵀ over all tokens, class token first
    seed, none = TokenGramLoss("seed"), TokenGramLoss("none")
    torch.testing.assert_close(seed.statistic(features, "b")[0], token / 768)
    torch.testing.assert_close(none.statistic(features, "b")[0], token)
    target = Features({"b": torch.randn(1, 768, 2, 2, dtype=torch.float64)},
                      prefix={"b": torch.randn(1, 1, 768, dtype=torch.float64)})
    seed_loss = seed.distance(seed.statistic(features, "b"), seed.statistic(target, "b"))
    none_loss = none.distance(none.statistic(features, "b"), none.statistic(target, "b"))
    torch.testing.assert_close(none_loss, seed_loss * 768**2)  # "removed the div": M² larger


def test_bad_vit_options():
    with pytest.raises(StylelabError, match="unknown gram 'pixel'; choose channel, token"):
        transfer(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), backbone="clip-vit-b16", weights="random",
                 gram="pixel")
    with pytest.raises(StylelabError, match="has no option gram"):
        create_backbone("clip-rn50", "random", gram="token")


def _whole_clip_state(visual, dtype=torch.float16):
    """A whole-CLIP state dict as OpenAI's files hold it: visual.* plus text-tower keys, in fp16."""
    state = {f"visual.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in visual.state_dict().items()}
    state.update({"token_embedding.weight": torch.zeros(4, 2, dtype=dtype), "logit_scale": torch.ones((), dtype=dtype)})
    return state


def _assert_loaded(net, source):
    for k, v in net.visual.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k  # fp16 files run in fp32 (the seed's GPU NaNs came from fp16)
            torch.testing.assert_close(v, source[k].float().to(v.dtype), rtol=0, atol=0)


def test_openai_state_dict_format_loads_as_fp32(tmp_path, rn50):
    path = tmp_path / "RN50.pt"
    torch.save(_whole_clip_state(rn50.visual), path)
    net = create_backbone("clip-rn50", str(path))
    _assert_loaded(net, {k: v.half() if v.is_floating_point() else v for k, v in rn50.visual.state_dict().items()})
    assert net(torch.rand(1, 3, 32, 32), ["layer1.0"])["layer1.0"].dtype == torch.float32


def test_openai_torchscript_archive_loads(tmp_path, rn50):
    class Whole(torch.nn.Module):  # OpenAI's RN50.pt is a TorchScript archive of the whole model
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            return self.visual.conv1(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Whole(copy.deepcopy(rn50.visual)), torch.rand(1, 3, 32, 32))
    torch.jit.save(traced, tmp_path / "RN50.pt")
    net = create_backbone("clip-rn50-sequential", str(tmp_path / "RN50.pt"))
    _assert_loaded(net, rn50.visual.state_dict())


def test_open_clip_checkpoint_formats_load(tmp_path, vit):
    from safetensors.torch import save_file

    state = {f"visual.{k}": v for k, v in vit.visual.state_dict().items()}
    save_file(state, tmp_path / "open_clip_model.safetensors")
    _assert_loaded(create_backbone("clip-vit-b16", str(tmp_path / "open_clip_model.safetensors")),
                   vit.visual.state_dict())
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "epoch_3.pt")
    _assert_loaded(create_backbone("clip-vit-b16", str(tmp_path / "epoch_3.pt")), vit.visual.state_dict())


def test_wrong_clip_checkpoints_are_explained(tmp_path, vit):
    torch.save(create_backbone("vgg19", "random").features.state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(StylelabError, match=r"not a CLIP checkpoint: expected keys like visual.layer1.0.conv1.weight"):
        create_backbone("clip-rn50", str(tmp_path / "vgg.pth"))
    torch.save({f"visual.{k}": v for k, v in vit.visual.state_dict().items()}, tmp_path / "vit.pt")
    with pytest.raises(StylelabError, match="not a CLIP RN50 checkpoint"):
        create_backbone("clip-rn50", str(tmp_path / "vit.pt"))


def test_pretrained_offline_is_a_clear_error():
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("clip-rn50", "pretrained")
    message = str(info.value)
    assert "timm/resnet50_clip.openai" in message and "not cached" in message and "weights=PATH" in message


def test_pretrained_loads_from_the_hugging_face_cache(tmp_path, monkeypatch, rn50):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--resnet50_clip.openai" / "refs" / "main").write_text("0123abc")
    torch.save({f"visual.{k}": v for k, v in rn50.visual.state_dict().items()},
               snapshot / "open_clip_pytorch_model.bin")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    net = create_backbone("clip-rn50", "pretrained")
    assert net.weights_source.startswith("pretrained (open_clip RN50 openai")
    _assert_loaded(net, rn50.visual.state_dict())


def test_inplace_relus_do_not_corrupt_hooked_gradients(rn50):
    """The tower keeps open_clip's in-place ReLUs; gradients through hooks match a copy without them."""
    assert any(isinstance(m, torch.nn.ReLU) and m.inplace for m in rn50.visual.modules())
    safe = copy.deepcopy(rn50)
    for m in safe.visual.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    names = ["relu1", "relu2", "relu3", "stem", "layer1.0", "layer2.1"]
    grads = []
    for net in (rn50, safe):
        image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        feats = net(image, names)
        sum(f.pow(2).mean() for f in feats.values()).backward()
        grads.append((image.grad, {n: f.detach() for n, f in feats.items()}))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for n in names:
        torch.testing.assert_close(grads[0][1][n], grads[1][1][n])


@pytest.mark.parametrize("backbone, extra", [
    ("clip-rn50", []),
    ("clip-rn50-sequential", []),
    ("clip-vit-b16", ["--content-weight", "0.01", "--iterations", "60"]),
    ("clip-vit-b16", ["--gram", "token", "--gram-norm", "none", "--style-weight", "1e-3", "--content-weight", "0"]),
    ("clip-rn50", ["--feature-transform", "softmax"]),
])
def test_cli_end_to_end_loss_falls_tenfold(capsys, tmp_path, content_path, style_path, backbone, extra):
    out, trace = tmp_path / "out.png", tmp_path / "trace.json"
    code = main([str(a) for a in ["transfer", content_path, style_path, "-o", out, "--backbone", backbone,
                                  "--weights", "random", "--size", "64", "--iterations", "30", "--device", "cpu",
                                  "--trace", trace, "--quiet", *extra]])
    assert code == 0, capsys.readouterr().err
    records = json.loads(trace.read_text())["iterations"]
    assert records[0]["loss"] / records[-1]["loss"] >= 10
    with Image.open(out) as img:
        assert img.size == (64, 48)


def test_vit_defaults_round_sizes_and_apply_tv(content_path, style_path):
    from stylelab import transfer

    vit = transfer(content_path, style_path, backbone="clip-vit-b16", weights="random", size=72, iterations=2,
                   device="cpu")
    assert vit.loss.tv_weight == 1.0 and vit.image.shape[-2:] == (48, 64)  # 72x54 rounded to multiples of 16
    vgg = transfer(content_path, style_path, weights="random", size=72, iterations=2, device="cpu")
    assert vgg.loss.tv_weight == 0.0 and vgg.image.shape[-2:] == (54, 72)
