"""Contact sheets: the pixel layout (rows × columns) and every image where the layout says it is."""

from __future__ import annotations

import numpy as np
import torch

from stylelab.api import as_tensor
from stylelab.images import tensor_to_pil
from stylelab.study.sheets import BACKGROUND, GAP, contact_sheet, fit_height

from conftest import make_rgb, make_stripes


def test_layout_rows_columns_and_pixels():
    a, b, c = as_tensor(make_rgb(48, 64)), as_tensor(make_stripes(64, 64)), as_tensor(make_rgb(64, 32, seed=2))
    cells = [[a, b, c], [b, None, a]]
    sheet, layout = contact_sheet(cells, cell_height=40, column_labels=["one", "two", "three"],
                                  row_labels=["first row", "second"], captions=[["x", "y", "z"], ["", "", "w"]],
                                  title="a title")
    assert (layout.width, layout.height) == sheet.size
    assert len(layout.row_y) == 2 and len(layout.col_x) == 3
    pixels = np.asarray(sheet)
    for r, row in enumerate(cells):
        for col, img in enumerate(row):
            left, top, right, bottom = layout.cell_box(r, col)
            assert bottom - top == 40
            box = pixels[top:bottom, left:right]
            if img is None:
                assert (box == BACKGROUND).all()
                continue
            expected = np.asarray(tensor_to_pil(fit_height(img, 40)))
            w = expected.shape[1]
            assert np.array_equal(box[:, :w], expected)
            assert (box[:, w:] == BACKGROUND).all()  # narrower images leave the rest of the column blank
    # columns are as wide as their widest image, and separated by GAP pixels of background
    assert layout.col_w[0] == max(fit_height(a, 40).shape[-1], fit_height(b, 40).shape[-1])
    assert layout.col_x[1] - (layout.col_x[0] + layout.col_w[0]) == GAP
    top = layout.row_y[0]
    gap = pixels[top:top + 40, layout.col_x[0] + layout.col_w[0]:layout.col_x[1]]
    assert (gap == BACKGROUND).all()


def test_labels_make_room_and_json_layout():
    img = torch.rand(1, 3, 30, 30)
    plain, plain_layout = contact_sheet([[img]], cell_height=30)
    labelled, layout = contact_sheet([[img]], cell_height=30, column_labels=["a long column label " * 4],
                                     row_labels=["row"], captions=[["caption"]])
    assert labelled.size[1] > plain.size[1] and labelled.size[0] > plain.size[0]
    data = layout.to_json()
    assert data["rows"] == 1 and data["columns"] == 1 and data["cells"][0][0] == list(layout.cell_box(0, 0))
    assert plain_layout.cell_box(0, 0) == (GAP, GAP, GAP + 30, GAP + 30)
