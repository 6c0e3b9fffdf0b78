"""Time to a finished picture: the scale schedule (auto pyramid, per-scale budgets), the plain method one flag
away (``--scales none --tolerance 0``), and the study commands recording which mode ran."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_rgb, make_stripes
from stylelab import transfer
from stylelab.api import PYRAMID_START, as_tensor, scale_schedule
from stylelab.cli import main
from stylelab.errors import StylelabError
from stylelab.images import save_image

RUN = dict(weights="random", device="cpu")


@pytest.fixture(scope="module")
def images():
    return as_tensor(make_rgb(48, 64)), as_tensor(make_stripes(64, 64))


def test_auto_pyramid_doubles_from_the_start_to_the_output_size():
    assert PYRAMID_START == 128
    assert scale_schedule(512, "auto", 300, 100) == [(128, 100), (256, 100), (512, 300)]
    assert scale_schedule(1000, "auto", 50) == [(128, 50), (256, 50), (512, 50), (1000, 50)]
    assert scale_schedule(300, "auto", 10, 5) == [(128, 5), (300, 10)]
    assert scale_schedule(700, "auto", 10, 5) == [(128, 5), (256, 5), (700, 10)]
    assert scale_schedule(192, "auto", 10, 5) == [(192, 10)]  # at most 1.5× the start: one scale
    assert scale_schedule(512, "none", 500, 7) == [(512, 500)] == scale_schedule(512, None, 500)
    assert scale_schedule(999, [64, 96], 9, 3) == [(64, 3), (96, 9)]  # a list is taken as given
    with pytest.raises(StylelabError, match="unknown scales 'big'; choose auto, none"):
        scale_schedule(512, "big")
    with pytest.raises(StylelabError, match="scales must increase"):
        scale_schedule(512, [256, 128])


def test_scales_none_is_the_plain_single_scale_run(images):
    """--scales none --tolerance 0 is exactly the single-scale run of --iterations evaluations."""
    content, style = images
    plain = transfer(content, style, size=64, iterations=6, scales="none", tolerance=0, **RUN)
    listed = transfer(content, style, size=64, iterations=6, scales=[64], **RUN)
    assert plain.iterations == 6 and torch.equal(plain.image, listed.image)


def test_coarse_iterations_budget_each_smaller_scale(images):
    content, style = images
    seen = []
    result = transfer(content, style, size=64, scales=[32, 48, 64], iterations=4, coarse_iterations=2,
                      callback=lambda e: seen.append((e.iteration, e.iterations, e.image.shape[-1])), **RUN)
    assert result.iterations == 2 + 2 + 4
    assert [width for _, _, width in seen] == [32, 32, 48, 48, 64, 64, 64, 64]
    assert {total for _, total, _ in seen} == {8}  # the progress total counts every scale's budget
    with pytest.raises(StylelabError, match="coarse_iterations= must be a whole number >= 1"):
        transfer(content, style, size=64, coarse_iterations=0, **RUN)


def test_cli_scales_none_auto_and_the_sweep_records_the_mode(tmp_path, capsys):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(as_tensor(make_rgb(40, 48)), content)
    save_image(as_tensor(make_stripes(48, 48)), style)
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "a.png"), "--weights", "random",
                 "--size", "48", "--iterations", "3", "--scales", "none", "--tolerance", "0", "--quiet"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", str(content), str(style), "-o", str(tmp_path / "b.png"), "--weights", "random",
              "--size", "48", "--iterations", "3", "--scales", "zoom", "--quiet"])
    assert exit_.value.code == 2 and not (tmp_path / "b.png").exists()
    assert "expected auto, none, sizes like 256,512,1024" in capsys.readouterr().err
    out = tmp_path / "sweep"
    assert main(["sweep", str(content), str(style), "-o", str(out), "--weights", "random", "--size", "48",
                 "--iterations", "3", "--coarse-iterations", "2", "--scales", "24,48", "--tolerance", "0.5",
                 "--style-layers", "relu1_1", "--quiet", "--device", "cpu"]) == 0
    run, = json.loads((out / "results.json").read_text())["runs"]
    assert run["mode"] == "24×2 → 48×3, tolerance 0.5" and run["options"]["scales"] == [24, 48]
    assert "| c0-s0 | 24×2 → 48×3, tolerance 0.5 | vgg19 |" in (out / "results.md").read_text()
