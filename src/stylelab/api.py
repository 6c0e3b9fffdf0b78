"""The Python API: ``stylize(content, style, **options) -> PIL.Image``.

The CLI reads its defaults from ``transfer``'s signature, so both always agree.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from .backbones import Backbone, channel_rule_weight, create_backbone
from .config import TransferConfig, option_names
from .errors import StylelabError
from .images import MAX_SIZE, load_image, pil_to_tensor, resize, size_for_long_edge, tensor_to_pil
from .layerspec import parse_layer_spec
from .colour import (
    check_original_colors, luminance_image, match_color_histogram, match_luminance, style_stats_noise,
    with_content_chrominance,
)
from .backbones.convolution import check_convolution, use_convolution
from .backbones.clip_text import TextImageModel, check_text_model, create_text_model, default_text_model
from .losses import StyleLoss, TokenGramLoss, create_style_loss, require_positions
from .losses.text import CROPS as TEXT_CROPS, TextStyleLoss, check_style_text
from .lbfgs import CURVATURE_TESTS
from .optimize import (
    AUTO_CONTENT_WEIGHT, AUTO_STYLE_WEIGHT, INIT_MODES, LBFGS_CURVATURE, OPTIMIZERS, LossSpec, ProgressEvent,
    StopOptimization, StyleObjective, auto_warmup, check_balance, check_feature_transform, initial_image, optimize,
)
from .heap import kept_heap
from .runtime import check_precision, device_name, numeric_mode, numerics_in_effect, resolve_device

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
    seconds: float  # optimization wall time (targets included) of the batch this image was in
    final: ProgressEvent | None
    batch_index: int = 0  # which batch of a multi-image run (images of one batch share ``seconds``)

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


def _whole_number(name: str, value: int, low: int) -> None:
    """``name=`` must be an int (not a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise StylelabError(f"{name}= must be a whole number >= {low}, got {value!r}")


def _fit(image: torch.Tensor, long_edge: int, multiple: int) -> tuple[int, int]:
    """(H, W) with the long edge at ``long_edge``, each side rounded to a multiple of ``multiple``."""
    h, w = size_for_long_edge(image.shape[-2], image.shape[-1], long_edge)
    return max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)


def warmup_evaluations(style_warmup: int | str, first_budget: int, init: str | ImageInput = "content") -> int:
    """The first scale's warm-up evaluations that ``style_warmup`` asks for: a number as given, or "auto":
    ``auto_warmup`` of the first scale's ``first_budget`` when the run starts from the content image (the case
    measured: a warm-up eases the style in from the photo), else none."""
    if isinstance(style_warmup, str) and style_warmup == "auto":
        return auto_warmup(first_budget) if isinstance(init, str) and init == "content" else 0
    if isinstance(style_warmup, bool) or not isinstance(style_warmup, int) or style_warmup < 0:
        raise StylelabError(f"style_warmup= takes 'auto' or a whole number >= 0, got {style_warmup!r}")
    if style_warmup >= first_budget:
        raise StylelabError(f"style_warmup={style_warmup} leaves no evaluation of the full loss: the first scale has "
                            f"{first_budget} (iterations= or coarse_iterations=)")
    return style_warmup


def validate_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise StylelabError(f"size must be a whole number of pixels from 1 to {MAX_SIZE}, got {size!r}")


def resolve_layers(backbone: Backbone, content_layers: LayersInput, style_layers: LayersInput, balance: str = "none"
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Layer specs -> {name: weight}; unnamed weights: 1 for content; for style (64/N)², or 1 when the automatic
    balance already puts every layer on one scale."""
    content = parse_layer_spec(content_layers, "content layers") if content_layers is not None \
        else dict(backbone.default_content_layers)
    style = parse_layer_spec(style_layers, "style layers") if style_layers is not None \
        else dict.fromkeys(backbone.default_style_layers)
    content = {backbone.layer(n).name: 1.0 if w is None else w for n, w in content.items()}
    def default_weight(name: str) -> float:
        return 1.0 if balance == "auto" else channel_rule_weight(backbone.layer(name).channels)

    style = {backbone.layer(n).name: default_weight(n) if w is None else w for n, w in style.items()}
    return content, style


# The seed's method exactly, as it ran before any speed or quality departure: transfer(..., **PLAIN), or
# `--plain` on the command line. One scale, a fixed number of evaluations, PyTorch's own convolutions, fp32 in
# NCHW, and torch.optim.LBFGS's curvature test (the default's scaled test keeps pairs torch refuses on small
# losses, so the two part there; on a trained network's loss they kept the same pairs: bench/RESULTS.md).
PLAIN = {"scales": "none", "tolerance": 0.0, "convolution": "direct", "precision": "fp32", "channels_last": False,
         "lbfgs_curvature": "torch", "style_warmup": 0}

PYRAMID_START = 128  # scales="auto": from this long edge, doubling, up to the output's size
SCALE_MODES = ("auto", "none")


def scale_schedule(size: int, scales: str | Sequence[int] | None = "none", iterations: int = 500,
                   coarse_iterations: int | None = None) -> list[tuple[int, int]]:
    """(long edge, evaluations) per scale, smallest first; the last is the output's size.

    ``scales="none"`` (or None) is one scale, ``size``: the plain method. ``"auto"`` is a pyramid from
    ``PYRAMID_START`` px doubling up to ``size`` (one scale when ``size`` is at most 1.5× the start); a list is
    taken as given. ``iterations`` is the output size's budget; ``coarse_iterations`` each smaller scale's
    (None: ``iterations``)."""
    if scales is None or scales == "none":
        sizes = [size]
    elif isinstance(scales, str):
        if scales != "auto":
            raise StylelabError(f"unknown scales {scales!r}; choose {', '.join(SCALE_MODES)} or a list of sizes")
        sizes, edge = [], PYRAMID_START
        while edge * 1.5 < size:  # the last step is between 1.5× and 3×
            sizes.append(edge)
            edge *= 2
        sizes.append(size)
    else:
        sizes = list(scales)
        if not sizes:
            raise StylelabError("scales must list at least one size")
        for value in sizes:
            validate_size(value)
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise StylelabError(f"scales must increase, got {sizes}")
    coarse = iterations if coarse_iterations is None else coarse_iterations
    return [(edge, coarse) for edge in sizes[:-1]] + [(sizes[-1], iterations)]


def prepare_images(net: Backbone, content: torch.Tensor, styles: Sequence[torch.Tensor], long_edge: int,
                   style_scale: float = 1.0, needs_content_size: bool = False
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content at ``long_edge`` (sides rounded to the backbone's multiple); styles at ``long_edge × style_scale``.

    The style keeps its own aspect ratio (Grams are per-position means), unless the style statistic depends on
    the token count (``needs_content_size``, the token Gram): then it takes the content's exact size.
    """
    content = resize(content, _fit(content, long_edge, net.input_multiple))
    if needs_content_size:
        if style_scale != 1:
            raise StylelabError("the token Gram needs the style at the output's size: "
                                "style_scale=1 only (use the channel Gram to scale the style)")
        return content, [resize(s, tuple(content.shape[-2:])) for s in styles]
    style_edge = max(1, round(long_edge * style_scale))
    if style_edge > MAX_SIZE:
        raise StylelabError(f"style scale {style_scale} makes the style {style_edge} px, above {MAX_SIZE}")
    return content, [resize(s, _fit(s, style_edge, net.input_multiple)) for s in styles]


def _announce_rounding(net: Backbone, items: list[_Item], long_edge: int, log: Callable[[str], None]) -> None:
    """Say when the backbone's input multiple changes the output size (a ViT's 16-pixel patches)."""
    if net.input_multiple == 1:
        return
    for item in items:
        wanted = size_for_long_edge(*item.content.shape[-2:], long_edge)
        got = _fit(item.content, long_edge, net.input_multiple)
        if got != wanted:
            log(f"{net.name} needs sides that are multiples of {net.input_multiple}: the output is "
                f"{got[1]}x{got[0]} instead of {wanted[1]}x{wanted[0]}")
            return


@dataclass
class _Item:
    """One output: its content and style set, after the colour mode has prepared them."""

    index: int  # position in the returned list
    content: torch.Tensor  # (1, 3, H, W), grey in luminance mode
    styles: list[torch.Tensor]
    original: torch.Tensor  # the content as given, for the colour put back in luminance mode


def _items(contents: list[torch.Tensor], styles: list[torch.Tensor], each_style: bool, original_colors: str
           ) -> list[_Item]:
    """Every content with the blended styles, or with ``each_style`` every (content, style) pair."""
    sets = [[s] for s in styles] if each_style else [styles]
    items = []
    for content in contents:
        for style_set in sets:
            c, ss = content, style_set
            if original_colors == "histogram":  # the style's colours made the content's before anything else
                ss = [match_color_histogram(s, c) for s in ss]
            elif original_colors == "luminance":  # optimize grey images; colour comes back at the end
                ss = [luminance_image(match_luminance(luminance_image(s), luminance_image(c))) for s in ss]
                c = luminance_image(c)
            items.append(_Item(len(items), c, ss, content))
    return items


def transfer(
    content: ImageInput | Sequence[ImageInput],
    style: ImageInput | Sequence[ImageInput] | None = None,
    *,
    backbone: str | Backbone = "vgg19",
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
    each_style: bool = False,
    masks: Sequence[ImageInput] | None = None,
    style_scale: float = 1.0,
    original_colors: str = "none",
    scales: str | Sequence[int] | None = "none",
    coarse_iterations: int | None = None,
    style_loss: str = "gram",
    balance: str | None = None,
    pooling: str | None = None,
    gram: str | None = None,
    gram_norm: str | None = None,
    init: str | ImageInput = "content",
    style_text: str | None = None,
    text_weight: float = 1.0,
    text_model: str | None = None,
    text_weights: str | None = None,
    text_crops: int = TEXT_CROPS,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    channels_last: bool | None = None,
    convolution: str = "auto",
    batch_size: int = 8,
    lbfgs_history: int = 100,
    lbfgs_curvature: str = LBFGS_CURVATURE,
    tolerance: float = 0.0,
    style_warmup: int | str = "auto",
    report_every: int | None = None,
    config: TransferConfig | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    on_result: Callable[[int, TransferResult], None] | None = None,
    log: Callable[[str], None] | None = None,
    extra_terms: Callable[[torch.Tensor], Mapping[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]]]
    | None = None,
) -> TransferResult | list[TransferResult]:
    """Gatys et al.'s style transfer of ``style`` onto ``content``; see ``stylize`` for the options.

    ``content`` may be a list: then the images are optimized ``batch_size`` at a time (images of one size
    share a batch, each its own problem) and a list of results comes back, one per content, or with
    ``each_style`` one per (content, style) pair, content-major. ``backbone`` is a registered name or a backbone
    built by ``create_backbone`` (then ``weights``, ``seed`` and ``pooling`` were the builder's business; it is
    not truncated, so it can serve other layers in a later run). A stop from the callback ends the whole
    run; the list then holds the images run so far. ``on_result(index, result)`` is called as each image is
    finished (index: its place in the returned list), e.g. to save it before the next batch runs.

    ``config`` (a ``TransferConfig``) carries every option at once, instead of the keywords.

    ``extra_terms(content)``, called at each scale with the batch's (B, 3, H, W) content, returns more loss terms
    by name, ``{name: (image -> (B,) loss, weight)}``, added to the objective and reported in ``event.terms``
    (a video's temporal consistency uses it).
    """
    if config is not None:
        given = {name: value for name, value in locals().items() if name in _OPTION_DEFAULTS
                 and value is not _OPTION_DEFAULTS[name]}
        if given:
            raise StylelabError(f"config carries every option: pass {', '.join(sorted(given))} inside it")
        return transfer(content, style, **config.options(), callback=callback, on_result=on_result, log=log,
                        extra_terms=extra_terms)
    validate_size(size)
    for name, value in (("iterations", iterations), ("coarse_iterations", coarse_iterations),
                        ("batch_size", batch_size), ("lbfgs_history", lbfgs_history)):
        if value is not None:  # None: the default (coarse_iterations)
            _whole_number(name, value, 1)
    if lbfgs_curvature not in CURVATURE_TESTS:
        raise StylelabError(f"unknown lbfgs_curvature {lbfgs_curvature!r}; choose {', '.join(CURVATURE_TESTS)}")
    schedule = scale_schedule(size, scales, iterations, coarse_iterations)
    if optimizer not in OPTIMIZERS:
        raise StylelabError(f"unknown optimizer {optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    for name, value in (("content weight", content_weight), ("style weight", style_weight),
                        ("tv weight", tv_weight)):
        _positive_number(name, value)
    _positive_number("learning rate", lr, allow_zero=False)
    _positive_number("style scale", style_scale, allow_zero=False)
    _positive_number("tolerance", tolerance)
    style_warmup = warmup_evaluations(style_warmup, schedule[0][1], init)
    check_feature_transform(feature_transform)  # before any weights are loaded
    if balance is not None:
        check_balance(balance)
    loss = _style_loss(style_loss, gram, gram_norm, seed)
    check_original_colors(original_colors)
    if isinstance(init, str) and init not in INIT_MODES:
        init = as_tensor(init)  # a path: fail now, before any weights are loaded
    dev = resolve_device(device)
    check_precision(precision, dev)
    check_convolution(convolution, dev)
    log = log or (lambda message: None)
    asked, (precision, channels_last) = precision, numerics_in_effect(precision, channels_last, dev)

    batch = isinstance(content, (list, tuple))
    contents = [as_tensor(c) for c in (content if batch else [content])]
    if not contents:
        raise StylelabError("no content images were given")
    styles = [as_tensor(s) for s in (style if isinstance(style, (list, tuple)) else [] if style is None else [style])]
    text_net = _text_model(style_text, text_weight, text_model, text_weights, text_crops, backbone, weights, seed,
                           bool(styles))
    if each_style and not styles:
        raise StylelabError("each_style keeps several style images apart: give style images")
    if each_style:
        if style_blend is not None:
            raise StylelabError("style blend mixes the styles and each-style keeps them apart: use one of them")
        blend = [1.0]
    else:
        blend = [1.0 / max(1, len(styles))] * len(styles) if style_blend is None else list(style_blend)
        if styles and (len(blend) != len(styles) or any(not math.isfinite(b) or b < 0 for b in blend)
                       or sum(blend) <= 0) or (not styles and style_blend is not None):
            raise StylelabError(f"style blend needs {len(styles)} finite weights >= 0 with a positive sum, got {blend}")
        blend = [b / sum(blend) for b in blend] if styles else []

    mask_ts = None if masks is None else _load_masks(masks, styles, batch or each_style or style_blend is not None)
    if mask_ts is not None:
        require_positions(loss)  # before any weights are loaded
    if isinstance(backbone, Backbone):  # built once by the caller (a server, a study) and reused across runs
        net = backbone
    else:
        net = create_backbone(backbone, weights, seed=seed, pooling=pooling)
    balance = balance or net.default_balance
    log(f"backbone {net.name}: weights {net.weights_source}")
    if asked == "auto" and precision != "fp32":  # said once the weights are in: a failed load says nothing more
        log(f"precision auto: {precision} autocast{' + channels_last' if channels_last else ''} "
            f"(this CPU's AMX; --precision fp32 for exact arithmetic)")
    if text_net is not None:
        text_net = text_net()
        log(f"text model {text_net.name}: weights {text_net.weights_source}")
        text_net.to(dev)
    items = _items(contents, styles, each_style, original_colors)
    if original_colors == "luminance" and isinstance(init, torch.Tensor):
        init = luminance_image(init)  # a grey optimization starts from a grey image
    c_layers, s_layers = resolve_layers(net, content_layers, style_layers, balance)
    if not styles:  # a written style alone: no Gatys style term
        s_layers = {}
    deepest = net.deepest([*c_layers, *s_layers])
    sizes = [edge for edge, _ in schedule]
    for item in items:
        c, ss = prepare_images(net, item.content, item.styles, sizes[0], style_scale,  # the smallest scale decides
                               loss.needs_content_size)
        smallest = min(min(t.shape[-2:]) for t in [c, *ss])
        if smallest < deepest.stride:
            raise StylelabError(
                f"images are too small for layer {deepest.name} (stride {deepest.stride}): the shortest edge is "
                f"{smallest} px; raise size= (or the first of scales=) or use shallower layers"
            )
    _announce_rounding(net, items, sizes[-1], log)
    if not isinstance(backbone, Backbone):  # a caller's backbone may serve deeper layers in its next run
        net.truncate([*c_layers, *s_layers])
    net.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    use_convolution(net, convolution)  # per run: a caller's backbone may have served another setting before
    spec = LossSpec(
        content_layers=c_layers,
        style_layers=s_layers,
        content_weight=float(content_weight) if content_weight is not None else
        AUTO_CONTENT_WEIGHT if balance == "auto" else net.default_content_weight,
        style_weight=float(style_weight) if style_weight is not None else
        AUTO_STYLE_WEIGHT if balance == "auto" else net.default_style_weight,
        tv_weight=net.default_tv_weight if tv_weight is None else float(tv_weight),
        feature_transform=feature_transform,
        style_loss=loss.name,
        balance=balance,
    )
    # Images whose sides are equal at every scale can share a batch.
    groups: dict[tuple, list[_Item]] = {}
    for item in items:
        key = tuple(tuple(prepare_images(net, item.content, [], edge)[0].shape) for edge in sizes)
        groups.setdefault(key, []).append(item)
    chunks = [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]
    if len(chunks) > 1 or len(items) > 1:
        log(f"{len(items)} images in {len(chunks)} batch(es) of up to {batch_size}")

    if len(schedule) > 1:
        log("scales " + " → ".join(f"{edge} px × {budget}" for edge, budget in schedule) + " evaluations")
    plan = _Plan(schedule, blend, spec, loss, style_scale, init, seed, dev, precision, optimizer, lr,
                 report_every, lbfgs_history, lbfgs_curvature, tolerance, style_warmup, mask_ts,
                 None if text_net is None else _TextPlan(text_net, style_text, text_weight, text_crops), extra_terms)
    progress = _Progress(sum(budget for _, budget in schedule) * len(chunks), callback)
    results: list[tuple[int, TransferResult]] = []
    torch.manual_seed(seed)
    with numeric_mode(precision), kept_heap(dev.type == "cpu"):
        for batch_index, chunk in enumerate(chunks):
            start = time.perf_counter()
            image = _run_chunk(net, chunk, plan, progress)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - start
            image = image.cpu()
            final = progress.last
            for i, item in enumerate(chunk):
                out = image[i:i + 1]
                if original_colors == "luminance":
                    out = with_content_chrominance(out, resize(item.original, tuple(out.shape[-2:]))).float()
                event = final.per_image[i] if final is not None and final.per_image else final
                result = TransferResult(out, net.name, net.weights_source, device_name(dev), spec,
                                        progress.chunk_iterations, seconds, event, batch_index)
                results.append((item.index, result))
                if on_result is not None:
                    on_result(item.index, result)
            if progress.stopped:
                break
    ordered = [result for _, result in sorted(results, key=lambda pair: pair[0])]
    return ordered if batch else ordered[0]


_OPTION_DEFAULTS = {name: p.default for name, p in inspect.signature(transfer).parameters.items()
                   if name in option_names()}


class _Progress:
    """Counts evaluations on across pyramid scales and batches, so progress bars and traces see one run."""

    def __init__(self, total: int, callback: Callable[[ProgressEvent], None] | None):
        self.total, self.callback = total, callback
        self.iterations, self.seconds = 0, 0.0  # before the current optimize() call
        self.chunk_iterations = 0  # evaluations of the current batch so far (all its scales)
        self.last: ProgressEvent | None = None  # the latest event, with the optimize() call's own numbers
        self.stopped = False

    def __call__(self, event: ProgressEvent) -> None:
        self.last = event
        if self.callback is None:
            return
        try:
            self.callback(replace(event, iteration=event.iteration + self.iterations, iterations=self.total,
                                  elapsed=event.elapsed + self.seconds))
        except StopOptimization:
            self.stopped = True
            raise

    def finished(self, iterations_done: int) -> None:
        """One optimize() call ended after ``iterations_done`` evaluations."""
        self.iterations += iterations_done
        self.chunk_iterations += iterations_done
        self.seconds += self.last.elapsed if self.last is not None else 0.0


@dataclass(frozen=True)
class _TextPlan:
    model: TextImageModel
    style_text: str
    weight: float
    crops: int


def _text_model(style_text, text_weight, text_model, text_weights, text_crops, backbone, weights, seed,
                has_styles: bool) -> Callable[[], TextImageModel] | None:
    """Checks the written style's options (before any weights are read); returns how to build its model."""
    if style_text is None:
        if not has_styles:
            raise StylelabError("no style was given: pass style images or style_text=")
        return None
    check_style_text(style_text)
    _positive_number("text_weight=", text_weight)
    _whole_number("text_crops", text_crops, 0)
    name = check_text_model(text_model or default_text_model(backbone if isinstance(backbone, str) else
                                                             getattr(backbone, "name", "")))
    chosen = text_weights or ("random" if weights == "random" else "pretrained")
    if chosen not in ("random", "pretrained") and not os.path.isfile(chosen):
        raise StylelabError(f"text_weights={chosen}: no such file")
    return lambda: create_text_model(name, chosen, seed)


@dataclass(frozen=True)
class _Plan:
    """How every batch runs: scales, objective, start image, optimizer and numerics."""

    schedule: list[tuple[int, int]]  # (long edge, evaluations) per scale, smallest first
    blend: list[float]
    spec: LossSpec
    style_loss: StyleLoss
    style_scale: float
    init: str | torch.Tensor
    seed: int
    device: torch.device
    precision: str
    optimizer: str
    lr: float | None
    report_every: int | None
    lbfgs_history: int
    lbfgs_curvature: str
    tolerance: float  # stop a scale early when the loss no longer improves by this fraction (0: never)
    style_warmup: int  # the first scale's first evaluations with β × WARMUP_STYLE_FACTOR (0: none)
    masks: list[torch.Tensor] | None  # (1, 1, H, W) per style, any size; resized to each scale's content
    text: _TextPlan | None = None  # a written style (CLIPstyler's losses), alone or with the style images
    terms: Callable[[torch.Tensor], Mapping[str, tuple[Callable, float]]] | None = None  # more terms per scale


GRAMS = ("channel", "token")  # the older way to ask for the seed's token Gram: gram="token"


def _style_loss(name: str, gram: str | None, gram_norm: str | None, seed: int) -> StyleLoss:
    """The style loss; ``gram="token"`` (and ``gram_norm``) are the seed's token Gram by its earlier options."""
    if gram is not None and gram not in GRAMS:
        raise StylelabError(f"unknown gram {gram!r}; choose {', '.join(GRAMS)}")
    if gram == "token":
        if name not in ("gram", "token-gram"):
            raise StylelabError(f"gram=token is the token-gram style loss: not with style_loss={name}")
        name = "token-gram"
    if gram_norm is not None and gram_norm not in TokenGramLoss.NORMS:
        raise StylelabError(f"unknown gram norm {gram_norm!r}; choose {', '.join(TokenGramLoss.NORMS)}")
    return create_style_loss(name, norm=gram_norm, seed=seed)


def _load_masks(masks: Sequence[ImageInput], styles: list[torch.Tensor], several: bool) -> list[torch.Tensor]:
    """Mask images -> (1, 1, H, W) weights in [0, 1] (the mean of the RGB channels: white selects)."""
    if several:
        raise StylelabError("masks place the styles on one content image: not with several contents, "
                            "each-style or a style blend")
    if len(masks) != len(styles):
        raise StylelabError(f"{len(styles)} style(s) need as many masks, one per style in order; got {len(masks)}")
    out = []
    for i, mask in enumerate(masks, 1):
        weights = as_tensor(mask).mean(1, keepdim=True)
        if not weights.sum() > 0:
            raise StylelabError(f"mask {i} selects nothing (it is black everywhere)")
        out.append(weights)
    return out


def _run_chunk(net: Backbone, chunk: list[_Item], plan: _Plan, progress: _Progress) -> torch.Tensor:
    """All scales of one batch; returns its (B, 3, H, W) images."""
    progress.chunk_iterations, image = 0, None
    shared = len({id(item.styles) for item in chunk}) == 1  # one style list for all: its targets once
    for long_edge, budget in plan.schedule:
        prepared = [prepare_images(net, item.content, item.styles, long_edge, plan.style_scale,
                                   plan.style_loss.needs_content_size) for item in chunk]
        content = torch.cat([c for c, _ in prepared]).to(plan.device)  # (B, 3, H, W)
        style_sets = [[s.to(plan.device) for s in ss] for _, ss in prepared]
        hw = tuple(content.shape[-2:])
        masks = None if plan.masks is None else [resize(m, hw) for m in plan.masks]
        text = None if plan.text is None else TextStyleLoss(
            plan.text.model, content, plan.text.style_text, crops=plan.text.crops, seed=plan.seed,
            redraw=plan.optimizer == "adam")
        objective = StyleObjective(net, content, style_sets[0] if shared else style_sets, plan.blend, plan.spec,
                                   style_loss=plan.style_loss, precision=plan.precision, masks=masks,
                                   terms={**({} if text is None else {"text": (text, plan.text.weight)}),
                                          **(plan.terms(content) if plan.terms is not None else {})})
        if image is not None:  # pyramid: the previous scale's result, upsampled, is the start
            x0 = resize(image, hw)
        elif isinstance(plan.init, torch.Tensor):
            x0 = initial_image(resize(plan.init, hw), content, plan.seed)
        elif plan.init == "style-stats":
            x0 = torch.cat([style_stats_noise(ss, plan.blend, (1, *content.shape[1:]), plan.seed)
                            for _, ss in prepared])
        else:  # every image of a batch gets the noise it would get alone
            x0 = torch.cat([initial_image(plan.init, content[i:i + 1], plan.seed) for i in range(len(chunk))])
        progress.last = None
        image = optimize(objective, x0.to(plan.device), iterations=budget, optimizer=plan.optimizer,
                         lr=plan.lr, callback=progress, report_every=plan.report_every, history=plan.lbfgs_history,
                         curvature=plan.lbfgs_curvature, tolerance=plan.tolerance,
                         warmup=plan.style_warmup if image is None else 0)  # a warm-up at the first scale only
        progress.finished(progress.last.iteration if progress.last is not None else 0)
        if progress.stopped:
            break
    return image


def stylize(content: ImageInput, style: ImageInput | Sequence[ImageInput], **options) -> Image.Image:
    """Render ``content`` in the style of ``style``; returns an RGB PIL image.

    Options (defaults as in the CLI): backbone="vgg19", weights="pretrained"|"random"|path,
    size=512 (long edge), iterations=500, optimizer="lbfgs"|"adam", lr, content_weight (α),
    style_weight (β), tv_weight, content_layers / style_layers ("relu1_1:0.2,relu2_1" or a dict),
    feature_transform="none"|"softmax", style_blend (weights of several styles, mixed as Gram statistics),
    masks (one image per style: where on the content that style goes; Gatys et al. 2017's guided Grams),
    style_scale (style size relative to the output), original_colors="none"|"luminance"|"histogram",
    scales="none"|"auto"|[128, 256, 512] (none, the default: one scale, the plain method; a pyramid, each scale
    starting from the previous result; auto: from 128 px doubling up to ``size``; bench/RESULTS.md measures when
    it pays), coarse_iterations (evaluations at each scale below the output's; default ``iterations``),
    style_loss="gram"|"token-gram"|"mean-cov"|"sliced-wasserstein" (the style statistic), balance="none"|"auto"
    (default: the backbone's; auto divides each layer's term by its target's magnitude), pooling="max"|"avg"
    (VGG), gram="token" (= style_loss="token-gram") and gram_norm="seed"|"none" (the token Gram's scaling),
    init="content"|"random"|"style-stats"|image, style_text="a watercolor painting" (a written style, CLIPstyler's
    losses; ``style`` may then be None) with text_weight, text_model="open_clip:ARCH[:TAG]", text_weights and
    text_crops, seed, device,
    precision="auto"|"fp32"|"tf32"|"bf16" (auto, the default: bf16 on a CPU with AMX, where it reaches plain's
    fp32 loss sooner, fp32 elsewhere; tf32: CUDA only; bf16: the backbone under autocast, Grams/losses fp32),
    channels_last (NHWC convolutions; None, the default: on with bf16 on a CPU),
    convolution="auto"|"direct"|"winograd" (3×3 convolutions by Winograd's algorithm on the CPU where it pays, else
    PyTorch's own; see ``backbones.convolution``), tolerance (stop a
    scale once the loss improves by less than this fraction over 20 evaluations; 0: exactly ``iterations``),
    style_warmup (the first scale's first N evaluations weigh the style by 0.1, then the full loss with L-BFGS
    started afresh; 0: none; included in ``iterations``; "auto", the default: 12 % of the first scale's evaluations
    when it has at least 300 and starts from the content image, e.g. 60 of 500, else none),
    lbfgs_history (L-BFGS pairs kept, 100; each costs 24 bytes per pixel),
    lbfgs_curvature="scaled"|"torch" (the test an L-BFGS pair must pass: scaled, y·s > ε·y·y, which a small loss only
    makes more lenient; torch: torch.optim.LBFGS's y·s > 1e-10, which refuses every pair of a small loss; see lbfgs.py),
    callback(ProgressEvent) called every ``report_every`` evaluations
    (default 1, 10 on CUDA). For several contents at once use ``transfer`` with a list.
    """
    if isinstance(content, (list, tuple)):
        raise StylelabError("stylize takes one content image; pass a list to transfer() for a batch")
    return transfer(content, style, **options).to_pil()
