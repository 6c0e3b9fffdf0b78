"""``stylelab compare``: the seed's time-and-quality comparison of backbones (Fig 3.2 and §3's timings).

Rows are styles; columns the style, the content, then one per backbone. ``curves.png`` plots every run's
loss (relative to its first evaluation, since each backbone's loss has its own scale) against iterations
and against seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..images import load_image, save_image, write_atomically
from ..runtime import resolve_device
from .evaluate import SET_METRICS, Judges, format_value
from .runs import RunSpec, caption, command_line, run_all, runs_table, write_results
from .sheets import contact_sheet

COMPARE_FILES = ("sheet.png", "curves.png", "results.json", "results.md")  # besides runs/ID.png and runs/ID.json


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "image"


def compare_specs(content: Path, styles: Sequence[Path], backbones: Sequence[str], options: dict) -> list[RunSpec]:
    """One run per (style, backbone), ids s{i}-{style stem}-{backbone}."""
    return [RunSpec(f"s{i}-{_slug(Path(s).stem)}-{_slug(b)}", content, Path(s), {**options, "backbone": b})
            for i, s in enumerate(styles) for b in backbones]


def plot_curves(records: Sequence[dict], path: Path) -> None:
    """Loss / first loss against iteration and against wall time, one line per run (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_it, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for r in records:
        if not r["curve"]:
            continue
        its, secs, loss = zip(*r["curve"])
        rel = [v / loss[0] if loss[0] else v for v in loss]
        label = f"{r['backbone']} · {Path(r['style']).stem}"
        by_it.plot(its, rel, label=label)
        by_time.plot(secs, rel, label=label)
    for ax, xlabel in ((by_it, "iteration (loss evaluation)"), (by_time, "seconds")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss / first loss")
        ax.grid(True, which="both", alpha=0.3)
    by_it.legend(fontsize=8)
    device = records[0]["environment"]["device"] if records else ""
    fig.suptitle(f"loss curves on {device}")
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def sets_table(sets: dict[str, dict[str, float | None]]) -> str:
    """Per backbone, over all its outputs: mean LPIPS to the content, FID to the styles, ArtFID (all ↓)."""
    lines = ["| backbone | " + " | ".join(f"{n} ↓" for n in SET_METRICS) + " |",
             "|" + " --- |" * (1 + len(SET_METRICS))]
    for backbone, values in sets.items():
        lines.append(f"| {backbone} | " + " | ".join(format_value(values[n]) for n in SET_METRICS) + " |")
    return "\n".join(lines)


def compare(content: Path, styles: Sequence[Path], backbones: Sequence[str], out_dir: Path, *, options: dict,
            judges: Judges, fresh: bool = False, quiet: bool = False, log: Callable[[str], None] = lambda m: None,
            cell_height: int = 192, networks: dict | None = None) -> list[dict]:
    specs = compare_specs(content, styles, backbones, options)
    records = run_all(specs, out_dir, judges, fresh=fresh, quiet=quiet, log=log, networks=networks)
    content_image = load_image(content)
    cells, captions, row_labels = [], [], []
    for i, style in enumerate(styles):
        row = records[i * len(backbones):(i + 1) * len(backbones)]
        cells.append([load_image(style), content_image, *[load_image(out_dir / r["image"]) for r in row]])
        captions.append(["style", "content", *[caption(r) for r in row]])
        row_labels.append(Path(style).stem)
    column_labels = ["style", "content", *[f"{r['backbone']} ({r['weights']})" for r in records[:len(backbones)]]]
    sheet, layout = contact_sheet(cells, cell_height=cell_height, column_labels=column_labels, row_labels=row_labels,
                             captions=captions, title=f"{records[0]['iterations']} iterations, "
                                                      f"{records[0]['environment']['device']}")
    save_image(sheet, out_dir / "sheet.png")
    plot_curves(records, out_dir / "curves.png")
    # Set metrics (ArtFID) per backbone over all its outputs, when there are at least two styles.
    sets = {}
    for j, backbone in enumerate(backbones):
        mine = records[j::len(backbones)]
        sets[backbone] = judges.set_metrics([load_image(out_dir / r["image"]) for r in mine],
                                            [content_image] * len(mine), [load_image(s) for s in styles])
    write_results(out_dir, command_line(), resolve_device(options.get("device", "auto")), judges, records,
                  runs_table(records) + "\n\n" + sets_table(sets),
                  extra={"sets": sets, "sheet": layout.to_json()})
    return records
