"""Backbones: one file per family behind one interface (``Backbone``) and one registry.

Named entries (vgg19, vgg16, resnet50, clip-rn50, clip-rn50-sequential, clip-vit-b16) and two families of
library models: ``timm:NAME`` and ``open_clip:ARCH[:TAG]``.
"""

from .base import Backbone, Features, InputSpec, LayerInfo, channel_rule_weight
from .registry import (
    BackboneEntry,
    BackboneFamily,
    create_backbone,
    get_entry,
    list_backbones,
    list_families,
    register_backbone,
    register_family,
    search_backbones,
)
from . import clip, open_clip_models, timm_models, torchvision_models, vgg  # noqa: F401  (register the backbones)

__all__ = [
    "Backbone",
    "BackboneEntry",
    "BackboneFamily",
    "Features",
    "InputSpec",
    "LayerInfo",
    "channel_rule_weight",
    "create_backbone",
    "get_entry",
    "list_backbones",
    "list_families",
    "register_backbone",
    "register_family",
    "search_backbones",
]
