"""The benchmark harness runs and reports what it promises (no timing is asserted here)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_bench_smoke(tmp_path, capsys):
    import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--backbones", "vgg19,clip-rn50", "--sizes", "48", "--iterations", "8", "--repeats", "1",
                       "--variants", "fp32,fp32-nhwc,tf32,bf16", "--batch", "2", "--device", "cpu",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["env"]["weights"].startswith("random") and set(data["env"]["variants"]) == {"fp32", "fp32-nhwc", "bf16"}
    assert data["env"]["cpu"].endswith(f"{torch.backends.cpu.get_cpu_capability()})")  # the machine, named
    rows = {(r["impl"], r["variant"], r["backbone"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {  # tf32 is left out on the CPU
        *{("stylelab", v, b, 1) for v in ("fp32", "fp32-nhwc", "bf16") for b in ("vgg19", "clip-rn50")},
        *{("stylelab", v, "vgg19", 2) for v in ("fp32", "fp32-nhwc", "bf16")}, ("reference", "fp32", "vgg19", 1)}
    for r in rows.values():
        assert r["ms_per_iteration"] > 0 and r["end_to_end_s"] > 0 and r["images_per_s"] > 0
    exact = rows[("stylelab", "fp32", "vgg19", 1)]
    assert exact["loss_rel_diff_vs_fp32"] == 0 and exact["psnr_vs_fp32_db"] is None  # identical
    assert 0 < rows[("stylelab", "bf16", "vgg19", 1)]["loss_rel_diff_vs_fp32"]
    assert 10 < rows[("stylelab", "bf16", "vgg19", 1)]["psnr_vs_fp32_db"] < 200
    assert exact["speedup_vs_reference"] > 0 and rows[("stylelab", "fp32", "vgg19", 2)]["speedup_vs_reference"] > 0
    assert exact["gflop_per_iteration"] > rows[("stylelab", "fp32", "clip-rn50", 1)]["gflop_per_iteration"]
    assert 16 * 2 < exact["ops_per_evaluation"] < 1000  # at least VGG19's convolutions, forward and backward
    assert rows[("stylelab", "fp32", "vgg19", 2)]["gflop_per_iteration"] == 2 * exact["gflop_per_iteration"]
    assert "PSNR" in capsys.readouterr().out


def test_reference_loop_reduces_its_loss():
    """The baseline must be a working Gatys loop, or its timings mean nothing."""
    import reference

    features = reference.vgg19_features()
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    model, content_losses, style_losses = reference.build(features, content, style)
    out, evaluations = reference.run(features, content, style, iterations=20)
    assert evaluations >= 20
    model(out)
    after = sum(s.loss for s in style_losses).item()
    model(content)
    before = sum(s.loss for s in style_losses).item()
    assert after < before / 2 and out.shape == content.shape


def test_pyramid_bench_smoke(tmp_path, capsys):
    import pyramid

    assert pyramid.pyramid_scales(1024) == [256, 512, 1024] and pyramid.pyramid_scales(200) == [200]
    out = tmp_path / "pyramid.json"
    assert pyramid.main(["--sizes", "64", "--iterations", "2", "--device", "cpu", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["pyramid"]["scales"] == [64] and row["single"]["iterations_per_scale"] == 2
    assert len(row["pyramid"]["seconds_per_scale"]) == 1 and 0 <= row["single"]["ssim_content"] <= 1
    assert "| 64 | pyramid |" in capsys.readouterr().out


def test_memory_bench_fits_and_extrapolates_on_the_cpu(tmp_path):
    import memory

    from stylelab.backbones.vgg import VGG19_LAYERS

    saved = memory.saved_bytes_per_pixel(size=64)
    # Independent bound: every ReLU output up to relu5_1 must be kept for the backward pass.
    relus = sum(c / s**2 * 4 for n, _, c, s in VGG19_LAYERS if n.startswith("relu") and n <= "relu5_1")
    assert relus <= saved <= 3 * relus
    out = tmp_path / "memory.json"
    assert memory.main(["--device", "cpu", "--cpu-sizes", "128,448", "--iterations", "2", "--budgets", "24,0",
                        "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    small, large = data["rows"]
    assert small["budget_gib"] == 24 and large["budget_gib"] == 141
    assert 0 < small["largest_square_px"] <= large["largest_square_px"] and "predicted" in small["method"]
    assert data["lbfgs_history_bytes_per_pixel"] == 2 * 100 * 3 * 4


def test_lbfgs_bench_counts_operators_and_host_reads(tmp_path):
    import lbfgs

    out = tmp_path / "lbfgs.json"
    assert lbfgs.main(["--height", "16", "--width", "16", "--history", "8", "--steps", "2", "--device", "cpu",
                       "--json", str(out)]) == 0
    ours_torch, ours = json.loads(out.read_text())["rows"]
    assert ours_torch["optimizer"] == "torch.optim.LBFGS" and ours_torch["host_reads_per_step"] >= 2
    assert ours["host_reads_per_step"] == 0 and ours["ops_per_step"] < ours_torch["ops_per_step"]
    assert ours["ms_per_step"] > 0 and ours_torch["ms_per_step"] > 0


def test_the_gpu_script_runs_only_valid_bench_commands(tmp_path):
    """bench/gpu.sh is run on a lent GPU, where a typo costs device time: every command in it must parse."""
    import importlib
    import shlex
    import subprocess

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    commands = [shlex.split(line.strip().replace('$out', str(tmp_path)))
                for line in text.splitlines() if line.strip().startswith("python3 bench/")]
    assert {c[1] for c in commands} == {"bench/lbfgs.py", "bench/bench.py", "bench/memory.py"}
    for command in commands:
        module = importlib.import_module(Path(command[1]).stem)
        args = module.parse_args(command[2:])
        assert str(args.json).startswith(str(tmp_path))
    with pytest.raises(SystemExit):
        importlib.import_module("bench").parse_args(["--variants", "fp32,fp64"])


def test_time_to_quality_judges_a_bf16_run_by_fp32_losses(tmp_path):
    """A bf16 run's own losses are not the bar's kind: its pictures are scored again by the plain fp32 loss."""
    import time_to_quality

    assert time_to_quality.main(["--sizes", "32", "--iterations", "6", "--candidates", "bf16-nhwc,plain-nhwc",
                                 "--out", str(tmp_path), "--tag", "t"]) == 0
    report = json.loads((tmp_path / "time-to-quality-t.json").read_text())
    rows = {r["candidate"]: r for r in report["sizes"]["32"]["rows"]}
    fast, exact = rows["bf16-nhwc"], rows["plain-nhwc"]
    assert exact["judged_in_fp32"] is None and fast["judged_in_fp32"]["pictures"] >= 1
    own = fast["judged_in_fp32"]["own_losses"]["final"]
    assert fast["final_loss"] != own and fast["final_loss"] == pytest.approx(own, rel=0.05)  # bf16: 8-bit mantissa
    assert (tmp_path / "time-to-quality-t-32.jpg").exists()
    assert {r["convolution"] for r in rows.values()} == {"direct"}  # what ran is recorded: the plain path here
    assert report["environment"]["cpu"].endswith(f"{torch.backends.cpu.get_cpu_capability()})")


def test_a_warmup_candidate_records_only_the_objectives_own_losses(tmp_path):
    import time_to_quality

    assert time_to_quality.main(["--sizes", "32", "--iterations", "34", "--candidates", "warmup-0.1-30",
                                 "--out", str(tmp_path), "--tag", "w"]) == 0
    rows = json.loads((tmp_path / "time-to-quality-w.json").read_text())["sizes"]["32"]["rows"]
    warm = next(r for r in rows if r["candidate"] == "warmup-0.1-30")
    assert warm["options"] == {"style_warmup": 30}
    assert warm["trace"][0][0] == 31  # the warm-up's 30 evaluations are not the objective's losses: not recorded


def test_warmup_trials_count_evaluations_to_the_plain_bar_and_restore_the_factor(tmp_path, capsys):
    import warmup_trials
    from conftest import make_rgb, make_stripes

    import stylelab.optimize

    factor = stylelab.optimize.WARMUP_STYLE_FACTOR
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    make_rgb(48, 64).save(content)
    make_stripes(64, 64).save(style)
    assert warmup_trials.main(["--backbone", "vgg19", "--size", "32", "--iterations", "6", "--limit", "8",
                               "--trials", "0.1:2,1:2", "--content", str(content), "--style", str(style)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("plain: 6 evaluations, loss ") and len(lines) == 3
    assert lines[1].startswith("β × 0.1 for 2: the bar ") and lines[2].startswith("β × 1 for 2: the bar ")
    assert stylelab.optimize.WARMUP_STYLE_FACTOR == factor  # the product's factor again


@pytest.mark.parametrize("arm", [[], ["--off"]])
def test_heap_bench_runs_each_arm(arm, capsys):
    import heap as heap_bench

    assert heap_bench.main(["--backbone", "vgg19", "--size", "32", "--evaluations", "5", "--burn-in", "1", *arm]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("off " if arm else "kept ") and " s/evaluation over 3 " in line


def test_judge_bisects_to_the_first_picture_at_the_level():
    import time_to_quality

    losses = [5.0, 4.0, 3.0, 2.5, 2.0, 1.0]
    calls = []

    class Table(time_to_quality.Judge):  # a picture here is its index; its score comes from the list
        def __call__(self, picture):
            calls.append(picture)
            return losses[picture]

    table = Table(None, None, {})
    points = [(k + 1, float(k), 0.0) for k in range(len(losses))]
    pictures = list(range(len(losses)))
    assert table.first_below(points, pictures, 2.5) == (3, 2.5)
    assert table.first_below(points, pictures, 0.5) is None  # the last picture is above: not reached
    assert len(calls) < len(losses)  # bisection, not a scan


def test_split_input_convolution_sees_the_image_finer_than_bf16_autocast():
    """bench/bf16_rounding.py's claim: hi + lo stacked gives conv(x) (bf16 weights) rounded once, where autocast
    first rounds the image itself; both against a float64 convolution with the same bf16 weights."""
    from torch import nn

    from bf16_rounding import SplitInputConv2d

    torch.manual_seed(0)
    conv, x = nn.Conv2d(3, 16, 3, padding=1), torch.rand(2, 3, 24, 24)
    conv.requires_grad_(False)  # frozen, as a backbone's are
    exact = nn.functional.conv2d(x.double(), conv.weight.bfloat16().double(), conv.bias.bfloat16().double(),
                                 padding=1)

    def error(module) -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(x).double()
        return float(((out - exact).abs() / exact.abs().clamp_min(1e-3)).mean())

    autocast_error = error(conv)
    conv.__class__ = SplitInputConv2d
    assert error(conv) < 0.4 * autocast_error
    assert conv(x).dtype == torch.float32  # outside autocast it is the plain convolution
    assert torch.equal(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))


@pytest.mark.parametrize("variant", ["split-input-gram-bf16", "split-input-continuation"])
def test_bf16_rounding_bench_judges_its_pictures_and_restores_the_library(tmp_path, variant):
    import bf16_rounding

    import stylelab.api as api
    from stylelab.optimize import StyleObjective

    saved = api.create_backbone, StyleObjective.__call__, torch.backends.mkldnn.matmul.fp32_precision
    out = tmp_path / "r.json"
    assert bf16_rounding.main([variant, "4", "--backbone", "vgg19", "--weights", "random", "--size", "32",
                               "--judge-from", "2", "--bar", "1.0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sorted(report["fp32_loss"]) == ["2", "4"] and len(report["seconds"]) == 4 and report["failure"] is None
    assert all(loss > 0 for loss in report["fp32_loss"].values())
    assert (api.create_backbone, StyleObjective.__call__, torch.backends.mkldnn.matmul.fp32_precision) == saved
