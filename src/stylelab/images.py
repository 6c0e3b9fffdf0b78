"""Image I/O and colour: anything Pillow reads becomes a float sRGB tensor; outputs are written atomically.

Tensors are (B, 3, H, W), float32, sRGB values in [0, 1].
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .errors import StylelabError

# Pillow's decompression-bomb threshold (about 89 megapixels); above it we refuse the file.
MAX_INPUT_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_SIZE = 16384  # longest output edge we accept; beyond this is almost surely a typo

OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def _check_input_file(path: Path) -> None:
    if not path.exists():
        raise StylelabError(f"image not found: {path}")
    if path.is_dir():
        raise StylelabError(f"expected an image file but got a directory: {path}")
    if path.stat().st_size == 0:
        raise StylelabError(f"image file is empty (0 bytes): {path}")


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) float32 sRGB in [0, 1]; transparency composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit greyscale: keep the precision instead of Pillow's clipping convert("RGB").
        grey = np.asarray(img, dtype=np.float64)
        grey = grey / (65535.0 if grey.max(initial=0) > 255 or mode.startswith("I;16") else 255.0)
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    rgb = img.convert("RGB")  # L, P, CMYK, YCbCr, 1 ...
    return np.asarray(rgb, dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, max_pixels: int = MAX_INPUT_PIXELS) -> torch.Tensor:
    """Read an image file as a (1, 3, H, W) float32 sRGB tensor, EXIF orientation applied."""
    path = Path(path)
    _check_input_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise StylelabError(
                        f"image {path} is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} "
                        "(decompression-bomb guard); downscale it first"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                array = _to_rgb_array(img)
    except StylelabError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise StylelabError(f"image {path} is too large (decompression-bomb guard): {exc}") from None
    except Image.UnidentifiedImageError:
        raise StylelabError(f"not an image Pillow can read: {path}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylelabError(f"cannot read image {path} (truncated or corrupt?): {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0).contiguous()


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """A PIL image (any mode) -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(_to_rgb_array(img))).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB PIL image (rounded, clamped)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def size_for_long_edge(height: int, width: int, long_edge: int) -> tuple[int, int]:
    """(H, W) scaled so that max(H, W) == long_edge, aspect ratio kept."""
    scale = long_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased when shrinking, clamped back to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 1)


def resize_long_edge(image: torch.Tensor, long_edge: int) -> torch.Tensor:
    return resize(image, size_for_long_edge(image.shape[-2], image.shape[-1], long_edge))


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise StylelabError(
            f"cannot tell the image format of {path!s}: use one of {', '.join(sorted(OUTPUT_FORMATS))}"
        )
    return OUTPUT_FORMATS[suffix]


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before any optimization) if ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise StylelabError(f"output path is a directory: {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StylelabError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StylelabError(f"output path is not writable: {path}")
    return path


def write_atomically(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Write an image in the format its extension names, atomically."""
    path = Path(path)
    fmt = output_format(path)
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        write_atomically(path, lambda tmp: pil.save(tmp, format=fmt, **options))
    except OSError as exc:
        raise StylelabError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def side_by_side(images: list[torch.Tensor], height: int, gap: int = 4) -> torch.Tensor:
    """Resize each (1, 3, h, w) image to ``height`` and place them in a row on white."""
    rows = [resize(img, (height, max(1, round(img.shape[-1] * height / img.shape[-2])))) for img in images]
    width = sum(r.shape[-1] for r in rows) + gap * (len(rows) - 1)
    sheet = torch.ones(1, 3, height, width)
    x = 0
    for r in rows:
        sheet[..., :, x : x + r.shape[-1]] = r.cpu()
        x += r.shape[-1] + gap
    return sheet
