"""How a backbone's 3×3 convolutions are computed: directly, or by Winograd's algorithm on the CPU.

A style transfer spends most of each evaluation in the backbone's 3×3 convolutions, forward and (for the
image's gradient) backward. On the CPU PyTorch computes them directly (oneDNN); PyTorch's CPU builds also
carry NNPACK, whose Winograd transform F(6×6, 3×3) needs about a fifth of the multiplications. NNPACK's kernels
are AVX2; oneDNN's direct ones use AVX-512 where the CPU has it. Measured (bench/RESULTS.md), per evaluation at
512 px: 1.85× faster on an AVX2 CPU (AMD EPYC), 1.46× with oneDNN held to AVX2 on a Xeon, no faster (0.95–1.1×)
with oneDNN on that Xeon's AVX-512, and 1.50× on an AMD EPYC of the Zen 4 family, whose AVX-512 runs on 256-bit
units (so oneDNN's AVX-512 kernels have AVX2's throughput there); slower on small deep maps everywhere.

* ``direct``: PyTorch's own convolution everywhere (the behaviour before this module).
* ``winograd``: every eligible convolution by Winograd (CPU only; refused where NNPACK is missing).
* ``auto`` (the default): Winograd where it pays — on a CPU whose best vector unit is AVX2 (PyTorch's
  ``get_cpu_capability()``) or on AMD's family 19h with AVX-512 (Zen 4, from ``/proc/cpuinfo``; Zen 5's
  full-width AVX-512 is not measured, so it stays direct), for eligible convolutions with at least
  ``WINOGRAD_MIN_POSITIONS`` output positions — direct everywhere else (other AVX-512 CPUs, CUDA, MPS, small
  maps). A rule on the machine and the shapes, not a timing, so two runs of the same job on one machine always
  take the same path.

Eligible: a plain ``nn.Conv2d`` with a 3×3 kernel, stride 1, padding 1, no dilation or groups, zero padding,
frozen fp32 weights, and an fp32 CPU input. The results are fp32 throughout; Winograd's transform rounds
differently, with relative errors of about 1e-6 against a float64 reference (the direct convolution's are
about 5e-7; tests/test_convolution.py measures both). The backward pass is the same algorithm: the input's
gradient of a stride-1, padding-1 3×3 convolution is a 3×3 convolution of the output's gradient with the
kernel transposed (in↔out channels) and rotated by 180°.

Note for speed on a CPU: NNPACK's threads and OpenMP's compete for the cores while OpenMP's idle threads
spin; ``import stylelab`` (before PyTorch is loaded) sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import StylelabError
from ..runtime import cpu_vendor_family

CONVOLUTIONS = ("auto", "direct", "winograd")
# Below this many output positions (e.g. 32×32) oneDNN's direct convolution is as fast or faster (measured on
# 2 AVX2 cores: VGG's 512-channel maps of 24×32 tie, 12×16 are 2.7× slower by Winograd).
WINOGRAD_MIN_POSITIONS = 1024

_nnpack: bool | None = None


def winograd_available() -> bool:
    """Whether this PyTorch build can run NNPACK here (asking initializes it); checked once."""
    global _nnpack
    if _nnpack is None:
        try:
            _nnpack = bool(torch._nnpack_available())
            if _nnpack:  # a tiny trial: a build may report NNPACK and still fail on this CPU
                x, w = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)
                torch._nnpack_spatial_convolution(x, w, None, [1, 1])
        except (AttributeError, RuntimeError):
            _nnpack = False
    return _nnpack


# AMD's family 19h with AVX-512 is Zen 4 (its Zen 3 members have no AVX-512, so they are AVX2 CPUs already).
ZEN4 = ("AuthenticAMD", 0x19)


def winograd_pays() -> bool:
    """Whether ``auto`` uses Winograd on this CPU: NNPACK works, and PyTorch's CPU kernels top out at AVX2 or the
    AVX-512 is Zen 4's, on 256-bit units."""
    if not winograd_available():
        return False
    capability = torch.backends.cpu.get_cpu_capability()
    return capability == "AVX2" or (capability == "AVX512" and cpu_vendor_family() == ZEN4)


def _resolved(name: str) -> str:
    """``auto`` on a CPU where Winograd does not pay is ``direct``; every other name is itself."""
    return "direct" if name == "auto" and not winograd_pays() else name


def convolution_in_effect(name: str, device: torch.device) -> str:
    """What ``name`` computes on ``device``, for records: ``direct``, ``winograd``, or ``auto (Winograd on maps of
    ≥ N positions)``."""
    if device.type != "cpu" or _resolved(name) == "direct":
        return "direct"
    return "winograd" if name == "winograd" else f"auto (Winograd on maps of >= {WINOGRAD_MIN_POSITIONS} positions)"


def check_convolution(name: str, device: torch.device | None = None) -> None:
    if name not in CONVOLUTIONS:
        raise StylelabError(f"unknown convolution {name!r}; choose {', '.join(CONVOLUTIONS)}")
    if name == "winograd":
        if device is not None and device.type != "cpu":
            raise StylelabError(f"convolution winograd runs on the CPU (NNPACK), not {device.type}; "
                                f"use auto or direct")
        if not winograd_available():
            raise StylelabError("convolution winograd needs NNPACK, which this PyTorch build or CPU lacks; "
                                "use auto or direct")


class _Winograd3x3(torch.autograd.Function):
    """y = conv3x3(x, w, b) by NNPACK; dx = conv3x3(dy, rot180(wᵀ)) by NNPACK. w and b are constants."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(weight)
        return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        flipped = weight.transpose(0, 1).flip(2, 3).contiguous()  # (in, out, 3, 3), rotated by 180°
        return torch._nnpack_spatial_convolution(grad.contiguous(), flipped, None, [1, 1]), None, None


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A stride-1, padding-1 3×3 convolution of (B, C, H, W) fp32 CPU ``x`` by Winograd's algorithm (NNPACK),
    differentiable in ``x``."""
    if x.ndim != 4 or weight.shape[-2:] != (3, 3) or x.shape[1] != weight.shape[1]:
        raise ValueError(f"winograd_conv3x3 needs x (B, C, H, W) and weight (O, C, 3, 3), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    return _Winograd3x3.apply(x, weight, bias)


def _eligible_module(conv: nn.Conv2d) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes by Winograd's algorithm when ``algorithm`` allows and the call is eligible.

    ``use_convolution`` turns a model's eligible convolutions into this class in place (as
    ``torch.nn.utils.parametrize`` does), so parameters, state-dict keys and hooks stay as they are.
    """

    algorithm = "direct"

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.algorithm != "direct" and self._winograd_applies(x, weight):
            return winograd_conv3x3(x, weight, bias)
        return super()._conv_forward(x, weight, bias)

    def _winograd_applies(self, x: Tensor, weight: Tensor) -> bool:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
                or weight.requires_grad or x.ndim != 4 or not x.is_contiguous()):
            return False  # e.g. channels_last stays with oneDNN, which is made for it
        return self.algorithm == "winograd" or x.shape[-2] * x.shape[-1] >= WINOGRAD_MIN_POSITIONS


def use_convolution(model: nn.Module, algorithm: str) -> int:
    """Make ``model``'s eligible 3×3 convolutions compute by ``algorithm`` (``CONVOLUTIONS``); returns how
    many are eligible. Idempotent; ``direct`` gives back PyTorch's own computation."""
    check_convolution(algorithm)  # winograd without NNPACK is refused here
    algorithm = _resolved(algorithm)
    count = 0
    for module in model.modules():
        if isinstance(module, WinogradConv2d) or (isinstance(module, nn.Conv2d) and _eligible_module(module)):
            module.__class__ = WinogradConv2d
            module.algorithm = algorithm
            count += 1
    return count

