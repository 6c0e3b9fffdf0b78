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


PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str, device: torch.device | None = None) -> None:
    """fp32 (default), tf32 (CUDA only: matmuls/convolutions on TF32 tensor cores) or bf16 (autocast)."""
    if precision not in PRECISIONS:
        raise StylelabError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "tf32" and device is not None and device.type != "cuda":
        raise StylelabError(f"precision tf32 needs a CUDA device (TF32 is an NVIDIA tensor-core format), "
                            f"not {device.type}; use fp32 or bf16")


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
