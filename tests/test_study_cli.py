"""The study commands end to end (offline, random weights, tiny images): files, JSON fields, sheet layout,
resuming, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stylelab.cli import main
from stylelab.images import load_image, tensor_to_pil
from stylelab.study.sheets import fit_height

from conftest import make_rgb

RUN_FIELDS = {"id", "backbone", "weights", "content_layers", "style_layers", "seconds", "seconds_per_iteration",
              "iterations", "peak_memory_mib", "final", "metrics", "environment", "curve", "image"}
ENV_FIELDS = {"device", "torch", "numeric_mode", "date", "stylelab"}
FAST = ["--weights", "random", "--size", "48", "--iterations", "6", "--quiet", "--device", "cpu"]


def assert_sheet_cells(out, data, cells_by_position):
    """Every image sits where results.json's sheet layout says, at the layout's cell height."""
    sheet = np.asarray(Image.open(out / "sheet.png"))
    layout = data["sheet"]
    assert sheet.shape[:2] == (layout["height"], layout["width"])
    for (r, c), path in cells_by_position.items():
        left, top, right, bottom = layout["cells"][r][c]
        expected = np.asarray(tensor_to_pil(fit_height(load_image(path), bottom - top)))
        assert np.array_equal(sheet[top:bottom, left:left + expected.shape[1]], expected), (r, c)


def test_sweep_writes_sheet_results_and_resumes(tmp_path, content_path, style_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", str(content_path), str(style_path), "--backbone", "vgg19", "--style-layers",
            "relu1_1,relu2_1", "relu1_1:0.5,relu3_1", "--content-layers", "relu2_2", "relu3_1", "-o", str(out),
            "--plain", *FAST]
    assert main(args) == 0
    data = json.loads((out / "results.json").read_text())
    assert ENV_FIELDS <= set(data["environment"])
    assert [r["id"] for r in data["runs"]] == ["c0-s0", "c0-s1", "c1-s0", "c1-s1"]
    for r in data["runs"]:
        assert RUN_FIELDS <= set(r) and ENV_FIELDS <= set(r["environment"])
        assert len(r["curve"]) == 6 and r["final"]["loss"] == r["curve"][-1][2]
        assert r["metrics"]["ssim_content"] is not None and r["metrics"]["lpips_content"] is None  # offline
    assert data["runs"][1]["style_layers"] == {"relu1_1": 0.5, "relu3_1": (64 / 256) ** 2}
    assert data["runs"][2]["content_layers"] == {"relu3_1": 1.0}
    assert "unavailable" in data["judges"]["gram_style"]
    assert data["sheet"]["rows"] == 2 and data["sheet"]["columns"] == 2 + 2
    assert_sheet_cells(out, data, {(0, 0): content_path, (0, 1): style_path,
                                   **{(i, 2 + j): out / "runs" / f"c{i}-s{j}.png" for i in range(2) for j in range(2)}})
    md = (out / "results.md").read_text()
    assert all(r["mode"] == "plain" for r in data["runs"])  # --plain: the seed's single-scale run
    assert "| c1-s1 | plain | vgg19 | relu3_1 | relu1_1,relu3_1 |" in md and "Environment:" in md

    # Resume: nothing redone; then one run's record removed: only that one is redone.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    capsys.readouterr()
    assert main([*args[:-len(FAST)], *[a for a in FAST if a != "--quiet"]]) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier, kept") == 4
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    (out / "runs" / "c0-s1.json").unlink()
    assert main([*args[:-len(FAST)], *[a for a in FAST if a != "--quiet"]]) == 0
    err = capsys.readouterr().err
    assert err.count("finished earlier, kept") == 3 and "run 2/4 c0-s1: vgg19" in err
    # A changed option is a different run: everything is redone.
    assert main([*args, "--seed", "1"]) == 0
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in (out / "runs").iterdir() if p.suffix == ".png")


def test_compare_backbones_sheet_curves_table(tmp_path, content_path, style_path, capsys):
    style2 = tmp_path / "style2.png"
    make_rgb(64, 64, seed=5).save(style2)
    out = tmp_path / "cmp"
    backbones = ["vgg19", "clip-rn50", "clip-vit-b16"]
    assert main(["compare", str(content_path), str(style_path), str(style2), "--backbones", ",".join(backbones),
                 "-o", str(out), "--content-weight", "0.01", *FAST]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [(r["backbone"], r["style"]) for r in data["runs"]] == [(b, str(s)) for s in (style_path, style2)
                                                                   for b in backbones]
    assert data["sheet"]["rows"] == 2 and data["sheet"]["columns"] == 2 + len(backbones)
    assert_sheet_cells(out, data, {(0, 0): style_path, (1, 0): style2, (0, 1): content_path,
                                   **{(i, 2 + j): out / data["runs"][i * 3 + j]["image"]
                                      for i in range(2) for j in range(3)}})
    assert set(data["sets"]) == set(backbones)
    for r in data["runs"]:
        assert RUN_FIELDS <= set(r) and r["seconds"] > 0 and r["peak_memory_mib"] > 0
        assert r["environment"]["device"] == "cpu"
    curves = Image.open(out / "curves.png")
    assert curves.format == "PNG" and curves.size[0] > 500
    md = (out / "results.md").read_text()
    assert md.count("| s") >= 6 and "art_fid" in md


def test_features_command(tmp_path, content_path):
    out = tmp_path / "f.png"
    assert main(["features", str(content_path), "--backbone", "clip-rn50", "--weights", "random", "--layers",
                 "relu3,layer1.0", "--size", "64", "--channels", "4", "--pca", "--quiet", "-o", str(out)]) == 0
    sheet = Image.open(out)
    plain = tmp_path / "g.png"
    assert main(["features", str(content_path), "--backbone", "clip-rn50", "--weights", "random", "--layers",
                 "relu3,layer1.0", "--size", "64", "--channels", "4", "--quiet", "-o", str(plain)]) == 0
    assert sheet.size[0] > Image.open(plain).size[0]  # the PCA column


@pytest.mark.parametrize("argv, message", [
    (["features", "{content}", "--weights", "random", "--layers", "relu9_9", "-o", "{tmp}/f.png"],
     "valid layers: conv1_1, relu1_1"),
    (["sweep", "{content}", "{style}", "--weights", "random", "--style-layers", "relu1_1", "bogus", "-o",
      "{tmp}/sw"], "unknown layer 'bogus'"),
    (["sweep", "{content}", "{tmp}/missing.png", "--style-layers", "relu1_1", "-o", "{tmp}/sw"], "not found"),
    (["compare", "{content}", "{style}", "--backbones", "vgg19,nope", "-o", "{tmp}/cmp"], "nope"),
    (["compare", "{content}", "{style}", "-o", "{content}"], "is a file"),
    (["compare", "{content}", "{style}", "--backbones", "vgg19", "-o", "{tmp}/cmp"], "not cached"),  # offline
    (["sweep", "{content}", "{style}", "--style-layers", "relu1_1", "-o", "{tmp}/sw"], "not cached"),
    (["evaluate", "--content", "{content}", "--style", "{style}", "--output", "{tmp}/none"], "not found"),
    (["compare", "{content}", "{style}", "--weights", "random", "--precision", "tf32", "--device", "cpu", "-o",
      "{tmp}/cmp"], "tf32 needs a CUDA device"),
])
def test_study_bad_input_one_line(tmp_path, content_path, style_path, capsys, argv, message):
    argv = [a.format(content=content_path, style=style_path, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("stylelab: error:")
    assert not (tmp_path / "sw").exists() and not (tmp_path / "cmp").exists() and not (tmp_path / "f.png").exists()


def test_sweep_records_its_numeric_mode(tmp_path, content_path, style_path):
    out = tmp_path / "sweep"
    assert main(["sweep", str(content_path), str(style_path), "--style-layers", "relu1_1,relu2_1", "--precision",
                 "bf16", "-o", str(out), *FAST]) == 0
    run, = json.loads((out / "results.json").read_text())["runs"]
    assert run["options"]["precision"] == "bf16" and run["environment"]["numeric_mode"].startswith("bf16 autocast")
    assert run["final"]["loss"] < run["curve"][0][2]


def test_sweep_records_what_precision_auto_ran(tmp_path, content_path, style_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # a CPU with AMX
    out = tmp_path / "sweep"
    assert main(["sweep", str(content_path), str(style_path), "--style-layers", "relu1_1", "-o", str(out), *FAST]) == 0
    run, = json.loads((out / "results.json").read_text())["runs"]
    assert run["options"]["precision"] == "auto"  # what was asked, and what ran:
    assert run["environment"]["numeric_mode"].startswith(
        "bf16 autocast (backbone; Grams, losses, optimizer fp32), channels_last")


def test_evaluate_files_and_folders(tmp_path, content_path, style_path, capsys):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for i in range(3):
        make_rgb(48, 64, seed=i + 1).save(outputs / f"{i}.png")
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--content", str(content_path), "--style", str(style_path), "--output", str(outputs),
                 "--judge-weights", "random", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(".png |") == 3 and "ssim_content ↑" in printed
    data = json.loads(report.read_text())
    assert ENV_FIELDS <= set(data["environment"]) and len(data["images"]) == 3
    first = data["images"][0]["metrics"]
    assert first["gram_style"] > 0 and first["lpips_content"] is None
    assert "needs at least 2" in data["judges"]["fid"]
    # the content itself as output: SSIM 1, and a folder with a mismatched count is refused
    assert main(["evaluate", "--content", str(content_path), "--style", str(style_path), "--output",
                 str(content_path), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["images"][0]["metrics"]["ssim_content"] == pytest.approx(1.0)
    capsys.readouterr()
    styles = tmp_path / "styles"
    styles.mkdir()
    for i in range(2):
        make_rgb(32, 32, seed=i).save(styles / f"{i}.png")
    assert main(["evaluate", "--content", str(content_path), "--style", str(styles), "--output", str(outputs)]) == 2
    assert "3 outputs but 2 style images" in capsys.readouterr().err
