"""Progress callbacks used by the CLI: a progress bar, a JSON trace, intermediate frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from .images import save_image, write_atomically
from .optimize import ProgressEvent


class ProgressBar:
    """tqdm bar with the loss and it/s; writes to stderr so stdout stays clean."""

    def __init__(self, total: int, description: str = "stylize", disable: bool = False):
        self.total, self.description, self.disable, self.bar = total, description, disable, None

    def __call__(self, event: ProgressEvent) -> None:
        if self.bar is None:  # opened at the first evaluation, after weights and targets are ready
            self.bar = tqdm(total=self.total, desc=self.description, unit="it", disable=self.disable,
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
        self.bar.update(event.iteration - self.bar.n)
        self.bar.set_postfix_str(f"loss {event.loss:.4g} (content {event.content_loss:.3g}, "
                                 f"style {event.style_loss:.3g})", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TraceRecorder:
    """Keeps one record per loss evaluation; ``write`` saves them as JSON (atomically)."""

    def __init__(self, path: str | Path, meta: dict | None = None):
        self.path, self.meta, self.records = Path(path), dict(meta or {}), []

    def __call__(self, event: ProgressEvent) -> None:
        self.records.append({
            "iteration": event.iteration,
            "time": round(event.elapsed, 6),
            "loss": event.loss,
            "content": event.content_loss,
            "style": event.style_loss,
            "tv": event.tv_loss,
            "content_layers": event.content_layers,
            "style_layers": event.style_layers,
        })

    def write(self, **extra) -> None:
        data = {**self.meta, **extra, "iterations": self.records}
        write_atomically(self.path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))


class FrameSaver:
    """Saves the image every ``every`` evaluations as OUT.00050.png next to the output."""

    def __init__(self, output: str | Path, every: int):
        output = Path(output)
        self.every, self.stem, self.suffix, self.parent = every, output.stem, output.suffix, output.parent
        self.saved: list[Path] = []

    def __call__(self, event: ProgressEvent) -> None:
        if self.every > 0 and event.iteration % self.every == 0 and event.image is not None:
            path = self.parent / f"{self.stem}.{event.iteration:05d}{self.suffix}"
            self.saved.append(save_image(event.image.clamp(0, 1), path))


class Chain:
    def __init__(self, *callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def __call__(self, event: ProgressEvent) -> None:
        for callback in self.callbacks:
            callback(event)
