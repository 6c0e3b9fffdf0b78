"""``stylelab sweep``: one transfer per layer configuration, as the seed's Figs 3.1, 3.3 and 3.4.

Rows are content-layer choices, columns style-layer choices; the first two columns show the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..images import load_image, save_image
from ..runtime import resolve_device
from .evaluate import Judges
from .runs import RunSpec, caption, command_line, run_all, runs_table, write_results
from .sheets import contact_sheet

SWEEP_FILES = ("sheet.png", "results.json", "results.md")  # besides runs/ID.png and runs/ID.json


def sweep_specs(content: Path, style: Path, style_layers: Sequence[str | None], content_layers: Sequence[str | None],
                options: dict) -> list[RunSpec]:
    """Every (content layers, style layers) pair; ids c{i}-s{j}."""
    return [RunSpec(f"c{i}-s{j}", content, style, {**options, "content_layers": c, "style_layers": s})
            for i, c in enumerate(content_layers) for j, s in enumerate(style_layers)]


def sweep(content: Path, style: Path, out_dir: Path, *, style_layers: Sequence[str | None],
          content_layers: Sequence[str | None], options: dict, judges: Judges, fresh: bool = False,
          quiet: bool = False, log: Callable[[str], None] = lambda m: None, cell_height: int = 192,
          networks: dict | None = None) -> list[dict]:
    specs = sweep_specs(content, style, style_layers, content_layers, options)
    records = run_all(specs, out_dir, judges, fresh=fresh, quiet=quiet, log=log, networks=networks)
    by_id = {r["id"]: r for r in records}
    inputs = [load_image(content), load_image(style)]
    cells, captions, row_labels = [], [], []
    for i, _ in enumerate(content_layers):
        row = [by_id[f"c{i}-s{j}"] for j in range(len(style_layers))]
        cells.append([*(inputs if i == 0 else [None, None]),
                      *[load_image(out_dir / r["image"]) for r in row]])
        captions.append(["content", "style"] * (i == 0) + [""] * 2 * (i != 0) + [caption(r) for r in row])
        row_labels.append("content: " + ",".join(row[0]["content_layers"]))
    column_labels = ["", ""] + ["style: " + ",".join(by_id[f"c0-s{j}"]["style_layers"])
                                for j in range(len(style_layers))]
    first = records[0]
    sheet, layout = contact_sheet(cells, cell_height=cell_height, column_labels=column_labels, row_labels=row_labels,
                             captions=captions, title=f"{first['backbone']} ({first['weights']}), "
                                                      f"{first['iterations']} iterations")
    save_image(sheet, out_dir / "sheet.png")
    write_results(out_dir, command_line(), resolve_device(options.get("device", "auto")), judges, records,
                  runs_table(records), extra={"sheet": layout.to_json()})
    return records
