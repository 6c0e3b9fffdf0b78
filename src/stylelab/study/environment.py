"""What a number was measured on: written next to every result so machines are never mixed up silently."""

from __future__ import annotations

import datetime
import platform
import resource
import sys

import torch
import torchvision

from .. import __version__
from ..runtime import cpu_description, device_name


def environment(device: torch.device, numeric_mode: str = "fp32 (TF32 off)") -> dict[str, str | int | None]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stylelab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "cpu_threads": torch.get_num_threads(),
        "device": device_name(device),
        "numeric_mode": numeric_mode,
    }


class PeakMemory:
    """Peak memory of a block: device memory on CUDA; on other devices the process's peak RSS so far
    (the OS cannot reset it, so it is an upper bound that never decreases within a process)."""

    def __init__(self, device: torch.device):
        self.device, self.mib, self.kind = device, None, ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mib, self.kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda allocated"
        else:
            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
            self.mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
            self.kind = "process peak RSS"
