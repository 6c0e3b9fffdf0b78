"""Does the automatic balance (and do the other style losses) paint as well as the hand-set VGG defaults?

On a trained network — HED's VGG16 (``bench/hed_vgg16.py`` makes the checkpoint) — every content × style pair is
stylized with each setting; each result is measured in that same network: the Gram style distance to the style
(Σ w_l E_l at the default style layers, lower = more of the style) and SSIM to the content (higher = more of the
content kept). Writes ``sheet.png`` (rows: pairs; columns: content, style, one per setting), ``results.json`` and
a Markdown table on stdout.

    python bench/hed_vgg16.py -o bench/weights/vgg16-hed.pth
    python bench/balance.py --weights bench/weights/vgg16-hed.pth -o bench/balance \\
        --contents ../shared/images/content/tubingen.jpg --styles ../shared/images/style/composition_vii.jpg

``--calibrate`` prints, per pair and style layer, the β that makes the automatic balance weigh that layer against
the content as the hand-set defaults do (β_h · w_l · m_l / (α_h · m_c), m the targets' magnitudes), and their
median: the measured basis of the automatic default β.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from stylelab import transfer
from stylelab.api import prepare_images, resolve_layers
from stylelab.backbones import create_backbone
from stylelab.images import load_image, resize, save_image
from stylelab.optimize import LossSpec, StyleObjective
from stylelab.study.judges import GramJudge
from stylelab.study.metrics import ssim
from stylelab.study.sheets import contact_sheet

SETTINGS = {  # name: transfer() options on top of the backbone and weights
    # The hand-set values vgg19 uses with a Caffe-layout network (vgg_conv.pth): α = 1, β = 0.5, (64/N)² weights.
    "hand-set gram": {"balance": "none", "style_loss": "gram", "content_weight": 1.0, "style_weight": 0.5},
    "auto gram": {"balance": "auto", "style_loss": "gram"},
    "auto mean-cov": {"balance": "auto", "style_loss": "mean-cov"},
    "auto sliced-wasserstein": {"balance": "auto", "style_loss": "sliced-wasserstein"},
}


def calibrate(backbone: str, weights: str, contents: list[Path], styles: list[Path], size: int) -> None:
    net = create_backbone(backbone, weights)
    c_hand, s_hand = resolve_layers(net, None, None, balance="none")
    betas = []
    for c in contents:
        for s in styles:
            content, (style,) = prepare_images(net, load_image(c), [load_image(s)], size)
            alpha, beta = (SETTINGS["hand-set gram"][k] for k in ("content_weight", "style_weight"))
            spec = LossSpec(c_hand, s_hand, alpha, beta, balance="auto")
            objective = StyleObjective(net, content, [style], [1.0], spec)
            (m_c,) = [1 / float(v) for v in objective.content_scale.values()]
            for layer, w in s_hand.items():
                m_l = 1 / float(objective.style_scale[layer])
                beta = spec.style_weight * w * m_l / (spec.content_weight * m_c)
                betas.append(beta)
                print(f"{c.name} × {s.name} {layer}: β_auto ≡ {beta:.3g}")
    print(f"median β_auto equivalent to the hand-set defaults: {statistics.median(betas):.3g} "
          f"(over {len(betas)} layer × pair values; geometric range {min(betas):.3g} … {max(betas):.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--weights", required=True, help="the trained checkpoint (bench/hed_vgg16.py)")
    parser.add_argument("--contents", nargs="+", type=Path, required=True)
    parser.add_argument("--styles", nargs="+", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--calibrate", action="store_true", help="only print the β calibration")
    parser.add_argument("-o", "--output", type=Path, default=Path("bench/balance"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.calibrate:
        calibrate(args.backbone, args.weights, args.contents, args.styles, args.size)
        return
    settings = [s.strip() for s in args.settings.split(",")]
    judge = GramJudge(args.backbone, args.weights)
    args.output.mkdir(parents=True, exist_ok=True)
    rows, cells, labels, captions = [], [], [], []
    for c in args.contents:
        for s in args.styles:
            content, style = load_image(c), load_image(s)
            row_cells, row_captions = [content, style], ["content", "style"]
            for name in settings:
                start = time.perf_counter()
                result = transfer(c, s, backbone=args.backbone, weights=args.weights, size=args.size,
                                  iterations=args.iterations, device="cpu", **SETTINGS[name])
                seconds = time.perf_counter() - start
                image = result.image
                record = {"content": c.name, "style": s.name, "setting": name, "seconds": round(seconds, 1),
                          "gram_distance": judge.distance(image, style),
                          "ssim_content": float(ssim(image, resize(content, tuple(image.shape[-2:])))),
                          "alpha": result.loss.content_weight, "beta": result.loss.style_weight}
                rows.append(record)
                save_image(image, args.output / f"{c.stem}-{s.stem}-{name.replace(' ', '_')}.png")
                row_cells.append(image)
                row_captions.append(f"{record['gram_distance']:.3g} / {record['ssim_content']:.2f}")
                print(json.dumps(record), flush=True)
            cells.append(row_cells)
            captions.append(row_captions)
            labels.append(f"{c.stem} x {s.stem}")
    sheet, _ = contact_sheet(cells, cell_height=192, column_labels=["content", "style", *settings],
                             row_labels=labels, captions=captions,
                             title=f"{args.backbone} ({Path(args.weights).name}), {args.size} px, {args.iterations} it; "
                                   "caption: Gram distance to the style (lower: more style) / SSIM to the content (higher: more content)")
    save_image(sheet, args.output / "sheet.png")
    (args.output / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| setting | mean Gram distance ↓ | mean SSIM ↑ | mean s |\n| --- | --- | --- | --- |")
    for name in settings:
        mine = [r for r in rows if r["setting"] == name]
        print(f"| {name} | {statistics.mean(r['gram_distance'] for r in mine):.4g} | "
              f"{statistics.mean(r['ssim_content'] for r in mine):.3f} | "
              f"{statistics.mean(r['seconds'] for r in mine):.0f} |")


if __name__ == "__main__":
    main()
