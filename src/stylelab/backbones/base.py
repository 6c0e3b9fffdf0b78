"""The interface every backbone implements: [0, 1] RGB images in, named features out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import StylelabError
from ..losses import flatten_maps, masked_gram, normalized_gram


@dataclass(frozen=True)
class LayerInfo:
    """One readable layer: its name, output channels, stride w.r.t. the input, and module path."""

    name: str
    channels: int
    stride: int
    module: str


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
    style_needs_content_size: bool = False  # True when the style statistic depends on the token count

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

    def forward(self, image: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        for name in names:
            self.layer(name)  # validates
        return self.forward_features(self.preprocess(image), list(names))

    def style_features(self, name: str, features: Tensor) -> Tensor:
        """Layer output -> the (B, N, M) matrix F^l whose Gram is the style representation."""
        return flatten_maps(features)

    def spatial_maps(self, name: str, features: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Layer output -> (B, C, h, w) maps laid out on the image grid (for pictures of features)."""
        return features

    def style_gram(self, name: str, features: Tensor) -> Tensor:
        """The style representation compared by eq. 2.3: the Gram of ``style_features`` divided by M."""
        return normalized_gram(self.style_features(name, features))

    def style_position_grid(self, name: str, features: Tensor, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """The (h, w) grid on which the M positions of ``style_features`` lie (row-major), or None when its M
        axis is not image positions (then masks cannot select regions)."""
        return tuple(features.shape[-2:])

    def masked_style_gram(self, name: str, features: Tensor, mask: Tensor) -> Tensor:
        """The style representation of the region ``mask`` selects: (1, 1, H, W) weights in [0, 1] at the image's
        size, averaged onto the layer's positions, then ``masked_gram``."""
        grid = self.style_position_grid(name, features, tuple(mask.shape[-2:]))
        if grid is None:
            raise StylelabError(f"{self.name} with this Gram has no image positions to mask")
        weights = F.adaptive_avg_pool2d(mask, grid).flatten(1)  # (1, M)
        return masked_gram(self.style_features(name, features), weights)

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
