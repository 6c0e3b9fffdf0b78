"""Image I/O and colour: anything Pillow reads becomes a float sRGB tensor; outputs are written atomically.

Tensors are (B, 3, H, W), float32, sRGB values in [0, 1].
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps

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
    if not path.is_file():  # a FIFO or a device would block or stream forever
        raise StylelabError(f"not a regular file: {path}")
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


_SRGB_PROFILE = None


def srgb_profile() -> bytes:
    """The ICC profile embedded in every output (littleCMS's built-in sRGB)."""
    global _SRGB_PROFILE
    if _SRGB_PROFILE is None:
        _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _SRGB_PROFILE


def to_srgb(img: Image.Image, path: str | os.PathLike = "") -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB (perceptual intent); others are taken as sRGB."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.tobytes() == srgb_profile():
            return img
        mode = "RGBA" if img.mode == "RGBA" else "RGB"
        out = ImageCms.profileToProfile(img, source, ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
                                        outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        warnings.warn(f"{path}: embedded ICC profile could not be applied ({exc}); read as sRGB", stacklevel=2)
        return img
    out.info.pop("icc_profile", None)
    return out


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
                img = to_srgb(img, path)
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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def image_files(path: str | os.PathLike, what: str) -> list[Path]:
    """A file, or the images in a folder (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise StylelabError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the {what} folder {path}")
        return files
    if not path.exists():
        raise StylelabError(f"{what} not found: {path}")
    return [path]


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


def spare_inputs(outputs, inputs) -> None:
    """Refuse, before any work, an output that is the same file as an input (also through a symbolic or a
    hard link): a result must never replace the photo it was made from."""
    inputs = [Path(p) for p in inputs]
    for output in outputs:
        output = Path(output)
        if not output.exists():
            continue  # a file that does not exist yet is no input
        for given in inputs:
            try:
                same = os.path.samefile(output, given)
            except OSError:
                continue
            if same:
                also = "" if output == given else f" (as {output})"
                raise StylelabError(f"the output would overwrite the input {given}{also}; choose another output "
                                    "name: inputs are never overwritten")


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


BIT_DEPTHS = (8, 16)


def _png16(array: np.ndarray, path: str) -> None:
    """A 16-bit RGB PNG with the sRGB profile (Pillow writes only 8-bit RGB): IHDR, iCCP, IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = array.shape
    rows = array.astype(">u2").reshape(h, w * 3).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()  # filter type 0 per scanline
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
        f.write(chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(srgb_profile())))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def _tiff16(array: np.ndarray, path: str) -> None:
    import tifffile

    tifffile.imwrite(path, array, photometric="rgb", iccprofile=srgb_profile())


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Write an image in the format its extension names, atomically, tagged sRGB; 16 bits for PNG/TIFF."""
    path = Path(path)
    fmt = output_format(path)
    check_bit_depth(path, bit_depth)
    if bit_depth == 16:
        t = image if isinstance(image, torch.Tensor) else pil_to_tensor(image)
        array = t[0].detach().float().clamp(0, 1).mul(65535).round().permute(1, 2, 0).cpu().numpy()
        array = np.ascontiguousarray(array.astype(np.uint16))
        def write(tmp):
            return (_png16 if fmt == "PNG" else _tiff16)(array, tmp)
    else:
        pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
        options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        def write(tmp):
            return pil.save(tmp, format=fmt, icc_profile=srgb_profile(), **options)
    try:
        write_atomically(path, write)
    except OSError as exc:
        raise StylelabError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_bit_depth(path: str | os.PathLike, bit_depth: int) -> None:
    if bit_depth not in BIT_DEPTHS:
        raise StylelabError(f"bit depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and output_format(path) not in ("PNG", "TIFF"):
        raise StylelabError(f"16-bit output needs a .png or .tif file, not {Path(path).suffix}")


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
