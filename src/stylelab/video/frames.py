"""Video files through PyAV: probe an input, read its frames as tensors, write H.264 with the audio copied.

Frames are (1, 3, H, W) float32 sRGB in [0, 1], like every image in stylelab. Frame numbers are 1-based.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from ..errors import StylelabError
from ..images import resize, write_atomically

# Containers we write, by suffix. Each takes H.264 and copies most audio codecs (the copy is checked first).
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
# Demuxers that read a single picture: an image file is not a video, even though FFmpeg opens it.
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int  # video packets: the frames a decode yields (checked again while reading)
    rate: Fraction  # frames per second (the stream's average rate)
    width: int
    height: int
    audio: str | None  # the first audio stream's codec, copied into the output; None without one
    start: Fraction = Fraction(0)  # the video stream's first time (s): kept, so the copied audio stays in sync


def output_format(path: str | os.PathLike) -> str:
    """The container to write for ``path`` (by its suffix); one line naming the choices otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise StylelabError(f"cannot tell the video format of {path}: use one of {', '.join(VIDEO_FORMATS)}")
    return VIDEO_FORMATS[suffix]


def _reason(exc: Exception) -> str:
    """FFmpeg's words without PyAV's errno prefix."""
    return getattr(exc, "strerror", None) or str(exc)


def _open(path: Path):
    if not path.exists():
        raise StylelabError(f"video not found: {path}")
    if not path.is_file():
        raise StylelabError(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise StylelabError(f"video file is empty (0 bytes): {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise StylelabError(f"not a video PyAV can read: {path} ({_reason(exc)})") from None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Check that ``path`` is a video whose first frame decodes; count its frames without decoding them all."""
    path = Path(path)
    with _open(path) as container:
        if any(part in container.format.name for part in _IMAGE_DEMUXERS):
            raise StylelabError(f"{path} is a still image ({container.format.name}), not a video")
        if not container.streams.video:
            raise StylelabError(f"{path} has no video (no video stream with frames)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise StylelabError(f"{path}: no decoder for its video codec")
        codec = stream.codec_context.name
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        start = Fraction(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise StylelabError(f"cannot decode the {codec} video of {path}: {_reason(exc)}") from None
        if first is None:
            raise StylelabError(f"{path} has no video frames")
        width, height = first.width, first.height
        container.seek(0)
        try:  # demuxing is cheap (no decoding); packets without data are the demuxer's flush markers
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as exc:
            raise StylelabError(f"cannot read {path}: {_reason(exc)}") from None
    if not rate or rate <= 0:
        raise StylelabError(f"{path}: the video stream has no frame rate")
    return VideoInfo(path, max(count, 1), Fraction(rate), width, height, audio, Fraction(start))


def frame_to_tensor(frame: av.VideoFrame, size: tuple[int, int]) -> torch.Tensor:
    """A decoded frame -> (1, 3, H, W) in [0, 1] at ``size`` (bicubic, antialiased, as every stylelab input)."""
    array = frame.to_ndarray(format="rgb24")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0).float().div_(255)
    return resize(tensor, size)


def read_frames(path: str | os.PathLike, size: tuple[int, int]) -> Iterator[torch.Tensor]:
    """Every frame of the first video stream, in order, at ``size`` (H, W)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame_to_tensor(frame, size)
        except av.error.FFmpegError as exc:
            raise StylelabError(f"cannot decode {path}: {_reason(exc)}") from None


def check_audio_copy(info: VideoInfo, fmt: str) -> None:
    """Fail now, not after hours of stylizing, when the input's audio cannot be copied into the output's
    container: write the container's header (audio stream only) into memory."""
    if info.audio is None:
        return
    try:
        with av.open(str(info.path)) as source:
            with av.open(io.BytesIO(), "w", format=fmt) as out:
                out.add_stream_from_template(source.streams.audio[0])
                out.start_encoding()
    except (av.error.FFmpegError, ValueError) as exc:
        raise StylelabError(f"the audio of {info.path} ({info.audio}) cannot be copied into a {fmt} file "
                            f"({_reason(exc)}); use .mkv") from None


def video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: str | os.PathLike, frames: Iterable[Path], rate: Fraction, audio_from: Path | None = None,
                start: Fraction = Fraction(0)) -> Path:
    """Encode the image files ``frames`` (all one size, even sides) as H.264 at ``rate`` into ``path``
    (atomically), the first at ``start`` seconds, with the first audio stream of ``audio_from`` remuxed (packets
    copied, not re-encoded)."""
    path = Path(path)
    fmt = output_format(path)
    frames = list(frames)

    def write(tmp: str) -> None:
        source = av.open(str(audio_from)) if audio_from is not None else None
        try:
            audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
            with av.open(tmp, mode="w", format=fmt) as out:
                with Image.open(frames[0]) as first:
                    width, height = first.size
                stream = out.add_stream(video_codec(), rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                if stream.codec_context.name == "libx264":
                    stream.options = {"crf": "18"}  # x264's "visually lossless" (its default, 23, smears brushwork)
                audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
                audio = _audio_packets(source, audio_in) if audio_in is not None else iter(())
                first = round(start * rate)  # the input's first frame time, in frames
                pending = next(audio, None)
                for index, file in enumerate(frames):
                    with Image.open(file) as image:
                        frame = av.VideoFrame.from_image(image.convert("RGB"))
                    frame.pts, frame.time_base = index + first, 1 / rate
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    # Interleave: the audio up to this frame's time goes in beside it.
                    while pending is not None and pending.pts * pending.time_base <= (index + first + 1) / rate:
                        pending.stream = audio_out
                        out.mux(pending)
                        pending = next(audio, None)
                for packet in stream.encode():
                    out.mux(packet)
                while pending is not None:
                    pending.stream = audio_out
                    out.mux(pending)
                    pending = next(audio, None)
        finally:
            if source is not None:
                source.close()

    try:
        write_atomically(path, write)
    except av.error.FFmpegError as exc:
        raise StylelabError(f"cannot write {path}: {_reason(exc)}") from None
    return path


def _audio_packets(source, stream) -> Iterator[av.Packet]:
    for packet in source.demux(stream):
        if packet.dts is not None and packet.pts is not None:  # flush markers carry no data
            yield packet
