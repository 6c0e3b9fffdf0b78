"""stylelab: neural style transfer (Gatys et al.) with any vision backbone as the eyes."""

import os

# OpenMP threads that spin after a parallel region starve NNPACK's own thread pool (the CPU's Winograd
# convolutions, backbones/convolution.py) on a small machine: measured 0.88x instead of 1.17x at 256 px on 2 cores.
# Sleeping instead of spinning must be chosen before torch loads its OpenMP runtime; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .api import PLAIN, TransferResult, stylize, transfer  # noqa: E402
from .backbones import create_backbone, list_backbones  # noqa: E402
from .config import (  # noqa: E402
    BackboneConfig, ImageConfig, LossConfig, OptimizerConfig, RuntimeConfig, TransferConfig,
)
from .errors import NonFiniteLossError, StylelabError, WeightsUnavailableError  # noqa: E402
from .optimize import ProgressEvent, StopOptimization  # noqa: E402

__all__ = [
    "PLAIN",
    "BackboneConfig",
    "ImageConfig",
    "LossConfig",
    "OptimizerConfig",
    "RuntimeConfig",
    "TransferConfig",
    "NonFiniteLossError",
    "ProgressEvent",
    "StopOptimization",
    "StylelabError",
    "TransferResult",
    "WeightsUnavailableError",
    "__version__",
    "create_backbone",
    "list_backbones",
    "stylize",
    "transfer",
]
