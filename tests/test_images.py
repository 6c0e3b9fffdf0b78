"""Image I/O: every Pillow mode becomes sRGB RGB, bad files are explained, writes are atomic."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_rgb
from stylelab.errors import StylelabError
from stylelab.images import load_image, resize_long_edge, save_image, tensor_to_pil


def _load(tmp_path, img, name="x.png", **save):
    path = tmp_path / name
    img.save(path, **save)
    return load_image(path)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "1"])
def test_opaque_modes_become_rgb(tmp_path, mode):
    src = make_rgb(20, 30).convert(mode)
    t = _load(tmp_path, src, "x.tif" if mode == "CMYK" else "x.png")
    assert t.shape == (1, 3, 20, 30) and t.dtype == torch.float32
    expected = np.asarray(src.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent -> white
    img.putpixel((1, 0), (0, 0, 255, 128))  # half transparent blue over white
    t = _load(tmp_path, img.convert(mode))
    assert torch.allclose(t[0, :, 0, 0], torch.ones(3))
    if mode == "RGBA":
        assert torch.allclose(t[0, :, 0, 1], torch.tensor([127 / 255, 127 / 255, 1.0]), atol=2 / 255)
        assert torch.allclose(t[0, :, 1, 1], torch.tensor([1.0, 0, 0]))


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    t = _load(tmp_path, img, transparency=0)
    assert torch.allclose(t[0, :, 0, 0], torch.ones(3))
    assert torch.allclose(t[0, :, 0, 1], torch.tensor([200, 100, 50]) / 255.0)


def test_16_bit_greyscale_keeps_its_range(tmp_path):
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    t = _load(tmp_path, Image.fromarray(array))
    np.testing.assert_allclose(t[0, 0, 0].numpy(), [0, 32768 / 65535, 1.0], atol=1e-6)
    assert torch.equal(t[0, 0], t[0, 2])


def test_exif_orientation_is_applied(tmp_path):
    img = make_rgb(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    t = _load(tmp_path, img, "x.jpg", exif=exif.tobytes())
    assert t.shape[-2:] == (30, 10)


def test_bad_files_are_one_line_errors(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.png", "not found")
    cases["directory"] = (tmp_path, "directory")
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.png", "empty")
    buffer = io.BytesIO()
    make_rgb(64, 64).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    cases["truncated"] = (tmp_path / "cut.png", "truncated or corrupt")
    (tmp_path / "notes.png").write_text("hello, not an image")
    cases["text"] = (tmp_path / "notes.png", "not an image")
    for name, (path, message) in cases.items():
        with pytest.raises(StylelabError, match=message) as info:
            load_image(path)
        assert "\n" not in str(info.value), name


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 MP, a few kB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(StylelabError, match="decompression-bomb"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"])
def test_save_formats_round_trip(tmp_path, suffix):
    image = torch.rand(1, 3, 12, 20)
    path = save_image(image, tmp_path / f"out{suffix}")
    with Image.open(path) as img:
        assert img.size == (20, 12) and img.mode == "RGB"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    if suffix in (".png", ".tif", ".tiff"):
        assert torch.equal(load_image(path), torch.round(image * 255) / 255)


def test_unknown_output_format(tmp_path):
    with pytest.raises(StylelabError, match="use one of .jpeg, .jpg, .png"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.bmpx")


def test_resize_keeps_aspect_and_range():
    out = resize_long_edge(torch.rand(1, 3, 30, 60), 20)
    assert out.shape[-2:] == (10, 20) and out.min() >= 0 and out.max() <= 1
    assert tensor_to_pil(out).size == (20, 10)
