"""Backbones: one file per family behind one interface (``Backbone``) and one registry."""

from .base import Backbone, LayerInfo, channel_rule_weight
from .registry import BackboneEntry, create_backbone, get_entry, list_backbones, register_backbone
from . import clip, vgg  # noqa: F401  (register the backbones)

__all__ = [
    "Backbone",
    "BackboneEntry",
    "LayerInfo",
    "channel_rule_weight",
    "create_backbone",
    "get_entry",
    "list_backbones",
    "register_backbone",
]
