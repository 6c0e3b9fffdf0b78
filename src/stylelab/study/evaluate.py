"""Quality of stylized images: per-image metrics against content and style, set metrics (FID, ArtFID).

``Judges`` loads the networks once; what cannot be loaded is listed in ``unavailable`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import StylelabError, WeightsUnavailableError
from ..images import image_files, load_image, resize
from .judges import GramJudge, art_fid, frechet_distance, inception_features, load_art_inception, load_lpips
from .metrics import WEIGHTS_FREE, weights_free_metrics


# name: (compared with, higher is better, what it is)
METRICS = {
    **{name: (against, higher, "") for name, (_, against, higher) in WEIGHTS_FREE.items()},
    "lpips_content": ("content", False, "LPIPS (AlexNet) to the content"),
    "gram_style": ("style", False, "Gram style distance in the judge backbone"),
}
SET_METRICS = ("lpips_mean", "fid", "art_fid")


@dataclass
class Judges:
    """The optional, weight-needing metrics; each is None when its weights are unavailable."""

    judge: str = "vgg19"
    judge_weights: str = "pretrained"
    lpips_weights: str = "pretrained"
    inception_weights: str = "pretrained"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    unavailable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.lpips = self._try("lpips_content", lambda: load_lpips(self.lpips_weights).to(self.device))
        self.gram = self._try("gram_style", lambda: GramJudge(self.judge, self.judge_weights, self.device))
        self._inception = None

    def _try(self, name: str, load: Callable):
        try:
            return load()
        except WeightsUnavailableError as exc:
            self.unavailable[name] = str(exc)
            return None

    def inception(self):
        if self._inception is None and "fid" not in self.unavailable:
            self._inception = self._try("fid", lambda: load_art_inception(self.inception_weights).to(self.device))
        return self._inception

    def describe(self) -> dict[str, str]:
        """Which network each metric used, or why it is missing."""
        out = {}
        if self.lpips is not None:
            out["lpips_content"] = f"LPIPS v0.1 alex (AlexNet weights: {self.lpips_weights})"
        if self.gram is not None:
            out["gram_style"] = f"judge {self.gram.name}"
        if self._inception is not None:
            out["fid"] = f"ArtFID Inception-v3 ({self.inception_weights})"
        return {**out, **{k: f"unavailable: {v}" for k, v in self.unavailable.items()}}

    @torch.no_grad()
    def measure(self, output: Tensor, content: Tensor, style: Tensor) -> dict[str, float | None]:
        """Every per-image metric; None where the judge is unavailable."""
        values: dict[str, float | None] = dict(weights_free_metrics(output, content, style))
        values["lpips_content"] = None
        if self.lpips is not None:
            c = resize(content, tuple(output.shape[-2:]))
            values["lpips_content"] = float(self.lpips(output.to(self.device), c.to(self.device))[0])
        values["gram_style"] = self.gram.distance(output, style) if self.gram is not None else None
        return values

    @torch.no_grad()
    def set_metrics(self, outputs: Sequence[Tensor], contents: Sequence[Tensor], styles: Sequence[Tensor]
                    ) -> dict[str, float | None]:
        """ArtFID = (1 + mean LPIPS(content, output)) · (1 + FID(styles, outputs)); needs ≥ 2 of each."""
        values: dict[str, float | None] = dict.fromkeys(SET_METRICS)
        if self.lpips is not None:
            values["lpips_mean"] = sum(
                float(self.lpips(o.to(self.device), resize(c, tuple(o.shape[-2:])).to(self.device))[0])
                for o, c in zip(outputs, contents)) / len(outputs)
        if len(outputs) < 2 or len(styles) < 2:
            self.unavailable.setdefault("fid", "FID needs at least 2 outputs and 2 style images")
            return values
        net = self.inception()
        if net is not None:
            values["fid"] = frechet_distance(inception_features(net, outputs), inception_features(net, styles))
        if values["fid"] is not None and values["lpips_mean"] is not None:
            values["art_fid"] = art_fid(values["lpips_mean"], values["fid"])
        return values


def pair_up(outputs: list[Path], others: list[Path], what: str) -> list[Path]:
    """One file for all outputs, or as many as there are outputs (paired in sorted order)."""
    if len(others) == 1:
        return others * len(outputs)
    if len(others) != len(outputs):
        raise StylelabError(f"{len(outputs)} outputs but {len(others)} {what} images: give one {what} image, "
                            f"or a folder with one per output (paired by sorted name)")
    return others


def evaluate_paths(content: str, style: str, output: str, judges: Judges) -> dict:
    """Metrics of every output against its content and style, and the set metrics; JSON-ready."""
    outputs = image_files(output, "output")
    contents = pair_up(outputs, image_files(content, "content"), "content")
    style_files = image_files(style, "style")
    styles = pair_up(outputs, style_files, "style")
    loaded: dict[Path, Tensor] = {}

    def load(p: Path) -> Tensor:
        if p not in loaded:
            loaded[p] = load_image(p)
        return loaded[p]

    rows = []
    for o, c, s in zip(outputs, contents, styles):
        rows.append({"output": str(o), "content": str(c), "style": str(s),
                     "metrics": judges.measure(load(o), load(c), load(s))})
    sets = judges.set_metrics([load(o) for o in outputs], [load(c) for c in contents],
                              [load(s) for s in dict.fromkeys(style_files)])
    return {"images": rows, "set": sets, "judges": judges.describe()}


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def metrics_table(rows: Sequence[tuple[str, dict[str, float | None]]]) -> str:
    """A Markdown table: one row per image, one column per metric (arrows say which way is better)."""
    names = list(METRICS)
    head = ["image"] + [f"{n} {'↑' if METRICS[n][1] else '↓'}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, values in rows:
        lines.append("| " + " | ".join([label] + [format_value(values.get(n)) for n in names]) + " |")
    return "\n".join(lines)
