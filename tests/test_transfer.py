"""The optimization loop and the Python API, end to end on generated images with a random VGG19."""

import pytest
import torch
from PIL import Image

from conftest import make_rgb, make_stripes
from stylelab import NonFiniteLossError, ProgressEvent, StopOptimization, StylelabError, stylize, transfer
from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.losses import normalized_gram
from stylelab.optimize import LossSpec, StyleObjective

RUN = dict(weights="random", size=64, device="cpu")


@pytest.fixture(scope="module")
def images():
    return make_rgb(48, 64), make_stripes(64, 64)


@pytest.mark.parametrize("optimizer, iterations", [("lbfgs", 40), ("adam", 60)])
def test_loss_falls_tenfold_and_every_evaluation_is_reported(images, optimizer, iterations):
    events: list[ProgressEvent] = []
    result = transfer(*images, optimizer=optimizer, iterations=iterations, callback=events.append, **RUN)
    assert [e.iteration for e in events] == list(range(1, iterations + 1))
    assert events[0].loss / events[-1].loss >= 10
    assert result.image.shape == (1, 3, 48, 64) and 0 <= result.image.min() and result.image.max() <= 1
    assert set(events[-1].style_layers) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}
    assert set(events[-1].content_layers) == {"relu4_2"}
    assert all(e.elapsed >= 0 for e in events) and events[-1].elapsed >= events[0].elapsed
    # Recompute the reported total from its parts with eq. 2.4.
    e, spec = events[-1], result.loss
    assert e.loss == pytest.approx(spec.content_weight * e.content_loss + spec.style_weight * e.style_loss, rel=1e-5)
    assert e.style_loss == pytest.approx(sum(spec.style_layers[n] * v for n, v in e.style_layers.items()), rel=1e-5)


def test_stylize_returns_pil_of_the_right_size(images):
    out = stylize(*images, iterations=3, **RUN)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (64, 48)


def test_output_moves_away_from_content_toward_style(images):
    content = transfer(images[0], images[0], iterations=1, **RUN).image
    out = transfer(*images, iterations=30, **RUN).image
    assert (out - content).abs().mean() > 0.01  # the style changed the picture


def test_same_seed_same_result_and_random_init_uses_the_seed(images):
    a = transfer(*images, iterations=5, init="random", seed=1, **RUN).image
    b = transfer(*images, iterations=5, init="random", seed=1, **RUN).image
    c = transfer(*images, iterations=5, init="random", seed=2, **RUN).image
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stop_optimization_from_callback_returns_early(images):
    seen = []

    def stop_at_3(event):
        seen.append(event.iteration)
        if event.iteration == 3:
            raise StopOptimization

    result = transfer(*images, iterations=50, callback=stop_at_3, **RUN)
    assert seen == [1, 2, 3] and result.final.iteration == 3


def test_nan_weights_stop_with_a_message(tmp_path, images):
    net = create_backbone("vgg19", "random")
    state = {f"features.{k}": v.clone() for k, v in net.features.state_dict().items()}
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(NonFiniteLossError, match="loss became nan at iteration 1 of 10"):
        transfer(*images, iterations=10, **{**RUN, "weights": str(tmp_path / "nan.pth")})


def test_layer_defaults_follow_the_channel_rule():
    net = create_backbone("vgg19", "random")
    content, style = resolve_layers(net, None, None)
    assert content == {"relu4_2": 1.0}
    assert style == {"relu1_1": 1.0, "relu2_1": 0.25, "relu3_1": 1 / 16, "relu4_1": 1 / 64, "relu5_1": 1 / 64}
    content, style = resolve_layers(net, "relu3_2:2", "relu1_1:0.2,relu3_1")
    assert content == {"relu3_2": 2.0} and style == {"relu1_1": 0.2, "relu3_1": 1 / 16}


@pytest.mark.parametrize("options, message", [
    (dict(style_layers="relu1_1,relu9_9"), "unknown layer 'relu9_9' for backbone vgg19; valid layers: conv1_1"),
    (dict(style_layers="relu1_1:-1"), "must be finite and >= 0"),
    (dict(style_layers="relu1_1:abc"), "not a number"),
    (dict(content_layers=""), "empty"),
    (dict(optimizer="sgd"), "unknown optimizer 'sgd'; choose lbfgs, adam"),
    (dict(size=0), "size must be"),
    (dict(iterations=0), "iterations= must be"),
    (dict(style_weight=float("inf")), "style weight must be a finite number"),
    (dict(init="sideways.png"), "image not found"),
    (dict(device="tpu"), "unknown device 'tpu'"),
    (dict(style_blend=[1.0, 2.0]), "style blend needs 1"),
])
def test_bad_options_are_clear_errors(images, options, message):
    with pytest.raises(StylelabError, match=message):
        transfer(*images, **{**RUN, "iterations": 1, **options})


def test_images_too_small_for_the_deepest_layer(images):
    with pytest.raises(StylelabError, match="too small for layer relu5_1 \\(stride 16\\)"):
        transfer(*images, iterations=1, **{**RUN, "size": 12})
    transfer(*images, iterations=1, style_layers="relu1_1", content_layers="relu1_2", **{**RUN, "size": 12})


def test_style_blend_mixes_gram_statistics_not_pixels(images):
    net = create_backbone("vgg19", "random")
    content = torch.rand(1, 3, 32, 32)
    s1, s2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40)
    spec = LossSpec({"relu2_2": 1.0}, {"relu1_1": 1.0, "relu2_1": 1.0}, 1.0, 1.0)
    mixed = StyleObjective(net, content, [s1, s2], [0.25, 0.75], spec)
    for name in spec.style_layers:
        g1, g2 = (normalized_gram(net(s, [name])[name].flatten(2)) for s in (s1, s2))
        torch.testing.assert_close(mixed.style_targets[name][0], 0.25 * g1 + 0.75 * g2)


def test_strict_fp32_is_restored_after_a_run(images):
    before = torch.backends.cudnn.conv.fp32_precision if hasattr(torch.backends.cudnn, "conv") else None
    transfer(*images, iterations=1, **RUN)
    after = torch.backends.cudnn.conv.fp32_precision if hasattr(torch.backends.cudnn, "conv") else None
    assert before == after


def test_convergence_test_by_hand():
    from stylelab.optimize import converged

    flat = torch.tensor([[10.0], [5.0], [4.0], [4.0], [3.99], [3.99]])  # (evaluations, 1 image)
    assert converged(flat, tolerance=0.01, window=2)  # best 3.99 vs 4.0 before: 0.25% < 1%
    assert not converged(flat, tolerance=0.001, window=2)
    assert not converged(flat, tolerance=0.01, window=6)  # not enough evaluations yet
    assert not converged(flat, tolerance=0.0, window=2)  # 0: never
    two = torch.cat([flat, torch.tensor([[10.0], [5.0], [2.0], [1.0], [0.5], [0.2]])], 1)
    assert not converged(two, tolerance=0.01, window=2)  # one image still improving: go on


def test_tolerance_stops_early_and_zero_runs_every_iteration(images):
    plain = transfer(*images, iterations=60, **RUN)
    assert plain.iterations == 60
    early = transfer(*images, iterations=60, tolerance=10.0, **RUN)  # any improvement is "too small"
    assert early.iterations == 21  # the first report after the 20-evaluation window
    with pytest.raises(StylelabError, match="tolerance must be a finite number >= 0"):
        transfer(*images, iterations=2, tolerance=-1.0, **RUN)


def test_extra_terms_join_the_objective_and_are_reported(images):
    """extra_terms(content) -> {name: (image -> (B,), weight)}: added to the total, reported by name, per scale."""
    content, style = images
    sizes, seen = [], []

    def terms(scaled_content):
        sizes.append(tuple(scaled_content.shape[-2:]))
        target = scaled_content.flip(-1)  # any image-sized target: here the mirrored content
        return {"mirror": (lambda image: (image - target).pow(2).flatten(1).mean(1), 3.0)}

    transfer(content, style, weights="random", size=64, iterations=3, scales=[32, 64], extra_terms=terms,
             callback=seen.append, device="cpu", content_weight=1.0, style_weight=2.0)
    assert sizes == [(24, 32), (48, 64)]  # called once per scale with that scale's content
    first = seen[0]
    assert set(first.terms) == {"mirror"} and first.terms["mirror"] > 0
    assert first.loss == pytest.approx(first.content_loss + 2.0 * first.style_loss + 3.0 * first.terms["mirror"],
                                       rel=1e-5)
