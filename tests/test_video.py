"""stylelab video (Ruder et al. 2016): warping, the consistency mask, the temporal loss, the CLI end to end with
audio, resuming and --frames, steadier output with the temporal loss, and bad inputs (exit 2, nothing written)."""

from __future__ import annotations


import av
import numpy as np
import pytest
import torch

from conftest import make_rgb, make_stripes
from stylelab.cli import main
from stylelab.images import load_image
from stylelab.samples import sample_content
from stylelab.video import run as video_run
from stylelab.video.flow import consistency_mask, warp
from stylelab.video.frames import read_frames
from stylelab.video.metrics import warping_error
from stylelab.video.temporal import TemporalTerm, temporal_loss

FAST = ["--weights", "random", "--size", "48", "--iterations", "2", "--frame-iterations", "2", "--device", "cpu",
        "--quiet"]
RATE = 12


def write_clip(path, frames: list[np.ndarray], audio: bool = False, rate: int = RATE):
    """(H, W, 3) uint8 frames -> an H.264 file through PyAV; with ``audio`` an AAC sine as long as the video."""
    h, w, _ = frames[0].shape
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "12"}
        sound = container.add_stream("aac", rate=8000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for array in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            samples, done = 8000 * len(frames) // rate, 0
            while done < samples:
                n = min(1024, samples - done)
                tone = (0.3 * np.sin(np.arange(done, done + n) / 5.0)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 8000, done
                for packet in sound.encode(frame):
                    container.mux(packet)
                done += n
            for packet in sound.encode():
                container.mux(packet)
    return path


def pan(count: int, shift: int = 3, height: int = 36, width: int = 48) -> list[np.ndarray]:
    """A window moving ``shift`` px right per frame across the sample landscape."""
    image = (sample_content(height, width + shift * count)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return [np.ascontiguousarray(image[:, t * shift:t * shift + width]) for t in range(count)]


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    make_stripes(48, 48).save(path)
    return path


@pytest.fixture
def clip(tmp_path):
    """4 frames 48x36 at 12 fps with an AAC audio stream."""
    return write_clip(tmp_path / "in.mp4", pan(4), audio=True)


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """48 px frames are too small for a second thread to pay; one keeps the file quick on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def decode(path):
    """(frames as (H, W, 3) arrays, average rate, audio packets' bytes) of a file, read by PyAV directly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    with av.open(str(path)) as container:
        audio = [bytes(p) for p in container.demux(audio=0) if p.size] if container.streams.audio else None
    return frames, rate, audio


# --- warping, mask, loss ---------------------------------------------------------------------------------------


def test_warp_by_an_integer_flow_is_the_shifted_image():
    image = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    flow = torch.zeros(2, 7, 9)
    flow[0], flow[1] = 2, -1  # sample at (x + 2, y − 1)
    out = warp(image, flow)
    assert torch.allclose(out[..., 1:, :7], image[..., :6, 2:], atol=1e-6)  # where the source lies in the frame
    assert torch.allclose(out[..., 0, :7], image[..., 0, 2:], atol=1e-6)  # above the frame: its edge row
    half = warp(image, torch.stack([torch.full((7, 9), 0.5), torch.zeros(7, 9)]))  # bilinear between columns
    assert torch.allclose(half[..., :8], (image[..., :8] + image[..., 1:]) / 2, atol=1e-6)


def test_the_mask_marks_a_disocclusion_and_keeps_what_agrees():
    """A 6x6 square moves 4 px right over a still background: the strip it uncovers has no past (c = 0), the
    background and the square's inside agree forward and backward (c = 1), the square's edges are motion
    boundaries (c = 0)."""
    h, w = 20, 24
    forward, backward = torch.zeros(2, h, w), torch.zeros(2, h, w)
    forward[0, 7:13, 5:11] = 4  # frame t−1: the square at columns 5–10 moves to 9–14
    backward[0, 7:13, 9:15] = -4  # frame t: the square's pixels came from 4 px to the left
    c = consistency_mask(forward, backward)[0, 0]
    assert c.shape == (h, w) and set(c.unique().tolist()) <= {0.0, 1.0}
    assert (c[7:13, 5:9] == 0).all()  # uncovered background: w̃ = (4, 0), ŵ = 0, |w̃ + ŵ|² = 16 > 0.66
    assert (c[:4] == 1).all() and (c[:, 18:] == 1).all()  # still background far from the square
    assert (c[9:11, 11:13] == 1).all()  # inside the moved square: w̃ = 4 = −ŵ
    assert (c[7:13, 8:10] == 0).all() and (c[7:13, 14:16] == 0).all()  # the edges of ŵ: |∇û|² = 4 > 0.01·16 + 0.002


@pytest.mark.parametrize("there, back, kept", [(3.0, 2.0, False),  # |1|² = 1 > 0.01·13 + 0.5
                                               (3.0, 2.5, True)])  # 0.25 < 0.01·15.25 + 0.5
def test_the_forward_backward_threshold(there, back, kept):
    forward, backward = torch.zeros(2, 8, 12), torch.zeros(2, 8, 12)
    forward[0], backward[0] = there, -back  # uniform: no motion boundary
    c = consistency_mask(forward, backward)[0, 0]
    assert (c[:, 3:] == float(kept)).all()  # columns whose source x − back lies in the frame
    assert (c[:, :2] == 0).all()  # the source lies left of the frame: entered the view


def test_the_motion_boundary_threshold():
    """û = −0.05·x: |∇û|² = 0.0025 beats 0.01·|ŵ|² + 0.002 only while (0.05x)² < 0.05, i.e. x <= 4."""
    w = 14
    forward, backward = torch.zeros(2, 6, w), torch.zeros(2, 6, w)
    backward[0] = -0.05 * torch.arange(w, dtype=torch.float32)  # |ŵ| <= 0.65: the forward-backward check passes
    c = consistency_mask(forward, backward)[0, 0]
    assert (c[:, :5] == 0).all() and (c[:, 5:] == 1).all()


def test_temporal_loss_by_hand():
    g = torch.Generator().manual_seed(1)
    image, warped = torch.rand(2, 3, 2, 3, generator=g), torch.rand(1, 3, 2, 3, generator=g)
    mask = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]])
    expected = [sum(mask[0, 0, y, x].item() * (image[b, c, y, x].item() - warped[0, c, y, x].item()) ** 2
                    for c in range(3) for y in range(2) for x in range(3)) / 18 for b in range(2)]
    assert temporal_loss(image, warped, mask).tolist() == pytest.approx(expected, rel=1e-6)
    terms = TemporalTerm(warped, mask, 7.0)(torch.zeros(2, 3, 2, 3))
    fn, weight = terms["temporal"]
    assert weight == 7.0 and fn(warped.expand(2, -1, -1, -1)).tolist() == [0.0, 0.0]
    assert fn(image).tolist() == pytest.approx(expected, rel=1e-6)
    grey = TemporalTerm(warped, mask, 1.0, luminance=True).warped  # a luminance run optimizes a grey image
    assert torch.allclose(grey[:, 0], grey[:, 2]) and not torch.allclose(grey, warped)


# --- the command ------------------------------------------------------------------------------------------------


def test_video_end_to_end_keeps_frame_count_rate_and_audio(capsys, tmp_path, clip, style):
    out = tmp_path / "out.mp4"
    code, err = run(capsys, "video", clip, style, "-o", out, *FAST)
    assert code == 0, err
    frames, rate, audio = decode(out)
    source_frames, source_rate, source_audio = decode(clip)
    assert len(frames) == len(source_frames) == 4 and rate == source_rate == RATE
    assert frames[0].shape == (36, 48, 3)  # long edge 48, the input's 4:3
    assert audio == source_audio and len(audio) > 3  # the same packets: copied, not re-encoded
    cache = tmp_path / "out.frames"
    assert sorted(p.name for p in cache.iterdir()) == ["000001.png", "000002.png", "000003.png", "000004.png",
                                                        "options.json"]
    for frame, n in zip(frames, range(1, 5)):  # the video shows the cached frames (H.264 is lossy)
        png = load_image(cache / f"{n:06d}.png")[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(frame.astype(np.float32) - png).mean() < 8


def test_resume_reuses_frames_and_frames_runs_a_part(capsys, tmp_path, clip, style, monkeypatch):
    calls = []
    real = video_run.transfer

    def counting(content, styles, **options):
        calls.append((options["iterations"], isinstance(options["init"], torch.Tensor),
                      options["extra_terms"] is not None))
        return real(content, styles, **options)

    monkeypatch.setattr(video_run, "transfer", counting)
    out, cache = tmp_path / "out.mp4", tmp_path / "out.frames"
    args = ["video", clip, style, "-o", out, *FAST, "--iterations", "3"]
    code, err = run(capsys, *args, "--frames", "2:3")
    assert code == 0, err
    # Frame 2 has no predecessor on disk: a first frame (3 evaluations from the content); 3 follows from 2.
    assert calls == [(3, False, False), (2, True, True)]
    assert sorted(p.name for p in cache.glob("*.png")) == ["000002.png", "000003.png"] and not out.exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.png")}

    calls.clear()
    code, err = run(capsys, *args)
    assert code == 0, err
    assert calls == [(3, False, False), (2, True, True)]  # frames 1 and 4 only; 4 follows the cached 3
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("00000[23].png")} == stamps
    assert len(decode(out)[0]) == 4

    calls.clear()
    code, err = run(capsys, *args)  # all there: only the video is written again
    assert code == 0 and calls == []

    code, err = run(capsys, *args, "--style-weight", "7")  # other settings: never mixed with the old frames
    assert code == 2 and "other settings (style_weight)" in err and "--fresh" in err and calls == []
    assert err.strip().count("\n") == 0
    code, err = run(capsys, *args, "--style-weight", "7", "--fresh")
    assert code == 0, err
    assert len(calls) == 4 and all(p.stat().st_mtime_ns != stamps[p.name] for p in cache.glob("00000[23].png"))


def test_the_temporal_loss_makes_the_video_steadier(capsys, tmp_path, style):
    """Lai et al.'s warping error of the output, on a pan, with Ruder et al.'s temporal loss and without it
    (both start every frame from the warped previous result, so the difference is the loss alone)."""
    clip = write_clip(tmp_path / "pan.mp4", pan(4, shift=4))
    errors = {}
    for gamma in ("0", "130"):
        out = tmp_path / f"out{gamma}.mp4"
        code, err = run(capsys, "video", clip, style, "-o", out, *FAST, "--iterations", "6", "--frame-iterations",
                        "6", "--temporal-weight", gamma)
        assert code == 0, err
        cache = tmp_path / f"out{gamma}.frames"
        outputs = [load_image(cache / f"{n:06d}.png") for n in range(1, 5)]
        inputs = list(read_frames(clip, tuple(outputs[0].shape[-2:])))
        errors[gamma] = warping_error(outputs, inputs)
    assert errors["130"] < 0.25 * errors["0"], errors  # about 0.01× measured over seeds 0–3


@pytest.mark.parametrize("case, message", [
    ("text", "not a video PyAV can read"),
    ("image", "is a still image"),
    ("audio only", "has no video"),
    ("unknown codec", "no decoder for its video codec"),
    ("suffix", "cannot tell the video format"),
    ("same file", "would overwrite the input"),
    ("range", "out of range: "),
    ("backwards range", "A <= B"),
])
def test_bad_inputs_are_one_line_and_write_nothing(capsys, tmp_path, clip, style, monkeypatch, case, message):
    monkeypatch.setattr(video_run, "transfer", lambda *a, **k: pytest.fail("stylized despite a bad input"))
    video, out, extra = clip, tmp_path / "out.mp4", []
    if case == "text":
        video = tmp_path / "notes.mp4"
        video.write_text("not a video\n")
    elif case == "image":
        video = tmp_path / "still.png"
        make_rgb(32, 32).save(video)
    elif case == "audio only":
        video = tmp_path / "sound.m4a"
        with av.open(str(video), "w", format="mp4") as container:
            stream = container.add_stream("aac", rate=8000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, 0
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
    elif case == "unknown codec":  # the sample entry renamed: a codec FFmpeg has no decoder for
        video = tmp_path / "odd.mp4"
        video.write_bytes(clip.read_bytes().replace(b"avc1", b"zzzz"))
    elif case == "suffix":
        out = tmp_path / "out.avi"
    elif case == "same file":
        out = clip
    elif case == "range":
        extra = ["--frames", "3:5"]
    else:
        extra = ["--frames", "3:2"]
    before = sorted(p.name for p in tmp_path.iterdir())
    before_bytes = clip.read_bytes()
    code, err = run(capsys, "video", video, style, "-o", out, *FAST, *extra)
    assert code == 2 and message in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and clip.read_bytes() == before_bytes


def test_a_stop_drops_the_frame_in_progress_and_keeps_the_finished_ones(tmp_path, clip, style):
    """The Python API as the CLI's Ctrl-C handler drives it: a stop during frame 2 keeps frame 1 only."""
    from stylelab import StopOptimization

    class Stop:
        signum, events = None, 0

        def __call__(self, event):
            self.events += 1
            if self.events == 3:  # frame 1 took 2 evaluations: this is frame 2's first
                self.signum = 2
                raise StopOptimization

    out = tmp_path / "out.mp4"
    plan = video_run.plan_video(clip, [style], out, size=48, iterations=2, frame_iterations=2, weights="random",
                                device="cpu")
    result = video_run.run_video(plan, quiet=True, stops=Stop())
    assert result.stopped and result.stylized == 1 and result.written is None and not out.exists()
    assert [p.name for p in video_run.frame_files(plan.cache)] == ["000001.png"]
    again = video_run.run_video(video_run.plan_video(clip, [style], out, size=48, iterations=2, frame_iterations=2,
                                                     weights="random", device="cpu"), quiet=True)
    assert again.cached == 1 and again.stylized == 3 and again.written == out


def test_precision_auto_keeps_a_videos_frames_in_fp32_even_with_amx(tmp_path, clip, style, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # where auto is bf16
    plan = video_run.plan_video(clip, [style], tmp_path / "out.mp4", size=48, iterations=2, frame_iterations=2,
                                weights="random", device="cpu")
    assert plan.options["precision"] == "fp32" and plan.settings["precision"] == "fp32"
    asked = video_run.plan_video(clip, [style], tmp_path / "bf16.mp4", size=48, iterations=2, frame_iterations=2,
                                 weights="random", device="cpu", precision="bf16")
    assert asked.options["precision"] == "bf16"  # asked for, bf16 runs
