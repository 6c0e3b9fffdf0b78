"""VGG19 (Simonyan & Zisserman), the backbone of Gatys et al. and the seed's baseline.

The network is torchvision's VGG19 ``features`` (convolutions only: the 120M-parameter
classifier is never built). Two weight formats:

* torchvision's (``features.N.weight``): RGB input normalized with ImageNet mean/std;
* Gatys et al.'s normalized VGG19 ``vgg_conv.pth`` (``conv1_1.weight`` …): Caffe-style
  input, BGR in 0–255 with the ImageNet mean subtracted. Detected by its keys.
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


def vgg19_layer_table() -> list[tuple[str, int, int, int]]:
    """(name, features index, channels, stride) for conv1_1 … relu5_4, pool1 … pool5."""
    table, index, block, conv, channels, stride = [], 0, 1, 1, 3, 1
    for item in cfgs["E"]:
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


VGG19_LAYERS = vgg19_layer_table()
CONV_INDEX = {name: index for name, index, _, _ in VGG19_LAYERS if name.startswith("conv")}


class VGG19(Backbone):
    name = "vgg19"
    # Gatys et al. (2016): style relu1_1 … relu5_1, content relu4_2.
    default_content_layers = {"relu4_2": 1.0}
    default_style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def __init__(self, features: nn.Sequential, input_format: str, weights_source: str):
        super().__init__([LayerInfo(n, c, s, f"features.{i}") for n, i, c, s in VGG19_LAYERS], weights_source)
        self.features = features
        self.input_format = input_format
        self._index = {name: index for name, index, _, _ in VGG19_LAYERS}
        self._name_at = {index: name for name, index, _, _ in VGG19_LAYERS}
        if input_format == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
            # The α/β that Gatys et al.'s own code uses with these weights, in our normalization:
            # style 1e3/N² on Gram/M MSE -> β≈0.5 with w_l=(64/N)², content MSE -> α=1 (see README).
            self.default_content_weight, self.default_style_weight = 1.0, 0.5
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
            # PyTorch's style-transfer tutorial (style 1e6 on Gram/(NM) MSE, content 1 on MSE)
            # is β≈490, α=1 in our normalization; we take Gatys et al.'s ratio α/β = 1e-3.
            self.default_content_weight, self.default_style_weight = 1.0, 1e3

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


def _build_features(pooling: str) -> nn.Sequential:
    features = make_layers(cfgs["E"], batch_norm=False)
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


def _features_state(state, path: str) -> tuple[dict[str, Tensor], str]:
    """Map a torchvision or vgg_conv.pth state dict onto our ``features`` indices."""
    if all(f"{name}.weight" in state for name in CONV_INDEX):
        return {f"{CONV_INDEX[n]}.{p}": state[f"{n}.{p}"] for n in CONV_INDEX for p in ("weight", "bias")}, "caffe"
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    keys = [f"{prefix}{i}.{p}" for i in CONV_INDEX.values() for p in ("weight", "bias")]
    missing = [k for k in keys if k not in state]
    if missing:
        raise StylelabError(
            missing_keys_message(path, "VGG19", ["features.0.weight (torchvision)", "conv1_1.weight (vgg_conv.pth)"],
                                 sorted(state))
        )
    return {k.removeprefix(prefix): state[k] for k in keys}, "torchvision"


def load_vgg19(weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG19:
    if pooling not in ("max", "avg"):
        raise StylelabError(f"unknown pooling {pooling!r}; choose max or avg")
    features = _build_features(pooling)
    if weights == "random":
        _random_init(features, seed)
        return VGG19(features, "torchvision", f"random init (seed {seed})")
    if weights == "pretrained":
        from torchvision.models import VGG19_Weights

        entry = VGG19_Weights.IMAGENET1K_V1
        state, fmt = _features_state(fetch_hub_checkpoint(entry.url, "VGG19"), entry.url)
        source = f"pretrained (torchvision {entry.name})"
    else:  # a checkpoint path
        state, fmt = _features_state(read_checkpoint(weights, "VGG19"), weights)
        source = f"checkpoint {weights} ({'vgg_conv.pth' if fmt == 'caffe' else 'torchvision'} format)"
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise StylelabError(f"weights={weights}: tensor shapes do not match VGG19 ({detail})") from None
    return VGG19(features, fmt, source)


@register_backbone("vgg19", "VGG19 features (torchvision); Gatys et al.'s baseline. Accepts vgg_conv.pth too.")
def vgg19(weights: str = "pretrained", seed: int = 0, pooling: str = "max") -> VGG19:
    return load_vgg19(weights, seed, pooling)
