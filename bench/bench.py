"""Speed harness: stylelab against a plain tutorial-style Gatys loop, side by side.

    python bench/bench.py                                   # all backbones, 256/512/1024 px, 500 iterations
    python bench/bench.py --backbones vgg19 --sizes 256 --iterations 50 --repeats 2    # quick, e.g. on a CPU

Random-init weights (timing does not depend on the values), fixed seeds, generated images. Per
configuration: ms per iteration (median of per-evaluation times after a burn-in; every evaluation ends
in a device sync), end-to-end seconds for N iterations with the style/content targets included
(median of repeats), peak device memory, GFLOP per iteration (counted by torch's FlopCounterMode) and
the FLOP floor at --peak-tflops. The reference is timed in the same process, so ratios are side by side.
Prints a table last and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

from stylelab import transfer  # noqa: E402
from stylelab.api import resolve_layers  # noqa: E402
from stylelab.backbones import create_backbone  # noqa: E402
from stylelab.images import resize  # noqa: E402
from stylelab.optimize import LossSpec, StyleObjective  # noqa: E402
from stylelab.runtime import device_name, resolve_device, strict_fp32  # noqa: E402
from stylelab.samples import sample_content, sample_style  # noqa: E402

BURN_IN = 5  # evaluations excluded from the per-iteration median (allocator, cuDNN autotuning)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images(size: int):
    content = resize(sample_content(), (size * 3 // 4 // 16 * 16, size))  # 4:3, sides multiples of 16
    style = resize(sample_style(), tuple(content.shape[-2:]))  # the tutorial needs equal sizes
    return content, style


def gflop_per_iteration(backbone: str, content, style, device) -> float:
    """Forward + backward of one loss evaluation, counted by PyTorch's FLOP counter."""
    net = create_backbone(backbone, "random")
    c_layers, s_layers = resolve_layers(net, None, None)
    net.truncate([*c_layers, *s_layers])
    net.to(device)
    spec = LossSpec(c_layers, s_layers, net.default_content_weight, net.default_style_weight, net.default_tv_weight)
    objective = StyleObjective(net, content.to(device), [style.to(device)], [1.0], spec)
    x = content.to(device).clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        total, _ = objective(x)
        total.backward()
    return counter.get_total_flops() / 1e9


def time_stylelab(backbone, content, style, iterations, repeats, device):
    per_iteration, end_to_end, peak = [], [], 0
    for _ in range(repeats):
        stamps = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = transfer(content, style, backbone=backbone, weights="random", size=max(content.shape[-2:]),
                          iterations=iterations, device=device, callback=lambda e: stamps.append(e.elapsed))
        steps = [b - a for a, b in zip(stamps[BURN_IN:], stamps[BURN_IN + 1:])]
        per_iteration.append(statistics.median(steps) if steps else result.seconds / iterations)
        end_to_end.append(result.seconds)
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
    return statistics.median(per_iteration), statistics.median(end_to_end), peak


def time_reference(content, style, iterations, repeats, device):
    features = reference.vgg19_features().to(device)
    per_iteration, end_to_end, peak = [], [], 0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        start = time.perf_counter()
        with strict_fp32():
            _, evaluations = reference.run(features, content.to(device), style.to(device), iterations)
        sync(device)
        seconds = time.perf_counter() - start
        per_iteration.append(seconds / evaluations)
        end_to_end.append(seconds / evaluations * iterations)  # scaled to exactly N evaluations
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
    return statistics.median(per_iteration), statistics.median(end_to_end), peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbones", default="vgg19,clip-rn50,clip-rn50-sequential,clip-vit-b16")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense fp32 rate for the FLOP floor (default: 67 on H100/H200, else none)")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    name = device_name(device)
    peak_tflops = args.peak_tflops or (67.0 if any(g in name for g in ("H100", "H200")) else None)
    torch.manual_seed(0)
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "device": name,
           "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
           "numeric_mode": "fp32 (TF32 off)", "weights": "random init (timing only)", "iterations": args.iterations,
           "repeats": args.repeats}
    print(f"# {env}", flush=True)
    warm = images(64)
    transfer(*warm, weights="random", size=64, iterations=BURN_IN + 2, device=device)  # module load, handles
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        content, style = images(size)
        for backbone in args.backbones.split(","):
            gflop = gflop_per_iteration(backbone, content, style, device)
            ms, e2e, peak = time_stylelab(backbone, content, style, args.iterations, args.repeats, device)
            row = {"impl": "stylelab", "backbone": backbone, "size": size, "ms_per_iteration": ms * 1e3,
                   "end_to_end_s": e2e, "peak_mem_gb": peak / 2**30, "gflop_per_iteration": gflop,
                   "floor_s": gflop * args.iterations / (peak_tflops * 1e3) if peak_tflops else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if backbone == "vgg19" and not args.no_reference:
                ms_r, e2e_r, peak_r = time_reference(content, style, args.iterations, args.repeats, device)
                ref = {"impl": "reference", "backbone": "vgg19", "size": size, "ms_per_iteration": ms_r * 1e3,
                       "end_to_end_s": e2e_r, "peak_mem_gb": peak_r / 2**30, "gflop_per_iteration": None,
                       "floor_s": None, "speedup_vs_reference": e2e_r / e2e}
                row["speedup_vs_reference"] = e2e_r / e2e
                rows.append(ref)
                print(json.dumps(ref), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    print(f"\n{'impl':10s} {'backbone':22s} {'px':>5s} {'ms/it':>9s} {'e2e s':>8s} {'peak GB':>8s} "
          f"{'GFLOP/it':>9s} {'floor s':>8s} {'vs ref':>7s}")
    for r in rows:
        floor = f"{r['floor_s']:.2f}" if r["floor_s"] else "-"
        gf = f"{r['gflop_per_iteration']:.1f}" if r["gflop_per_iteration"] else "-"
        speed = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") and r["impl"] == "stylelab" else ""
        print(f"{r['impl']:10s} {r['backbone']:22s} {r['size']:5d} {r['ms_per_iteration']:9.2f} {r['end_to_end_s']:8.2f} "
              f"{r['peak_mem_gb']:8.2f} {gf:>9s} {floor:>8s} {speed:>7s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
