"""One typed configuration of a transfer (nanoGPT's config dataclass as the model): five groups — the backbone,
the loss, the optimizer, the images, the runtime — that together carry every setting of ``stylelab.transfer``.

``transfer(content, style, config=TransferConfig(...))`` runs it; ``TransferConfig.from_options(**kwargs)``
reads the flat keyword form (``style_weight=…``, ``pooling=…``) that ``transfer`` and the CLI use, refusing an
unknown name with the valid ones; ``options()`` gives the flat form back. The backbone's own options (VGG's
``pooling``) travel inside the backbone group, and the registry validates them when the network is built. A test
checks that these fields, ``transfer``'s signature and the CLI's flags are the same set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import StylelabError

BACKBONE_OPTIONS = ("pooling",)  # flat names that are the backbone's own options (validated by the registry)


@dataclass(frozen=True)
class BackboneConfig:
    backbone: Any = "vgg19"  # a registered name, or a built Backbone reused across runs
    weights: str = "pretrained"  # "pretrained", "random" or a checkpoint path
    options: Mapping[str, Any] = field(default_factory=dict)  # the backbone's own, e.g. {"pooling": "avg"}
    text_model: str | None = None  # the CLIP that reads style_text; None: the backbone's CLIP or ViT-B-32
    text_weights: str | None = None  # None: random when weights="random", else pretrained


@dataclass(frozen=True)
class LossConfig:
    content_weight: float | None = None  # α; None: the backbone's (or the automatic balance's)
    style_weight: float | None = None  # β
    tv_weight: float | None = None
    content_layers: Any = None  # "relu4_2" / {"relu4_2": 1.0}; None: the backbone's
    style_layers: Any = None
    style_loss: str = "gram"  # see losses.STYLE_LOSSES
    balance: str | None = None  # "none" | "auto"; None: the backbone's
    feature_transform: str = "none"
    gram: str | None = None  # "token": the seed's token Gram (= style_loss="token-gram")
    gram_norm: str | None = None
    style_text: str | None = None  # a written style (CLIPstyler's losses), alone or with style images
    text_weight: float = 1.0
    text_crops: int = 64


@dataclass(frozen=True)
class OptimizerConfig:
    optimizer: str = "lbfgs"  # see optimize.OPTIMIZERS
    lr: float | None = None
    iterations: int = 500  # loss evaluations at the output's size
    coarse_iterations: int | None = None  # at each smaller scale of a pyramid; None: iterations
    lbfgs_history: int = 100
    lbfgs_curvature: str = "scaled"  # the L-BFGS pair test (lbfgs.py); "torch": the plain run's
    tolerance: float = 0.0  # stop once the loss improves by less than this fraction over 20 evaluations
    style_warmup: int | str = "auto"  # first evaluations with β × 0.1, then β and a fresh optimizer (0: none)


@dataclass(frozen=True)
class ImageConfig:
    size: int = 512  # long edge of the output
    scales: str | Sequence[int] | None = "none"  # "none" (one scale), "auto" or a pyramid's sizes
    style_scale: float = 1.0
    style_blend: Sequence[float] | None = None
    each_style: bool = False
    masks: Sequence[Any] | None = None
    original_colors: str = "none"
    init: Any = "content"


@dataclass(frozen=True)
class RuntimeConfig:
    device: Any = "auto"
    precision: str = "auto"  # "auto": bf16 on a CPU with AMX (runtime.bf16_pays), fp32 elsewhere
    channels_last: bool | None = None  # None: NHWC where bf16 runs on a CPU
    convolution: str = "auto"  # "direct": PyTorch's own 3×3 convolutions; "auto": Winograd on the CPU where it pays
    batch_size: int = 8
    report_every: int | None = None
    seed: int = 0


GROUPS = {"backbone": BackboneConfig, "loss": LossConfig, "optimizer": OptimizerConfig, "images": ImageConfig,
          "runtime": RuntimeConfig}


@dataclass(frozen=True)
class TransferConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def from_options(cls, **options) -> TransferConfig:
        """The flat keyword form (``transfer``'s and the CLI's names) as a typed configuration."""
        where = {f.name: group for group, kind in GROUPS.items() for f in fields(kind) if f.name != "options"}
        unknown = sorted(set(options) - set(where) - set(BACKBONE_OPTIONS))
        if unknown:
            raise StylelabError(f"unknown option {', '.join(unknown)}; valid options: "
                                f"{', '.join(sorted([*where, *BACKBONE_OPTIONS]))}")
        grouped: dict[str, dict] = {group: {} for group in GROUPS}
        for name, value in options.items():
            if name in BACKBONE_OPTIONS:
                if value is not None:
                    grouped["backbone"].setdefault("options", {})[name] = value
            else:
                grouped[where[name]][name] = value
        return cls(**{group: GROUPS[group](**values) for group, values in grouped.items()})

    def options(self) -> dict[str, Any]:
        """The flat keyword form, as ``transfer`` takes it."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            values = {f.name: getattr(getattr(self, group), f.name) for f in fields(GROUPS[group])}
            out.update(values.pop("options", {}) or {})
            out.update(values)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a built backbone is named by its name)."""
        data = asdict(self)
        backbone = data["backbone"]["backbone"]
        data["backbone"]["backbone"] = backbone if isinstance(backbone, str) else getattr(backbone, "name", "?")
        return data


def option_names() -> set[str]:
    """Every flat option name a configuration carries."""
    return {f.name for kind in GROUPS.values() for f in fields(kind) if f.name != "options"} | set(BACKBONE_OPTIONS)
