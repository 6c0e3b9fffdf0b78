"""Backbone registry: one name -> one constructor, like timm's ``create_model``.

Two kinds of names: **named entries** (``vgg19``, ``clip-rn50`` …), each registered with its own factory, and
**families** (``timm:NAME``, ``open_clip:ARCH[:TAG]``), where a prefix picks a library and the rest of the name picks
one of its models. A family knows every model name it can build (for ``--search`` and for suggesting close
matches) and checks a name before anything is built.
"""

from __future__ import annotations

import difflib
import functools
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


@dataclass(frozen=True)
class BackboneFamily:
    """Models of one library, named ``PREFIX:MODEL``. ``factory(model, weights=..., seed=..., **options)``;
    ``names()`` lists every model name the family can build; ``check(model)`` raises a StylelabError for a
    model the library does not have (its message may suggest names)."""

    prefix: str
    pattern: str  # how a user writes a name, e.g. "open_clip:ARCH[:TAG]"
    description: str
    factory: Callable[..., Backbone]
    names: Callable[[], list[str]]
    check: Callable[[str], None]
    examples: tuple[str, ...] = ()

    def entry(self, name: str) -> BackboneEntry:
        model = name.split(":", 1)[1]
        self.check(model)
        return BackboneEntry(name, functools.partial(self.factory, model), f"{self.description}: {model}")


_REGISTRY: dict[str, BackboneEntry] = {}
_FAMILIES: dict[str, BackboneFamily] = {}


def register_backbone(name: str, description: str):
    """Decorator: ``@register_backbone("vgg19", "...")`` on ``factory(weights, seed, **options)``."""

    def decorate(factory: Callable[..., Backbone]):
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = BackboneEntry(name, factory, description)
        return factory

    return decorate


def register_family(family: BackboneFamily) -> BackboneFamily:
    if family.prefix in _FAMILIES:
        raise ValueError(f"backbone family {family.prefix!r} registered twice")
    _FAMILIES[family.prefix] = family
    return family


def list_backbones() -> list[BackboneEntry]:
    """The named entries (families are listed by ``list_families``)."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def list_families() -> list[BackboneFamily]:
    return [_FAMILIES[prefix] for prefix in sorted(_FAMILIES)]


def _valid_names() -> str:
    return ", ".join([*sorted(_REGISTRY), *(f.pattern for f in list_families())])


def get_entry(name: str) -> BackboneEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix = name.split(":", 1)[0] if ":" in name else None
    if prefix in _FAMILIES:
        return _FAMILIES[prefix].entry(name)
    raise StylelabError(f"unknown backbone {name!r}; available: {_valid_names()}")


def close_matches(name: str, names: list[str], count: int = 5) -> str:
    """``"; did you mean a, b?"`` for the names nearest to ``name`` (case-insensitive), or ``""``."""
    by_lower = {n.lower(): n for n in names}
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=count, cutoff=0.6)
    return f"; did you mean {', '.join(by_lower[f] for f in found)}?" if found else ""


def search_backbones(term: str) -> list[str]:
    """Every buildable name containing ``term`` (case-insensitive): named entries first, then each family's
    names written with its prefix, as they are typed after ``--backbone``."""
    term = term.lower()
    found = [name for name in sorted(_REGISTRY) if term in name.lower()]
    for family in list_families():
        found += [f"{family.prefix}:{model}" for model in family.names() if term in model.lower()]
    return found


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
