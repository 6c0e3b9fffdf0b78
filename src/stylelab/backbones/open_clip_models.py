"""The ``open_clip:ARCH[:TAG]`` family: the visual tower of any model in open_clip's list (ResNets, ViTs, ConvNeXt,
SigLIP, EVA …); TAG is one of the architecture's pretrained tags (default ``openai`` where it exists, else the
first). Only the visual tower is built, in fp32.

Features come from the tower's own ``forward_intermediates`` (open_clip's VisionTransformer, ModifiedResNet and
TimmModel). Layers are named by the module whose output they are; their channels and strides are measured by one
run of the tower at its native size on the meta device (shapes only, no arithmetic). open_clip's ViTs take any
patch grid: their positional embedding is resampled to the image's grid (bicubic, as timm resamples a ViT's) and
swapped in for the call. The tag decides the input mean/std (open_clip's preprocess configuration) and the
activation: OpenAI's weights were trained with QuickGELU, so a tag that says so builds the tower with it.

Weights: ``random`` (open_clip's own initialization, seeded), ``pretrained`` (the tag's Hugging Face repository,
through the hub cache), or a path to a checkpoint with ``visual.*`` keys (a whole CLIP) or a bare tower's keys.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict

import torch
from torch import Tensor, nn

from ..errors import StylelabError, WeightsUnavailableError
from ..weights import read_checkpoint
from .base import InputSpec
from .clip import fetch_pretrained, load_into, visual_state
from .registry import BackboneFamily, close_matches, register_family
from .timm_models import layer_table as timm_layer_table
from .zoo import ZooBackbone, probe_layers, seeded


class _ForwardIntermediates(nn.Module):
    """``visual.forward_intermediates`` as a module's forward, so that torch.func.functional_call can run it
    with a tensor swapped in (the positional embedding resampled to the image's grid)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: Tensor, **kwargs) -> dict:
        return self.visual.forward_intermediates(x, **kwargs)


def _is_vit(visual: nn.Module) -> bool:
    from open_clip.transformer import VisionTransformer

    return isinstance(visual, VisionTransformer)


def _tower_layers(visual: nn.Module) -> tuple[list[str], list[str]]:
    """(layer names, module paths), one per index of the tower's ``forward_intermediates``."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel

    if _is_vit(visual):
        paths = [f"transformer.resblocks.{i}" for i in range(len(visual.transformer.resblocks))]
        return paths, paths
    if isinstance(visual, ModifiedResNet):  # index 0 is the stem (three convolutions and an average pool)
        return ["stem", "layer1", "layer2", "layer3", "layer4"], ["avgpool", "layer1", "layer2", "layer3", "layer4"]
    if isinstance(visual, TimmModel):
        layers = timm_layer_table(visual.trunk)
        return [f"trunk.{info.name}" for info in layers], [f"trunk.{info.module}" for info in layers]
    raise StylelabError(f"open_clip's {type(visual).__name__} towers have no feature contract stylelab knows")


def _patch_multiple(visual: nn.Module) -> int:
    size = getattr(visual, "patch_size", None) or getattr(getattr(getattr(visual, "trunk", None), "patch_embed", None),
                                                          "patch_size", 1)
    return math.lcm(*size) if isinstance(size, (tuple, list)) else int(size)


def _native_size(visual: nn.Module) -> tuple[int, int]:
    size = visual.image_size
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


def fixed_input_size(visual: nn.Module) -> tuple[int, int] | None:
    """The only input size a tower reads, for timm trunks whose patch embedding insists on its image size
    (SigLIP's and EVA's ViTs); None when any size works."""
    embed = getattr(getattr(visual, "trunk", None), "patch_embed", None)
    return _native_size(visual) if getattr(embed, "strict_img_size", False) else None


def _reports_prefix_tokens(visual: nn.Module) -> bool:
    """Whether ``output_extra_tokens`` may be asked: a TimmModel passes it on to its trunk as
    ``return_prefix_tokens``, which only timm's token models take."""
    trunk = getattr(visual, "trunk", None)
    return trunk is None or "return_prefix_tokens" in inspect.signature(trunk.forward_intermediates).parameters


def _resized_positions(visual: nn.Module, grid: tuple[int, int]) -> dict[str, Tensor]:
    """{"visual.positional_embedding": the embedding for ``grid``} for a ViT off its native grid, else {}."""
    from timm.layers import resample_abs_pos_embed

    if not _is_vit(visual) or tuple(grid) == tuple(visual.grid_size):
        return {}
    resized = resample_abs_pos_embed(visual.positional_embedding.unsqueeze(0), new_size=list(grid),
                                     old_size=list(visual.grid_size), num_prefix_tokens=1)
    return {"visual.positional_embedding": resized[0]}


def tower_intermediates(visual: nn.Module, x: Tensor, indices: list[int],
                        multiple: int) -> tuple[list[Tensor], list[Tensor | None]]:
    """The tower's ``forward_intermediates`` maps (and prefix tokens, for ViTs) of the layers at ``indices``."""
    grid = (x.shape[-2] // multiple, x.shape[-1] // multiple)
    out = torch.func.functional_call(
        _ForwardIntermediates(visual), _resized_positions(visual, grid), (x,),
        dict(indices=indices, stop_early=True, intermediates_only=True, output_fmt="NCHW",
             output_extra_tokens=_reports_prefix_tokens(visual)))
    maps = out["image_intermediates"]
    return maps, out.get("image_intermediates_prefix", [None] * len(maps))


class OpenClipBackbone(ZooBackbone):
    def intermediates(self, x: Tensor, indices: list[int]) -> tuple[list[Tensor], list[Tensor | None]]:
        fixed = fixed_input_size(self.model)
        if fixed is not None and tuple(x.shape[-2:]) != fixed:
            trunk = self.model.trunk.pretrained_cfg.get("architecture", "")
            raise StylelabError(f"{self.name} reads only {fixed[0]}×{fixed[1]} images (its timm trunk has a fixed "
                                f"grid), got {x.shape[-2]}×{x.shape[-1]}; the timm family's timm:{trunk} is the "
                                f"same network at any size")
        return tower_intermediates(self.model, x, indices, self.input_multiple)

    def prune(self, deepest: int) -> None:
        from open_clip.modified_resnet import ModifiedResNet

        visual = self.model
        if isinstance(visual, ModifiedResNet):  # it has no prune_intermediate_layers: cut the stages by hand
            for stage in range(max(deepest, 0) + 1, 5):
                setattr(visual, f"layer{stage}", nn.Identity())
            visual.attnpool = nn.Identity()
        elif _is_vit(visual):
            visual.prune_intermediate_layers([deepest], prune_norm=True, prune_head=True)
        else:  # TimmModel: the timm trunk prunes itself; the projection head is never used
            visual.trunk.prune_intermediate_layers([deepest], prune_norm=True, prune_head=True)
            visual.head = nn.Identity()


# -- names ---------------------------------------------------------------------------------------------------


def split_name(model: str) -> tuple[str, str | None]:
    """"ViT-B-32:openai" -> ("ViT-B-32", "openai"); "RN50" -> ("RN50", "openai"): the default tag is
    ``openai`` where it exists, else the first one open_clip lists, else None (no pretrained weights)."""
    import open_clip

    arch, _, tag = model.partition(":")
    if tag:
        return arch, tag
    tags = open_clip.list_pretrained_tags_by_model(arch)
    return arch, ("openai" if "openai" in tags else tags[0] if tags else None)


def check_name(model: str) -> None:
    import open_clip

    arch, tag = split_name(model)
    archs = open_clip.list_models()
    if arch not in archs:
        raise StylelabError(f"open_clip has no model {arch!r}{close_matches(arch, archs)}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag is not None and tag not in tags:
        raise StylelabError(f"open_clip's {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}")


def model_names() -> list[str]:
    """``ARCH:TAG`` for every pretrained tag, and ``ARCH`` alone for architectures without weights."""
    import open_clip

    tagged = [f"{arch}:{tag}" for arch, tag in open_clip.list_pretrained()]
    with_weights = {arch for arch, _ in open_clip.list_pretrained()}
    return tagged + [arch for arch in open_clip.list_models() if arch not in with_weights]


# -- building and loading --------------------------------------------------------------------------------------


def build_tower(arch: str, tag: str | None) -> nn.Module:
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(arch)
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    quick_gelu = cfg.get("quick_gelu", False) or tag_cfg.get("quick_gelu", False)
    vision = dict(cfg["vision_cfg"], timm_model_pretrained=False)  # weights come only through stylelab's reader
    return _build_vision_tower(cfg["embed_dim"], vision, quick_gelu=quick_gelu)


def input_spec(arch: str, tag: str | None, visual: nn.Module) -> InputSpec:
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    preprocess = merge_preprocess_dict(asdict(PreprocessCfg()), open_clip.get_pretrained_cfg(arch, tag) if tag else {})
    return InputSpec(mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]),
                     input_multiple=_patch_multiple(visual))


def create_open_clip_backbone(model: str, weights: str = "pretrained", seed: int = 0) -> OpenClipBackbone:
    arch, tag = split_name(model)
    visual = seeded(lambda: build_tower(arch, tag), seed).float()
    expected = next(iter(visual.state_dict()))  # a key a bare tower's checkpoint must have
    what = f"open_clip {arch}"
    if weights == "random":
        source = f"random init (seed {seed})"
    elif weights == "pretrained":
        if tag is None:
            raise WeightsUnavailableError(f"open_clip has no pretrained weights for {arch}; "
                                          f"pass weights=PATH or weights=random")
        state, source = fetch_pretrained(arch, tag)
        load_into(visual, visual_state(state, source, expected), source, what)
    else:
        load_into(visual, visual_state(read_checkpoint(weights, what), weights, expected), weights, what)
        source = f"checkpoint {weights}"
    spec = input_spec(arch, tag, visual)
    names, modules = _tower_layers(visual)
    with torch.device("meta"):  # the same tower without storage: its shapes at the native size, at no cost
        shapes_only = build_tower(arch, tag).eval()
    every = list(range(len(names)))
    layers = probe_layers(lambda x: tower_intermediates(shapes_only, x, every, spec.input_multiple)[0], names,
                          modules, _native_size(visual), device="meta")
    return OpenClipBackbone(f"open_clip:{model}", visual, layers, spec, source)


register_family(BackboneFamily(
    prefix="open_clip",
    pattern="open_clip:ARCH[:TAG]",
    description="open_clip visual tower read through forward_intermediates",
    factory=create_open_clip_backbone,
    names=model_names,
    check=check_name,
    examples=("open_clip:ViT-B-32 (tag openai)", "open_clip:RN50:yfcc15m", "open_clip:convnext_base",
              "open_clip:ViT-B-16-SigLIP:webli"),
))
