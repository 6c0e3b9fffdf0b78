"""``stylelab report``: the seed study's §3 in one command, as one HTML page with a verdict per figure.

The experiments are rows of a table (``experiments``): the seed's figure, its caption and claim (the seed's own
words, quoted), the layer choices, how to run it (a function, and the same experiment as one ``stylelab``
command) and a verdict function that turns the measurements into a sentence. Each experiment writes into its own
folder ``DIR/<id>`` through ``sweep``, ``compare`` or ``run_all``, so a second run keeps every finished run.
``DIR/index.html`` (plain HTML: no script, nothing fetched) shows our figure beside the seed's caption and claim,
then the timings beside the seed's and the environment; ``DIR/report.json`` holds the same as data.

With random weights nothing is said about quality: the verdicts read "no verdict: random weights" and a banner
says so at the top; the timings stand (they do not depend on the weights).
"""

from __future__ import annotations

import hashlib
import html
import json
import shlex
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..api import as_tensor, prepare_images, resolve_layers
from ..backbones import Backbone, create_backbone
from ..backbones.convolution import check_convolution
from ..errors import StylelabError
from ..images import MAX_SIZE, load_image, resize, save_image, size_for_long_edge, write_atomically
from ..runtime import check_precision, resolve_device, strict_fp32
from .compare import COMPARE_FILES, _slug, compare, compare_specs
from .environment import environment
from .evaluate import Judges
from .features import features_sheet, layer_pictures
from .runs import RunSpec, caption, command_line, network_key, pending, run_all, runs_table, write_results
from .sheets import contact_sheet
from .sweep import SWEEP_FILES, sweep, sweep_specs

REPORT_FILES = ("index.html", "report.json")
FEATURE_FILES = ("features.png", "features.json")
VARIANT_FILES = ("sheet.png", "results.json", "results.md")
SEED_BACKBONES = ("vgg19", "clip-rn50-sequential", "clip-rn50")  # Fig 3.2's three models
SEED_ITERATIONS = 500
NO_VERDICT_RANDOM = "no verdict: random weights"
SIMILAR = 0.25  # two numbers are "similar" when they differ by less than this fraction of the larger
NO_TRANSFER = 0.25  # "no style transfer": the output is less than this fraction closer to the style than the content

# The seed's layer choices (§3.1, Figs 3.1, 3.3, 3.4); RN50's "Layer k bottleneck i" is our layerk.i.
RN50_CONTENT = "layer1.0"
RN50_STYLE = "relu1,relu2,relu3,layer1.0,layer1.1"  # the seed's final choice
RN50_STYLE_SETS = (
    "relu1,relu2,relu3,layer1.0,layer1.1",
    "relu1,relu2,relu3,layer1.0,layer2.0",
    "relu3,layer1.0,layer1.1,layer2.0",  # the seed lists layer2.0 twice
    "relu3,layer1.0,layer2.0,layer3.0,layer4.0",
    "layer1.0,layer1.1,layer2.0,layer3.0,layer4.0",
)
RN50_CONTENT_SETS = ("layer1.0", "relu1", "relu3", "layer2.0", "layer3.0")  # Fig 3.4, left to right
RN50_ORDER = ("relu1", "relu2", "relu3", "stem", *(f"layer1.{i}" for i in range(3)), *(f"layer2.{i}" for i in range(4)),
              *(f"layer3.{i}" for i in range(6)), *(f"layer4.{i}" for i in range(3)))
VIT_CONTENT, VIT_STYLE = "block5", "block0,block1,block2,block3,block4"  # stylelab's defaults: the seed names none

# §3.1.1, §3.1.2 and §3.2: the seed's times for one image at 500 iterations.
SEED_TIMES = {
    "vgg19": ("1.5 h", 5400.0, "Tesla P100 16 GB (Google Colab Pro)"),
    "clip-rn50-sequential": ("half a minute", 30.0, "Tesla P100 16 GB (Google Colab Pro)"),
    "clip-rn50": ("5 min", 300.0, "CPU: Intel Xeon @ 2.20GHz (on the GPU its pixel gradients were NaN)"),
    "clip-vit-b16": ("within 10 min", 600.0, "not stated"),
}
LABELS = {"vgg19": "VGG19", "clip-rn50-sequential": "CLIP RN50, forward-vision (sequential)",
          "clip-rn50": "CLIP RN50, forward hooks", "clip-vit-b16": "CLIP ViT-B/16"}


# -- the study's state --------------------------------------------------------------------------------------------


@dataclass
class Study:
    """One report: its inputs, the common run options, the judges, the networks built so far and the results."""

    content: Path
    styles: list[Path]
    out: Path
    options: dict  # weights, size, iterations, seed, device, … (the same for every experiment)
    extra_backbones: list[str] = field(default_factory=list)
    judges: Judges | None = None
    fresh: bool = False
    quiet: bool = False
    log: Callable[[str], None] = lambda m: None
    networks: dict[tuple, Backbone] = field(default_factory=dict)  # shared by every experiment: built once
    results: dict[str, dict] = field(default_factory=dict)  # experiment id -> its result

    @property
    def random_weights(self) -> bool:
        return self.options.get("weights") == "random"

    @property
    def backbones(self) -> list[str]:
        """Fig 3.2's backbones: the seed's three, then the ones the user added."""
        return [*SEED_BACKBONES, *(b for b in self.extra_backbones if b not in SEED_BACKBONES)]

    def folder(self, experiment_id: str) -> Path:
        return self.out / experiment_id

    def run_options(self, backbone: str, **extra) -> dict:
        return {**self.options, "backbone": backbone, **extra}

    def net(self, backbone: str) -> Backbone:
        key = network_key(self.run_options(backbone))
        if key not in self.networks:
            self.networks[key] = create_backbone(key[0], key[1], seed=key[2], pooling=key[3])
        return self.networks[key]


@dataclass(frozen=True)
class Verdict:
    text: str
    status: str  # agrees | disagrees | partly | helps | does not help | none


@dataclass(frozen=True)
class Evidence:
    """What verdicts read: every experiment's result, and how far the unchanged content is from each style."""

    results: dict[str, dict]  # id -> {"records": [run records]} or {"features": {...}}
    baselines: dict[str, float | None] = field(default_factory=dict)  # style path -> judge Gram distance of content
    random_weights: bool = False
    judge: str = "vgg19"
    judge_problem: str | None = None  # why the judge's Gram distance cannot be used, if it cannot


class NoVerdict(Exception):
    """A measurement a verdict needs is missing; the message says which."""


@dataclass(frozen=True)
class Experiment:
    id: str  # also its folder
    figure: str  # "Fig 3.1", or "beyond the seed"
    title: str
    caption: str  # the seed's caption (quoted)
    claim: str  # the seed's claim (quoted)
    layers: str  # the layer choices used, in words
    specs: Callable[[Study], list[RunSpec]]  # the transfers it runs (none for the feature maps)
    run: Callable[[Study], dict]  # runs (or keeps) them; returns the result verdicts read
    command: Callable[[Study], str]  # the same experiment as one stylelab command
    verdict: Callable[[dict[str, dict], Evidence], Verdict]
    pictures: tuple[str, ...] = ("sheet.png",)  # our figure(s), in its folder
    files: tuple[str, ...] = SWEEP_FILES  # what it writes in its folder besides runs/


# -- reading measurements -----------------------------------------------------------------------------------------


def _records(results: dict[str, dict], experiment_id: str) -> list[dict]:
    try:
        return results[experiment_id]["records"]
    except KeyError:
        raise NoVerdict(f"experiment {experiment_id} has no results") from None


def _gram(ev: Evidence, record: dict) -> float:
    if ev.judge_problem:
        raise NoVerdict(ev.judge_problem)
    value = record["metrics"].get("gram_style")
    if value is None:
        raise NoVerdict("the judge's Gram distance was not measured")
    return value


def _ssim(record: dict) -> float:
    value = record["metrics"].get("ssim_content")
    if value is None:
        raise NoVerdict("SSIM to the content was not measured")
    return value


def _kept(results: dict[str, dict], experiment_id: str) -> float:
    try:
        return results[experiment_id]["features"]["kept"]
    except KeyError:
        raise NoVerdict(f"experiment {experiment_id} has no feature maps") from None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _similar(a: float, b: float) -> bool:
    return abs(a - b) <= SIMILAR * max(abs(a), abs(b))


def _n(value: float) -> str:
    return f"{value:.3g}"


def _judge_caveat(ev: Evidence) -> str:
    return (" (the judge is VGG19, the network the vgg19 run optimized, which favours that run; --judge picks "
            "another)") if ev.judge.startswith("vgg19") else ""


def _set_number(record: dict) -> int:
    return int(record["id"].rsplit("-s", 1)[1]) + 1  # sweep ids c{i}-s{j}


# -- verdicts: one per figure ---------------------------------------------------------------------------------------


def verdict_style_sweep_similar(results: dict[str, dict], ev: Evidence, experiment_id: str = "fig3_1",
                                network: str = "the sequential RN50") -> Verdict:
    """Fig 3.1: "the results are similar" across style-layer sets."""
    records = _records(results, experiment_id)
    values = [(_gram(ev, r), _set_number(r)) for r in records]
    (low, i), (high, j) = min(values), max(values)
    spread = f"judge Gram distance from {_n(low)} (set {i}) to {_n(high)} (set {j})"
    if _similar(low, high):
        return Verdict(f"the style-layer set changes little on {network}: {spread}, within "
                       f"{SIMILAR:.0%} of each other{_judge_caveat(ev)}", "agrees")
    return Verdict(f"the style-layer set matters on {network}: {spread}, "
                   f"{(high - low) / high:.0%} apart{_judge_caveat(ev)}", "disagrees")


def verdict_deep_style_layers(results: dict[str, dict], ev: Evidence, experiment_id: str = "fig3_3") -> Verdict:
    """Fig 3.3: "the deep layers cannot compute the style representation well"."""
    records = _records(results, experiment_id)
    deep = [r for r in records if any(n.startswith(("layer3", "layer4")) for n in r["style_layers"])]
    shallow = [r for r in records if r not in deep]
    if not deep or not shallow:
        raise NoVerdict("the sweep needs sets with and without layer3/layer4")
    d, s = _mean([_gram(ev, r) for r in deep]), _mean([_gram(ev, r) for r in shallow])
    sets = lambda rs: ", ".join(str(_set_number(r)) for r in rs)  # noqa: E731
    numbers = (f"mean judge Gram distance {_n(d)} with layer3/layer4 among the style layers (sets {sets(deep)}) "
               f"vs {_n(s)} without (sets {sets(shallow)})")
    if d > s:
        return Verdict(f"deep style layers transfer less style: {numbers}", "agrees")
    return Verdict(f"deep style layers transfer as much style or more: {numbers}", "disagrees")


def verdict_deep_content_layers(results: dict[str, dict], ev: Evidence, experiment_id: str = "fig3_4") -> Verdict:
    """Fig 3.4: "the most content information will be lost in deep layers"."""
    records = _records(results, experiment_id)
    by_layer = {}
    for r in records:
        layer, = r["content_layers"]
        by_layer[layer] = _ssim(r)
    order = sorted(by_layer, key=lambda n: RN50_ORDER.index(n) if n in RN50_ORDER else len(RN50_ORDER))
    shallowest, deepest = order[0], order[-1]
    all_values = ", ".join(f"{n} {_n(by_layer[n])}" for n in order)
    lowest = min(by_layer, key=by_layer.get)
    if lowest == deepest:
        return Verdict(f"deep content layers lose content: SSIM to the content falls from {_n(by_layer[shallowest])} "
                       f"({shallowest}) to {_n(by_layer[deepest])} ({deepest}); all: {all_values}", "agrees")
    return Verdict(f"the deepest content layer does not lose the most content: SSIM {_n(by_layer[deepest])} at "
                   f"{deepest}, lowest {_n(by_layer[lowest])} at {lowest}; all: {all_values}", "disagrees")


def _backbone(record: dict) -> str:
    """The name the run was asked for (a zoo model's network may call itself otherwise)."""
    return record.get("options", {}).get("backbone") or record["backbone"]


def _mean_gram_by_backbone(records: list[dict], ev: Evidence) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in records:
        by.setdefault(_backbone(r), []).append(_gram(ev, r))
    return {b: _mean(v) for b, v in by.items()}


def verdict_backbones(results: dict[str, dict], ev: Evidence, experiment_id: str = "fig3_2") -> Verdict:
    """Fig 3.2: VGG19 transfers the most style; the hooked RN50 more than the sequential one."""
    records = _records(results, experiment_id)
    means = _mean_gram_by_backbone(records, ev)
    missing = [b for b in SEED_BACKBONES if b not in means]
    if missing:
        raise NoVerdict(f"no run of {', '.join(missing)}")
    styles = len({r["style"] for r in records})
    numbers = ", ".join(f"{b} {_n(v)}" for b, v in means.items())
    others = {b: v for b, v in means.items() if b != "vgg19"}
    best = min(others, key=others.get)
    vgg_best = means["vgg19"] < others[best]
    first = (f"VGG19 transfers the most style" if vgg_best else f"{best} transfers more style than VGG19")
    hook, seq = means["clip-rn50"], means["clip-rn50-sequential"]
    second = (f"the hooked RN50 transfers more style than the sequential one: {_n(hook)} vs {_n(seq)}" if hook < seq
              else f"the hooked RN50 transfers no more style than the sequential one: {_n(hook)} vs {_n(seq)}")
    status = "agrees" if vgg_best and hook < seq else "disagrees" if not vgg_best and hook >= seq else "partly"
    return Verdict(f"{first} (mean judge Gram distance over {styles} style(s): {numbers}); {second}"
                   f"{_judge_caveat(ev)}", status)


def _closer(ev: Evidence, record: dict) -> tuple[float, float, float]:
    """(output's Gram distance, the unchanged content's, the fraction by which the output is closer)."""
    g = _gram(ev, record)
    base = ev.baselines.get(record["style"])
    if not base:
        raise NoVerdict("the unchanged content's Gram distance to the style was not measured")
    return g, base, 1 - g / base


def verdict_token_gram(results: dict[str, dict], ev: Evidence, experiment_id: str = "fig3_5") -> Verdict:
    """Fig 3.5: "the result image does not achieve style transfer" (the token Gram)."""
    record = _records(results, experiment_id)[0]
    g, base, closer = _closer(ev, record)
    numbers = f"judge Gram distance {_n(g)}, the unchanged content's {_n(base)} ({closer:.0%} closer to the style)"
    vgg = [r for r in results.get("fig3_2", {}).get("records", [])
           if _backbone(r) == "vgg19" and r["style"] == record["style"] and r["metrics"].get("gram_style") is not None]
    if vgg:
        numbers += f"; VGG19 reaches {_n(vgg[0]['metrics']['gram_style'])} (Fig 3.2)"
    if closer < NO_TRANSFER:
        return Verdict(f"the token Gram transfers little or no style: {numbers}", "agrees")
    return Verdict(f"the token Gram does transfer style here: {numbers}", "disagrees")


def verdict_features_similar(results: dict[str, dict], ev: Evidence, a: str, b: str, what: str) -> Verdict:
    ka, kb = _kept(results, a), _kept(results, b)
    la, lb = (_feature_label(results[i]["features"]) for i in (a, b))
    numbers = f"mean |r| with the image {_n(ka)} ({la}) vs {_n(kb)} ({lb})"
    if _similar(ka, kb):
        return Verdict(f"{la} and {lb} keep the {what} picture alike: {numbers}", "agrees")
    more, less = (la, lb) if ka > kb else (lb, la)
    return Verdict(f"{more} keeps more of the {what} picture than {less}: {numbers}", "disagrees")


def verdict_features_extreme(results: dict[str, dict], ev: Evidence, me: str, others: Sequence[str], what: str,
                             least: bool) -> Verdict:
    mine = _kept(results, me)
    rest = {i: _kept(results, i) for i in others}
    label = _feature_label(results[me]["features"])
    numbers = f"mean |r| with the image {_n(mine)} vs " + " and ".join(
        f"{_n(v)} ({_feature_label(results[i]['features'])})" for i, v in rest.items())
    holds = all(mine < v for v in rest.values()) if least else all(mine > v for v in rest.values())
    word = "least" if least else "most"
    if holds:
        return Verdict(f"{label} keeps the {word} of the {what} picture: {numbers}", "agrees")
    return Verdict(f"{label} does not keep the {word} of the {what} picture: {numbers}", "disagrees")


def _feature_label(features: dict) -> str:
    return f"{features['backbone']} {features['layer']}"


def verdict_vit_channel_gram(results: dict[str, dict], ev: Evidence) -> Verdict:
    """Beyond the seed: does the channel Gram transfer the style that the token Gram (Fig 3.5) did not?"""
    channel = _records(results, "vit_channel_gram")[0]
    token = _records(results, "fig3_5")[0]
    gc, base, closer = _closer(ev, channel)
    gt = _gram(ev, token)
    numbers = (f"judge Gram distance {_n(gc)} with the channel Gram vs {_n(gt)} with the token Gram (Fig 3.5); the "
               f"unchanged content: {_n(base)} ({closer:.0%} closer to the style)")
    if gc < gt:
        return Verdict(f"the channel Gram transfers more style than the seed's token Gram: {numbers}", "helps")
    return Verdict(f"the channel Gram transfers no more style than the seed's token Gram: {numbers}",
                   "does not help")


def verdict_swag(results: dict[str, dict], ev: Evidence) -> Verdict:
    """Beyond the seed: does SWAG's softmax make the hooked RN50 transfer more style (Fig 3.2's setting)?"""
    swag = _records(results, "rn50_swag")
    plain = {r["style"]: r for r in _records(results, "fig3_2") if _backbone(r) == "clip-rn50"}
    pairs = [(r, plain[r["style"]]) for r in swag if r["style"] in plain]
    if not pairs:
        raise NoVerdict("no clip-rn50 run of Fig 3.2 for the same styles")
    gs, gp = _mean([_gram(ev, s) for s, _ in pairs]), _mean([_gram(ev, p) for _, p in pairs])
    ss, sp = _mean([_ssim(s) for s, _ in pairs]), _mean([_ssim(p) for _, p in pairs])
    numbers = (f"mean judge Gram distance {_n(gs)} with SWAG vs {_n(gp)} without (Fig 3.2) over {len(pairs)} "
               f"style(s); SSIM to the content {_n(ss)} vs {_n(sp)}")
    if gs < gp:
        return Verdict(f"SWAG's softmax makes the hooked RN50 transfer more style: {numbers}", "helps")
    return Verdict(f"SWAG's softmax does not make the hooked RN50 transfer more style: {numbers}", "does not help")


def judge_verdict(experiment: Experiment, ev: Evidence) -> Verdict:
    """The experiment's verdict, or "no verdict: …" (random weights, a missing measurement)."""
    if ev.random_weights:
        return Verdict(NO_VERDICT_RANDOM, "none")
    try:
        return experiment.verdict(ev.results, ev)
    except NoVerdict as exc:
        return Verdict(f"no verdict: {exc}", "none")


# -- running: transfers through sweep / compare / run_all, feature maps ------------------------------------------


def _common_flags(study: Study) -> str:
    o = study.options
    flags = f"--weights {o['weights']} --size {o['size']} --iterations {o['iterations']} --seed {o['seed']}"
    flags += f" --device {o['device']}" if o.get("device", "auto") != "auto" else ""
    flags += f" --precision {o['precision']}" if o.get("precision", "auto") != "auto" else ""
    return flags


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def _sweep_experiment(id: str, figure: str, title: str, caption: str, claim: str, layers: str, backbone: str,
                      style_sets: Sequence[str], content_sets: Sequence[str], verdict, **extra) -> Experiment:
    def options(study: Study) -> dict:
        return study.run_options(backbone, **extra)

    def specs(study: Study) -> list[RunSpec]:
        return sweep_specs(study.content, study.styles[0], style_sets, content_sets, options(study))

    def run(study: Study) -> dict:
        return {"records": sweep(study.content, study.styles[0], study.folder(id), style_layers=style_sets,
                                 content_layers=content_sets, options=options(study), judges=study.judges,
                                 fresh=study.fresh, quiet=study.quiet, log=study.log, networks=study.networks)}

    def command(study: Study) -> str:
        more = "".join(f" --{k.replace('_', '-')} {v}" for k, v in extra.items())
        return (f"stylelab sweep {_q(study.content)} {_q(study.styles[0])} --backbone {backbone} --style-layers "
                f"{' '.join(style_sets)} --content-layers {' '.join(content_sets)}{more} --scales none "
                f"{_common_flags(study)} -o {_q(study.folder(id))}")

    return Experiment(id, figure, title, caption, claim, layers, specs, run, command, verdict)


def _compare_experiment() -> Experiment:
    def specs(study: Study) -> list[RunSpec]:
        return compare_specs(study.content, study.styles, study.backbones, study.options)

    def run(study: Study) -> dict:
        return {"records": compare(study.content, study.styles, study.backbones, study.folder("fig3_2"),
                                   options=study.options, judges=study.judges, fresh=study.fresh, quiet=study.quiet,
                                   log=study.log, networks=study.networks)}

    def command(study: Study) -> str:
        return (f"stylelab compare {_q(study.content)} {' '.join(map(_q, study.styles))} --backbones "
                f"{','.join(study.backbones)} --scales none {_common_flags(study)} -o {_q(study.folder('fig3_2'))}")

    return Experiment(
        "fig3_2", "Fig 3.2", "three backbones, every style",
        "Style Transfer results using three different model.",
        "With the VGG model, the style pattern is more obvious on the target image, while the style pattern on the "
        "generated image using the RN50 model is relatively small. […] the model using forward hook function "
        "synthesizes images with more obvious style pattern. However, neither is good enough compared to the VGG "
        "model.",
        "each backbone's defaults, which are the seed's choices: vgg19 content relu4_2, style relu1_1, relu2_1, "
        "relu3_1, relu4_1, relu5_1; both RN50s content layer1.0, style relu1, relu2, relu3, layer1.0, layer1.1 "
        "(the seed's final choice, §3.1.2); style weights (64/N)² by channels N; any --backbones: their own defaults",
        specs, run, command, verdict_backbones, pictures=("sheet.png", "curves.png"), files=COMPARE_FILES)


def picture_kept(maps: Tensor, image: Tensor) -> float:
    """How much of the input's picture a layer keeps: the mean over channels of |Pearson r| between the channel
    map and the input's luminance averaged down to the map's grid (1: every channel is the image's light and
    dark, 0: unrelated). ``maps`` (C, h, w), ``image`` (3, H, W); a constant channel counts 0."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)
    lum = (image.double() * weights).sum(0)[None, None]
    lum = F.adaptive_avg_pool2d(lum, tuple(maps.shape[-2:])).flatten()
    x = maps.double().flatten(1)
    x, y = x - x.mean(1, keepdim=True), lum - lum.mean()
    denominator = x.norm(dim=1) * y.norm()
    r = torch.where(denominator > 0, (x @ y) / denominator.clamp_min(1e-300), torch.zeros_like(denominator))
    return float(r.abs().mean())


def _features_experiment(id: str, caption: str, claim: str, backbone: str, layer: str, which: str,
                         verdict) -> Experiment:
    def image_path(study: Study) -> Path:
        return study.content if which == "content" else study.styles[0]

    def key(study: Study) -> str:
        digest = hashlib.sha256(image_path(study).read_bytes())
        o = study.options
        digest.update(json.dumps([backbone, layer, o["weights"], o["seed"], o["size"]]).encode())
        return digest.hexdigest()[:16]

    def run(study: Study) -> dict:
        folder = study.folder(id)
        record_path, picture = folder / "features.json", folder / "features.png"
        wanted = key(study)
        if not study.fresh and record_path.is_file() and picture.is_file():
            try:
                previous = json.loads(record_path.read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict) and previous.get("key") == wanted:
                study.log(f"{id} feature maps: finished earlier, kept (use fresh= to redo)")
                return {"features": previous}
        study.log(f"{id} feature maps: {backbone} {layer} of the {which} image")
        folder.mkdir(parents=True, exist_ok=True)
        net = study.net(backbone)
        image, _ = prepare_images(net, as_tensor(image_path(study)), [], study.options["size"])
        device = resolve_device(study.options.get("device", "auto"))
        net.to(device)
        with strict_fp32(), torch.no_grad():
            pictures = layer_pictures(net, image.to(device), [layer])
            maps = net(image.to(device), [layer])[layer][0].cpu()
        save_image(features_sheet(net, image, pictures, image_path(study).name), picture)
        record = {"key": wanted, "backbone": net.name, "weights": net.weights_source, "layer": layer,
                  "image": str(image_path(study)), "which": which, "channels": maps.shape[0],
                  "grid": list(maps.shape[-2:]), "kept": picture_kept(maps, image[0])}
        write_atomically(record_path, lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
        return {"features": record}

    def command(study: Study) -> str:
        o = study.options
        return (f"stylelab features {_q(image_path(study))} --backbone {backbone} --layers {layer} --weights "
                f"{o['weights']} --size {o['size']} --seed {o['seed']} -o {_q(study.folder(id) / 'features.png')}")

    figure = "Fig " + id.removeprefix("fig").replace("_", ".")
    title = f"feature maps of the {which} image: {LABELS[backbone]}, {layer}"
    layers = f"{backbone} {layer} ({which} image, its first 16 channels shown)"
    return Experiment(id, figure, title, caption, claim, layers, lambda study: [], run, command, verdict,
                      pictures=("features.png",), files=FEATURE_FILES)


def _variant_sheet(study: Study, folder: Path, rows: list[tuple[str, list[tuple[str, Tensor, str]]]], title: str
                   ) -> dict:
    """Rows of (label, [(column label, image, caption)]) as DIR/sheet.png; returns the layout."""
    cells = [[image for _, image, _ in row] for _, row in rows]
    captions = [[text for _, _, text in row] for _, row in rows]
    sheet, layout = contact_sheet(cells, column_labels=[label for label, _, _ in rows[0][1]],
                                  row_labels=[label for label, _ in rows], captions=captions, title=title)
    save_image(sheet, folder / "sheet.png")
    return layout.to_json()


def _find(records: list[dict], backbone: str, style: Path) -> dict | None:
    return next((r for r in records if _backbone(r) == backbone and r["style"] == str(style)), None)


def _vit_remedy() -> Experiment:
    def specs(study: Study) -> list[RunSpec]:
        return [RunSpec("channel-gram", study.content, study.styles[0],
                        study.run_options("clip-vit-b16", content_layers=VIT_CONTENT, style_layers=VIT_STYLE,
                                          style_loss="gram"))]

    def run(study: Study) -> dict:
        folder = study.folder("vit_channel_gram")
        records = run_all(specs(study), folder, study.judges, fresh=study.fresh, quiet=study.quiet, log=study.log,
                          networks=study.networks)
        token = study.results["fig3_5"]["records"][0]
        channel = records[0]
        row = [("content", load_image(study.content), ""), ("style", load_image(study.styles[0]), ""),
               ("token Gram (the seed's, Fig 3.5)", load_image(study.folder("fig3_5") / token["image"]),
                caption(token)),
               ("channel Gram", load_image(folder / channel["image"]), caption(channel))]
        layout = _variant_sheet(study, folder, [("clip-vit-b16", row)],
                                f"clip-vit-b16 ({channel['weights']}), {channel['iterations']} iterations")
        _write_results(study, folder, records, layout)
        return {"records": records}

    def command(study: Study) -> str:
        return (f"stylelab sweep {_q(study.content)} {_q(study.styles[0])} --backbone clip-vit-b16 --style-layers "
                f"{VIT_STYLE} --content-layers {VIT_CONTENT} --style-loss gram --scales none {_common_flags(study)} "
                f"-o {_q(study.folder('vit_channel_gram'))}")

    return Experiment(
        "vit_channel_gram", "beyond the seed", "ViT-B/16 with the channel Gram (remedy for Fig 3.5)",
        "Synthesized image using ViT",
        "So after getting the exact definition of style representation in ViT model, the model is still very "
        "promising.",
        f"clip-vit-b16 content {VIT_CONTENT}, style {VIT_STYLE.replace(',', ', ')}, as Fig 3.5, but with the "
        "usual Gram over the 768 channels of the patch tokens (style_loss=gram) instead of the token Gram",
        specs, run, command, verdict_vit_channel_gram, files=VARIANT_FILES)


def _swag_remedy() -> Experiment:
    def specs(study: Study) -> list[RunSpec]:
        return [RunSpec(f"s{i}-{_slug(s.stem)}-swag", study.content, s,
                        study.run_options("clip-rn50", content_layers=RN50_CONTENT, style_layers=RN50_STYLE,
                                          feature_transform="softmax"))
                for i, s in enumerate(study.styles)]

    def run(study: Study) -> dict:
        folder = study.folder("rn50_swag")
        records = run_all(specs(study), folder, study.judges, fresh=study.fresh, quiet=study.quiet, log=study.log,
                          networks=study.networks)
        content = load_image(study.content)
        rows = []
        for style, r in zip(study.styles, records):
            plain = _find(study.results["fig3_2"]["records"], "clip-rn50", style)
            rows.append((style.stem, [
                ("style", load_image(style), ""), ("content", content, ""),
                ("clip-rn50 (Fig 3.2)", load_image(study.folder("fig3_2") / plain["image"]), caption(plain)),
                ("clip-rn50 + SWAG softmax", load_image(folder / r["image"]), caption(r))]))
        layout = _variant_sheet(study, folder, rows, f"clip-rn50 ({records[0]['weights']}), "
                                                     f"{records[0]['iterations']} iterations")
        _write_results(study, folder, records, layout)
        return {"records": records}

    def command(study: Study) -> str:
        return (f"stylelab compare {_q(study.content)} {' '.join(map(_q, study.styles))} --backbones clip-rn50 "
                f"--feature-transform softmax --scales none {_common_flags(study)} -o {_q(study.folder('rn50_swag'))}")

    return Experiment(
        "rn50_swag", "beyond the seed", "the hooked RN50 with SWAG's softmax (remedy for Fig 3.2)",
        "Style Transfer results using three different model.",
        "CLIP RN50 using forward-hook shows better texture than CLIP RN50 using forward-Vision, but still not as "
        "good as VGG's.",
        f"clip-rn50 content {RN50_CONTENT}, style {RN50_STYLE.replace(',', ', ')} (as Fig 3.2), every feature map "
        "passed through a softmax before its Gram and the content loss (Wang et al. 2021, SWAG)",
        specs, run, command, verdict_swag, files=VARIANT_FILES)


def _write_results(study: Study, folder: Path, records: list[dict], layout: dict) -> None:
    write_results(folder, command_line(), resolve_device(study.options.get("device", "auto")), study.judges,
                  records, runs_table(records), extra={"sheet": layout})


SEQ_CAPTION = ("I set the content layer to (Layer 1 bottleneck 0) layer unchanged and show the results by "
               "comparing different style layers.")


def _style_sets_text(content: str) -> str:
    sets = "; ".join(f"set {i} {s.replace(',', ', ')}" for i, s in enumerate(RN50_STYLE_SETS, 1))
    return (f"content {content}; style, one set per column: {sets} (set 3: the seed lists layer2.0 twice, used "
            "once here); style weights (64/N)² by channels N, as the seed weighted layers by their channels")


def experiments() -> list[Experiment]:
    """Every experiment of the seed's §3, in the seed's order, then the two remedies."""
    content_claim = ("after passing Clip-RN50 forward-vision layer, two images are no longer visible and no "
                     "semantic image content can be extracted from them. In addition, the performance of the VGG "
                     "model and Clip-RN50 hook-vision is similar.")
    style_claim = ("after passing through the Clip-RN50 forward-hook layer, one of the textures of the style image "
                   "can be very clearly preserved. In addition, the performance of the VGG model and Clip-RN50 "
                   "forward-vision is basically similar.")
    return [
        _sweep_experiment(
            "fig3_1", "Fig 3.1", "the sequential (forward-vision) RN50: style layers",
            SEQ_CAPTION,
            "I also evaluated different layers to compare the contributions of different layers for style "
            "extraction. But unfortunately the results are similar and there is no significant improvement.",
            _style_sets_text(RN50_CONTENT), "clip-rn50-sequential", RN50_STYLE_SETS, [RN50_CONTENT],
            verdict_style_sweep_similar),
        _compare_experiment(),
        _sweep_experiment(
            "fig3_3", "Fig 3.3", "the hooked RN50: style layers",
            SEQ_CAPTION, "It can be seen that the deep layers cannot compute the style representation well.",
            _style_sets_text(RN50_CONTENT), "clip-rn50", RN50_STYLE_SETS, [RN50_CONTENT],
            verdict_deep_style_layers),
        _sweep_experiment(
            "fig3_4", "Fig 3.4", "the hooked RN50: content layers",
            "I set (relu1, relu2, relu3, Layer 1 bottleneck 0, Layer 1 bottleneck 1) as style layers and show the "
            "results by comparing different content layers.",
            "It shows that the most content information will be lost in deep layers.",
            f"style {RN50_STYLE.replace(',', ', ')}; content, one per row: {', '.join(RN50_CONTENT_SETS)}",
            "clip-rn50", [RN50_STYLE], RN50_CONTENT_SETS, verdict_deep_content_layers),
        _sweep_experiment(
            "fig3_5", "Fig 3.5", "ViT-B/16 with the seed's token Gram",
            "Synthesized image using ViT",
            "However, after 500 iterations, the result image does not achieve style transfer.",
            f"clip-vit-b16 content {VIT_CONTENT}, style {VIT_STYLE.replace(',', ', ')} (stylelab's defaults: the "
            "seed names no ViT layers); the token Gram of eq. 2.5 over all 197 tokens without the division, as the "
            "seed's final run (style_loss=token-gram, gram_norm=none)",
            "clip-vit-b16", [VIT_STYLE], [VIT_CONTENT], verdict_token_gram, style_loss="token-gram",
            gram_norm="none"),
        _features_experiment(
            "fig3_6", "Feature map of the content image after VGG model (relu(self.conv4_2(out['r41'])))",
            content_claim, "vgg19", "relu4_2", "content",
            lambda res, ev: verdict_features_similar(res, ev, "fig3_6", "fig3_7", "content")),
        _features_experiment(
            "fig3_7", "Feature map of the content image after Clip RN50 model with hook (layer1 bottleneck 1)",
            content_claim, "clip-rn50", "layer1.1", "content",
            lambda res, ev: verdict_features_similar(res, ev, "fig3_6", "fig3_7", "content")),
        _features_experiment(
            "fig3_8", "Feature map of the content image after Clip RN50 model without hook (layer1 bottleneck 1)",
            content_claim, "clip-rn50-sequential", "layer1.1", "content",
            lambda res, ev: verdict_features_extreme(res, ev, "fig3_8", ("fig3_7", "fig3_6"), "content",
                                                     least=True)),
        _features_experiment(
            "fig3_9", "Feature map of the style image after VGG model layer2 (relu(self.conv3_1(out['p2'])))",
            style_claim, "vgg19", "relu3_1", "style",
            lambda res, ev: verdict_features_similar(res, ev, "fig3_9", "fig3_11", "style")),
        _features_experiment(
            "fig3_10", "Feature map of the style image after Clip RN50 model with hook (layer1 bottleneck 1)",
            style_claim, "clip-rn50", "layer1.1", "style",
            lambda res, ev: verdict_features_extreme(res, ev, "fig3_10", ("fig3_9", "fig3_11"), "style",
                                                     least=False)),
        _features_experiment(
            "fig3_11", "Feature map of the style image after Clip RN50 model without hook (layer1 bottleneck 1)",
            style_claim, "clip-rn50-sequential", "layer1.1", "style",
            lambda res, ev: verdict_features_similar(res, ev, "fig3_9", "fig3_11", "style")),
        _vit_remedy(),
        _swag_remedy(),
    ]


def report_files(study: Study) -> list[Path]:
    """Every file the report may write (checked against the inputs before anything runs)."""
    files = [study.out / n for n in REPORT_FILES]
    for e in experiments():
        folder = study.folder(e.id)
        files += [folder / n for n in e.files]
        files += [folder / "runs" / f"{s.id}{ext}" for s in e.specs(study) for ext in (".png", ".json")]
    return files


def prepare(study: Study) -> None:
    """Before anything runs or is written: every network loads (once, kept for the runs) and every layer exists."""
    device = resolve_device(study.options.get("device", "auto"))
    check_precision(study.options.get("precision", "auto"), device)
    check_convolution(study.options.get("convolution", "auto"), device)
    shapes = {path: tuple(load_image(path).shape[-2:]) for path in (study.content, *study.styles)}
    for e in experiments():
        for spec in e.specs(study):
            net = study.net(spec.options["backbone"])
            content, style = resolve_layers(net, spec.options.get("content_layers"), spec.options.get("style_layers"))
            _check_size(study.options["size"], net.deepest([*content, *style]), shapes, net.name)
    for backbone in study.backbones:
        study.net(backbone)


def _check_size(size: int, deepest, shapes: dict[Path, tuple[int, int]], network: str) -> None:
    """Every image's shortest edge at ``size`` must cover the deepest layer's stride (else the run would fail)."""
    for path, (h, w) in shapes.items():
        if min(size_for_long_edge(h, w, size)) < deepest.stride:
            need = next(e for e in range(size, MAX_SIZE + 1) if min(size_for_long_edge(h, w, e)) >= deepest.stride)
            raise StylelabError(f"size={size} is too small for the study's layer {deepest.name} of {network} (stride "
                                f"{deepest.stride}): {path.name} would be {min(size_for_long_edge(h, w, size))} px "
                                f"on its shortest edge; use size={need} or more")


# -- the whole report -----------------------------------------------------------------------------------------


def _time_left(seconds: float) -> str:
    minutes = seconds / 60
    return "less than a minute" if minutes < 1 else f"about {round(minutes)} min"


def _baselines(study: Study) -> dict[str, float | None]:
    """The judge's Gram distance from the unchanged content (at the output's size) to each style."""
    judge = study.judges.gram if study.judges is not None else None
    if judge is None:
        return {str(s): None for s in study.styles}
    content = load_image(study.content)
    content = resize(content, size_for_long_edge(*content.shape[-2:], study.options["size"]))
    return {str(s): judge.distance(content, load_image(s)) for s in study.styles}


def evidence(study: Study) -> Evidence:
    judges = study.judges
    problem = None
    if judges is None or judges.gram is None:
        reason = (judges.unavailable.get("gram_style") if judges is not None else None) or "no judge"
        problem = f"the judge's Gram distance is unavailable ({reason})"
    elif judges.judge_weights == "random":
        problem = "the judge has random weights"
    return Evidence(study.results, _baselines(study) if problem is None else {}, study.random_weights,
                    judges.gram.name if judges is not None and judges.gram is not None else "", problem)


def run_report(study: Study) -> dict:
    """Run (or keep) every experiment, then write DIR/index.html and DIR/report.json; returns the report's data."""
    table = experiments()
    to_do = {e.id: len(pending(e.specs(study), study.folder(e.id), study.fresh)) for e in table}
    total, done, spent = sum(to_do.values()), 0, 0.0
    study.out.mkdir(parents=True, exist_ok=True)
    planned = sum(len(e.specs(study)) for e in table)
    study.log(f"{len(table)} experiments, {planned} runs ({total} to do) in {study.out}")
    for k, e in enumerate(table, 1):
        runs = len(e.specs(study))
        plan = f"{runs} run(s), {to_do[e.id]} to do" if runs else "feature maps"
        study.log(f"experiment {k} of {len(table)}: {e.id} ({e.figure}: {e.title}; {plan})")
        start = time.perf_counter()
        study.results[e.id] = e.run(study)
        if to_do[e.id]:
            done, spent = done + to_do[e.id], spent + time.perf_counter() - start
            if total > done:  # the estimate: the mean time of a run so far (network loading included)
                study.log(f"{_time_left(spent / done * (total - done))} left ({total - done} run(s) to do)")
    ev = evidence(study)
    verdicts = {e.id: judge_verdict(e, ev) for e in table}
    data = report_data(study, table, verdicts, ev)
    write_atomically(study.out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))
    write_atomically(study.out / "index.html", lambda tmp: Path(tmp).write_text(render_html(data), encoding="utf-8"))
    return data


def timings(study: Study) -> list[dict]:
    """Our time per image beside the seed's: Fig 3.2's backbones, the ViT of Fig 3.5 and the two remedies."""
    rows = []

    def add(key: str, label: str, records: list[dict], seed_key: str | None) -> None:
        if not records:
            return
        seconds = _mean([r["seconds"] for r in records])
        per_it = _mean([r["seconds_per_iteration"] for r in records])
        seed = SEED_TIMES.get(seed_key) if seed_key else None
        rows.append({
            "key": key, "label": label, "runs": len(records),
            "seed_time": seed[0] if seed else None, "seed_seconds": seed[1] if seed else None,
            "seed_device": seed[2] if seed else None, "seed_iterations": SEED_ITERATIONS if seed else None,
            "seconds": seconds, "iterations": records[0]["iterations"], "ms_per_iteration": 1000 * per_it,
            "seconds_at_seed_iterations": per_it * SEED_ITERATIONS,
            "size": "×".join(map(str, reversed(records[0]["size"]))),
            "device": ", ".join(sorted({r["environment"]["device"] for r in records})),
        })

    compared = study.results.get("fig3_2", {}).get("records", [])
    for b in study.backbones:
        add(b, LABELS.get(b, b), [r for r in compared if _backbone(r) == b], b)
    add("clip-vit-b16", LABELS["clip-vit-b16"] + ", token Gram (Fig 3.5)",
        study.results.get("fig3_5", {}).get("records", []), "clip-vit-b16")
    add("vit_channel_gram", LABELS["clip-vit-b16"] + ", channel Gram (beyond the seed)",
        study.results.get("vit_channel_gram", {}).get("records", []), None)
    add("rn50_swag", LABELS["clip-rn50"] + " + SWAG (beyond the seed)",
        study.results.get("rn50_swag", {}).get("records", []), None)
    return rows


def speed_sentence(rows: list[dict]) -> str:
    """The seed's speed-ups over VGG19 beside ours (per iteration, on our device)."""
    by = {r["key"]: r for r in rows}
    if "vgg19" not in by:
        return ""
    parts = []
    for key in ("clip-rn50-sequential", "clip-rn50"):
        if key in by:
            seed = SEED_TIMES["vgg19"][1] / SEED_TIMES[key][1]
            ours = by["vgg19"]["ms_per_iteration"] / by[key]["ms_per_iteration"]
            parts.append(f"{LABELS[key]}: the seed {seed:.3g}× faster than VGG19, here {ours:.3g}×")
    return ("; ".join(parts) + f" (ours per iteration on {by['vgg19']['device']} at {by['vgg19']['size']} px; the "
            "seed's VGG19 and forward-vision times are from a P100, its hooked RN50 from a CPU)") if parts else ""


def report_data(study: Study, table: list[Experiment], verdicts: dict[str, Verdict], ev: Evidence) -> dict:
    device = resolve_device(study.options.get("device", "auto"))
    weights = {}
    for result in study.results.values():
        for r in result.get("records", []):
            weights[r["backbone"]] = r["weights"]
        if "features" in result:
            weights[result["features"]["backbone"]] = result["features"]["weights"]
    rows = timings(study)
    sections = []
    for e in table:
        result = study.results.get(e.id, {})
        sections.append({
            "id": e.id, "figure": e.figure, "title": e.title, "caption": e.caption, "claim": e.claim,
            "layers": e.layers, "command": e.command(study),
            "pictures": [f"{e.id}/{p}" for p in e.pictures if (study.folder(e.id) / p).is_file()],
            "verdict": verdicts[e.id].text, "status": verdicts[e.id].status,
            "measures": _measures(result),
        })
    return {
        "command": command_line(), "random_weights": study.random_weights,
        "inputs": {"content": str(study.content), "styles": [str(s) for s in study.styles]},
        "options": {k: v for k, v in study.options.items()},
        "environment": environment(device), "weights": weights,
        "judges": study.judges.describe() if study.judges is not None else {},
        "baselines": ev.baselines, "sections": sections, "timings": rows, "speed": speed_sentence(rows),
    }


def _measures(result: dict) -> list[dict]:
    """The numbers behind a section: one row per run (or the feature maps' one)."""
    if "features" in result:
        f = result["features"]
        return [{"backbone": f["backbone"], "layer": f["layer"], "image": Path(f["image"]).name,
                 "channels": f["channels"], "grid": "×".join(map(str, f["grid"])), "mean |r|": f["kept"]}]
    return [{"run": r["id"], "backbone": r["backbone"], "style": Path(r["style"]).name,
             "content layers": ",".join(r["content_layers"]), "style layers": ",".join(r["style_layers"]),
             "seconds": r["seconds"], "SSIM ↑": r["metrics"].get("ssim_content"),
             "Gram distance ↓": r["metrics"].get("gram_style")}
            for r in result.get("records", [])]


# -- HTML ----------------------------------------------------------------------------------------------------------


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
img { max-width: 100%; height: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
section { border-top: 2px solid #ddd; margin-top: 2em; }
.banner { background: #fde2e1; border: 2px solid #c0392b; padding: 0.8em 1em; font-weight: bold; }
.verdict { padding: 0.4em 0.8em; border-left: 5px solid #999; background: #f5f5f5; }
.agrees, .helps { border-left-color: #2e8b57; } .disagrees, .does-not-help { border-left-color: #c0392b; }
.partly { border-left-color: #d4a017; }
code { background: #f2f2f2; padding: 1px 3px; word-break: break-all; }
q { font-style: italic; }
"""

STATUS_WORDS = {"agrees": "agrees with the seed", "disagrees": "disagrees with the seed",
                "partly": "partly agrees with the seed", "helps": "the remedy helps",
                "does not help": "the remedy does not help", "none": "no verdict"}


def _section(s: dict) -> str:
    pictures = "".join(f'<figure><img src="{_e(urllib.parse.quote(p))}" alt="{_e(s["figure"] + ": " + p)}">'
                       f"<figcaption>ours: {_e(p)}</figcaption></figure>" for p in s["pictures"])
    status = s["status"]
    return (f'<section id="{_e(s["id"])}" class="experiment">'
            f"<h2>{_e(s['figure'])} — {_e(s['title'])}</h2>{pictures}"
            f"<dl><dt>The seed's caption</dt><dd><q>{_e(s['caption'])}</q></dd>"
            f"<dt>The seed's claim</dt><dd><q>{_e(s['claim'])}</q></dd>"
            f"<dt>Layers used</dt><dd>{_e(s['layers'])}</dd>"
            f"<dt>Run it alone</dt><dd><code>{_e(s['command'])}</code></dd></dl>"
            f'<p class="verdict {_e(status.replace(" ", "-"))}"><strong>Verdict'
            f"{'' if status == 'none' else ' (' + _e(STATUS_WORDS[status]) + ')'}:</strong> {_e(s['verdict'])}</p>"
            f"{_table(s['measures'])}</section>")


def render_html(data: dict) -> str:
    """The report as one self-contained page: pictures by relative path, no script, nothing from the network."""
    o = data["options"]
    banner = ""
    if data["random_weights"]:
        banner = ('<div class="banner" id="random-weights">Random weights: these networks were not trained, so the '
                  "pictures show texture only and no verdict on quality is drawn. The timings stand: they do not "
                  "depend on the weights.</div>")
    seed_sections = [s for s in data["sections"] if s["figure"].startswith("Fig")]
    beyond = [s for s in data["sections"] if not s["figure"].startswith("Fig")]
    toc = "".join(f'<li><a href="#{_e(s["id"])}">{_e(s["figure"])}: {_e(s["title"])}</a></li>'
                  for s in data["sections"])
    timing_rows = [{
        "backbone": t["label"], "the seed: time": t["seed_time"], "the seed: device": t["seed_device"],
        "the seed: iterations": t["seed_iterations"], "ours: seconds per image": t["seconds"],
        "ours: iterations": t["iterations"], "ours: ms per iteration": t["ms_per_iteration"],
        f"ours at {SEED_ITERATIONS} iterations, s (extrapolated)": t["seconds_at_seed_iterations"],
        "ours: size": t["size"], "ours: device": t["device"], "runs": t["runs"]} for t in data["timings"]]
    env_rows = [{"what": k, "value": v} for k, v in data["environment"].items()]
    env_rows += [{"what": f"weights of {b}", "value": w} for b, w in data["weights"].items()]
    env_rows += [{"what": f"metric {k}", "value": v} for k, v in data["judges"].items()]
    inputs = ", ".join(Path(p).name for p in [data["inputs"]["content"], *data["inputs"]["styles"]])
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>The seed study, reproduced — stylelab report</title>", f"<style>{STYLE}</style></head><body>",
        banner,
        "<h1>The seed study, reproduced</h1>",
        f"<p>Every experiment of the seed's §3 (VGG19 against CLIP RN50 and ViT-B/16 as the network of Gatys et "
        f"al.'s style transfer), rerun with stylelab on {_e(inputs)} at {_e(o['size'])} px, {_e(o['iterations'])} "
        f"iterations, weights: {_e(o['weights'])}. Each section shows our figure, the seed's caption and claim, the "
        f"layers used and a verdict computed from the measurements (SSIM to the content ↑; the Gram distance to "
        f"the style in the judge network ↓; for feature maps, the mean |Pearson r| of each channel with the image's "
        f"luminance). Command: <code>{_e(data['command'])}</code></p>",
        f"<nav><ol>{toc}<li><a href=\"#timings\">Timings</a></li><li><a href=\"#environment\">Environment</a></li>"
        "</ol></nav>",
        *(_section(s) for s in seed_sections),
        '<h2 id="beyond">Beyond the seed: remedies for its two open problems</h2>' if beyond else "",
        *(_section(s) for s in beyond),
        '<section id="timings"><h2>Timings: the seed\'s beside ours</h2>',
        "<p>The seed's times are for one image at 500 iterations (§3.1 and §3.2; it does not give the image "
        "size). Ours are the mean over a backbone's runs; the extrapolation multiplies our time per iteration by "
        "500.</p>",
        _table(timing_rows), f"<p>{_e(data['speed'])}</p>" if data["speed"] else "", "</section>",
        '<section id="environment"><h2>Environment</h2>', _table(env_rows), "</section>",
        "</body></html>", ""])
