"""The interface every backbone implements: [0, 1] RGB images in, named features out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import StylelabError


@dataclass(frozen=True)
class LayerInfo:
    """One readable layer: its name, output channels, stride w.r.t. the input, and module path."""

    name: str
    channels: int
    stride: int
    module: str


class Features(dict):
    """What every backbone returns: ``{layer: (B, C, h, w)}`` maps on the image's grid (a ViT's patch tokens are
    laid back on their patch grid), plus ``prefix``: for token models, each layer's prefix tokens (class token,
    registers) split off the grid, ``{layer: (B, P, C)}``, so that statistics over all tokens stay possible."""

    def __init__(self, maps=(), prefix: Mapping[str, Tensor] | None = None):
        super().__init__(maps)
        self.prefix: dict[str, Tensor] = dict(prefix or {})

    def tokens(self, name: str) -> Tensor:
        """All tokens of ``name`` in the model's order, (B, P + h·w, C): the prefix first, then the grid row-major."""
        grid = self[name].flatten(2).transpose(1, 2)
        return torch.cat([self.prefix[name], grid], 1) if name in self.prefix else grid


@dataclass(frozen=True)
class InputSpec:
    """How a network wants its input, as data per weight entry (open_clip's pretrained tables, timm's
    pretrained_cfg): [0, 1] RGB images are reordered, scaled to ``value_range``, then (x − mean) / std.
    Backbones keep mean and std as buffers made from it (a tensor made per call would be a host-to-device copy
    at every iteration on a GPU)."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"  # or "BGR" (Caffe)
    value_range: float = 1.0  # 255 for Caffe networks
    input_multiple: int = 1  # image sides are rounded to a multiple of this (a ViT's patch size)


def channel_rule_weight(channels: int) -> float:
    """Default style-layer weight w_l = (64 / N_l)^2.

    Gatys et al.'s reference PyTorch code (and the seed, which "adjusted the weights to the
    channels") uses w_l = 1e3 / N_l^2; we rescale so a 64-channel layer (relu1_1) weighs 1 and
    let the style weight beta carry the constant. Deep layers with many channels have larger
    Gram entries; this keeps every layer's contribution of similar size.
    """
    return (64.0 / channels) ** 2


def run_named_sequence(steps: Iterable[tuple[str | None, nn.Module]], x: Tensor, names: Sequence[str],
                       deepest: str) -> dict[str, Tensor]:
    """Apply modules in order, keep the outputs whose names are asked for, stop after ``deepest``."""
    wanted, out = set(names), {}
    for name, module in steps:
        x = module(x)
        if name in wanted:
            out[name] = x
        if name == deepest:
            break
    return out


class Backbone(nn.Module):
    """A frozen feature extractor.

    Subclasses set ``layers`` (ordered, shallow to deep), the default loss configuration and
    implement ``preprocess`` and ``forward_features``.
    """

    name: str = ""
    default_content_layers: Mapping[str, float] = {}
    default_style_layers: Sequence[str] = ()
    default_content_weight: float = 1.0
    default_style_weight: float = 1.0
    default_tv_weight: float = 0.0
    input_multiple: int = 1  # image sides are rounded to a multiple of this (16 for ViT patches)
    # "none": α, β and the layer weights were set by hand for this network; "auto": each layer's term is
    # normalized by its target's size, so one β means the same on every network (models of the zoo).
    default_balance: str = "auto"

    def __init__(self, layers: Sequence[LayerInfo], weights_source: str):
        super().__init__()
        self.layers = list(layers)
        self.weights_source = weights_source  # e.g. "pretrained (torchvision IMAGENET1K_V1)"
        self._by_name = {info.name: info for info in self.layers}

    # -- description -------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.layers]

    def layer(self, name: str) -> LayerInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise StylelabError(
                f"unknown layer {name!r} for backbone {self.name}; valid layers: {', '.join(self.layer_names)}"
            ) from None

    def default_style_weights(self) -> dict[str, float]:
        return {name: channel_rule_weight(self.layer(name).channels) for name in self.default_style_layers}

    def deepest(self, names: Iterable[str]) -> LayerInfo:
        order = {info.name: i for i, info in enumerate(self.layers)}
        return self.layers[max(order[self.layer(n).name] for n in names)]

    # -- computation -------------------------------------------------------------------------
    def preprocess(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) sRGB in [0, 1] -> the network's input space."""
        raise NotImplementedError

    def forward_features(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Run the preprocessed input only as deep as ``names`` need; return those outputs."""
        raise NotImplementedError

    def forward(self, image: Tensor, names: Sequence[str]) -> Features:
        for name in names:
            self.layer(name)  # validates
        out = self.forward_features(self.preprocess(image), list(names))
        return out if isinstance(out, Features) else Features(out)

    def truncate(self, names: Iterable[str]) -> None:
        """Drop whatever is deeper than the deepest of ``names`` (saves memory and time)."""

    def freeze(self) -> "Backbone":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
