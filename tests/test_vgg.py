"""VGG19: layer table, features against torchvision's own forward, and every weight format."""

import urllib.error

import pytest
import torch
import torchvision

from stylelab.backbones import create_backbone, get_entry, list_backbones
from stylelab.backbones.vgg import CAFFE_MEAN_BGR, CONV_INDEX, VGG19_LAYERS
from stylelab.errors import StylelabError, WeightsUnavailableError
from stylelab.weights import hub_checkpoint_dir


@pytest.fixture(scope="module")
def vgg():
    return create_backbone("vgg19", "random", seed=3)


def test_registry_lists_vgg19_with_its_options():
    assert "vgg19" in [e.name for e in list_backbones()]
    assert get_entry("vgg19").options == ["pooling"]
    with pytest.raises(StylelabError, match="available: clip-rn50, .*, vgg19"):
        create_backbone("vgg20", "random")
    with pytest.raises(StylelabError, match="has no option colour"):
        create_backbone("vgg19", "random", colour="red")


def test_layer_table(vgg):
    names = vgg.layer_names
    assert len(names) == 16 * 2 + 5
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-1] == "pool5" and "relu5_4" in names
    info = {i.name: i for i in vgg.layers}
    assert (info["relu1_1"].channels, info["relu1_1"].stride) == (64, 1)
    assert (info["relu3_1"].channels, info["relu3_1"].stride) == (256, 4)
    assert (info["relu5_1"].channels, info["relu5_1"].stride) == (512, 16)
    assert (info["pool5"].channels, info["pool5"].stride) == (512, 32)
    with pytest.raises(StylelabError, match="valid layers: conv1_1, relu1_1"):
        vgg.layer("relu6_1")


def test_features_equal_torchvision_forward(vgg):
    reference = torchvision.models.vgg19(weights=None).features.eval()
    reference.load_state_dict(vgg.features.state_dict())
    image = torch.rand(2, 3, 40, 56)
    x = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    names = ["conv1_1", "relu1_2", "pool2", "conv3_1", "relu4_2", "relu5_1"]
    feats = vgg(image, names)
    index = {n: i for n, i, _, _ in VGG19_LAYERS}
    for name in names:
        # conv1_1 catches a hooked output overwritten by torchvision's in-place ReLU.
        expected = reference[: index[name] + 1](x.clone())
        torch.testing.assert_close(feats[name], expected, rtol=1e-5, atol=1e-5)


def test_truncate_keeps_only_what_is_needed():
    net = create_backbone("vgg19", "random")
    before = net(torch.rand(1, 3, 32, 32), ["relu2_1"])["relu2_1"]
    net.truncate(["relu1_1", "relu2_1"])
    assert len(net.features) == 7
    torch.testing.assert_close(net(torch.rand(1, 3, 32, 32) * 0 + 0.5, ["relu2_1"])["relu2_1"].shape, before.shape)
    with pytest.raises(StylelabError, match="truncated"):
        net(torch.rand(1, 3, 32, 32), ["relu3_1"])


def test_pooling_option_and_frozen_parameters():
    avg = create_backbone("vgg19", "random", pooling="avg")
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in avg.features) == 5
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in avg.features)
    assert not any(p.requires_grad for p in avg.parameters())
    with pytest.raises(StylelabError, match="pooling"):
        create_backbone("vgg19", "random", pooling="min")


def test_random_init_is_seeded():
    a, b, c = (create_backbone("vgg19", "random", seed=s).features[0].weight for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _torchvision_state(net):
    state = {f"features.{k}": v for k, v in net.features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(10)  # the real file has a classifier too; it is ignored
    return state


def test_load_torchvision_format_checkpoint(tmp_path, vgg):
    path = tmp_path / "vgg19-tv.pth"
    torch.save(_torchvision_state(vgg), path)
    loaded = create_backbone("vgg19", str(path))
    assert "torchvision format" in loaded.weights_source and loaded.input_format == "torchvision"
    image = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(image, ["relu3_1"])["relu3_1"], vgg(image, ["relu3_1"])["relu3_1"])


def test_load_vgg_conv_pth_format_uses_caffe_preprocessing(tmp_path, vgg):
    state = {f"{name}.{p}": vgg.features[index].state_dict()[p] for name, index in CONV_INDEX.items()
             for p in ("weight", "bias")}
    path = tmp_path / "vgg_conv.pth"
    torch.save(state, path)
    loaded = create_backbone("vgg19", str(path))
    assert loaded.input_format == "caffe" and "vgg_conv.pth" in loaded.weights_source
    image = torch.rand(1, 3, 32, 32)
    # By hand: RGB -> BGR, scale to 0..255, subtract the BGR mean (times 255).
    caffe = image[:, [2, 1, 0]] * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) * 255
    expected = vgg.features[:2](caffe)  # conv1_1 + relu
    torch.testing.assert_close(loaded(image, ["relu1_1"])["relu1_1"], expected, rtol=1e-5, atol=1e-4)


def test_pretrained_loads_from_torch_hub_cache(vgg):
    cache = hub_checkpoint_dir()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(_torchvision_state(vgg), cache / "vgg19-dcbb9e9d.pth")
    loaded = create_backbone("vgg19", "pretrained")
    assert loaded.weights_source.startswith("pretrained")
    assert torch.equal(loaded.features[0].weight, vgg.features[0].weight)


def test_pretrained_offline_without_cache_names_file_cache_and_option():
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("vgg19", "pretrained")
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(hub_checkpoint_dir()) in message and "weights=PATH" in message
    assert "\n" not in message


def test_pretrained_download_failure_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("STYLELAB_OFFLINE")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr("stylelab.weights.server_reachable", lambda url: True)  # it answers, then fails
    with pytest.raises(WeightsUnavailableError, match="could not download .*name resolution.*weights=PATH"):
        create_backbone("vgg19", "pretrained")


@pytest.mark.parametrize("content, expected", [
    ({"fc.weight": torch.zeros(2)}, r"expected keys like features.0.weight .* conv1_1.weight .*found fc.weight"),
    ("not a checkpoint", "not a readable PyTorch checkpoint"),
    ([1, 2, 3], "state dict of tensors"),
])
def test_wrong_checkpoints_are_explained(tmp_path, content, expected):
    path = tmp_path / "bad.pth"
    if isinstance(content, str):
        path.write_text(content)
    else:
        torch.save(content, path)
    with pytest.raises(StylelabError, match=expected):
        create_backbone("vgg19", str(path))


def test_checkpoint_with_wrong_shapes_is_explained(tmp_path, vgg):
    state = _torchvision_state(vgg)
    state["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(StylelabError, match="shapes do not match VGG19.*size mismatch"):
        create_backbone("vgg19", str(tmp_path / "shapes.pth"))


def test_missing_checkpoint_file():
    with pytest.raises(StylelabError, match="no such file.*pretrained.*random"):
        create_backbone("vgg19", "/nonexistent/weights.pth")
