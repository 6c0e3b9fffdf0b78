"""Hardening (issue 11): no weights file runs code, no input is overwritten, checks before the run,
Ctrl-C/SIGTERM keep the image, offline fails fast and quietly, messages name what the user typed."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import make_rgb, make_stripes
from stylelab.cli import main

FAST = ["--weights", "random", "--size", "32", "--iterations", "3", "--device", "cpu"]
SRC = Path(__file__).resolve().parents[1] / "src" / "stylelab"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("stylelab: error:")]
    assert len(errors) == 1, err
    return errors[0]


# -- 1. a weights file never runs code ---------------------------------------------------------------------


def _scripted(module: torch.nn.Module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(module)


class _Payload(torch.nn.Module):
    """A TorchScript module whose __setstate__ (run by torch.jit.load) writes a file: the attack."""

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.marker = marker

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
        self.weight = state[0]
        self.marker = state[1]
        self.training = state[2]
        torch.save(self.weight, self.marker)


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """(archive, marker): the archive's code writes the marker when torch.jit.load opens it (checked here,
    so the tests below prove something)."""
    folder = tmp_path_factory.mktemp("payload")
    archive, marker = folder / "RN50.pt", folder / "PWNED"
    _scripted(_Payload(str(marker))).save(str(archive))
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(archive))
    assert marker.exists(), "the test archive must run its code under torch.jit.load"
    marker.unlink()
    return archive, marker


@pytest.fixture
def images(tmp_path):
    content, style, output = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "o.png"
    make_rgb(32, 40).save(content)
    make_stripes(32, 32).save(style)
    make_rgb(32, 40, seed=3).save(output)
    return content, style, output


WEIGHTS_COMMANDS = {
    "transfer clip-rn50": lambda c, s, o, w, d: ["transfer", c, s, "-o", d / "x.png", *FAST, "--backbone",
                                                   "clip-rn50", "--weights", w],
    "transfer clip-rn50-sequential": lambda c, s, o, w, d: ["transfer", c, s, "-o", d / "x.png", *FAST,
                                                              "--backbone", "clip-rn50-sequential", "--weights", w],
    "transfer clip-vit-b16": lambda c, s, o, w, d: ["transfer", c, s, "-o", d / "x.png", *FAST, "--backbone",
                                                      "clip-vit-b16", "--weights", w],
    "transfer vgg19": lambda c, s, o, w, d: ["transfer", c, s, "-o", d / "x.png", *FAST, "--weights", w],
    "features": lambda c, s, o, w, d: ["features", c, "-o", d / "x.png", "--backbone", "clip-rn50", "--weights",
                                       w, "--size", "32"],
    "sweep": lambda c, s, o, w, d: ["sweep", c, s, "-o", d / "sw", "--style-layers", "relu1", *FAST,
                                    "--backbone", "clip-rn50", "--weights", w],
    "compare": lambda c, s, o, w, d: ["compare", c, s, "-o", d / "cp", "--backbones", "clip-rn50", *FAST,
                                      "--weights", w],
    "evaluate --judge-weights": lambda c, s, o, w, d: ["evaluate", "--content", c, "--style", s, "--output", o,
                                                       "--judge", "clip-rn50", "--judge-weights", w],
    "sweep --judge-weights": lambda c, s, o, w, d: ["sweep", c, s, "-o", d / "sw", "--style-layers", "relu1_1",
                                                    *FAST, "--judge", "clip-rn50", "--judge-weights", w],
    "evaluate --lpips-weights": lambda c, s, o, w, d: ["evaluate", "--content", c, "--style", s, "--output", o,
                                                       "--lpips-weights", w],
    "evaluate --inception-weights": lambda c, s, o, w, d: ["evaluate", "--content", c, "--style", s, "--output",
                                                           o, "--inception-weights", w],
}


@pytest.mark.parametrize("command", list(WEIGHTS_COMMANDS))
def test_a_torchscript_payload_never_runs(capsys, tmp_path, images, payload, command):
    archive, marker = payload
    argv = WEIGHTS_COMMANDS[command](*images, archive, tmp_path)
    if command == "evaluate --inception-weights":  # FID's network loads only for a set of outputs
        argv = ["evaluate", "--content", images[0], "--style", tmp_path, "--output", tmp_path,
                "--inception-weights", archive]
    code, _, err = run(capsys, *argv)
    line = one_line_error(code, err)
    assert not marker.exists(), f"{command}: the archive's code ran"
    flag = command.split()[-1] if "--" in command else "--weights"
    assert f"{flag} {archive}" in line, line  # the message names what the user typed
    assert not list(tmp_path.glob("x.png")) and not (tmp_path / "sw" / "sheet.png").exists()


def test_genuine_torchscript_archive_reads_the_same_tensors_without_running_it(tmp_path):
    from stylelab.backbones.clip import build_vision_tower
    from stylelab.torchscript import read_torchscript_tensors

    class Whole(torch.nn.Module):  # OpenAI's files hold the whole CLIP model: visual.*, logit_scale, …
        def __init__(self):
            super().__init__()
            self.visual = build_vision_tower("RN50", seed=1)
            self.logit_scale = torch.nn.Parameter(torch.tensor(4.6))
            self.register_buffer("half_buffer", torch.arange(6.0).half().view(2, 3).t())  # fp16, strided

        def forward(self, x):
            return self.visual.conv1(x)

    model = Whole().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(1, 3, 32, 32)), tmp_path / "RN50.pt")
    expected = model.state_dict()
    got = read_torchscript_tensors(tmp_path / "RN50.pt")
    assert set(expected) <= set(got)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_the_restricted_reader_refuses_any_other_global(tmp_path):
    from stylelab.torchscript import read_torchscript_tensors

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Exploit(), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ValueError, match=r"refused global (posix|os|nt)\.system"):
        read_torchscript_tensors(archive)
    assert not marker.exists()


def _dotted(node) -> str:
    import ast

    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_no_code_path_runs_code_from_a_file():
    """No call in the package can execute code from a file: no torch.jit.load, no pickle.load(s), no
    torch.load or torch.hub.load_state_dict_from_url without weights_only=True (the restricted reader subclasses pickle.Unpickler and refuses
    every global it does not know; that is the one use of pickle)."""
    import ast

    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            safe_load = isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
            if name.endswith("jit.load") or name in ("pickle.load", "pickle.loads") or \
                    (name in ("torch.load", "torch.hub.load_state_dict_from_url") and not safe_load):
                offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []


# -- 2. outputs never overwrite inputs ---------------------------------------------------------------------


def _digest(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("case", ["same", "symlink", "hardlink", "style", "mask", "init", "trace", "pattern",
                                  "frames"])
def test_an_output_that_is_an_input_is_refused_before_any_work(capsys, tmp_path, images, monkeypatch, case):
    content, style, _ = images
    monkeypatch.setattr("stylelab.cli.transfer", lambda *a, **k: pytest.fail("the run started"))
    mask = tmp_path / "mask.png"
    Image.new("RGB", (40, 32), "white").save(mask)
    before = {p: _digest(p) for p in (content, style, mask)}
    argv = ["transfer", content, style, *FAST]
    if case == "same":
        argv += ["-o", content]
    elif case == "symlink":
        (tmp_path / "link.png").symlink_to(content)
        argv += ["-o", tmp_path / "link.png"]
    elif case == "hardlink":
        os.link(content, tmp_path / "hard.png")
        argv += ["-o", tmp_path / "hard.png"]
    elif case == "style":
        argv += ["-o", style]
    elif case == "mask":
        argv += ["-o", mask, "--mask", mask]
    elif case == "init":
        argv += ["-o", mask, "--init", mask]
    elif case == "trace":
        argv += ["-o", tmp_path / "out.png", "--trace", style]
    elif case == "pattern":
        argv = ["transfer", "-c", content, "-c", style, style, *FAST, "-o", str(tmp_path / "{content}.png")]
    elif case == "frames":
        os.link(style, tmp_path / "out.00002.png")
        argv += ["-o", tmp_path / "out.png", "--save-every", "2"]
    code, _, err = run(capsys, *argv)
    assert "would overwrite the input" in one_line_error(code, err)
    assert {p: _digest(p) for p in before} == before


def test_study_and_feature_outputs_never_overwrite_inputs(capsys, tmp_path, images):
    content, style, output = images
    folder = tmp_path / "study"
    folder.mkdir()
    sheet = folder / "sheet.png"
    make_rgb(32, 32).save(sheet)
    for argv in (["sweep", sheet, style, "-o", folder, "--style-layers", "relu1_1", *FAST],
                 ["compare", content, sheet, "-o", folder, "--backbones", "vgg19", *FAST],
                 ["features", content, "-o", content, "--weights", "random"],
                 ["evaluate", "--content", content, "--style", style, "--output", output, "--json", content]):
        code, _, err = run(capsys, *argv)
        assert "would overwrite the input" in one_line_error(code, err), argv


# -- 3. what can be checked is checked before the run --------------------------------------------------------


@pytest.mark.parametrize("output", ["out.bmp", "out.xyz", "{content}.gif"])
def test_an_unknown_output_format_is_refused_before_the_run(capsys, tmp_path, images, monkeypatch, output):
    content, style, _ = images
    monkeypatch.setattr("stylelab.cli.transfer", lambda *a, **k: pytest.fail("the run started"))
    extra = ["-c", content, "-c", style] if "{" in output else [content]
    code, _, err = run(capsys, "transfer", *extra, style, "-o", tmp_path / output, *FAST)
    assert "cannot tell the image format" in one_line_error(code, err)
    assert list(tmp_path.glob("out*")) == []


def test_api_checks_masks_before_loading_weights(images, monkeypatch):
    from stylelab.api import transfer
    from stylelab.errors import StylelabError

    content, style, _ = images
    monkeypatch.setattr("stylelab.api.create_backbone", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(StylelabError, match="mask"):
        transfer(content, style, weights="random", masks=[content, content])


# -- 4. Ctrl-C and SIGTERM keep the work ---------------------------------------------------------------------


def _signal_at(monkeypatch, iteration: int, *signums: int) -> None:
    """Send ``signums`` to this process when the progress bar sees ``iteration`` (the handlers are main()'s)."""
    from stylelab import cli

    class Bar(cli.ProgressBar):
        def __call__(self, event):
            super().__call__(event)
            if event.iteration == iteration:
                for signum in signums:
                    os.kill(os.getpid(), signum)
                    time.sleep(0.05)

    monkeypatch.setattr(cli, "ProgressBar", Bar)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_and_writes_the_current_image_and_trace(capsys, tmp_path, images, monkeypatch, signum,
                                                                code):
    content, style, _ = images
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN when started in background
    _signal_at(monkeypatch, 3, signum)
    out, trace = tmp_path / "out.png", tmp_path / "trace.json"
    got, _, err = run(capsys, "transfer", content, style, "-o", out, *FAST, "--iterations", "1000", "--trace",
                      trace)
    assert got == code, err
    assert re.search(rf"interrupted at iteration [34] of 1000; wrote {re.escape(str(out))} \(unfinished\)", err), err
    with Image.open(out) as img:
        assert img.size == (32, 26)
    data = json.loads(trace.read_text())
    assert data["finished"] is False and 3 <= len(data["iterations"]) <= 4
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


def test_a_second_ctrl_c_quits_at_once_without_writing(capsys, tmp_path, images, monkeypatch):
    content, style, _ = images
    _signal_at(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "transfer", content, style, "-o", out, *FAST, "--iterations", "1000",
                       "--save-every", "1")
    assert code == 130 and "Traceback" not in err
    assert "interrupted (SIGINT); no result written; 1 intermediate frame(s) kept" in err  # iteration 1's
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_study_interrupted_keeps_finished_runs_and_says_so(capsys, tmp_path, images, monkeypatch):
    from stylelab.study import runs

    content, style, _ = images
    real, calls = runs._run_one, []

    def run_one(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "_run_one", run_one)
    code, _, err = run(capsys, "sweep", content, style, "-o", tmp_path / "sw", "--style-layers", "relu1_1",
                       "relu2_1", *FAST)
    assert code == 130 and "1 of 2 run(s) finished and kept" in err and "run the same command again" in err
    assert (tmp_path / "sw" / "runs" / "c0-s0.png").is_file() and not (tmp_path / "sw" / "runs" / "c0-s1.png").exists()


def test_sigterm_to_a_real_process_writes_the_image(tmp_path, images):
    content, style, _ = images
    out = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-m", "stylelab", "transfer", content, style, "-o", out, *FAST,
                             "--iterations", "100000"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = ""
    deadline = time.monotonic() + 120
    while not re.search(r"\b([2-9]|\d{2,})/100000", seen) and time.monotonic() < deadline:  # a few iterations in
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 143, seen + rest
    assert "interrupted at iteration" in rest and "(unfinished)" in rest
    with Image.open(out) as img:
        assert img.size == (32, 26)


# -- 6. offline fails fast and quietly --------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["refused", "silent"])
@pytest.mark.parametrize("backbone", ["vgg19", "clip-rn50"])
def test_unreachable_network_fails_within_seconds_in_one_line(capsys, tmp_path, images, monkeypatch, behaviour,
                                                              backbone):
    import stylelab.weights as weights

    monkeypatch.delenv("STYLELAB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_reachable", {})

    def connect(address, timeout=None, *args, **kwargs):
        if behaviour == "silent":  # packets dropped: only the timeout ends it
            time.sleep(30)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    content, style, _ = images
    start = time.monotonic()
    code, out, err = run(capsys, "transfer", content, style, "-o", tmp_path / "x.png", "--size", "32",
                         "--iterations", "2", "--backbone", backbone)
    assert time.monotonic() - start < 5
    line = one_line_error(code, err)
    assert "cannot be reached" in line and "--weights PATH" in line and "--weights random" in line
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_download_progress_goes_to_stderr(capsys, monkeypatch):
    import stylelab.weights as weights

    def download(url, **kwargs):
        print(f'Downloading: "{url}"')  # what torch.hub does, on stdout
        return {"w": torch.zeros(1)}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(weights, "offline", lambda: False)
    monkeypatch.setattr(weights, "server_reachable", lambda url: True)
    weights.fetch_hub_checkpoint("https://example.invalid/x.pth", "test")
    out, err = capsys.readouterr()
    assert out == "" and "Downloading" in err


# -- 7. messages name what the user typed -----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--lpips-weights", "--inception-weights", "--judge-weights"])
def test_evaluate_names_the_flag_that_was_given(capsys, tmp_path, images, flag):
    content, style, output = images
    missing = tmp_path / "x.pth"
    inputs = ["--style", tmp_path, "--output", tmp_path] if flag == "--inception-weights" else \
        ["--style", style, "--output", output]
    code, _, err = run(capsys, "evaluate", "--content", content, *inputs, flag, missing)
    line = one_line_error(code, err)
    assert f"{flag} {missing}: no such file" in line and " --weights" not in line


def test_the_judge_notice_suggests_the_commands_own_flag(capsys, images):
    content, style, output = images
    code, _, err = run(capsys, "evaluate", "--content", content, "--style", style, "--output", output)
    assert code == 0
    notice = next(line for line in err.splitlines() if "gram_style unavailable" in line)
    assert "--judge-weights random" in notice and " --weights" not in notice


# -- 8. small ones -----------------------------------------------------------------------------------------------


def test_a_fifo_input_is_not_a_regular_file(capsys, tmp_path, images):
    _, style, _ = images
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "transfer", fifo, style, "-o", tmp_path / "x.png", *FAST)
    assert "not a regular file" in one_line_error(code, err)


@pytest.mark.parametrize("text", ["[1, 2]", '"key"', "null"])
def test_a_run_record_that_is_not_an_object_is_run_again(tmp_path, images, text):
    from stylelab.study.runs import RunSpec, _load_previous

    content, style, _ = images
    spec = RunSpec("r", content, style, {})
    (tmp_path / "r.json").write_text(text)
    make_rgb(8, 8).save(tmp_path / "r.png")
    assert _load_previous(spec, tmp_path, spec.key()) is None


def test_stylelab_alone_prints_help(capsys):
    code, out, err = run(capsys)
    assert code == 0 and "usage: stylelab" in out and "transfer" in out and err == ""


def test_vit_size_rounding_is_announced(images):
    from stylelab.api import transfer

    content, style, _ = images
    said = []
    result = transfer(content, style, backbone="clip-vit-b16", weights="random", size=56, iterations=1,
                      style_layers="block0", content_layers="block0", log=said.append)
    h, w = result.image.shape[-2:]
    assert (w, h) == (64, 48)  # 56x45 rounded to the 16-pixel patches
    assert any("multiples of 16" in m and "64x48 instead of 56x45" in m for m in said), said


def test_captions_show_slow_speeds():
    from stylelab.study.runs import caption

    assert "0.4 it/s" in caption({"seconds": 10.0, "iterations": 4, "metrics": {}})
