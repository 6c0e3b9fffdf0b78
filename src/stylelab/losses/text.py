"""Style from words: CLIPstyler's losses (Kwon & Ye, CVPR 2022) on the image being optimized.

CLIPstyler trains a network per text; here the same losses drive the pixels, next to (or instead of) the Gatys
style term. With E_I, E_T CLIP's unit image and text embeddings, t_src the source text and t_sty the style text:

* text direction ΔT = E_T(t_sty) − E_T(t_src) (each text averaged over prompt templates, as the paper's
  "prompt engineering"), unit length;
* **directional loss** (whole image): 1 − cos(E_I(output) − E_I(content), ΔT);
* **patch loss**: ``crops`` random crops of the output (side ``crop_fraction`` of the short edge), each warped by a
  random perspective (distortion 0.5) and resized to CLIP's input; per crop l = 1 − cos(E_I(crop) − E_I(content),
  ΔT); crops with l < ``threshold`` count 0 (the rejection that keeps a few well-stylized patches from dominating);
  the mean over crops;
* optional **global loss**: 1 − cos(E_I(output), E_T(t_sty)) (StyleGAN-NADA's global CLIP loss; 0 by default).

Defaults are the paper's: 64 crops of 128 px on a 512 px image (``crop_fraction`` 1/4), threshold 0.7,
distortion 0.5, source text "a Photo", λ_patch = 9000 and λ_dir = 500 against a content weight λ_c = 150 — here
written relative to a content weight of 1: patch 60, direction 10/3.

Departure: CLIPstyler draws new crops at every Adam step. L-BFGS needs one objective, so the crops are drawn
once per scale (from ``seed``) unless ``redraw`` (used with Adam) asks for new ones at every evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import StylelabError

SOURCE_TEXT = "a Photo"
CROPS = 64
CROP_FRACTION = 128 / 512
THRESHOLD = 0.7
DISTORTION = 0.5
PATCH_WEIGHT = 9000 / 150
DIRECTION_WEIGHT = 500 / 150
DIRECTION_EPS = 1e-2
TEMPLATES = (  # prompt engineering: each text is the mean embedding of these sentences
    "{}.", "a photo of {}.", "a painting of {}.", "an image of {}.", "a rendering of {}.", "a picture of {}.",
    "a close-up of {}.", "a detail of {}.", "an artwork of {}.", "a cropped picture of {}.",
)


def text_embedding(model, text: str) -> Tensor:
    """The unit mean embedding of ``text`` over ``TEMPLATES``, (D,)."""
    embeddings = model.encode_text([template.format(text) for template in TEMPLATES])
    return F.normalize(embeddings.mean(0), dim=-1)


def directional_loss(embeddings: Tensor, source: Tensor, direction: Tensor, eps: float = DIRECTION_EPS) -> Tensor:
    """1 − cos(embeddings − source, direction), ``direction`` a unit (D,): (..., D), (..., D) or (D,) -> (...).

    Departure: the displacement's norm is clamped at ``eps`` (not 1e-8 as in ``F.cosine_similarity``). Our
    optimization starts from the content image itself, where the whole image's displacement is 0 and the cosine's
    gradient would be ~1/1e-8; embeddings are unit vectors, so below 0.01 the term is simply linear."""
    delta = embeddings - source
    return 1 - (delta * direction).sum(-1) / delta.norm(dim=-1).clamp_min(eps)


def random_views(generator: torch.Generator, height: int, width: int, count: int, side: int,
                 distortion: float) -> list[tuple[int, int, list, list]]:
    """``count`` (top, left, start points, end points): a side × side crop and its perspective warp, drawn from
    ``generator`` the way torchvision's RandomPerspective draws its corners."""

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    views, dx = [], int(distortion * (side // 2))
    for _ in range(count):
        top, left = draw(0, height - side + 1), draw(0, width - side + 1)
        start = [[0, 0], [side - 1, 0], [side - 1, side - 1], [0, side - 1]]
        end = [[draw(0, dx + 1), draw(0, dx + 1)], [draw(side - dx - 1, side), draw(0, dx + 1)],
               [draw(side - dx - 1, side), draw(side - dx - 1, side)], [draw(0, dx + 1), draw(side - dx - 1, side)]]
        views.append((top, left, start, end))
    return views


def homography(source: list, target: list) -> Tensor:
    """The 3×3 projective map H (float64, H[2, 2] = 1) with H·source_i ∝ target_i for four point pairs."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(values, dtype=torch.float64))
    return torch.cat([h, h.new_ones(1)]).view(3, 3)


def warp_perspective(image: Tensor, start: list, end: list) -> Tensor:
    """(..., C, h, w) warped so that the corner points ``start`` land on ``end`` (pixel coordinates), zeros
    outside: torchvision's ``perspective`` with fill 0, written with grid_sample so gradients flow to the image."""
    h, w = image.shape[-2:]
    to_source = homography(end, start).to(image.device, torch.float32)  # output pixel -> where it is read from
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=torch.float32),
                            torch.arange(w, device=image.device, dtype=torch.float32), indexing="ij")
    points = torch.stack([xs + 0.5, ys + 0.5, torch.ones_like(xs)], -1) @ to_source.T  # pixel centres
    depth = points[..., 2]
    depth = torch.where(depth.abs() < 1e-6, torch.full_like(depth, 1e-6), depth)  # the map's horizon line
    x = points[..., 0] / depth
    y = points[..., 1] / depth
    # Points far outside read zeros; clamping keeps grid_sample away from infinities (NaN in small crops).
    grid = torch.stack([2 * x / w - 1, 2 * y / h - 1], -1).clamp(-2, 2)
    flat = image.reshape(-1, *image.shape[-3:])
    out = F.grid_sample(flat, grid.expand(flat.shape[0], h, w, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.reshape(image.shape)


class TextStyleLoss:
    """The text's loss per image, (B,), for images of the content's size; owns its targets (ΔT, E_I(content))."""

    def __init__(self, model, content: Tensor, style_text: str, *, source_text: str = SOURCE_TEXT,
                 crops: int = CROPS, crop_fraction: float = CROP_FRACTION, threshold: float = THRESHOLD,
                 distortion: float = DISTORTION, patch_weight: float = PATCH_WEIGHT,
                 direction_weight: float = DIRECTION_WEIGHT, global_weight: float = 0.0, seed: int = 0,
                 redraw: bool = False):
        check_style_text(style_text)
        if crops < 0:
            raise StylelabError(f"text_crops= must be >= 0, got {crops}")
        self.model, self.crops, self.threshold, self.distortion = model, crops, threshold, distortion
        self.weights = (patch_weight, direction_weight, global_weight)
        self.side = max(8, round(crop_fraction * min(content.shape[-2:])))
        self.redraw, self.views = redraw, None
        self.generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.style = text_embedding(model, style_text)
            self.direction = F.normalize(self.style - text_embedding(model, source_text), dim=-1)
            self.content = model.encode_image(content)  # (B, D)

    def crops_of(self, image: Tensor) -> Tensor:
        """(crops, B, 3, side, side): the views of every image of the batch (the same views for all)."""
        if self.views is None or self.redraw:
            self.views = random_views(self.generator, image.shape[-2], image.shape[-1], self.crops, self.side,
                                      self.distortion)
        return torch.stack([warp_perspective(image[..., top:top + self.side, left:left + self.side], start, end)
                            for top, left, start, end in self.views])

    def __call__(self, image: Tensor) -> Tensor:
        patch_weight, direction_weight, global_weight = self.weights
        whole = self.model.encode_image(image)  # (B, D)
        loss = direction_weight * directional_loss(whole, self.content, self.direction)
        if global_weight:
            loss = loss + global_weight * (1 - whole @ self.style)
        if self.crops and patch_weight:
            views = self.crops_of(image)
            embedded = self.model.encode_image(views.flatten(0, 1)).unflatten(0, views.shape[:2])  # (crops, B, D)
            per_crop = directional_loss(embedded, self.content, self.direction)
            per_crop = torch.where(per_crop < self.threshold, torch.zeros_like(per_crop), per_crop)
            loss = loss + patch_weight * per_crop.mean(0)
        return loss


def check_style_text(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise StylelabError(f"style_text= must be words describing the style, got {text!r}")
    return text
