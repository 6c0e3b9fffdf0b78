"""What every model of the zoo shares (timm, open_clip, torchvision): layers read from the library's own feature
contract, input conventions as data, and default layers chosen from the layer table by one rule.

**The default-layer rule** (``default_layers``), from each layer's stride alone:

* *Pyramids* (CNNs, Swin: the layers' strides differ). Consecutive layers of equal stride form a stage.
  Style: the first layer of each stage whose stride is at most 16, shallowest first, at most 5 — Gatys et al.'s
  relu1_1 … relu5_1 are the first layers of VGG's five stages of stride 1 … 16. Content: the middle layer of the
  table (index ⌊(n − 1)/2⌋, 40–60 % of the depth), like relu4_2 in VGG.
* *Token models* (ViT, DeiT, DINOv2, CLIP ViTs: every layer has the patch stride). Style: the first
  min(5, ⌈0.4 n⌉) blocks; content: the middle block (index ⌊(n − 1)/2⌋) — block0 … block4 and block5 of a
  12-block ViT, the seed's choice for CLIP ViT-B/16.

A family implements ``intermediates(x, indices)`` (maps and prefix tokens of those layer indices, with the
library's ``forward_intermediates``) and ``prune(deepest)`` (drop modules deeper than that layer index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import StylelabError
from .base import Backbone, Features, InputSpec, LayerInfo

MAX_STYLE_LAYERS = 5
DEEPEST_STYLE_STRIDE = 16


def default_layers(layers: Sequence[LayerInfo]) -> tuple[str, tuple[str, ...]]:
    """(content layer, style layers) of a layer table by the rule in this module's docstring."""
    if not layers:
        raise ValueError("a backbone needs at least one layer")
    content = layers[(len(layers) - 1) // 2].name
    if len({info.stride for info in layers}) == 1:  # a token model: all blocks on the patch grid
        count = min(MAX_STYLE_LAYERS, math.ceil(0.4 * len(layers)))
        return content, tuple(info.name for info in layers[:count])
    firsts = [info for i, info in enumerate(layers) if i == 0 or info.stride != layers[i - 1].stride]
    style = [info.name for info in firsts if info.stride <= DEEPEST_STYLE_STRIDE] or [firsts[0].name]
    return content, tuple(style[:MAX_STYLE_LAYERS])


def seeded(build, seed: int):
    """``build()`` with torch's global generator seeded (libraries initialize from it), leaving the caller's
    random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class ZooBackbone(Backbone):
    """A library model read through its own feature contract. ``name`` is the name the user typed."""

    def __init__(self, name: str, model: nn.Module, layers: Sequence[LayerInfo], input_spec: InputSpec,
                 weights_source: str):
        super().__init__(layers, weights_source)
        self.name = name
        self.model = model.float().eval()  # fp32 always, whatever the checkpoint held
        self.input_spec = input_spec
        self.input_multiple = input_spec.input_multiple
        # InputSpec's numbers as buffers: tensors made on every call would be a host-to-device copy (a stall on a
        # GPU) in each iteration.
        self.register_buffer("input_mean", torch.tensor(input_spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(input_spec.std).view(1, 3, 1, 1), persistent=False)
        content, style = default_layers(self.layers)
        self.default_content_layers = {content: 1.0}
        self.default_style_layers = style
        self._index = {info.name: i for i, info in enumerate(self.layers)}
        self._computable = len(self.layers)  # layers from this index on were pruned away

    # -- what a family implements -------------------------------------------------------------------
    def intermediates(self, x: Tensor, indices: list[int]) -> tuple[list[Tensor], list[Tensor | None]]:
        """(B, C, h, w) maps of the layers at ``indices`` (ascending) and their prefix tokens (B, P, C) or None."""
        raise NotImplementedError

    def prune(self, deepest: int) -> None:
        """Drop the modules that only layers deeper than index ``deepest`` need."""

    # -- the contract ----------------------------------------------------------------------------------
    def preprocess(self, image: Tensor) -> Tensor:
        """As ``InputSpec.apply``, with the mean and std kept on the model's device."""
        x = image.flip(1) if self.input_spec.channel_order == "BGR" else image
        x = x * self.input_spec.value_range if self.input_spec.value_range != 1 else x
        return (x - self.input_mean) / self.input_std

    def forward_features(self, x: Tensor, names: Sequence[str]) -> Features:
        indices = sorted({self._index[n] for n in names})
        if indices[-1] >= self._computable:
            raise StylelabError(f"layer {self.layers[indices[-1]].name} was truncated away")
        m = self.input_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise StylelabError(f"{self.name} needs image sides that are multiples of {m}, got {tuple(x.shape[-2:])}")
        try:
            maps, prefixes = self.intermediates(x, indices)
        except (AssertionError, RuntimeError) as exc:
            # timm checks input sizes with assertions; models built for one size fail on a tensor size mismatch.
            # Anything else (out of memory, a device error) is not about the input and goes on as it is.
            if not isinstance(exc, AssertionError) and "size" not in str(exc):
                raise
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StylelabError(f"{self.name} cannot read a {x.shape[-2]}×{x.shape[-1]} image ({detail}); "
                                f"some models read only the size they were trained at") from None
        at_index = dict(zip(indices, zip(maps, prefixes)))
        features = Features({n: at_index[self._index[n]][0] for n in names})
        features.prefix = {n: at_index[self._index[n]][1] for n in names if at_index[self._index[n]][1] is not None}
        return features

    def truncate(self, names: Iterable[str]) -> None:
        deepest = max(self._index[self.layer(n).name] for n in names)  # layer(): a clear error for a wrong name
        if deepest + 1 < self._computable:
            self.prune(deepest)
            self._computable = deepest + 1


def probe_layers(run, names: Sequence[str], modules: Sequence[str], size: tuple[int, int],
                 device: str = "cpu") -> list[LayerInfo]:
    """A layer table measured by running the model once on a zero image of ``size``: ``run(x)`` returns the
    maps of every layer; channels and strides are read off their shapes (for libraries whose towers do not
    describe their feature maps). On the "meta" device only shapes are computed."""
    with torch.no_grad():
        maps = run(torch.zeros(1, 3, *size, device=device))
    return [LayerInfo(name, f.shape[1], round(size[0] / f.shape[-2]), module)
            for name, module, f in zip(names, modules, maps)]


def load_matching(model: nn.Module, state: Mapping[str, Tensor], shown: str, what: str,
                  optional: Callable[[str], bool] = lambda key: False) -> None:
    """Copy ``state`` into ``model``: every tensor of the model must be in it with its shape, except BatchNorm's
    counters and the keys ``optional`` accepts (a classifier that is never used); extra tensors of the file (a
    classifier, an optimizer's copy) are ignored. Messages name the file as ``shown`` (``weights=PATH``)."""
    own = model.state_dict()
    needed = [k for k in own if not k.endswith("num_batches_tracked") and not optional(k)]
    missing = [k for k in needed if k not in state]
    if missing:
        found = ", ".join(sorted(state)[:3]) + (" …" if len(state) > 3 else "")
        raise StylelabError(f"{shown} is not a {what} checkpoint: {len(missing)} of its {len(needed)} tensors are "
                            f"missing (e.g. {missing[0]}); found {found or 'none'}")
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise StylelabError(f"{shown}: tensor shapes do not match {what} "
                            f"({k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} expected)")
    model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
