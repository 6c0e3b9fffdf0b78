"""Parsing layer lists like ``relu1_1:0.2,relu2_1`` into {name: weight or None}."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .errors import StylelabError


def parse_layer_spec(spec: str | Mapping[str, float | None] | list[str], option: str) -> dict[str, float | None]:
    """``"a:0.5,b"`` -> {"a": 0.5, "b": None}; None means "use the default weight"."""
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, str):
        items = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, weight = part.partition(":")
            items.append((name.strip(), weight.strip() if sep else None))
    else:
        items = [(name, None) for name in spec]
    if not items:
        raise StylelabError(f"{option} is empty: give at least one layer name")
    layers: dict[str, float | None] = {}
    for name, weight in items:
        if name in layers:
            raise StylelabError(f"{option}: layer {name} is listed twice")
        if weight is not None:
            try:
                weight = float(weight)
            except ValueError:
                raise StylelabError(f"{option}: weight of {name} is not a number: {weight!r}") from None
            if not math.isfinite(weight) or weight < 0:
                raise StylelabError(f"{option}: weight of {name} must be finite and >= 0, got {weight}")
        layers[name] = weight
    return layers
