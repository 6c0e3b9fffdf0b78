"""Time to a finished picture: the scale schedule (auto pyramid, per-scale budgets), the plain method one flag
away (``--plain``), the scaled L-BFGS pair test, and the study commands recording which mode ran."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from conftest import make_rgb, make_stripes
from stylelab import transfer
from stylelab.api import PLAIN, PYRAMID_START, as_tensor, scale_schedule
from stylelab.cli import build_parser, main
from stylelab.errors import StylelabError
from stylelab.images import load_image, save_image

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
    mode = "24×2 → 48×3, tolerance 0.5, scaled L-BFGS pair test"
    assert run["mode"] == mode and run["options"]["scales"] == [24, 48]
    assert f"| c0-s0 | {mode} | vgg19 |" in (out / "results.md").read_text()


def _small_loss(content, style, scale=1.0, **options):
    """Losses at every evaluation; at scale 1 the loss is ~1e-5 of the usual (both weights scaled down), so
    torch's y·s > 1e-10 refuses every L-BFGS pair (yet the steps are still far above fp32's resolution)."""
    losses = []
    transfer(content, style, size=48, iterations=12, content_weight=1e-5 * scale, style_weight=1e-2 * scale,
             seed=0, callback=lambda e: losses.append(e.loss), report_every=1, **{**RUN, **options})
    return losses


def test_plain_stalls_on_a_small_loss_where_the_default_pair_test_optimizes(images):
    plain, default = _small_loss(*images, **PLAIN), _small_loss(*images)
    assert plain[-1] > 0.9999 * plain[0]  # gradient descent with a unit step on a small loss: it hardly moves
    assert default[0] == plain[0] and default[-1] < 0.5 * default[0]  # the relative test keeps the pairs
    # the same objective ×1e5 (every weight by one factor): there torch's test keeps them too
    usual = _small_loss(*images, scale=1e5, **PLAIN)
    assert usual[0] == pytest.approx(plain[0] * 1e5, rel=1e-5) and usual[-1] < 0.5 * usual[0]


def test_cli_plain_is_one_flag_for_the_seeds_run_and_contradictions_are_refused(tmp_path, capsys):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(as_tensor(make_rgb(40, 48)), content)
    save_image(as_tensor(make_stripes(48, 48)), style)
    run = ["--weights", "random", "--size", "48", "--iterations", "4", "--quiet", "--device", "cpu"]
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "plain.png"), "--plain", *run]) == 0
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "spelled.png"), "--scales", "none",
                 "--tolerance", "0", "--convolution", "direct", "--precision", "fp32", "--lbfgs-curvature", "torch",
                 *run]) == 0
    assert torch.equal(load_image(tmp_path / "plain.png"), load_image(tmp_path / "spelled.png"))
    capsys.readouterr()
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "x.png"), "--plain",
                 "--lbfgs-curvature", "scaled", *run]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "stylelab: error: --plain runs --lbfgs-curvature torch; drop --lbfgs-curvature scaled"
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "x.png"), "--plain", "--conv", "auto",
                 *run]) == 2
    assert "drop --convolution auto" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "x.png"), "--plain", "--precision",
                 "auto", *run]) == 2
    assert "--plain runs --precision fp32; drop --precision auto" in capsys.readouterr().err
    assert main(["transfer", str(content), str(style), "-o", str(tmp_path / "x.png"), "--plain", "--channels-last",
                 *run]) == 2
    assert "--plain runs without --channels-last; drop it" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    layouts = [build_parser().parse_args(["transfer", "c.png", "s.png", "-o", "o.png", *flag]).channels_last
               for flag in ([], ["--channels-last"], ["--no-channels-last"])]
    assert layouts == [None, True, False]  # None: NHWC where bf16 runs on a CPU (precision auto on AMX)
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", str(content), str(style), "-o", str(tmp_path / "x.png"), "--lbfgs-curvature", "loose",
              *run])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'loose' (choose from 'scaled', 'torch')" in err


def test_transfer_checks_the_pair_test_name(images):
    with pytest.raises(StylelabError, match="unknown lbfgs_curvature 'loose'; choose scaled, torch"):
        transfer(*images, size=32, iterations=1, lbfgs_curvature="loose", **RUN)


def test_style_warmup_weighs_the_style_less_then_restarts_lbfgs(images, monkeypatch):
    """style_warmup=N: N evaluations with β × 0.1 (their events say so), then β with a fresh L-BFGS (a pair taken
    across the switch would mix two objectives); the N count inside iterations."""
    from stylelab.lbfgs import BatchedLBFGS
    from stylelab.optimize import WARMUP_STYLE_FACTOR

    held, step = [], BatchedLBFGS.step

    def counting(self, grad):  # the pairs the optimizer holds before each step
        held.append(self.count)
        return step(self, grad)

    monkeypatch.setattr(BatchedLBFGS, "step", counting)
    events = []
    result = transfer(*images, size=32, iterations=7, style_warmup=3, content_weight=1.0, style_weight=100.0,
                      tv_weight=0.0, report_every=1, callback=events.append, **RUN)
    assert result.iterations == 7 and [e.warmup for e in events] == [True] * 3 + [False] * 4
    betas = [(e.loss - e.content_loss) / e.style_loss for e in events]  # total = α·content + β·style, α = 1
    assert betas == pytest.approx([100.0 * WARMUP_STYLE_FACTOR] * 3 + [100.0] * 4, rel=1e-4)
    assert held == [0, 0, 1, 0, 0, 1]  # none again after the switch


def test_style_warmup_is_checked_against_the_first_scales_budget(images, tmp_path, capsys):
    with pytest.raises(StylelabError, match="style_warmup=6 leaves no evaluation of the full loss"):
        transfer(*images, size=32, iterations=6, style_warmup=6, **RUN)
    for bad in (-1, "fast", 2.5, True):
        with pytest.raises(StylelabError, match=f"style_warmup= takes 'auto' or a whole number >= 0, got {bad!r}"):
            transfer(*images, size=32, iterations=6, style_warmup=bad, **RUN)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(images[0], content)
    save_image(images[1], style)
    out = tmp_path / "x.png"
    assert main(["transfer", str(content), str(style), "-o", str(out), "--weights", "random", "--size", "32",
                 "--iterations", "4", "--style-warmup", "4", "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--style-warmup 4 leaves no evaluation" in err and not out.exists()
    assert main(["transfer", str(content), str(style), "-o", str(out), "--plain", "--style-warmup", "2",
                 "--weights", "random", "--size", "32", "--iterations", "4", "--quiet", "--device", "cpu"]) == 2
    assert "--plain runs --style-warmup 0; drop --style-warmup 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", str(content), str(style), "-o", str(out), "--style-warmup", "fast",
              "--weights", "random", "--size", "32", "--iterations", "4", "--quiet", "--device", "cpu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected auto or a whole number 0..1000000, got 'fast'" in err
    assert not out.exists()


def test_auto_style_warmup_is_twelve_percent_of_a_long_first_scale_from_the_content():
    from stylelab.api import warmup_evaluations
    from stylelab.optimize import WARMUP_MIN_BUDGET

    assert inspect.signature(transfer).parameters["style_warmup"].default == "auto"
    assert PLAIN["style_warmup"] == 0
    assert warmup_evaluations("auto", 500) == 60 == warmup_evaluations("auto", 500, "content")
    assert warmup_evaluations("auto", 1000) == 120
    assert warmup_evaluations("auto", WARMUP_MIN_BUDGET) == 36
    assert warmup_evaluations("auto", WARMUP_MIN_BUDGET - 1) == 0  # a short run has no evaluation to spare
    for other_start in ("random", "style-stats", torch.zeros(1, 3, 8, 8), "start.png"):
        assert warmup_evaluations("auto", 500, other_start) == 0  # measured only from the content image
    assert warmup_evaluations(7, 8, "random") == 7  # a number is taken as given


def test_the_default_run_warms_up_for_the_auto_share_and_plain_does_not(images, monkeypatch):
    import stylelab.optimize

    monkeypatch.setattr(stylelab.optimize, "WARMUP_MIN_BUDGET", 10)  # the rule at a test's size: 12 % of 50 is 6
    events, plain = [], []
    transfer(*images, size=32, iterations=50, report_every=1, callback=events.append, **RUN)
    assert [e.warmup for e in events] == [True] * 6 + [False] * 44
    transfer(*images, size=32, iterations=50, report_every=1, callback=plain.append, **RUN, **PLAIN)
    assert not any(e.warmup for e in plain) and len(plain) == 50


def test_the_study_records_a_style_warmup_in_the_mode():
    from stylelab.study.runs import run_mode

    assert run_mode([(512, 500)], 0.0, "torch") == "plain"
    assert run_mode([(512, 500)], 0.0, "torch", 30) == "512×500, style warm-up 30"


def test_a_study_run_with_the_defaults_records_the_auto_warmup(images, tmp_path, monkeypatch):
    import stylelab.optimize
    from stylelab.study.evaluate import Judges
    from stylelab.study.runs import RunSpec, run_all

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(images[0], content)
    save_image(images[1], style)
    monkeypatch.setattr(stylelab.optimize, "WARMUP_MIN_BUDGET", 10)
    spec = RunSpec("default", content, style, {"size": 32, "iterations": 30, **RUN})
    [record] = run_all([spec], tmp_path / "out", Judges("vgg19", "random"), quiet=True)
    assert record["mode"] == "32×30, scaled L-BFGS pair test, style warm-up 4"
