"""How steady a stylized video is: the temporal warping error of Lai et al. (ECCV 2018, "Learning blind video
temporal consistency", §5.1)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .flow import FlowEstimator, consistency_mask, warp


def pair_warping_error(output: Tensor, previous_output: Tensor, mask: Tensor, backward: Tensor) -> float:
    """E(O_t, O_{t−1}) = Σ_p M(p) ‖O_t(p) − ω(O_{t−1})(p)‖² / Σ_p M(p): the squared RGB distance of frame t to
    frame t−1 warped to t, averaged over the pixels the mask keeps (0 when it keeps none)."""
    warped = warp(previous_output.float(), backward)
    distance = (output.float() - warped).square().sum(1, keepdim=True)  # ‖·‖² over the three channels
    kept = mask.sum()
    return float((distance * mask).sum() / kept) if kept > 0 else 0.0


def warping_error(outputs: Sequence[Tensor], inputs: Sequence[Tensor], flow: FlowEstimator | None = None) -> float:
    """Lai et al.'s E_warp: the mean over t = 2…T of the pair error, with the flow and the consistency mask
    (Ruder et al.'s, as Lai et al. use) computed on the input frames. Frames (1, 3, H, W) in [0, 1], all one size."""
    if len(outputs) != len(inputs) or len(outputs) < 2:
        raise ValueError(f"need as many outputs as inputs, at least 2; got {len(outputs)} and {len(inputs)}")
    flow = flow or FlowEstimator()
    errors = []
    for t in range(1, len(outputs)):
        forward, backward = flow.pair(inputs[t - 1], inputs[t])
        errors.append(pair_warping_error(outputs[t], outputs[t - 1], consistency_mask(forward, backward), backward))
    return sum(errors) / len(errors)
