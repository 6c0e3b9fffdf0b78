"""Several images in one run (batches), numeric modes and how often progress is reported."""

import sys

import pytest
import torch

import stylelab

from conftest import make_rgb, make_stripes
from stylelab import NonFiniteLossError, StopOptimization, StylelabError, transfer
from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.images import pil_to_tensor
from stylelab.optimize import LossSpec, StyleObjective

RUN = dict(weights="random", size=64, device="cpu")


@pytest.fixture(scope="module")
def contents():
    return [pil_to_tensor(make_rgb(48, 64, seed=s)) for s in (1, 2, 3)]


@pytest.fixture(scope="module")
def styles():
    return [pil_to_tensor(make_stripes(64, 64)), pil_to_tensor(make_rgb(64, 64, seed=9))]


def test_a_batch_gives_each_content_its_own_result(contents, styles):
    events = []
    results = transfer(contents, styles[0], iterations=8, callback=events.append, **RUN)
    assert len(results) == 3 and {r.batch_index for r in results} == {0}  # one size: one batch
    for i, result in enumerate(results):
        assert result.image.shape == (1, 3, 48, 64) and torch.isfinite(result.image).all()
        distances = [(result.image - c).pow(2).mean().item() for c in contents]
        assert distances.index(min(distances)) == i  # its own content, not a neighbour's
        assert result.final is events[-1].per_image[i] and result.final.image.shape == (1, 3, 48, 64)
    assert events[-1].loss == pytest.approx(sum(e.loss for e in events[-1].per_image), rel=1e-6)
    assert all(e.iteration == i for i, e in enumerate(events, 1)) and events[-1].iterations == 8


def test_first_evaluation_of_a_batch_equals_single_runs(contents, styles):
    """Before any step the losses are a pure function of the inputs: batch = separate runs."""
    together = transfer(contents[:2], styles, iterations=1, **RUN)
    for content, result in zip(contents, together):
        alone = transfer(content, styles, iterations=1, **RUN)
        assert result.final.loss == pytest.approx(alone.final.loss, rel=1e-4)
        assert result.final.style_layers == pytest.approx(alone.final.style_layers, rel=1e-4)


def test_each_style_pairs_every_content_with_every_style(contents, styles):
    results = transfer(contents[:2], styles, each_style=True, iterations=1, **RUN)
    assert len(results) == 4  # content-major: (c0, s0), (c0, s1), (c1, s0), (c1, s1)
    for k, result in enumerate(results):
        alone = transfer(contents[k // 2], styles[k % 2], iterations=1, **RUN)
        assert result.final.style_loss == pytest.approx(alone.final.style_loss, rel=1e-4)
    assert results[0].final.style_loss != pytest.approx(results[1].final.style_loss, rel=1e-2)


def test_images_of_other_sizes_go_to_other_batches_and_results_keep_their_order(contents, styles):
    tall = pil_to_tensor(make_rgb(64, 48, seed=5))
    events, finished = [], []
    results = transfer([contents[0], tall, contents[1]], styles[0], iterations=3, batch_size=8,
                       callback=events.append, on_result=lambda i, r: finished.append(i), **RUN)
    assert [tuple(r.image.shape[-2:]) for r in results] == [(48, 64), (64, 48), (48, 64)]
    assert results[0].batch_index == results[2].batch_index != results[1].batch_index
    assert sorted(finished) == [0, 1, 2] and events[-1].iteration == events[-1].iterations == 6


def test_batch_size_splits_and_a_stop_ends_the_whole_run(contents, styles):
    seen = []

    def stop_in_second_batch(event):
        seen.append(event.iteration)
        if event.iteration == 5:
            raise StopOptimization

    results = transfer(contents, styles[0], iterations=3, batch_size=1, callback=stop_in_second_batch, **RUN)
    assert seen == [1, 2, 3, 4, 5] and len(results) == 2  # the third batch never ran
    assert results[1].final.iteration == 2 and results[1].batch_index == 1


def test_colour_modes_in_a_batch_use_each_contents_colours(contents, styles):
    results = transfer(contents[:2], styles[1], original_colors="histogram", iterations=2, **RUN)
    assert len(results) == 2 and all(torch.isfinite(r.image).all() for r in results)
    grey = transfer(contents[:2], styles[1], original_colors="luminance", iterations=2, **RUN)
    for content, result in zip(contents, grey):  # chrominance comes back from each image's own content
        assert (result.image.mean((2, 3)) - content.mean((2, 3))).abs().max() < 0.1


def test_report_every_reports_multiples_and_the_last():
    events = []
    transfer(make_rgb(48, 64), make_stripes(64, 64), iterations=7, report_every=3, callback=events.append, **RUN)
    assert [e.iteration for e in events] == [3, 6, 7]


def test_a_nan_between_reports_names_the_iteration_it_happened(tmp_path):
    net = create_backbone("vgg19", "random")
    state = {f"features.{k}": v.clone() for k, v in net.features.state_dict().items()}
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(NonFiniteLossError, match="at iteration 1 of 9"):
        transfer(make_rgb(48, 64), make_stripes(64, 64), iterations=9, report_every=5,
                 **{**RUN, "weights": str(tmp_path / "nan.pth")})


def test_bf16_runs_the_network_in_bf16_and_grams_and_losses_in_fp32(contents, styles):
    net = create_backbone("vgg19", "random")
    content_layers, style_layers = resolve_layers(net, None, None)
    spec = LossSpec(content_layers, style_layers, 1.0, 1e3)
    seen = []
    net.features[2].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    fast = StyleObjective(net, contents[0], [styles[0]], [1.0], spec, precision="bf16")
    exact = StyleObjective(net, contents[0], [styles[0]], [1.0], spec)
    assert torch.bfloat16 in seen and all(t.dtype == torch.float32 for target in fast.style_targets.values()
                                                   for t in target)
    x = contents[1].clone().requires_grad_(True)
    total, parts = fast(x)
    total.backward()
    assert total.dtype == parts.dtype == x.grad.dtype == torch.float32
    assert total.item() == pytest.approx(exact(contents[1])[0].item(), rel=0.05)  # bf16 has 8 bits of mantissa
    result = transfer(contents[0], styles[0], iterations=6, precision="bf16", **RUN)
    assert torch.isfinite(result.image).all() and result.final.loss < 0.9 * transfer(
        contents[0], styles[0], iterations=1, **RUN).final.loss


def _numerics_seen(monkeypatch, amx: bool, **options) -> tuple[set, set]:
    """The dtypes and memory formats the backbone's second convolution saw in a short default run."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    net = create_backbone("vgg19", "random")
    dtypes, nhwc = set(), set()

    def look(module, inputs, output):
        dtypes.add(output.dtype)
        nhwc.add(inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous())

    net.features[2].register_forward_hook(look)
    transfer(make_rgb(48, 64), make_stripes(64, 64), backbone=net, iterations=2, size=64, device="cpu", **options)
    return dtypes, nhwc


def test_auto_precision_is_bf16_in_nhwc_only_on_a_cpu_with_amx(monkeypatch):
    assert _numerics_seen(monkeypatch, amx=True) == ({torch.bfloat16}, {True})
    assert _numerics_seen(monkeypatch, amx=False) == ({torch.float32}, {False})
    # asked for, a precision or a layout is kept whatever the CPU; the plain run is fp32 NCHW everywhere
    assert _numerics_seen(monkeypatch, amx=True, precision="fp32") == ({torch.float32}, {False})
    assert _numerics_seen(monkeypatch, amx=True, channels_last=False) == ({torch.bfloat16}, {False})
    assert _numerics_seen(monkeypatch, amx=False, precision="bf16") == ({torch.bfloat16}, {True})
    assert _numerics_seen(monkeypatch, amx=True, **stylelab.PLAIN) == ({torch.float32}, {False})


def test_auto_precision_says_what_it_chose(monkeypatch):
    from stylelab.runtime import resolve_channels_last, resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # a GPU's faster modes stay opt-in
    assert resolve_precision("tf32", torch.device("cuda")) == "tf32"
    assert resolve_channels_last(None, "bf16", torch.device("cuda")) is False
    lines = []
    transfer(make_rgb(48, 64), make_stripes(64, 64), iterations=1, log=lines.append, **RUN)
    assert any(line.startswith("precision auto: bf16 autocast + channels_last") for line in lines)
    lines.clear()
    transfer(make_rgb(48, 64), make_stripes(64, 64), iterations=1, log=lines.append, precision="bf16", **RUN)
    assert not any(line.startswith("precision auto") for line in lines)


def test_bf16_pays_where_the_cpu_has_amx_tiles():
    from conftest import REAL_AMX_PROBE
    from stylelab.runtime import bf16_pays

    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), None) \
        if sys.platform == "linux" else None
    if flags is None or REAL_AMX_PROBE is None:
        pytest.skip("needs Linux's /proc/cpuinfo and torch's AMX probe")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cpu, "_is_amx_tile_supported", REAL_AMX_PROBE)
        assert bf16_pays() == ("amx_tile" in flags and torch.backends.mkldnn.is_available())


def test_tf32_needs_cuda_and_unknown_precisions_are_refused(contents, styles):
    with pytest.raises(StylelabError, match="tf32 needs a CUDA device"):
        transfer(contents[0], styles[0], iterations=1, precision="tf32", **RUN)
    with pytest.raises(StylelabError, match="unknown precision 'fp8'; choose auto, fp32, tf32, bf16"):
        transfer(contents[0], styles[0], iterations=1, precision="fp8", **RUN)


def test_channels_last_computes_the_same_losses(contents, styles):
    plain = transfer(contents[0], styles[0], iterations=1, **RUN)
    nhwc = transfer(contents[0], styles[0], iterations=1, channels_last=True, **RUN)
    assert nhwc.final.loss == pytest.approx(plain.final.loss, rel=1e-5)


def test_a_shorter_lbfgs_history_is_used_and_checked(contents, styles):
    long = transfer(contents[0], styles[0], iterations=10, **RUN)
    short = transfer(contents[0], styles[0], iterations=10, lbfgs_history=2, **RUN)  # the ring wraps at the 5th
    assert torch.isfinite(short.image).all() and not torch.equal(short.image, long.image)
    with pytest.raises(StylelabError, match="lbfgs_history= must be a whole number >= 1"):
        transfer(contents[0], styles[0], iterations=1, lbfgs_history=0, **RUN)


def test_bad_batch_arguments_are_refused(contents, styles):
    with pytest.raises(StylelabError, match="no content images"):
        transfer([], styles[0], iterations=1, **RUN)
    with pytest.raises(StylelabError, match="use one of them"):
        transfer(contents, styles, each_style=True, style_blend=[1, 2], iterations=1, **RUN)
    with pytest.raises(StylelabError, match="batch_size= must be a whole number >= 1"):
        transfer(contents, styles[0], iterations=1, batch_size=0, **RUN)


def test_luminance_mode_starts_from_a_grey_version_of_a_given_init_image(contents, styles):
    seen = []
    transfer(contents[0], styles[0], original_colors="luminance", init=contents[1], iterations=1,
             callback=lambda e: seen.append(e.image.clone()), **RUN)
    start = seen[0]
    assert (start[:, 0] - start[:, 1]).abs().max() < 1e-5 and (start[:, 1] - start[:, 2]).abs().max() < 1e-5
