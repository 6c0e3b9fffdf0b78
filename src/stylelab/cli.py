"""Command line: ``stylelab transfer | demo | backbones | layers``.

Defaults come from ``api.transfer``'s signature, so the CLI and the Python API never disagree.
Every user error is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from pathlib import Path

from . import __version__
from .api import transfer
from .backbones import create_backbone, list_backbones
from .callbacks import Chain, FrameSaver, ProgressBar, TraceRecorder
from .errors import StylelabError, WeightsUnavailableError
from .images import MAX_SIZE, check_writable, output_format, save_image, side_by_side
from .backbones.clip import GRAM_NORMS, GRAMS
from .optimize import FEATURE_TRANSFORMS, OPTIMIZERS

DEFAULTS = {name: p.default for name, p in inspect.signature(transfer).parameters.items()
            if p.default is not inspect.Parameter.empty}


class HelpFormatter(argparse.HelpFormatter):
    """Shows "(default: X)" wherever there is a default that the help text does not already explain."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is not None and action.default is not False and action.default != argparse.SUPPRESS \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}..{high}")
        return value
    return parse


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text}")
    return value


def _pos_float(text: str) -> float:
    value = _nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _add_run_options(p: argparse.ArgumentParser, size: int, iterations: int) -> None:
    d = DEFAULTS
    p.add_argument("--backbone", default=d["backbone"], help="registered backbone (see 'stylelab backbones')")
    p.add_argument("--weights", default=d["weights"], metavar="pretrained|random|PATH",
                   help="pretrained (downloaded once, cached), random (seeded init) or a checkpoint file")
    p.add_argument("--size", type=_int_in(1, MAX_SIZE), default=size, metavar="PX", help="long edge of the output")
    p.add_argument("--iterations", type=_int_in(1, 10**6), default=iterations, metavar="N",
                   help="loss evaluations (L-BFGS function evaluations or Adam steps)")
    p.add_argument("--device", default=d["device"], help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=_int_in(0, 2**63 - 1), default=d["seed"], help="seeds random init and noise")
    p.add_argument("--quiet", action="store_true", help="no progress bar or info lines")


def build_parser() -> Parser:
    d = DEFAULTS
    parser = Parser(prog="stylelab", description="Neural style transfer with any vision backbone.")
    parser.add_argument("--version", action="version", version=f"stylelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("transfer", help="render CONTENT in the style of STYLE",
                       formatter_class=HelpFormatter)
    t.add_argument("content", metavar="CONTENT", help="content image")
    t.add_argument("style", metavar="STYLE", help="style image")
    t.add_argument("-o", "--output", required=True, metavar="OUT", help="output image (.png .jpg .webp .tif)")
    _add_run_options(t, d["size"], d["iterations"])
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"], help="L-BFGS as in the seed, or Adam")
    t.add_argument("--lr", type=_pos_float, default=d["lr"], help="step size (default: 1 for lbfgs, 0.02 for adam)")
    t.add_argument("--content-weight", type=_nonneg_float, default=d["content_weight"], metavar="ALPHA",
                   help="α of eq. 2.4 (default: the backbone's)")
    t.add_argument("--style-weight", type=_nonneg_float, default=d["style_weight"], metavar="BETA",
                   help="β of eq. 2.4 (default: the backbone's)")
    t.add_argument("--tv-weight", type=_nonneg_float, default=d["tv_weight"],
                   help="total-variation weight (default: the backbone's: 0, or 1 for clip-vit-b16)")
    t.add_argument("--feature-transform", choices=FEATURE_TRANSFORMS, default=d["feature_transform"],
                   help="softmax: SWAG's activation smoothing before Grams and content (helps residual nets)")
    t.add_argument("--content-layers", default=d["content_layers"], metavar="L[:W],…",
                   help="content layers with optional weights (default: the backbone's, relu4_2 for vgg19)")
    t.add_argument("--style-layers", default=d["style_layers"], metavar="L[:W],…",
                   help="style layers with optional weights, e.g. relu1_1:0.2,relu2_1 (default weight (64/N)²)")
    t.add_argument("--pooling", choices=("max", "avg"), default=d["pooling"],
                   help="VGG pooling (default max; Gatys et al. used avg)")
    t.add_argument("--gram", choices=GRAMS, default=d["gram"],
                   help="ViT style statistic: channel Gram (default) or the seed's token Gram (eq. 2.5)")
    t.add_argument("--gram-norm", choices=GRAM_NORMS, default=d["gram_norm"],
                   help="token Gram: divide by the embedding size as the seed's code (default) or none")
    t.add_argument("--init", default=d["init"], metavar="content|random|PATH", help="starting image")
    t.add_argument("--save-every", type=_int_in(0, 10**6), default=0, metavar="N",
                   help="also save the image every N iterations as OUT.00050.png …")
    t.add_argument("--trace", metavar="FILE.json", help="write per-iteration time and losses as JSON")
    t.set_defaults(run=cmd_transfer)

    demo = sub.add_parser("demo", help="stylize built-in sample images (no files needed)",
                          formatter_class=HelpFormatter)
    demo.add_argument("-o", "--output", default="demo.png", metavar="OUT")
    _add_run_options(demo, 256, 300)
    demo.set_defaults(run=cmd_demo)

    b = sub.add_parser("backbones", help="list registered backbones")
    b.set_defaults(run=cmd_backbones)

    ls = sub.add_parser("layers", help="list a backbone's layers with channels and stride")
    ls.add_argument("backbone", metavar="BACKBONE")
    ls.set_defaults(run=cmd_layers)
    return parser


def _info(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _run_transfer(args, content, style, output: Path, **options):
    """Run one transfer with progress bar, frames and trace; write the output atomically."""
    bar = ProgressBar(args.iterations, disable=args.quiet)
    frames = FrameSaver(output, getattr(args, "save_every", 0))
    trace = TraceRecorder(args.trace, {"output": str(output)}) if getattr(args, "trace", None) else None

    def log(message: str) -> None:
        if "random init" in message:  # always said, even with --quiet
            print(f"{message} — not pretrained: features are random, results show texture only", file=sys.stderr)
        else:
            _info(args, message)

    try:
        result = transfer(content, style, backbone=args.backbone, weights=args.weights, size=args.size,
                          iterations=args.iterations, device=args.device, seed=args.seed,
                          callback=Chain(bar, frames, trace), log=log, **options)
    finally:
        bar.close()
    save_image(result.image, output)
    if trace is not None:
        trace.write(backbone=result.backbone, weights=result.weights_source, device=result.device,
                    content_layers=dict(result.loss.content_layers), style_layers=dict(result.loss.style_layers),
                    content_weight=result.loss.content_weight, style_weight=result.loss.style_weight,
                    seconds=result.seconds)
    h, w = result.image.shape[-2:]
    _info(args, f"wrote {output} ({w}x{h}) in {result.seconds:.1f} s, "
                f"{result.iterations / max(result.seconds, 1e-9):.1f} it/s on {result.device}")
    return result


def cmd_transfer(args) -> int:
    output = check_writable(args.output)
    output_format(output)
    if args.trace:
        check_writable(args.trace)
    _run_transfer(args, args.content, args.style, output, optimizer=args.optimizer, lr=args.lr,
                  content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
                  content_layers=args.content_layers, style_layers=args.style_layers, pooling=args.pooling,
                  gram=args.gram, gram_norm=args.gram_norm, feature_transform=args.feature_transform, init=args.init)
    return 0


def cmd_demo(args) -> int:
    from .samples import sample_content, sample_style

    output = check_writable(args.output)
    output_format(output)
    content, style = sample_content(), sample_style()
    try:
        result = _run_transfer(args, content, style, output)
    except WeightsUnavailableError as exc:
        if args.weights != "pretrained":
            raise
        print(f"stylelab: {exc}", file=sys.stderr)
        print("stylelab: demo continues with --weights random (a random network: texture, not a painting)",
              file=sys.stderr)
        args.weights = "random"
        result = _run_transfer(args, content, style, output)
    sheet = output.with_name(f"{output.stem}-sheet{output.suffix}")
    save_image(side_by_side([content, style, result.image], height=result.image.shape[-2]), sheet)
    _info(args, f"wrote {sheet} (content | style | result)")
    return 0


def cmd_backbones(args) -> int:
    for entry in list_backbones():
        options = f"  [options: {', '.join(entry.options)}]" if entry.options else ""
        print(f"{entry.name:24s} {entry.description}{options}")
    return 0


def cmd_layers(args) -> int:
    net = create_backbone(args.backbone, "random")  # structure only: no download needed
    print(f"{'layer':16s} {'channels':>8s} {'stride':>6s}  module")
    for info in net.layers:
        print(f"{info.name:16s} {info.channels:8d} {info.stride:6d}  {info.module}")
    defaults = ", ".join(f"{n}:{w:g}" for n, w in net.default_style_weights().items())
    print(f"# default style layers: {defaults}")
    print(f"# default content layers: {', '.join(net.default_content_layers)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except StylelabError as exc:
        print(f"stylelab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stylelab: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
