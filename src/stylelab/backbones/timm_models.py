"""The ``timm:NAME`` family: any timm model (ResNet, ConvNeXt, EfficientNet, RegNet, ViT/DeiT, Swin, DINOv2 as
``timm:vit_small_patch14_dinov2`` …; ``NAME.TAG`` picks a pretrained tag).

Layers are timm's ``feature_info`` (named by their module path, with timm's channels and reduction), read
with the model's own ``forward_intermediates``; token models return their prefix tokens (class token,
registers, distillation token) beside the patch grid. Models that can take any input size are asked to
(``dynamic_img_size``). Input mean/std come from the model's ``pretrained_cfg``. Weights: ``random`` is timm's
own initialization, seeded; ``pretrained`` is the file of the ``pretrained_cfg``'s Hugging Face repository,
through the hub cache; a path is a timm checkpoint. Every file is read by ``read_checkpoint`` and passed
through the model family's own ``checkpoint_filter_fn`` (which converts original-author layouts) before a
load that must fill every parameter of the model (the classifier, never used here, is not built).
"""

from __future__ import annotations

import functools
import inspect
import math
import sys

from torch import Tensor, nn

from ..errors import StylelabError, WeightsUnavailableError
from ..weights import fetch_hf_file, fetch_hub_checkpoint, read_checkpoint
from .base import InputSpec, LayerInfo
from .registry import BackboneFamily, close_matches, register_family
from .zoo import ZooBackbone, load_matching, seeded

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def _accepted(function, **kwargs) -> dict:
    """The keyword arguments that ``function`` takes (timm's signatures differ a little between models)."""
    params = inspect.signature(function).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def layer_table(model: nn.Module) -> list[LayerInfo]:
    """timm's feature_info as layers; a module that holds several taps (CoaT) gets ``@INDEX`` appended."""
    modules = [info["module"] for info in model.feature_info]
    return [LayerInfo(module if modules.count(module) == 1 else f"{module}@{i}", info["num_chs"], info["reduction"],
                      module) for i, (module, info) in enumerate(zip(modules, model.feature_info))]


def patch_multiple(model: nn.Module) -> int:
    """Image sides must be multiples of a patch embedding's patch size (timm's ``patch_embed.patch_size``)."""
    size = getattr(getattr(model, "patch_embed", None), "patch_size", 1)
    return math.lcm(*size) if isinstance(size, (tuple, list)) else int(size)


class TimmBackbone(ZooBackbone):
    @functools.cached_property
    def _intermediates_options(self) -> dict:
        return _accepted(self.model.forward_intermediates, stop_early=True, intermediates_only=True,
                         output_fmt="NCHW", return_prefix_tokens=True)

    def intermediates(self, x: Tensor, indices: list[int]) -> tuple[list[Tensor], list[Tensor | None]]:
        out = self.model.forward_intermediates(x, indices=indices, **self._intermediates_options)
        maps = [item[0] if isinstance(item, tuple) else item for item in out]  # (map, prefix) for token models
        prefixes = [item[1] if isinstance(item, tuple) else None for item in out]
        return maps, prefixes

    def prune(self, deepest: int) -> None:
        prune = getattr(self.model, "prune_intermediate_layers", None)
        if prune is not None:  # else nothing is dropped; stop_early still skips the deeper blocks
            prune(**_accepted(prune, indices=[deepest], prune_norm=True, prune_head=True))


# -- building and loading ----------------------------------------------------------------------------------


def build_model(name: str) -> nn.Module:
    """The timm model without a classifier, at any input size where the model offers it."""
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)
    except TypeError as exc:
        if "dynamic_img_size" not in str(exc):
            raise
        return timm.create_model(name, pretrained=False, num_classes=0)


def checkpoint_filter(model: nn.Module, name: str):
    """The model family's own ``checkpoint_filter_fn`` (the module of its entrypoint, else of its class), or
    None where the family needs none."""
    import timm

    for module in (timm.models.model_entrypoint(name).__module__, type(model).__module__):
        found = getattr(sys.modules[module], "checkpoint_filter_fn", None)
        if found is not None:
            return found
    return None


def load_timm_state(model: nn.Module, name: str, state: dict[str, Tensor], shown: str) -> None:
    """Load ``state`` (shown in messages as ``shown``, e.g. ``weights=PATH``) after the family's filter."""
    state = dict(state)  # the filter may change it
    filter_fn = checkpoint_filter(model, name)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as exc:  # a filter meets a layout it does not know
            raise StylelabError(f"{shown} is not a timm {name} checkpoint ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    load_matching(model, state, shown, f"timm {name}")


def fetch_pretrained(model: nn.Module, name: str) -> tuple[dict[str, Tensor], str, str]:
    """The tensors of the model's pretrained_cfg file, a description of them, and where they came from."""
    cfg = model.pretrained_cfg
    tagged = f"{cfg.get('architecture', name)}.{cfg['tag']}" if cfg.get("tag") else name
    what = f"timm {tagged}"
    if cfg.get("hf_hub_id"):
        repo = cfg["hf_hub_id"].strip("/")
        filenames = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILENAMES
        path = fetch_hf_file(repo, filenames, what)
        return read_checkpoint(path, what), f"pretrained ({what}, {repo})", path
    if cfg.get("url"):  # a few older entries have no Hugging Face repository
        return dict(fetch_hub_checkpoint(cfg["url"], what)), f"pretrained ({what}, {cfg['url']})", cfg["url"]
    raise WeightsUnavailableError(f"timm has no pretrained weights for {name}; pass weights=PATH or weights=random")


def create_timm_backbone(model_name: str, weights: str = "pretrained", seed: int = 0) -> TimmBackbone:
    model = seeded(lambda: build_model(model_name), seed)
    if weights == "random":
        source = f"random init (seed {seed})"
    elif weights == "pretrained":
        state, source, origin = fetch_pretrained(model, model_name)
        load_timm_state(model, model_name, state, f"the pretrained file {origin}")
    else:
        load_timm_state(model, model_name, read_checkpoint(weights, f"timm {model_name}"), f"weights={weights}")
        source = f"checkpoint {weights}"
    cfg = model.pretrained_cfg
    spec = InputSpec(mean=tuple(cfg.get("mean", InputSpec.mean)), std=tuple(cfg.get("std", InputSpec.std)),
                     input_multiple=patch_multiple(model))
    return TimmBackbone(f"timm:{model_name}", model, layer_table(model), spec, source)


# -- the family: names, checks, search ---------------------------------------------------------------------


@functools.cache
def model_names() -> list[str]:
    """timm's models that can return features: those of modules whose model classes have
    ``forward_intermediates`` (in timm 1.0, all of them)."""
    import timm

    names = []
    for module_name in timm.list_modules():
        module = sys.modules.get(f"timm.models.{module_name}")
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, nn.Module)] \
            if module else []
        if any(hasattr(c, "forward_intermediates") and hasattr(c, "forward_head") for c in classes):
            names += timm.list_models(module=module_name)
    return sorted(set(names))


def check_name(model_name: str) -> None:
    import timm

    if not timm.is_model(model_name):
        raise StylelabError(f"timm has no model {model_name!r}{close_matches(model_name, model_names())}")
    arch, _, tag = model_name.partition(".")
    if tag:
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise StylelabError(f"timm's {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}")


register_family(BackboneFamily(
    prefix="timm",
    pattern="timm:NAME",
    description="timm model read through forward_intermediates",
    factory=create_timm_backbone,
    names=model_names,
    check=check_name,
    examples=("timm:resnet50", "timm:convnext_tiny", "timm:vit_small_patch14_dinov2",
              "timm:swin_tiny_patch4_window7_224", "timm:convnext_tiny.fb_in22k (NAME.TAG: a pretrained tag)"),
))
