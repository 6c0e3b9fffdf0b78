"""Devices and numeric modes."""

from __future__ import annotations

import contextlib
import functools
import platform
import re
from pathlib import Path

import torch

from .errors import StylelabError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit device must exist."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2]
        if index and not index.isdigit():
            raise StylelabError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}")
        if not torch.cuda.is_available():
            raise StylelabError(f"device {spec} was asked for but CUDA is not available here; use device=cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise StylelabError(f"device {spec} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(spec)
    if spec == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise StylelabError("device mps was asked for but Apple's MPS is not available here; use device=cpu")
        return torch.device("mps")
    raise StylelabError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def cpu_info(cpuinfo: str) -> tuple[str, str, int | None]:
    """(model name, vendor, family) of the first CPU in a ``/proc/cpuinfo`` text, e.g. ("AMD EPYC",
    "AuthenticAMD", 25); empty strings and None for what the text lacks."""
    def field(name: str) -> str:
        found = re.search(rf"^{name}\s*:[ \t]*(.*)$", cpuinfo, re.MULTILINE)
        return found.group(1).strip() if found else ""

    family = field("cpu family")
    return field("model name"), field("vendor_id"), int(family) if family.isdigit() else None


@functools.lru_cache(maxsize=1)
def this_cpu() -> tuple[str, str, int | None]:
    """This machine's ``cpu_info``; ("", "", None) where there is no ``/proc/cpuinfo`` (not Linux)."""
    try:
        return cpu_info(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return "", "", None


def cpu_vendor_family() -> tuple[str, int | None]:
    """(vendor, family) of this machine's CPU: ("AuthenticAMD", 25), ("GenuineIntel", 6), or ("", None)."""
    return this_cpu()[1:]


def cpu_description() -> str:
    """The CPU for records: model, vendor and family, and PyTorch's vector unit, e.g.
    "AMD EPYC (AuthenticAMD family 25, AVX512)" — machines of one name part by family and vector unit."""
    model, vendor, family = this_cpu()
    known = f"{vendor} family {family}, " if vendor and family is not None else ""
    return f"{model or platform.processor() or platform.machine()} ({known}{torch.backends.cpu.get_cpu_capability()})"


PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def check_precision(precision: str, device: torch.device | None = None) -> None:
    """auto (default: bf16 where ``bf16_pays``, else fp32), fp32, tf32 (CUDA only: matmuls/convolutions on TF32
    tensor cores) or bf16 (autocast)."""
    if precision not in PRECISIONS:
        raise StylelabError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "tf32" and device is not None and device.type != "cuda":
        raise StylelabError(f"precision tf32 needs a CUDA device (TF32 is an NVIDIA tensor-core format), "
                            f"not {device.type}; use fp32 or bf16")


def bf16_pays() -> bool:
    """Whether ``auto`` runs the backbone in bf16 on this CPU: it has AMX tiles (Intel Xeon 4th generation on), whose
    bf16 matrix units made an evaluation 2.6–3.2× cheaper than fp32's, and oneDNN can use them. Measured there
    (bench/RESULTS.md, 2026-12-08): with the default warm-up, bf16 reaches the fp32 plain run's loss, judged in
    fp32, at 0.74 of its evaluations. Elsewhere bf16 is slower (AVX2: emulated) or unmeasured against plain's loss
    (AVX512-BF16 without AMX: 2.0× per evaluation), so ``auto`` stays fp32."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(amx is not None and amx() and torch.backends.mkldnn.is_available() and (bf16 is None or bf16()))
    except RuntimeError:  # a build without the oneDNN operator
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """What ``precision`` runs on ``device``: ``auto`` is bf16 on a CPU where ``bf16_pays``, fp32 elsewhere (a GPU's
    faster modes stay opt-in: not judged against plain's loss there); every other name is itself."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and bf16_pays() else "fp32"


def resolve_channels_last(channels_last: bool | None, precision: str, device: torch.device) -> bool:
    """``None`` (default) follows the resolved precision: NHWC for bf16 on a CPU, where oneDNN's bf16 kernels are
    made for it (1.5× per evaluation over bf16 in NCHW, bench/RESULTS.md 2026-12-03); NCHW otherwise."""
    if channels_last is None:
        return precision == "bf16" and device.type == "cpu"
    return bool(channels_last)


def numerics_in_effect(precision: str, channels_last: bool | None, device: torch.device) -> tuple[str, bool]:
    """(precision, channels_last) as a run on ``device`` computes them: ``auto`` and ``None`` resolved."""
    precision = resolve_precision(precision, device)
    return precision, resolve_channels_last(channels_last, precision, device)


NUMERIC_MODES = {
    "fp32": "fp32 (TF32 off)",
    "tf32": "tf32 (TF32 convolutions and matmuls; optimizer fp32)",
    "bf16": "bf16 autocast (backbone; Grams, losses, optimizer fp32)",
}


def describe_precision(precision: str, channels_last: bool = False, convolution: str = "direct") -> str:
    """The numeric mode in words; ``convolution`` as ``convolution_in_effect`` names it (omitted when direct)."""
    return (NUMERIC_MODES[precision] + (", channels_last" if channels_last else "")
            + ("" if convolution == "direct" else f", convolution {convolution}"))


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype the backbone's forward runs in under autocast, or None for none."""
    return torch.bfloat16 if precision == "bf16" else None


@contextlib.contextmanager
def numeric_mode(precision: str = "fp32"):
    """fp32 and bf16 keep every fp32 matmul/convolution strict (bf16 autocast covers only the backbone,
    see ``optimize.StyleObjective``); tf32 lets cuBLAS and cuDNN use TF32 tensor cores."""
    if precision != "tf32":
        with strict_fp32():
            yield
        return
    with _fp32_precision("tf32", True):
        yield


@contextlib.contextmanager
def strict_fp32():
    """True fp32 for matmuls and convolutions: PyTorch lets cuDNN convolutions use TF32 by default."""
    with _fp32_precision("ieee", False):
        yield


@contextlib.contextmanager
def _fp32_precision(mode: str, allow_tf32: bool):
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(cudnn_conv, "fp32_precision"):
        saved = torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision
        torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision = mode, mode
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision = saved
    else:  # older PyTorch
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
