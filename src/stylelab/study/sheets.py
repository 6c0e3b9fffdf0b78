"""Labelled contact sheets: a grid of images with column headers, row labels and per-cell captions.

The geometry is computed first (``SheetLayout``) so that tests and callers can find every cell's pixels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont

from ..images import resize, tensor_to_pil

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
FONT_SIZE = 13
LINE = FONT_SIZE + 4
GAP = 6  # pixels between cells and around the sheet


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _wrap(text: str, width_px: int) -> list[str]:
    if not text:
        return []
    chars = max(8, width_px // 7)  # ~7 px per character at FONT_SIZE
    return [line for part in text.split("\n") for line in (textwrap.wrap(part, chars, break_on_hyphens=False) or [""])]


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry: column x-offsets and widths, row y-offsets, label band sizes."""

    col_x: tuple[int, ...]
    col_w: tuple[int, ...]
    row_y: tuple[int, ...]
    cell_h: int
    caption_h: int
    width: int
    height: int

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the image area of cell (row, col)."""
        x, y = self.col_x[col], self.row_y[row]
        return x, y, x + self.col_w[col], y + self.cell_h

    def to_json(self) -> dict:
        """Rows, columns and every cell's box, so a sheet's pictures can be found (and cropped) again."""
        rows, cols = len(self.row_y), len(self.col_x)
        return {"rows": rows, "columns": cols, "width": self.width, "height": self.height,
                "cells": [[list(self.cell_box(r, c)) for c in range(cols)] for r in range(rows)]}


def fit_height(image: torch.Tensor, height: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    return resize(image, (height, max(1, round(w * height / h))))


def contact_sheet(
    cells: Sequence[Sequence[torch.Tensor | None]],
    *,
    cell_height: int = 192,
    column_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    captions: Sequence[Sequence[str]] | None = None,
    title: str = "",
) -> tuple[Image.Image, SheetLayout]:
    """Images (1, 3, h, w) in a rows × columns grid, each scaled to ``cell_height``; None leaves a cell empty.

    Column widths follow the widest image of each column; labels wrap to the column width.
    """
    rows, cols = len(cells), max((len(r) for r in cells), default=0)
    if rows == 0 or cols == 0:
        raise ValueError("a contact sheet needs at least one cell")
    scaled = [[fit_height(img, cell_height) if img is not None else None for img in row] + [None] * (cols - len(row))
              for row in cells]
    col_w = [max([cell_height // 2] + [img.shape[-1] for row in scaled if (img := row[c]) is not None])
             for c in range(cols)]
    row_label_w = 0
    row_lines = [_wrap(label, 150) for label in row_labels]
    if any(row_lines):
        row_label_w = 150 + GAP
    header_lines = [_wrap(label, col_w[c]) for c, label in enumerate(column_labels)]
    header_h = LINE * max((len(lines) for lines in header_lines), default=0)
    caption_lines = [[_wrap(text, col_w[c]) for c, text in enumerate(row)] for row in (captions or [])]
    caption_h = LINE * max((len(lines) for row in caption_lines for lines in row), default=0)
    title_lines = _wrap(title, sum(col_w) + GAP * (cols - 1) + row_label_w)
    title_h = LINE * len(title_lines) + (GAP if title_lines else 0)

    col_x, x = [], GAP + row_label_w
    for w in col_w:
        col_x.append(x)
        x += w + GAP
    row_y, y = [], GAP + title_h + header_h + (GAP if header_h else 0)
    for _ in range(rows):
        row_y.append(y)
        y += cell_height + caption_h + GAP
    layout = SheetLayout(tuple(col_x), tuple(col_w), tuple(row_y), cell_height, caption_h, x, y)

    sheet = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), _font()
    for i, line in enumerate(title_lines):
        draw.text((GAP, GAP + i * LINE), line, fill=TEXT, font=font)
    for c, lines in enumerate(header_lines):
        for i, line in enumerate(lines):
            draw.text((col_x[c], GAP + title_h + i * LINE), line, fill=TEXT, font=font)
    for r, lines in enumerate(row_lines):
        for i, line in enumerate(lines):
            draw.text((GAP, row_y[r] + i * LINE), line, fill=TEXT, font=font)
    for r, row in enumerate(scaled):
        for c, img in enumerate(row):
            if img is not None:
                sheet.paste(tensor_to_pil(img), (col_x[c], row_y[r]))
            if r < len(caption_lines) and c < len(caption_lines[r]):
                for i, line in enumerate(caption_lines[r][c]):
                    draw.text((col_x[c], row_y[r] + cell_height + i * LINE), line, fill=TEXT, font=font)
    return sheet, layout
