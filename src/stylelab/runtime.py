"""Devices and numeric modes."""

from __future__ import annotations

import contextlib

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
            raise StylelabError(f"device {spec} was asked for but CUDA is not available here; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise StylelabError(f"device {spec} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(spec)
    if spec == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise StylelabError("device mps was asked for but Apple's MPS is not available here; use --device cpu")
        return torch.device("mps")
    raise StylelabError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


@contextlib.contextmanager
def strict_fp32():
    """True fp32 for matmuls and convolutions: PyTorch lets cuDNN convolutions use TF32 by default."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(cudnn_conv, "fp32_precision"):
        saved = torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision
        torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, cudnn_conv.fp32_precision = saved
    else:  # older PyTorch
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
