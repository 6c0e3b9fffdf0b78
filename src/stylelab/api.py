"""The Python API: ``stylize(content, style, **options) -> PIL.Image``.

The CLI reads its defaults from ``transfer``'s signature, so both always agree.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from .backbones import Backbone, channel_rule_weight, create_backbone
from .errors import StylelabError
from .images import MAX_SIZE, load_image, pil_to_tensor, resize, size_for_long_edge, tensor_to_pil
from .layerspec import parse_layer_spec
from .colour import (
    check_original_colors, luminance_image, match_color_histogram, match_luminance, style_stats_noise,
    with_content_chrominance,
)
from .optimize import (
    INIT_MODES, OPTIMIZERS, LossSpec, ProgressEvent, StopOptimization, StyleObjective, check_feature_transform,
    initial_image, optimize,
)
from .runtime import device_name, resolve_device, strict_fp32

ImageInput = str | os.PathLike | Image.Image | torch.Tensor
LayersInput = str | Mapping[str, float | None] | Sequence[str] | None


@dataclass(frozen=True)
class TransferResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], on the CPU
    backbone: str
    weights_source: str
    device: str
    loss: LossSpec
    iterations: int
    seconds: float  # optimization wall time (targets included)
    final: ProgressEvent | None

    def to_pil(self) -> Image.Image:
        return tensor_to_pil(self.image)


def as_tensor(image: ImageInput) -> torch.Tensor:
    """A path, PIL image or tensor -> (1, 3, H, W) float32 in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float()
        t = t.unsqueeze(0) if t.ndim == 3 else t
        if t.ndim != 4 or t.shape[:2] != (1, 3):
            raise StylelabError(f"image tensors must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        return t.cpu()
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return load_image(image)


def _positive_number(name: str, value: float | None, allow_zero: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise StylelabError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")


def _fit(image: torch.Tensor, long_edge: int, multiple: int) -> tuple[int, int]:
    """(H, W) with the long edge at ``long_edge``, each side rounded to a multiple of ``multiple``."""
    h, w = size_for_long_edge(image.shape[-2], image.shape[-1], long_edge)
    return max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)


def validate_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise StylelabError(f"size must be a whole number of pixels from 1 to {MAX_SIZE}, got {size!r}")


def resolve_layers(backbone: Backbone, content_layers: LayersInput, style_layers: LayersInput
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Layer specs -> {name: weight}; unnamed weights: 1 for content, (64/N)² for style."""
    content = parse_layer_spec(content_layers, "content layers") if content_layers is not None \
        else dict(backbone.default_content_layers)
    style = parse_layer_spec(style_layers, "style layers") if style_layers is not None \
        else dict(backbone.default_style_weights())
    content = {backbone.layer(n).name: 1.0 if w is None else w for n, w in content.items()}
    style = {backbone.layer(n).name: channel_rule_weight(backbone.layer(n).channels) if w is None else w
             for n, w in style.items()}
    return content, style


def _check_scales(scales: Sequence[int] | None) -> list[int] | None:
    if scales is None:
        return None
    scales = list(scales)
    if not scales:
        raise StylelabError("scales must list at least one size")
    for value in scales:
        validate_size(value)
    if any(b <= a for a, b in zip(scales, scales[1:])):
        raise StylelabError(f"scales must increase, got {scales}")
    return scales


def prepare_images(net: Backbone, content: torch.Tensor, styles: Sequence[torch.Tensor], long_edge: int,
                   style_scale: float = 1.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content at ``long_edge`` (sides rounded to the backbone's multiple); styles at ``long_edge × style_scale``.

    The style keeps its own aspect ratio (Grams are per-position means), unless the backbone's style statistic
    depends on the token count (token Gram): then it takes the content's exact size.
    """
    content = resize(content, _fit(content, long_edge, net.input_multiple))
    if net.style_needs_content_size:
        if style_scale != 1:
            raise StylelabError(f"{net.name} with this Gram needs the style at the output's size: "
                                "--style-scale must be 1 (use the channel Gram to scale the style)")
        return content, [resize(s, tuple(content.shape[-2:])) for s in styles]
    style_edge = max(1, round(long_edge * style_scale))
    if style_edge > MAX_SIZE:
        raise StylelabError(f"style scale {style_scale} makes the style {style_edge} px, above {MAX_SIZE}")
    return content, [resize(s, _fit(s, style_edge, net.input_multiple)) for s in styles]


def transfer(
    content: ImageInput,
    style: ImageInput | Sequence[ImageInput],
    *,
    backbone: str = "vgg19",
    weights: str = "pretrained",
    size: int = 512,
    iterations: int = 500,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    feature_transform: str = "none",
    content_layers: LayersInput = None,
    style_layers: LayersInput = None,
    style_blend: Sequence[float] | None = None,
    style_scale: float = 1.0,
    original_colors: str = "none",
    scales: Sequence[int] | None = None,
    pooling: str | None = None,
    gram: str | None = None,
    gram_norm: str | None = None,
    init: str | ImageInput = "content",
    seed: int = 0,
    device: str | torch.device = "auto",
    callback: Callable[[ProgressEvent], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TransferResult:
    """Gatys et al.'s style transfer of ``style`` onto ``content``; see ``stylize`` for the options."""
    validate_size(size)
    scales = _check_scales(scales)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise StylelabError(f"iterations must be a whole number >= 1, got {iterations!r}")
    if optimizer not in OPTIMIZERS:
        raise StylelabError(f"unknown optimizer {optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    for name, value in (("content weight", content_weight), ("style weight", style_weight),
                        ("tv weight", tv_weight)):
        _positive_number(name, value)
    _positive_number("learning rate", lr, allow_zero=False)
    _positive_number("style scale", style_scale, allow_zero=False)
    check_feature_transform(feature_transform)  # before any weights are loaded
    check_original_colors(original_colors)
    if isinstance(init, str) and init not in INIT_MODES:
        init = as_tensor(init)  # a path: fail now, before any weights are loaded
    dev = resolve_device(device)
    log = log or (lambda message: None)

    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    blend = [1.0 / len(styles)] * len(styles) if style_blend is None else list(style_blend)
    if len(blend) != len(styles) or any(not math.isfinite(b) or b < 0 for b in blend) or sum(blend) <= 0:
        raise StylelabError(f"style blend needs {len(styles)} finite weights >= 0 with a positive sum, got {blend}")
    blend = [b / sum(blend) for b in blend]

    content_t, style_ts = as_tensor(content), [as_tensor(s) for s in styles]
    net = create_backbone(backbone, weights, seed=seed, pooling=pooling, gram=gram, gram_norm=gram_norm)
    log(f"backbone {net.name}: weights {net.weights_source}")
    original_content = content_t
    if original_colors == "histogram":  # the style's colours made the content's before anything else
        style_ts = [match_color_histogram(s, content_t) for s in style_ts]
    elif original_colors == "luminance":  # optimize grey images; colour comes back from the content at the end
        style_ts = [luminance_image(match_luminance(luminance_image(s), luminance_image(content_t)))
                    for s in style_ts]
        content_t = luminance_image(content_t)
        if isinstance(init, torch.Tensor):
            init = luminance_image(init)
    c_layers, s_layers = resolve_layers(net, content_layers, style_layers)
    deepest = net.deepest([*c_layers, *s_layers])
    sizes = scales or [size]
    c, ss = prepare_images(net, content_t, style_ts, sizes[0], style_scale)  # the smallest scale decides
    smallest = min(min(t.shape[-2:]) for t in [c, *ss])
    if smallest < deepest.stride:
        raise StylelabError(
            f"images are too small for layer {deepest.name} (stride {deepest.stride}): the shortest edge is "
            f"{smallest} px; raise --size (or the first of --scales) or use shallower layers"
        )
    net.truncate([*c_layers, *s_layers])
    net.to(dev)
    spec = LossSpec(
        content_layers=c_layers,
        style_layers=s_layers,
        content_weight=net.default_content_weight if content_weight is None else float(content_weight),
        style_weight=net.default_style_weight if style_weight is None else float(style_weight),
        tv_weight=net.default_tv_weight if tv_weight is None else float(tv_weight),
        feature_transform=feature_transform,
    )
    last: list[ProgressEvent] = []
    total = iterations * len(sizes)
    offset = {"iterations": 0, "seconds": 0.0}
    stopped = []

    def on_progress(event: ProgressEvent) -> None:
        # Pyramid scales count on from the previous ones, so progress bars and traces see one run.
        event = replace(event, iteration=event.iteration + offset["iterations"], iterations=total,
                        elapsed=event.elapsed + offset["seconds"])
        last[:] = [event]
        if callback is not None:
            try:
                callback(event)
            except StopOptimization:
                stopped.append(True)
                raise

    torch.manual_seed(seed)
    start = time.perf_counter()
    image = None
    with strict_fp32():
        for long_edge in sizes:
            c, ss = prepare_images(net, content_t, style_ts, long_edge, style_scale)
            c = c.to(dev)
            objective = StyleObjective(net, c, [s.to(dev) for s in ss], blend, spec)
            if image is not None:  # pyramid: the previous scale's result, upsampled, is the start
                x0 = resize(image, tuple(c.shape[-2:]))
            elif isinstance(init, torch.Tensor):
                x0 = initial_image(resize(init, tuple(c.shape[-2:])), c, seed)
            elif init == "style-stats":
                x0 = style_stats_noise(ss, blend, c.shape, seed).to(dev)
            else:
                x0 = initial_image(init, c, seed)
            image = optimize(objective, x0, iterations=iterations, optimizer=optimizer, lr=lr, callback=on_progress)
            offset["iterations"] += iterations
            offset["seconds"] = last[0].elapsed if last else offset["seconds"]
            if stopped:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    image = image.cpu()
    if original_colors == "luminance":
        image = with_content_chrominance(image, resize(original_content, tuple(image.shape[-2:]))).float()
    return TransferResult(image, net.name, net.weights_source, device_name(dev), spec,
                          last[0].iteration if last else 0, seconds, last[0] if last else None)


def stylize(content: ImageInput, style: ImageInput | Sequence[ImageInput], **options) -> Image.Image:
    """Render ``content`` in the style of ``style``; returns an RGB PIL image.

    Options (defaults as in the CLI): backbone="vgg19", weights="pretrained"|"random"|path,
    size=512 (long edge), iterations=500, optimizer="lbfgs"|"adam", lr, content_weight (α),
    style_weight (β), tv_weight, content_layers / style_layers ("relu1_1:0.2,relu2_1" or a dict),
    feature_transform="none"|"softmax", style_blend (weights of several styles, mixed as Gram statistics),
    style_scale (style size relative to the output), original_colors="none"|"luminance"|"histogram",
    scales=[128, 256, 512] (a pyramid: each scale runs ``iterations`` and starts from the previous result),
    pooling="max"|"avg" (VGG), gram="channel"|"token" and gram_norm="seed"|"none" (ViT),
    init="content"|"random"|"style-stats"|image, seed, device,
    callback(ProgressEvent) called after every loss evaluation.
    """
    return transfer(content, style, **options).to_pil()
