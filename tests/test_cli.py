"""The command line: end to end, listings, and every bad input (one stderr line, exit 2, no output file)."""

import json
import os
from contextlib import nullcontext
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import make_rgb
from stylelab.backbones import create_backbone
from stylelab.cli import main

FAST = ["--weights", "random", "--size", "48", "--iterations", "4", "--device", "cpu"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_transfer_end_to_end_with_trace_and_frames(capsys, tmp_path, content_path, style_path):
    out = tmp_path / "out.png"
    trace = tmp_path / "trace.json"
    code, _, err = run(capsys, "transfer", content_path, style_path, "-o", out, *FAST, "--iterations", "6",
                       "--save-every", "3", "--trace", trace, "--style-layers", "relu1_1:0.5,relu2_1")
    assert code == 0, err
    with Image.open(out) as img:
        assert img.size == (48, 36) and img.mode == "RGB"  # content is 64x48, long edge 48
    assert "random init" in err and "wrote" in err
    frames = sorted(p.name for p in tmp_path.glob("out.0*.png"))
    assert frames == ["out.00003.png", "out.00006.png"]
    data = json.loads(trace.read_text())
    assert data["backbone"] == "vgg19" and data["style_layers"] == {"relu1_1": 0.5, "relu2_1": 0.25}
    assert [r["iteration"] for r in data["iterations"]] == [1, 2, 3, 4, 5, 6]
    first = data["iterations"][0]
    assert set(first) >= {"iteration", "time", "loss", "content", "style", "style_layers"}
    assert set(first["style_layers"]) == {"relu1_1", "relu2_1"}
    assert data["iterations"][-1]["loss"] < first["loss"]


def test_a_folder_of_contents_is_one_batch_written_into_a_folder(capsys, tmp_path, style_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["b.png", "a.jpg"]):
        make_rgb(48, 64, seed=i).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, "transfer", photos, style_path, "-o", tmp_path / "styled", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == ["a.png", "b.png"]
    assert "2 images in 1 batch(es)" in err and "2 image(s) in" in err and "image-it/s" in err
    with Image.open(tmp_path / "styled" / "a.png") as img:
        assert img.size == (48, 36)


def test_several_contents_times_each_style_follow_an_output_pattern(capsys, tmp_path, content_path, style_path):
    other = tmp_path / "other.png"
    make_rgb(64, 48, seed=3).save(other)
    second_style = tmp_path / "dots.png"
    make_rgb(32, 32, seed=4).save(second_style)
    (tmp_path / "out").mkdir()
    code, _, err = run(capsys, "transfer", "-c", content_path, "-c", other, style_path, second_style,
                       "--each-style", "--batch-size", "2", "-o", tmp_path / "out" / "{content}_{style}.jpg", *FAST)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["content_dots.jpg", "content_style.jpg", "other_dots.jpg", "other_style.jpg"]
    assert "4 images in 2 batch(es)" in err  # two sizes, two images each
    with Image.open(tmp_path / "out" / "other_dots.jpg") as img:
        assert img.size == (36, 48)


def test_quiet_prints_nothing_but_the_random_weights_warning(capsys, tmp_path, content_path, style_path):
    code, out, err = run(capsys, "transfer", content_path, style_path, "-o", tmp_path / "o.jpg", *FAST, "--quiet")
    assert code == 0 and out == ""
    assert err.strip().count("\n") == 0 and "random init" in err


def test_adam_avg_pooling_and_init_path(capsys, tmp_path, content_path, style_path):
    out = tmp_path / "o.webp"
    code, _, err = run(capsys, "transfer", content_path, style_path, "-o", out, *FAST, "--optimizer", "adam",
                       "--pooling", "avg", "--init", style_path, "--content-weight", "0", "--quiet")
    assert code == 0, err and out.exists()


def test_backbones_and_layers_listings(capsys):
    code, out, _ = run(capsys, "backbones")
    assert code == 0
    for name in ("clip-rn50", "clip-rn50-sequential", "clip-vit-b16", "vgg16", "vgg19", "resnet50", "timm:NAME",
                 "open_clip:ARCH[:TAG]"):
        assert name in out, name
    code, out, _ = run(capsys, "layers", "vgg19")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["layer", "channels", "stride"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if not line.startswith("#")}
    assert rows["relu4_2"][:3] == ["512", "8", "features.22"] and rows["pool5"][:2] == ["512", "32"]
    assert len(rows) == 37 and "relu1_1:1" in out


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    out = capsys.readouterr().out
    for text in ("--iterations N", "(default: 500)", "(default: 512)", "(default: lbfgs)", "(default: vgg19)",
                 "(default: pretrained)"):
        assert text in out


def _nan_checkpoint(path):
    net = create_backbone("vgg19", "random")
    state = {f"features.{k}": v.clone() for k, v in net.features.state_dict().items()}
    state["features.0.bias"][:] = float("nan")
    torch.save(state, path)
    return path


BAD = {
    "missing content": (["{tmp}/nope.png", "{style}"], "not found"),
    "folder without images": (["{nothing}", "{style}"], "no images"),
    "no style": (["-c", "{content}"], "no style: give CONTENT STYLE"),
    "batch output is a file": (["-c", "{content}", "-c", "{style}", "{style}", "-o", "{text}"], "is a file"),
    "batch pattern": (["-c", "{content}", "-c", "{style}", "{style}", "-o", "{tmp}/{{colour}}.png"],
                      "use only {content} and {style}"),
    "batch names repeat": (["-c", "{content}", "-c", "{content}", "{style}", "-o", "{tmp}/out"], "two outputs"),
    "batch animation": (["-c", "{content}", "-c", "{style}", "{style}", "-o", "{tmp}/out", "--animate",
                         "{tmp}/a.gif"], "single content"),
    "batch style missing": (["-c", "{content}", "{tmp}/nope.png"], "style not found"),
    "tf32 on the cpu": (["{content}", "{style}", "--precision", "tf32", "--device", "cpu"], "needs a CUDA device"),
    "unknown precision": (["{content}", "{style}", "--precision", "fp8"], "invalid choice: 'fp8'"),
    "empty file": (["{empty}", "{style}"], "empty"),
    "truncated": (["{truncated}", "{style}"], "truncated or corrupt"),
    "not an image": (["{text}", "{style}"], "not an image"),
    "bomb": (["{content}", "{bomb}"], "decompression-bomb"),
    "size zero": (["{content}", "{style}", "--size", "0"], "out of range"),
    "size absurd": (["{content}", "{style}", "--size", "100000"], "out of range"),
    "size not a number": (["{content}", "{style}", "--size", "big"], "not a whole number"),
    "unknown backbone": (["{content}", "{style}", "--backbone", "alexnet"], "unknown backbone 'alexnet'; available: clip-rn50, clip-rn50-sequential, clip-vit-b16, resnet50, vgg16, vgg19, open_clip:ARCH[:TAG], timm:NAME"),
    "unknown style layer": (["{content}", "{style}", "--style-layers", "relu1_1,relu9_1"], "valid layers: conv1_1"),
    "unknown content layer": (["{content}", "{style}", "--content-layers", "fc7"], "unknown layer 'fc7'"),
    "unknown optimizer": (["{content}", "{style}", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    "unknown device": (["{content}", "{style}", "--device", "gpu7"], "unknown device 'gpu7'"),
    "cuda absent": (["{content}", "{style}", "--device", "cuda:97"], "cuda"),
    "output dir missing": (["{content}", "{style}", "-o", "{tmp}/no/such/dir/out.png"], "does not exist"),
    "output is a dir": (["{content}", "{style}", "-o", "{tmp}"], "is a directory"),
    "output format": (["{content}", "{style}", "-o", "{tmp}/out.xyz"], "cannot tell the image format"),
    "negative weight": (["{content}", "{style}", "--style-weight", "-1"], "must be finite and >= 0"),
    "nan weight": (["{content}", "{style}", "--content-weight", "nan"], "must be finite"),
    "weights file missing": (["{content}", "{style}", "--weights", "{tmp}/w.pth"], "no such file"),
    "wrong checkpoint": (["{content}", "{style}", "--weights", "{text}"], "not a readable PyTorch checkpoint"),
    "non-finite loss": (["{content}", "{style}", "--weights", "{nan}"], "loss became nan at iteration 1"),
    "pretrained offline": (["{content}", "{style}", "--weights", "pretrained"], "not cached"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_no_output(capsys, tmp_path, content_path, style_path, case):
    argv, expected = BAD[case]
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(content_path.read_bytes()[:200])
    text = tmp_path / "text.png"
    text.write_text("plain text")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)
    nan = _nan_checkpoint(tmp_path / "nan.pth") if case == "non-finite loss" else tmp_path / "unused.pth"
    (tmp_path / "nothing").mkdir()
    names = dict(tmp=tmp_path, nothing=tmp_path / "nothing", style=style_path, content=content_path, empty=empty, truncated=truncated, text=text,
                 bomb=bomb, nan=nan)
    argv = [a.format(**names) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "result.png")]
    defaults = [x for x in FAST if not (case.startswith(("size", "weights", "wrong", "non-finite", "pretrained",
                                                          "unknown device", "cuda")))]
    if case.startswith(("weights", "wrong", "non-finite", "pretrained")):
        defaults = ["--size", "48", "--iterations", "4", "--device", "cpu"]
    if case.startswith("size"):
        defaults = ["--weights", "random", "--iterations", "4", "--device", "cpu"]
    if case in ("unknown device", "cuda absent"):
        defaults = ["--weights", "random", "--size", "48", "--iterations", "4"]
    before = set(os.listdir(tmp_path))
    with pytest.raises(SystemExit) if case in ("size zero", "size absurd", "size not a number",
                                               "unknown optimizer", "negative weight", "nan weight",
                                               "unknown precision") else nullcontext():
        code = main(["transfer", *argv, *defaults])
        assert code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], err
    assert "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before  # no output, no temp file


def _cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, "STYLELAB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "stylelab", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_subprocess_bad_input_is_exactly_one_line(tmp_path, style_path):
    proc = _cli("transfer", tmp_path / "missing.png", style_path, "-o", tmp_path / "o.png", *FAST)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("stylelab: error: content not found")
    assert not (tmp_path / "o.png").exists()


def test_subprocess_argparse_error_is_one_line(tmp_path):
    proc = _cli("transfer", "a.png")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "required" in proc.stderr


def test_demo_offline_falls_back_to_random_weights(tmp_path):
    proc = _cli("demo", "-o", tmp_path / "demo.png", "--size", "40", "--iterations", "3", "--device", "cpu",
                env_extra={"TORCH_HOME": str(tmp_path / "th")})
    assert proc.returncode == 0, proc.stderr
    assert "not cached" in proc.stderr and "continues with --weights random" in proc.stderr
    with Image.open(tmp_path / "demo.png") as img:
        assert img.size == (40, 30)
    with Image.open(tmp_path / "demo-sheet.png") as sheet:
        assert sheet.size[1] == 30 and sheet.size[0] > 3 * 30  # content | style | result
