"""Backbone registry: one name -> one constructor, like timm's ``create_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import StylelabError
from .base import Backbone


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    factory: Callable[..., Backbone]
    description: str

    @property
    def options(self) -> list[str]:
        """Keyword options the constructor takes beyond ``weights`` and ``seed``."""
        params = inspect.signature(self.factory).parameters
        return [p for p in params if p not in ("weights", "seed")]


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, description: str):
    """Decorator: ``@register_backbone("vgg19", "...")`` on ``factory(weights, seed, **options)``."""

    def decorate(factory: Callable[..., Backbone]):
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = BackboneEntry(name, factory, description)
        return factory

    return decorate


def list_backbones() -> list[BackboneEntry]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StylelabError(f"unknown backbone {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def create_backbone(name: str, weights: str = "pretrained", *, seed: int = 0, **options) -> Backbone:
    """Build a frozen backbone. ``weights``: "pretrained", "random" (seeded init) or a checkpoint path.

    ``options`` whose value is None are left to the backbone's defaults.
    """
    entry = get_entry(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        takes = ", ".join(entry.options) or "none"
        raise StylelabError(f"backbone {name} has no option {', '.join(unknown)} (its options: {takes})")
    return entry.factory(weights=weights, seed=seed, **options).freeze()
