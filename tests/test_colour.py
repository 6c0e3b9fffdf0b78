"""Colour control and the options users of neural-style expect: luminance-only transfer, histogram matching,
style scale, style-stats init, the multi-scale pyramid, animations, ICC profiles and 16-bit output."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from conftest import make_rgb, make_stripes
from stylelab import StopOptimization, transfer
from stylelab.api import as_tensor, prepare_images
from stylelab.backbones import create_backbone
from stylelab.callbacks import Animator
from stylelab.cli import main
from stylelab.colour import match_color_histogram, rgb_to_yiq, with_content_chrominance, yiq_to_rgb
from stylelab.images import load_image, save_image, srgb_profile
from stylelab.optimize import LossSpec, StyleObjective

RUN = dict(weights="random", size=64, device="cpu")


@pytest.fixture(scope="module")
def images():
    return as_tensor(make_rgb(48, 64)), as_tensor(make_stripes(64, 64))


def chroma(image: torch.Tensor) -> torch.Tensor:
    return rgb_to_yiq(image.double())[:, 1:]


def test_yiq_round_trip():
    x = torch.rand(1, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-12)
    assert torch.allclose(rgb_to_yiq(torch.ones(1, 3, 1, 1, dtype=torch.float64))[0, :, 0, 0],
                          torch.tensor([1.0, 0, 0], dtype=torch.float64), atol=1e-5)  # white has no chroma


def test_luminance_mode_keeps_the_content_chrominance(images):
    content, style = images
    kept = transfer(content, style, iterations=15, original_colors="luminance", **RUN).image
    free = transfer(content, style, iterations=15, **RUN).image
    kept_err = (chroma(kept) - chroma(content)).abs().mean().item()
    free_err = (chroma(free) - chroma(content)).abs().mean().item()
    assert kept_err < 0.01 < free_err, (kept_err, free_err)
    assert not torch.allclose(rgb_to_yiq(kept)[:, :1], rgb_to_yiq(content)[:, :1], atol=0.01)  # luminance changed


def test_with_content_chrominance_by_hand():
    out, content = torch.rand(1, 3, 4, 4) * 0.5 + 0.25, torch.rand(1, 3, 4, 4) * 0.5 + 0.25
    mixed = with_content_chrominance(out, content)
    assert torch.allclose(rgb_to_yiq(mixed)[:, 0], rgb_to_yiq(out)[:, 0], atol=1e-5)
    assert torch.allclose(chroma(mixed), chroma(content), atol=1e-5)


def test_histogram_matching_gives_the_content_mean_and_covariance(images):
    content, style = images
    matched = match_color_histogram(style, content, clamp=False)[0].double().reshape(3, -1)
    c = content[0].double().reshape(3, -1)
    assert torch.allclose(matched.mean(1), c.mean(1), atol=1e-5)
    assert torch.allclose(torch.cov(matched, correction=0), torch.cov(c, correction=0), atol=1e-5)


def test_histogram_mode_changes_the_style_targets(images):
    content, style = images
    seen = {}
    for mode in ("none", "histogram"):
        result = transfer(content, style, iterations=20, original_colors=mode, content_weight=0, **RUN)
        seen[mode] = result.image
    c_stats = content[0].reshape(3, -1).mean(1)
    gap = {m: (img[0].reshape(3, -1).mean(1) - c_stats).abs().sum().item() for m, img in seen.items()}
    assert gap["histogram"] < gap["none"], gap  # style-only optimization lands on the content's colours


def test_style_scale_resizes_the_style_and_changes_the_grams(images):
    content, style = images
    net = create_backbone("vgg19", "random")
    _, (s1,) = prepare_images(net, content, [style], 64, 1.0)
    _, (s2,) = prepare_images(net, content, [style], 64, 2.0)
    assert max(s1.shape[-2:]) == 64 and max(s2.shape[-2:]) == 128
    spec = LossSpec({"relu4_2": 1.0}, {"relu1_1": 1.0, "relu2_1": 1.0}, 1.0, 1.0)
    a, b = (StyleObjective(net, content, [s], [1.0], spec).style_targets for s in (s1, s2))
    assert all(not torch.allclose(a[n][0], b[n][0], rtol=1e-2) for n in a)  # each target: (Gram,)


def test_style_stats_init_has_the_style_colour_statistics(images):
    content, style = images
    first = []

    def grab(event):
        first.append(event.image.clone())
        raise StopOptimization

    transfer(content, style, iterations=5, init="style-stats", callback=grab, **RUN)
    x0 = first[0][0].reshape(3, -1)
    s = style[0].reshape(3, -1)
    assert torch.allclose(x0.mean(1), s.mean(1), atol=0.05)
    assert torch.allclose(x0.std(1), s.std(1), atol=0.08)


def test_pyramid_ends_at_the_last_scale_and_starts_each_from_the_previous(images):
    content, style = images
    events = []
    result = transfer(content, style, iterations=4, scales=[32, 64],
                      callback=lambda e: events.append((e.iteration, e.iterations, e.image.clone())), **RUN)
    assert max(result.image.shape[-2:]) == 64 and result.image.shape[-2:] == (48, 64)
    assert [e[0] for e in events] == list(range(1, 9)) and {e[1] for e in events} == {8}
    assert events[3][2].shape[-2:] == (24, 32) and events[4][2].shape[-2:] == (48, 64)
    # the second scale starts from the first's result, upsampled (not from the content)
    assert not torch.allclose(events[4][2], content, atol=0.01)


def test_animation_gif_and_mp4(tmp_path, images):
    import av

    content, style = images
    for suffix in (".gif", ".mp4"):
        anim = Animator(tmp_path / f"a{suffix}", every=3)
        result = transfer(content, style, iterations=9, callback=anim, **RUN)
        anim.write(result.image)
        assert len(anim.frames) == 4  # iterations 1, 3, 6, 9; the result is added unless it is the last frame
        assert anim.written in (4, 5)
        if suffix == ".gif":
            with Image.open(tmp_path / "a.gif") as gif:
                assert gif.n_frames == anim.written and gif.size == (64, 48)
        else:
            with av.open(str(tmp_path / "a.mp4")) as video:
                frames = list(video.decode(video=0))
            assert len(frames) == anim.written + anim.fps and (frames[0].width, frames[0].height) == (64, 48)


def swapped_rgb_profile() -> bytes:
    """littleCMS's sRGB profile with the red and blue colorant tags swapped: a valid RGB profile in which
    the file's red channel means blue."""
    data = bytearray(srgb_profile())
    count = struct.unpack(">I", data[128:132])[0]
    tags = {}
    for i in range(count):
        at = 132 + 12 * i
        tags[bytes(data[at:at + 4])] = at
    for a, b in ((b"rXYZ", b"bXYZ"), (b"rTRC", b"bTRC")):
        ea, eb = tags[a], tags[b]
        data[ea + 4:ea + 12], data[eb + 4:eb + 12] = data[eb + 4:eb + 12], data[ea + 4:ea + 12]
    data[84:100] = bytes(16)  # profile ID (an MD5) no longer matches; zero means "not computed"
    return bytes(data)


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path):
    img = Image.new("RGB", (8, 8), (200, 40, 10))
    img.save(tmp_path / "tagged.png", icc_profile=swapped_rgb_profile())
    img.save(tmp_path / "plain.png")
    tagged, plain = load_image(tmp_path / "tagged.png"), load_image(tmp_path / "plain.png")
    assert torch.allclose(plain[0, :, 0, 0], torch.tensor([200, 40, 10]) / 255.0)
    r, g, b = tagged[0, :, 0, 0].tolist()
    assert b > 0.6 and r < 0.2, (r, g, b)  # red in the file, blue on screen


def test_outputs_carry_srgb_and_16_bit_is_exact(tmp_path):
    import tifffile

    image = torch.rand(1, 3, 5, 7)
    expected = (image[0].permute(1, 2, 0) * 65535).round().numpy().astype(np.uint16)
    save_image(image, tmp_path / "a8.png")
    with Image.open(tmp_path / "a8.png") as img:
        assert img.info["icc_profile"] == srgb_profile()
    save_image(image, tmp_path / "a.png", bit_depth=16)
    raw = (tmp_path / "a.png").read_bytes()
    ihdr = raw.index(b"IHDR")
    assert struct.unpack(">IIBB", raw[ihdr + 4:ihdr + 14]) == (7, 5, 16, 2)
    idat = raw.index(b"IDAT")
    length = struct.unpack(">I", raw[idat - 4:idat])[0]
    rows = np.frombuffer(zlib.decompress(raw[idat + 4:idat + 4 + length]), np.uint8).reshape(5, 1 + 7 * 6)
    assert (rows[:, 0] == 0).all()
    assert np.array_equal(rows[:, 1:].copy().view(">u2").reshape(5, 7, 3), expected)
    with Image.open(tmp_path / "a.png") as img:  # a valid PNG for other readers
        img.load()
        assert img.size == (7, 5) and ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
    save_image(image, tmp_path / "a.tif", bit_depth=16)
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), expected)


def test_cli_options_end_to_end(tmp_path, content_path, style_path, capsys):
    style2 = tmp_path / "style2.png"
    make_rgb(64, 64, seed=4).save(style2)
    out = tmp_path / "out.png"
    assert main(["transfer", str(content_path), str(style_path), str(style2), "--style-blend", "0.7,0.3",
                 "--style-scale", "0.5", "--original-colors", "luminance", "--scales", "32:64", "--init",
                 "style-stats", "--bit-depth", "16", "--animate", str(tmp_path / "anim.gif"), "--iterations", "3",
                 "--weights", "random", "--quiet", "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size == (64, 48)
    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.n_frames in (6, 7)  # iterations 1..6 (2 scales x 3, every one kept), and the result if new
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--style-blend", "equal"), ("--style-scale", "1.0"), ("--original-colors", "none"),
                            ("--scales", "--size"), ("--bit-depth", "8"), ("--animate-every", "100 frames")):
        assert option in help_text and f"{default}" in help_text


@pytest.mark.parametrize("extra, message", [
    (["--style-blend", "1,2"], "style blend needs 1"),
    (["--scales", "64,32"], "scales must increase"),
    (["--bit-depth", "16", "-o", "{tmp}/x.jpg"], "16-bit output needs a .png or .tif"),
    (["--animate", "{tmp}/a.avi"], "use .gif or .mp4"),
    (["--original-colors", "sepia"], "invalid choice"),
])
def test_cli_option_errors(tmp_path, content_path, style_path, capsys, extra, message):
    extra = [e.format(tmp=tmp_path) for e in extra]
    argv = ["transfer", str(content_path), str(style_path), "--weights", "random", "--iterations", "2"]
    argv += extra if "-o" in extra else [*extra, "-o", str(tmp_path / "o.png")]
    with pytest.raises(SystemExit) if "invalid choice" in message or "increase" in message else _nothing():
        assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*")) and not (tmp_path / "x.jpg").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
