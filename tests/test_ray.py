"""transfer --ray on a local Ray with 2 CPUs: same pixels as without Ray, resume, a killed worker, a dead address."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from PIL import Image

from stylelab.cli import main
from stylelab.distributed import FAULT_ENV

from conftest import make_rgb, make_stripes

ray = pytest.importorskip("ray")

# fp32 spelled out: conftest hides AMX from this process but cannot from Ray's workers, so on a CPU with AMX
# precision auto would be fp32 here and bf16 there
RUN = ["--weights", "random", "--size", "32", "--iterations", "2", "--batch-size", "1", "--quiet", "--precision", "fp32"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "contents"
    folder.mkdir()
    for i in range(3):
        make_rgb(32, 40, seed=i).save(folder / f"c{i}.png")
    style = tmp_path / "style.png"
    make_stripes(40, 40).save(style)
    return folder, style


def pixels(path):
    return np.asarray(Image.open(path))


def test_a_folder_on_ray_gives_the_same_pixels_as_without(local_ray, inputs, tmp_path):
    folder, style = inputs
    assert main(["transfer", str(folder), str(style), "-o", str(tmp_path / "plain"), *RUN]) == 0
    assert main(["transfer", str(folder), str(style), "-o", str(tmp_path / "ray"), *RUN, "--ray"]) == 0
    names = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert names == ["c0.png", "c1.png", "c2.png"]  # no temporary files left
    for name in names:
        assert np.array_equal(pixels(tmp_path / "plain" / name), pixels(tmp_path / "ray" / name))


def test_outputs_on_disk_are_skipped_and_only_the_missing_are_made(local_ray, inputs, tmp_path):
    folder, style = inputs
    out = tmp_path / "out"
    out.mkdir()
    make_rgb(32, 40).save(out / "c1.png")
    before = (out / "c1.png").stat().st_mtime_ns
    assert main(["transfer", str(folder), str(style), "-o", str(out), *RUN, "--ray"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png", "c2.png"]
    assert (out / "c1.png").stat().st_mtime_ns == before


def test_a_worker_killed_mid_task_is_retried_and_every_output_is_written_once(local_ray, inputs, tmp_path,
                                                                            monkeypatch):
    folder, style = inputs
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, str(marker))
    out = tmp_path / "out"
    assert main(["transfer", str(folder), str(style), "-o", str(out), *RUN, "--ray"]) == 0
    assert marker.exists()  # a worker did die
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png", "c2.png"]


def test_an_address_that_does_not_answer_fails_fast_in_one_line(inputs, tmp_path, capsys):
    folder, style = inputs
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main(["transfer", str(folder), str(style), "-o", str(tmp_path / "out"), *RUN,
                 "--ray", f"127.0.0.1:{port}"])
    assert code == 2 and time.monotonic() - start < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Ray cluster answers" in err
    assert not (tmp_path / "out").exists()


def test_ray_wants_several_outputs(inputs, tmp_path, capsys):
    folder, style = inputs
    code = main(["transfer", str(folder / "c0.png"), str(style), "-o", str(tmp_path / "x.png"), *RUN, "--ray"])
    assert code == 2 and "several outputs" in capsys.readouterr().err


def test_several_videos_on_ray_each_to_its_own_file(local_ray, tmp_path, capsys):
    from test_video import FAST, pan, write_clip

    style = tmp_path / "style.png"
    make_stripes(40, 40).save(style)
    for name in ("a", "b"):
        write_clip(tmp_path / f"{name}.mp4", pan(2))
    out = tmp_path / "out"
    code = main(["video", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), str(style), "-o", str(out), *FAST,
                 "--ray"])
    assert code == 0, capsys.readouterr().err
    assert (out / "a.mp4").is_file() and (out / "b.mp4").is_file()
    before = (out / "a.mp4").stat().st_mtime_ns
    assert main(["video", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), str(style), "-o", str(out), *FAST,
                 "--ray"]) == 0
    assert (out / "a.mp4").stat().st_mtime_ns == before  # done: skipped
