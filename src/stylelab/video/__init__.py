"""Video style transfer with short-term temporal consistency (Ruder, Dosovitskiy & Brox, GCPR 2016).

frames.py reads and writes videos (PyAV), flow.py estimates optical flow (OpenCV's DIS), warps and builds the
consistency mask, temporal.py is the temporal loss term, metrics.py the warping error, run.py the frame loop
(``plan_video`` then ``run_video``). Submodules load on first use, so that the CLI starts without PyAV/OpenCV.
"""

from __future__ import annotations

import importlib

# Evaluations for each frame after the first. It starts from the previous result warped by the flow, already a
# finished picture wherever the flow holds; only what moved or appeared needs work. Ruder et al. likewise give
# later frames fewer iterations than the first; 150 (vs --iterations 500) is our choice, not the paper's.
FRAME_ITERATIONS = 150
FIRST_FRAME_INITS = ("content", "random", "style-stats")  # the first frame's start (later ones: the warped result)

_LAZY = {"plan_video": "run", "run_video": "run", "cache_dir": "run", "VideoPlan": "run", "VideoRun": "run",
         "TEMPORAL_WEIGHT": "temporal", "TemporalTerm": "temporal", "temporal_loss": "temporal",
         "warping_error": "metrics", "FlowEstimator": "flow", "warp": "flow", "consistency_mask": "flow"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
