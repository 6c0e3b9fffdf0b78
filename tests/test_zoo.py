"""The zoo (issue 12, part 2): timm:NAME, open_clip:ARCH[:TAG], torchvision's vgg16 and resnet50. Random-init
models at 42–96 px: layer tables against the features' shapes, features against each library's own computation,
prefix tokens, gradients, truncation, the default-layer rule, checkpoints in the official formats (written by the
tests, never downloaded), offline failures, the CLI, and two end-to-end transfers."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from stylelab.backbones import create_backbone, get_entry, search_backbones
from stylelab.backbones.base import LayerInfo
from stylelab.backbones.vgg import CAFFE_MEAN_BGR, VGG16_LAYERS, conv_index
from stylelab.backbones.zoo import default_layers
from stylelab.cli import main
from stylelab.errors import StylelabError, WeightsUnavailableError
from stylelab.weights import hub_checkpoint_dir

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

# name -> (test image size (multiples of the deepest stride, so every map is exact), prefix tokens or None)
ZOO = {
    "timm:resnet18": ((64, 96), None),
    "timm:convnext_atto": ((64, 96), None),
    "timm:efficientnet_b0": ((64, 96), None),
    "timm:vit_tiny_patch16_224": ((48, 64), 1),
    "timm:vit_small_patch14_dinov2": ((42, 56), 1),
    "timm:vit_small_patch14_reg4_dinov2": ((42, 56), 5),  # class token + 4 registers
    "open_clip:RN50": ((64, 96), None),
    "open_clip:ViT-B-32": ((64, 96), 1),
    "vgg16": ((64, 96), None),
    "resnet50": ((64, 96), None),
}

_built: dict[str, torch.nn.Module] = {}


def zoo_model(name: str):
    """One random-init model per name for the whole file (building is the slow part); tests must not truncate it."""
    if name not in _built:
        _built[name] = create_backbone(name, "random", seed=0)
    return _built[name]


def normalized(image, mean, std):
    return (image - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# -- layers, shapes, prefix tokens, gradients ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ZOO))
def test_layers_match_features_and_gradients_reach_the_image(name):
    (height, width), prefix_tokens = ZOO[name]
    net = zoo_model(name)
    assert net.name == name and net.weights_source == "random init (seed 0)"
    assert net.default_balance == "auto" and not net.training
    assert not any(p.requires_grad for p in net.parameters()) and all(
        p.dtype == torch.float32 for p in net.parameters())
    assert set(net.default_content_layers) <= set(net.layer_names)
    assert set(net.default_style_layers) <= set(net.layer_names) and net.default_style_layers
    image = torch.rand(2, 3, height, width, requires_grad=True)
    features = net(image, net.layer_names)
    for info in net.layers:
        assert info.channels > 0 and info.stride >= 1 and info.module
        assert features[info.name].shape == (2, info.channels, height // info.stride, width // info.stride), info
        if prefix_tokens is None:
            assert info.name not in features.prefix
        else:
            assert features.prefix[info.name].shape == (2, prefix_tokens, info.channels)
            grid_tokens = (height // info.stride) * (width // info.stride)
            assert features.tokens(info.name).shape[1] == prefix_tokens + grid_tokens
    sum(f.square().mean() for f in features.values()).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:convnext_atto", "open_clip:RN50", "resnet50"])
def test_any_size_is_rounded_as_the_architecture_rounds(name):
    net = zoo_model(name)
    features = net(torch.rand(1, 3, 50, 70), net.layer_names)
    for info in net.layers:
        h, w = features[info.name].shape[-2:]
        assert math.floor(50 / info.stride) <= h <= math.ceil(50 / info.stride), info
        assert math.floor(70 / info.stride) <= w <= math.ceil(70 / info.stride), info


def test_token_models_need_multiples_of_the_patch():
    net = zoo_model("timm:vit_tiny_patch16_224")
    assert net.input_multiple == 16 and zoo_model("timm:vit_small_patch14_dinov2").input_multiple == 14
    with pytest.raises(StylelabError, match="multiples of 16"):
        net(torch.rand(1, 3, 40, 48), ["blocks.0"])


def test_a_model_built_for_one_size_says_so_in_one_line():
    net = create_backbone("timm:levit_128s", "random")  # LeViT's attention biases are made for 224 px
    assert net(torch.rand(1, 3, 224, 224), ["stages.0"])["stages.0"].shape == (1, 128, 14, 14)
    with pytest.raises(StylelabError, match=r"timm:levit_128s cannot read a 64×64 image \(.*size.*\)"):
        net(torch.rand(1, 3, 64, 64), ["stages.0"])


# -- features against each library's own computation ------------------------------------------------------------


def _hooked(model, modules, run):
    """Outputs of ``modules`` (paths) while ``run()`` runs the model's own forward."""
    out, handles = {}, []
    for path in modules:
        handles.append(model.get_submodule(path).register_forward_hook(
            lambda m, i, o, path=path: out.__setitem__(path, o.clone())))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return out


@pytest.mark.parametrize("name", [n for n in ZOO if n.startswith("timm:")])
def test_timm_features_equal_hooks_on_the_models_own_forward(name):
    import timm
    from timm.data import resolve_data_config

    (height, width), prefix_tokens = ZOO[name]
    net = zoo_model(name)
    model_name = name.removeprefix("timm:")
    size_free = {"dynamic_img_size": True} if prefix_tokens else {}
    reference = timm.create_model(model_name, num_classes=0, **size_free).eval()
    reference.load_state_dict(net.model.state_dict())
    config = resolve_data_config({}, model=reference)  # timm's own reading of the input convention
    image = torch.rand(2, 3, height, width)
    x = normalized(image, config["mean"], config["std"])
    hooked = _hooked(reference, [info.module for info in net.layers], lambda: reference.forward_features(x))
    with torch.no_grad():
        features = net(image, net.layer_names)
    for info in net.layers:
        expected = hooked[info.module]
        if prefix_tokens:  # tokens (B, P + h·w, C): the prefix, then the grid row-major
            grid = expected[:, prefix_tokens:].transpose(1, 2).reshape(features[info.name].shape)
            torch.testing.assert_close(features.prefix[info.name], expected[:, :prefix_tokens], msg=info.name)
            expected = grid
        torch.testing.assert_close(features[info.name], expected, rtol=1e-4, atol=1e-5, msg=info.name)


def _stop_after(model, path):
    class Stop(Exception):
        pass

    def hook(*args):
        raise Stop

    def run(call):
        handle = model.get_submodule(path).register_forward_hook(hook)
        try:
            call()
        except Stop:
            pass
        finally:
            handle.remove()

    return run


def test_open_clip_rn50_features_equal_hooks_on_the_towers_own_forward():
    net = zoo_model("open_clip:RN50")
    image = torch.rand(2, 3, 64, 96)
    x = normalized(image, CLIP_MEAN, CLIP_STD)
    modules = [info.module for info in net.layers]
    assert modules == ["avgpool", "layer1", "layer2", "layer3", "layer4"]
    # The tower's own forward, stopped before its attention pool (fixed to 224 px) runs.
    stop = _stop_after(net.model, "layer4")
    hooked = _hooked(net.model, modules, lambda: stop(lambda: net.model(x)))
    with torch.no_grad():
        features = net(image, net.layer_names)
    for info in net.layers:
        torch.testing.assert_close(features[info.name], hooked[info.module], rtol=1e-4, atol=1e-5, msg=info.name)


@pytest.mark.parametrize("size", [(224, 224), (64, 96)])
def test_open_clip_vit_features_equal_the_towers_own_forward(size):
    """At 224 px the tower's own forward as built; off its grid, a tower built for that grid with its positional
    embedding resized by open_clip's own resize_pos_embed."""
    import types

    import open_clip
    from open_clip.model import _build_vision_tower, resize_pos_embed

    net = zoo_model("open_clip:ViT-B-32")
    reference = net.model
    if size != (224, 224):
        cfg = open_clip.get_model_config("ViT-B-32")
        vision = dict(cfg["vision_cfg"], image_size=size)
        reference = _build_vision_tower(cfg["embed_dim"], vision, quick_gelu=True).eval()
        state = {f"visual.{k}": v for k, v in net.model.state_dict().items()}
        resize_pos_embed(state, types.SimpleNamespace(visual=reference))
        reference.load_state_dict({k.removeprefix("visual."): v for k, v in state.items()})
    image = torch.rand(1, 3, *size)
    modules = [info.module for info in net.layers]
    hooked = _hooked(reference, modules, lambda: reference(normalized(image, CLIP_MEAN, CLIP_STD)))
    with torch.no_grad():
        features = net(image, net.layer_names)
    for info in net.layers:
        tokens = hooked[info.module]  # (B, 1 + h·w, C), batch first
        grid = tokens[:, 1:].transpose(1, 2).reshape(1, info.channels, size[0] // 32, size[1] // 32)
        torch.testing.assert_close(features[info.name], grid, rtol=1e-4, atol=1e-4, msg=info.name)
        torch.testing.assert_close(features.prefix[info.name], tokens[:, :1], rtol=1e-4, atol=1e-4)


def test_open_clip_quick_gelu_follows_the_tag():
    from open_clip.transformer import QuickGELU

    openai = zoo_model("open_clip:ViT-B-32")  # the default tag is openai, trained with QuickGELU
    assert any(isinstance(m, QuickGELU) for m in openai.modules())
    laion = create_backbone("open_clip:ViT-B-32:laion2b_s34b_b79k", "random")
    assert not any(isinstance(m, QuickGELU) for m in laion.modules())


def test_torchvision_resnet50_features_equal_torchvisions_feature_extractor():
    from torchvision.models.feature_extraction import create_feature_extractor

    net = zoo_model("resnet50")
    reference = torchvision.models.resnet50(weights=None).eval()
    reference.load_state_dict(net.model.state_dict())
    extractor = create_feature_extractor(reference, return_nodes=net.layer_names)
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected, features = extractor(normalized(image, IMAGENET_MEAN, IMAGENET_STD)), net(image, net.layer_names)
    for name in net.layer_names:
        torch.testing.assert_close(features[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_vgg16_features_equal_torchvisions_vgg16():
    net = zoo_model("vgg16")
    reference = torchvision.models.vgg16(weights=None).features.eval()
    reference.load_state_dict(net.features.state_dict())
    image = torch.rand(1, 3, 64, 96)
    x = normalized(image, IMAGENET_MEAN, IMAGENET_STD)
    index = {n: i for n, i, _, _ in VGG16_LAYERS}
    features = net(image, ["conv1_1", "relu2_2", "relu4_2", "pool5"])
    with torch.no_grad():
        for name in features:
            torch.testing.assert_close(features[name], reference[: index[name] + 1](x.clone()), rtol=1e-5, atol=1e-5)
    assert net.default_style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert list(net.default_content_layers) == ["relu4_2"] and len(net.layers) == 13 * 2 + 5


# -- truncation and seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:vit_tiny_patch16_224", "open_clip:RN50",
                                  "open_clip:ViT-B-32", "resnet50"])
def test_truncate_drops_deeper_modules_and_keeps_the_features(name):
    net = create_backbone(name, "random", seed=0)
    (height, width), _ = ZOO[name]
    image = torch.rand(1, 3, height, width)
    names = [*net.default_style_layers, *net.default_content_layers]
    with torch.no_grad():
        before = net(image, names)
    parameters = sum(p.numel() for p in net.parameters())
    net.truncate(names)
    assert sum(p.numel() for p in net.parameters()) < parameters
    with torch.no_grad():
        after = net(image, names)
    for layer in names:
        torch.testing.assert_close(after[layer], before[layer])
    with pytest.raises(StylelabError, match="truncated"):
        net(image, [net.layer_names[-1]])


@pytest.mark.parametrize("name", ["timm:convnext_atto", "open_clip:RN50"])
def test_random_weights_come_from_the_seed_and_leave_the_global_generator_alone(name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = create_backbone(name, "random", seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, c = create_backbone(name, "random", seed=1), create_backbone(name, "random", seed=2)
    first = next(iter(a.model.state_dict()))
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert not torch.equal(a.model.state_dict()[first], c.model.state_dict()[first])


# -- the default-layer rule ----------------------------------------------------------------------------------------


def _table(strides):
    return [LayerInfo(f"l{i}", 8, s, f"m{i}") for i, s in enumerate(strides)]


@pytest.mark.parametrize("strides, content, style", [
    ([2, 4, 8, 16, 32], "l2", ("l0", "l1", "l2", "l3")),  # timm ResNet: one layer per stage; stride 32 is too deep
    ([4, 8, 16, 32], "l1", ("l0", "l1", "l2")),  # ConvNeXt
    ([2, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32], "l8", ("l0", "l1", "l4", "l8")),  # ResNet-50
    ([1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16], "l6", ("l0", "l2", "l4", "l7", "l10")),  # the first of each stage
    ([16] * 12, "l5", ("l0", "l1", "l2", "l3", "l4")),  # a 12-block ViT: the seed's CLIP ViT-B/16 choice
    ([14] * 6, "l2", ("l0", "l1", "l2")),  # a 6-block ViT: ⌈0.4·6⌉ = 3 blocks
    ([32, 64], "l0", ("l0",)),  # nothing at stride ≤ 16: the shallowest layer
])
def test_default_layer_rule(strides, content, style):
    assert default_layers(_table(strides)) == (content, style)


# -- names, the CLI --------------------------------------------------------------------------------------------


def test_names_and_suggestions():
    assert get_entry("timm:resnet18").name == "timm:resnet18"
    assert get_entry("timm:convnext_atto.d2_in1k").options == []  # NAME.TAG
    assert get_entry("open_clip:RN50:yfcc15m").options == []
    with pytest.raises(StylelabError, match=r"timm has no model 'convnxt_atto'; did you mean convnext_atto"):
        get_entry("timm:convnxt_atto")
    with pytest.raises(StylelabError, match=r"open_clip has no model 'ViT-B-33'; did you mean ViT-B-32"):
        get_entry("open_clip:ViT-B-33")
    with pytest.raises(StylelabError, match=r"ViT-B-32 has no pretrained tag 'nope'; its tags: openai, "):
        get_entry("open_clip:ViT-B-32:nope")
    with pytest.raises(StylelabError, match=r"available: clip-rn50, .*resnet50, vgg16, vgg19, open_clip:ARCH\[:TAG\], "
                                            r"timm:NAME$"):
        get_entry("alexnet")
    with pytest.raises(StylelabError, match="has no option pooling"):
        create_backbone("timm:resnet18", "random", pooling="avg")
    found = search_backbones("ConvNeXt_At")
    assert "timm:convnext_atto" in found and all("convnext_at" in n.lower() for n in found)


def test_cli_layers_of_a_timm_model(capsys):
    assert main(["layers", "timm:convnext_atto"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("stages.")]
    assert rows == [["stages.0", "40", "4", "stages.0"], ["stages.1", "80", "8", "stages.1"],
                    ["stages.2", "160", "16", "stages.2"], ["stages.3", "320", "32", "stages.3"]]
    assert "# default style layers: stages.0:" in out and "# default content layers: stages.1" in out


def test_cli_backbones_explains_and_searches(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for text in ("vgg19", "vgg16", "resnet50", "clip-rn50", "timm:NAME", "open_clip:ARCH[:TAG]", "--search"):
        assert text in out
    assert main(["backbones", "--search", "convnext"]) == 0
    names = capsys.readouterr().out.split()
    assert {"timm:convnext_atto", "timm:convnext_tiny", "open_clip:convnext_base:laion400m_s13b_b51k"} <= set(names)
    assert all("convnext" in n.lower() for n in names)
    assert main(["backbones", "--search", "no-such-model"]) == 1


def test_cli_unknown_model_is_one_line(capsys):
    assert main(["layers", "timm:resnet1800"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean resnet18" in err


# -- checkpoints in the official formats ------------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "hf"


def write_hf_file(cache, repo: str, filename: str, state: dict) -> None:
    """``state`` as ``filename`` of ``repo`` in the Hugging Face hub cache layout."""
    folder = cache / ("models--" + repo.strip("/").replace("/", "--"))
    (folder / "snapshots" / "abc123").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("abc123")
    path = folder / "snapshots" / "abc123" / filename
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


def _same_features(a, b, size=(64, 96), names=None):
    image = torch.rand(1, 3, *size)
    names = names or a.layer_names
    with torch.no_grad():
        fa, fb = a(image, names), b(image, names)
    for name in names:
        torch.testing.assert_close(fa[name], fb[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_timm_pretrained_from_the_hub_cache(hf_cache, filename):
    import timm

    reference = timm.create_model("convnext_atto", num_classes=1000)  # the file has the classifier: ignored
    torch.nn.init.normal_(reference.stem[0].weight)
    write_hf_file(hf_cache, "timm/convnext_atto.d2_in1k", filename, reference.state_dict())
    net = create_backbone("timm:convnext_atto", "pretrained")
    assert net.weights_source == "pretrained (timm convnext_atto.d2_in1k, timm/convnext_atto.d2_in1k)"
    assert torch.equal(net.model.stem[0].weight, reference.stem[0].weight)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in net.model.state_dict().items())


def test_timm_vit_checkpoint_path_goes_through_the_families_filter(tmp_path, monkeypatch):
    import timm.models.vision_transformer as vit

    source = zoo_model("timm:vit_tiny_patch16_224")
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": dict(source.model.state_dict())}, path)
    calls = []
    real = vit.checkpoint_filter_fn
    monkeypatch.setattr(vit, "checkpoint_filter_fn", lambda state, model: calls.append(1) or real(state, model))
    loaded = create_backbone("timm:vit_tiny_patch16_224", str(path))
    assert calls and loaded.weights_source == f"checkpoint {path}"
    _same_features(loaded, source, (48, 64), ["blocks.0", "blocks.11"])


def test_timm_wrong_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(StylelabError, match=rf"weights={path} is not a timm resnet18 checkpoint: .* missing"):
        create_backbone("timm:resnet18", str(path))


def test_open_clip_checkpoint_with_visual_keys(tmp_path):
    source = zoo_model("open_clip:RN50")
    path = tmp_path / "rn50-clip.pt"
    state = {f"visual.{k}": v for k, v in source.model.state_dict().items()}
    state["token_embedding.weight"] = torch.zeros(4, 2)  # the text tower: ignored
    torch.save(state, path)
    loaded = create_backbone("open_clip:RN50", str(path))
    assert loaded.weights_source == f"checkpoint {path}"
    _same_features(loaded, source)


def test_open_clip_pretrained_from_the_hub_cache(hf_cache):
    import open_clip

    source = zoo_model("open_clip:RN50")
    repo = open_clip.get_pretrained_cfg("RN50", "openai")["hf_hub"]
    write_hf_file(hf_cache, repo, "open_clip_model.safetensors",
                  {f"visual.{k}": v for k, v in source.model.state_dict().items()})
    loaded = create_backbone("open_clip:RN50", "pretrained")
    assert loaded.weights_source.startswith("pretrained (open_clip RN50 openai")
    _same_features(loaded, source, names=["stem", "layer2"])


def test_vgg16_torchvision_and_caffe_checkpoints(tmp_path):
    source = zoo_model("vgg16")
    torchvision_format = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    torchvision_format["classifier.0.weight"] = torch.zeros(2, 2)  # the real file has the classifier: ignored
    torch.save(torchvision_format, tmp_path / "vgg16-tv.pth")
    loaded = create_backbone("vgg16", str(tmp_path / "vgg16-tv.pth"))
    assert loaded.input_format == "torchvision" and "torchvision format" in loaded.weights_source
    _same_features(loaded, source, names=["relu1_1", "relu5_3"])

    convs = conv_index(VGG16_LAYERS)
    assert list(convs)[-1] == "conv5_3" and len(convs) == 13
    caffe = {f"{name}.{p}": source.features[i].state_dict()[p] for name, i in convs.items() for p in ("weight", "bias")}
    torch.save(caffe, tmp_path / "vgg16-caffe.pth")
    loaded = create_backbone("vgg16", str(tmp_path / "vgg16-caffe.pth"))
    assert loaded.input_format == "caffe" and "Caffe format" in loaded.weights_source
    image = torch.rand(1, 3, 32, 32)
    bgr = image[:, [2, 1, 0]] * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, ["relu1_2"])["relu1_2"], source.features[:4](bgr), rtol=1e-5,
                                   atol=1e-4)


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_robust_resnet50_checkpoint(tmp_path, wrapper):
    """The robustness library's layout: the model, an attacker's copy and the input normalizer, under module.*"""
    source = zoo_model("resnet50")
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    state = {}
    for k, v in source.model.state_dict().items():
        state[f"module.model.{k}"] = v
        state[f"module.attacker.model.{k}"] = torch.zeros_like(v)  # must not be the one loaded
    state.update({"module.normalizer.new_mean": mean, "module.normalizer.new_std": std,
                  "module.attacker.normalizer.new_mean": mean, "module.attacker.normalizer.new_std": std})
    torch.save({wrapper: state, "epoch": 90}, tmp_path / "robust.pt")
    loaded = create_backbone("resnet50", str(tmp_path / "robust.pt"))
    assert "robustness format" in loaded.weights_source
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        # The normalizer's mean/std, not ImageNet's: same as the source network fed the re-normalized image.
        renormalized = normalized(image, mean.flatten().tolist(), std.flatten().tolist())
        expected = source(renormalized * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
                          + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), ["layer2.0"])["layer2.0"]
        torch.testing.assert_close(loaded(image, ["layer2.0"])["layer2.0"], expected, rtol=1e-4, atol=1e-4)


def test_resnet50_torchvision_pretrained_from_the_hub_cache():
    source = zoo_model("resnet50")
    cache = hub_checkpoint_dir()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(source.model.state_dict(), cache / "resnet50-0676ba61.pth")
    loaded = create_backbone("resnet50", "pretrained")
    assert loaded.weights_source == "pretrained (torchvision IMAGENET1K_V1)"
    _same_features(loaded, source, names=["relu", "layer1.0"])


@pytest.mark.parametrize("name, names_file", [
    ("timm:resnet18", "timm/resnet18.a1_in1k"),
    ("open_clip:RN50", "timm/resnet50_clip.openai"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("vgg16", "vgg16-397923af.pth"),
])
def test_pretrained_offline_without_cache_fails_at_once_in_one_line(hf_cache, capsys, tmp_path, content_path,
                                                                   style_path, name, names_file):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone(name, "pretrained")
    message = str(info.value)
    assert names_file in message and "weights=PATH" in message and "\n" not in message
    assert main(["transfer", str(content_path), str(style_path), "-o", str(tmp_path / "out.png"),
                 "--backbone", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names_file in err and "--weights PATH" in err
    assert not (tmp_path / "out.png").exists()
    assert time.monotonic() - start < 30


# -- end to end through the CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["timm:resnet18", "timm:vit_tiny_patch16_224"])
def test_transfer_through_the_cli_lowers_the_style_loss(tmp_path, content_path, style_path, backbone):
    out, trace = tmp_path / "out.png", tmp_path / "t.json"
    code = main(["transfer", str(content_path), str(style_path), "-o", str(out), "--backbone", backbone,
                 "--weights", "random", "--size", "48", "--iterations", "30", "--trace", str(trace), "--quiet"])
    assert code == 0 and out.exists()
    rows = json.loads(trace.read_text())["iterations"]
    first, last = rows[0]["style"], rows[-1]["style"]
    assert last * 10 <= first, (first, last)  # ≥ 10× (seen: ~19× for resnet18, ~300× for the ViT)


def test_compare_runs_the_seeds_comparison_over_zoo_models(tmp_path, content_path, style_path):
    out = tmp_path / "compare"
    code = main(["compare", str(content_path), str(style_path), "-o", str(out), "--backbones",
                 "vgg19,timm:resnet18,open_clip:RN50", "--weights", "random", "--size", "48", "--iterations", "3",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    records = json.loads((out / "results.json").read_text())["runs"]
    assert [r["backbone"] for r in records] == ["vgg19", "timm:resnet18", "open_clip:RN50"]
    assert all((out / r["image"]).is_file() for r in records) and (out / "sheet.png").is_file()
