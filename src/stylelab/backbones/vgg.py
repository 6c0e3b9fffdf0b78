"""VGG19 and VGG16 (Simonyan & Zisserman): VGG19 is the backbone of Gatys et al. and the seed's baseline.

The network is torchvision's VGG ``features`` (convolutions only: the 120M-parameter
classifier is never built). Two weight formats:

* torchvision's (``features.N.weight``): RGB input normalized with ImageNet mean/std;
* Caffe layout (``conv1_1.weight`` …, as Gatys et al.'s normalized VGG19 ``vgg_conv.pth`` or a VGG16
  converted from Caffe): Caffe-style input, BGR in 0–255 with the ImageNet mean subtracted. Detected by its keys.

VGG19 keeps Gatys et al.'s hand-set α, β and layer weights (``default_balance = "none"``); VGG16 is a model of
the zoo (automatic balancing) with the same choice of layers: style relu1_1 … relu5_1, content relu4_2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from ..errors import StylelabError
from ..weights import fetch_hub_checkpoint, missing_keys_message, read_checkpoint
from .base import Backbone, LayerInfo, run_named_sequence
from .registry import register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (0.40760392, 0.45795686, 0.48501961)  # as in Gatys et al.'s reference code


def vgg_layer_table(config: str) -> list[tuple[str, int, int, int]]:
    """(name, features index, channels, stride) for conv1_1 …, relu1_1 …, pool1 … pool5 of torchvision's VGG
    configuration ``config`` ("D": VGG16, "E": VGG19)."""
    table, index, block, conv, channels, stride = [], 0, 1, 1, 3, 1
    for item in cfgs[config]:
        if item == "M":
            stride *= 2
            table.append((f"pool{block}", index, channels, stride))
            index, block, conv = index + 1, block + 1, 1
        else:
            channels = int(item)
            table.append((f"conv{block}_{conv}", index, channels, stride))
            table.append((f"relu{block}_{conv}", index + 1, channels, stride))
            index, conv = index + 2, conv + 1
    return table


VGG_CONFIGS = {"vgg16": "D", "vgg19": "E"}  # torchvision's names of the two layouts
VGG19_LAYERS = vgg_layer_table("E")
VGG16_LAYERS = vgg_layer_table("D")


def conv_index(table: list[tuple[str, int, int, int]]) -> dict[str, int]:
    """conv1_1 … -> index in ``features``: the Caffe layout's names of the convolutions."""
    return {name: index for name, index, _, _ in table if name.startswith("conv")}


CONV_INDEX = conv_index(VGG19_LAYERS)


class VGG(Backbone):
    """torchvision's VGG ``features`` run as a sequence, cut after the deepest needed layer."""

    table: list[tuple[str, int, int, int]] = []
    caffe_format = "Caffe"  # how messages and weights_source name the Caffe layout for this network
    # Gatys et al. (2016): style relu1_1 … relu5_1, content relu4_2.
    default_content_layers = {"relu4_2": 1.0}
    default_style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def __init__(self, features: nn.Sequential, input_format: str, weights_source: str):
        super().__init__([LayerInfo(n, c, s, f"features.{i}") for n, i, c, s in self.table], weights_source)
        self.features = features
        self.input_format = input_format
        self._index = {name: index for name, index, _, _ in self.table}
        self._name_at = {index: name for name, index, _, _ in self.table}
        # Buffers, not tensors made per call: a host-to-device copy each iteration would stall a GPU.
        if input_format == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def preprocess(self, image: Tensor) -> Tensor:
        if self.input_format == "caffe":
            return image.flip(1) * 255.0 - self.mean  # RGB -> BGR, 0–255, mean-subtracted
        return (image - self.mean) / self.std

    def forward_features(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        deepest = self.deepest(names).name
        if self._index[deepest] >= len(self.features):
            raise StylelabError(f"layer {deepest} was truncated away")
        steps = ((self._name_at[i], module) for i, module in enumerate(self.features))
        return run_named_sequence(steps, x, names, deepest)

    def truncate(self, names: Iterable[str]) -> None:
        last = max(self._index[self.layer(n).name] for n in names)
        self.features = self.features[: last + 1]


class VGG19(VGG):
    name = "vgg19"
    table = VGG19_LAYERS
    caffe_format = "vgg_conv.pth"  # Gatys et al.'s normalized VGG19
    default_balance = "none"  # α, β and (64/N)² layer weights as Gatys et al. set them

    def __init__(self, features: nn.Sequential, input_format: str, weights_source: str):
        super().__init__(features, input_format, weights_source)
        if input_format == "caffe":
            # The α/β that Gatys et al.'s own code uses with these weights, in our normalization:
            # style 1e3/N² on Gram/M MSE -> β≈0.5 with w_l=(64/N)², content MSE -> α=1 (see README).
            self.default_content_weight, self.default_style_weight = 1.0, 0.5
        else:
            # PyTorch's style-transfer tutorial (style 1e6 on Gram/(NM) MSE, content 1 on MSE)
            # is β≈490, α=1 in our normalization; we take Gatys et al.'s ratio α/β = 1e-3.
            self.default_content_weight, self.default_style_weight = 1.0, 1e3


class VGG16(VGG):
    """A model of the zoo: α, β and layer weights are left to the automatic balance (the base defaults)."""

    name = "vgg16"
    table = VGG16_LAYERS


def _build_features(pooling: str, config: str = "E") -> nn.Sequential:
    features = make_layers(cfgs[config], batch_norm=False)
    for i, module in enumerate(features):
        if isinstance(module, nn.ReLU):
            # Not in place: a hooked conv output must not be overwritten by the ReLU after it.
            features[i] = nn.ReLU(inplace=False)
        elif isinstance(module, nn.MaxPool2d) and pooling == "avg":
            # Gatys et al. found average pooling gives "slightly more appealing results".
            features[i] = nn.AvgPool2d(kernel_size=2, stride=2)
    return features


def _random_init(features: nn.Sequential, seed: int) -> None:
    """torchvision's VGG initialization (Kaiming normal, fan_out), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                module.bias.zero_()


def _features_state(state, path: str, network: type[VGG]) -> tuple[dict[str, Tensor], str]:
    """Map a torchvision or Caffe-layout (vgg_conv.pth) state dict onto our ``features`` indices."""
    convs = conv_index(network.table)
    if all(f"{name}.weight" in state for name in convs):
        return {f"{convs[n]}.{p}": state[f"{n}.{p}"] for n in convs for p in ("weight", "bias")}, "caffe"
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    keys = [f"{prefix}{i}.{p}" for i in convs.values() for p in ("weight", "bias")]
    missing = [k for k in keys if k not in state]
    if missing:
        raise StylelabError(
            missing_keys_message(path, network.name.upper(),
                                 ["features.0.weight (torchvision)", f"conv1_1.weight ({network.caffe_format})"],
                                 sorted(state))
        )
    return {k.removeprefix(prefix): state[k] for k in keys}, "torchvision"


def load_vgg(network: type[VGG], weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG:
    what = network.name.upper()
    if pooling not in ("max", "avg"):
        raise StylelabError(f"unknown pooling {pooling!r}; choose max or avg")
    features = _build_features(pooling, VGG_CONFIGS[network.name])
    if weights == "random":
        _random_init(features, seed)
        return network(features, "torchvision", f"random init (seed {seed})")
    if weights == "pretrained":
        from torchvision.models import get_model_weights

        entry = get_model_weights(network.name).IMAGENET1K_V1
        state, fmt = _features_state(fetch_hub_checkpoint(entry.url, what), entry.url, network)
        source = f"pretrained (torchvision {entry.name})"
    else:  # a checkpoint path
        state, fmt = _features_state(read_checkpoint(weights, what), weights, network)
        source = f"checkpoint {weights} ({network.caffe_format if fmt == 'caffe' else 'torchvision'} format)"
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise StylelabError(f"weights={weights}: tensor shapes do not match {what} ({detail})") from None
    return network(features, fmt, source)


def load_vgg19(weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG19:
    return load_vgg(VGG19, weights, seed, pooling)


@register_backbone("vgg19", "VGG19 features (torchvision); Gatys et al.'s baseline. Accepts vgg_conv.pth too.")
def vgg19(weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG19:
    return load_vgg19(weights, seed, pooling)


@register_backbone("vgg16", "VGG16 features (torchvision), automatic balance. Accepts Caffe-layout checkpoints too.")
def vgg16(weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG16:
    return load_vgg(VGG16, weights, seed, pooling)
