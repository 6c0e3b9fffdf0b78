"""Progress callbacks used by the CLI: a progress bar, a JSON trace, intermediate frames, an animation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .errors import StylelabError
from .images import save_image, tensor_to_pil, write_atomically
from .optimize import ProgressEvent


class ProgressBar:
    """tqdm bar with the loss and it/s; writes to stderr so stdout stays clean."""

    def __init__(self, total: int, description: str = "stylize", disable: bool = False):
        self.total, self.description, self.disable, self.bar = total, description, disable, None

    def __call__(self, event: ProgressEvent) -> None:
        if self.bar is None:  # opened at the first evaluation, after weights and targets are ready
            self.bar = tqdm(total=self.total, desc=self.description, unit="it", disable=self.disable,
                            file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
        if self.bar.total != event.iterations:  # a batch run knows its total only once it is grouped
            self.bar.total = event.iterations
        self.bar.update(event.iteration - self.bar.n)
        self.bar.set_postfix_str(f"loss {event.loss:.4g} (content {event.content_loss:.3g}, "
                                 f"style {event.style_loss:.3g})", refresh=False)

    def write(self, message: str, quiet: bool = False) -> None:
        """A line on stderr that does not break the bar."""
        if quiet:
            return
        if self.bar is not None:
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

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
            **event.terms,
            "content_layers": event.content_layers,
            "style_layers": event.style_layers,
        })

    def write(self, **extra) -> None:
        data = {**self.meta, **extra, "iterations": self.records}
        write_atomically(self.path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))


def frame_path(output: str | Path, iteration: int) -> Path:
    """Where ``FrameSaver`` puts the image of ``iteration``: OUT.00050.png next to OUT.png."""
    output = Path(output)
    return output.parent / f"{output.stem}.{iteration:05d}{output.suffix}"


def frame_files_present(output: str | Path) -> list[Path]:
    """Files already where frames of ``output`` would go (any iteration), to check against the inputs."""
    output = Path(output)
    pattern = re.compile(rf"{re.escape(output.stem)}\.\d{{5,}}{re.escape(output.suffix)}")
    folder = output.parent if str(output.parent) else Path(".")
    return [p for p in folder.iterdir() if pattern.fullmatch(p.name)] if folder.is_dir() else []


class FrameSaver:
    """Saves the image every ``every`` evaluations as OUT.00050.png next to the output."""

    def __init__(self, output: str | Path, every: int):
        self.output, self.every = Path(output), every
        self.saved: list[Path] = []

    def __call__(self, event: ProgressEvent) -> None:
        if self.every > 0 and event.iteration % self.every == 0 and event.image is not None:
            self.saved.append(save_image(event.image.clamp(0, 1), frame_path(self.output, event.iteration)))


ANIMATION_FORMATS = (".gif", ".mp4")


def check_animation_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_FORMATS:
        raise StylelabError(f"cannot tell the animation format of {path}: use .gif or .mp4")
    return path


class Animator:
    """Keeps a frame every ``every`` evaluations (and the last one); ``write`` makes a GIF or an MP4.

    Frames of a pyramid's smaller scales are enlarged to the final size when written.
    """

    def __init__(self, path: str | Path, every: int, fps: int = 15):
        self.path, self.every, self.fps = check_animation_path(path), max(1, every), fps
        self.frames: list[Image.Image] = []
        self.written = 0  # frames in the file (the kept ones and the result)
        self._last: tuple[int, Image.Image] | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.image is None:
            return
        if event.iteration % self.every == 0 or event.iteration == 1:
            self.frames.append(tensor_to_pil(event.image.detach().clamp(0, 1).cpu()))
            self._last = None
        else:
            self._last = (event.iteration, event.image)

    def write(self, final: torch.Tensor | None = None) -> Path:
        frames = list(self.frames)
        last = final if final is not None else self._last[1].detach().clamp(0, 1).cpu() if self._last else None
        if last is not None:
            last = tensor_to_pil(last)
            if not frames or frames[-1].tobytes() != last.tobytes():  # the result often is the last frame
                frames.append(last)
        self.written = len(frames)
        if not frames:
            raise StylelabError("no frames to animate")
        size = frames[-1].size
        if self.path.suffix.lower() == ".mp4":  # yuv420p needs even sides
            size = (size[0] - size[0] % 2, size[1] - size[1] % 2)
        frames = [f if f.size == size else f.resize(size, Image.Resampling.BICUBIC) for f in frames]
        writer = self._gif if self.path.suffix.lower() == ".gif" else self._mp4
        write_atomically(self.path, lambda tmp: writer(frames, tmp))
        return self.path

    def _gif(self, frames: list[Image.Image], tmp: str) -> None:
        durations = [round(1000 / self.fps)] * (len(frames) - 1) + [1500]  # hold the result
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)

    def _mp4(self, frames: list[Image.Image], tmp: str) -> None:
        import av

        with av.open(tmp, mode="w", format="mp4") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=self.fps)
            stream.width, stream.height = frames[0].size
            stream.pix_fmt = "yuv420p"
            for frame in frames + [frames[-1]] * self.fps:  # hold the result for a second
                for packet in stream.encode(av.VideoFrame.from_image(frame)):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


class Chain:
    def __init__(self, *callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def __call__(self, event: ProgressEvent) -> None:
        for callback in self.callbacks:
            callback(event)
