"""The other parts of the objective: content (eq. 2.1) and total variation, each owning its target."""

from __future__ import annotations

from torch import Tensor

from .functional import content_loss, total_variation


class ContentLoss:
    """Eq. 2.1 at one layer. Departure: divided by N·M (the layer's size), as the reference code's MSE, so that
    α keeps its meaning at every image size."""

    name = "content"

    def distance(self, maps: Tensor, target: Tensor) -> Tensor:
        return content_loss(maps, target) / maps[0].numel()

    def magnitude(self, target: Tensor) -> Tensor:
        """(B,) distance of the target from zero maps: the scale the automatic balance divides by."""
        return 0.5 * target.square().flatten(1).mean(1)


class TotalVariation:
    """Squared total variation of the image, mean over pixels (not in the seed; the usual regularizer)."""

    name = "tv"

    def __call__(self, image: Tensor) -> Tensor:
        return total_variation(image)
