"""Memory: the largest square image VGG19 style transfer fits in a memory budget, and where the bytes go.

    python bench/memory.py                          # CUDA: search under 24 GiB and the whole device
    python bench/memory.py --device cpu             # CPU: peak RSS at a few sizes, fitted and extrapolated

On CUDA, a binary search over square sizes (multiples of 64) runs --iterations L-BFGS evaluations at each
size under a cap (torch.cuda.set_per_process_memory_fraction) and keeps the largest that does not run out;
peak = torch.cuda.max_memory_allocated. On the CPU, each size runs in a fresh process whose peak RSS (from
after its imports) is read back; a line a + b·pixels is fitted and solved for each budget (a prediction, marked as such).
Either way the per-pixel bytes are split into what autograd saves for the backward pass (counted with
saved-tensor hooks on one evaluation) and the L-BFGS history (2 · history · 3 floats per pixel; the whole
history is allocated at the second evaluation, so --iterations 3 peaks as a 500-iteration run does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import torch

from stylelab import transfer
from stylelab.api import resolve_layers
from stylelab.backbones import create_backbone
from stylelab.images import MAX_SIZE, resize
from stylelab.optimize import LBFGS_HISTORY, LossSpec, StyleObjective
from stylelab.runtime import device_name, resolve_device
from stylelab.samples import sample_content, sample_style

GIB = 2**30


def square(size: int):
    return resize(sample_content(), (size, size)), resize(sample_style(), (size, size))


def saved_bytes_per_pixel(size: int = 128) -> float:
    """Bytes autograd keeps for one VGG19 evaluation (default layers), per image pixel (unique storages)."""
    net = create_backbone("vgg19", "random")
    content_layers, style_layers = resolve_layers(net, None, None)
    net.truncate([*content_layers, *style_layers])
    content, style = square(size)
    objective = StyleObjective(net, content, [style], [1.0], LossSpec(content_layers, style_layers, 1.0, 1e3))
    storages: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter) and not (t.requires_grad and t.is_leaf):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = content.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        total, _ = objective(x)
    total.backward()
    return sum(storages.values()) / (size * size)


def runs_at(size: int, iterations: int, device: torch.device, precision: str, history: int = LBFGS_HISTORY) -> None:
    """A few evaluations: the whole L-BFGS history is allocated at the second, so the peak is a long run's."""
    content, style = square(size)
    transfer(content, style, weights="random", size=size, iterations=iterations, device=device, precision=precision,
             lbfgs_history=history)


def cuda_search(device, budget_gib: float, iterations: int, precision: str, history: int) -> dict:
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget_gib * GIB / total), device)
    low, high, peaks = 0, MAX_SIZE // 64, {}
    while low < high:  # largest k with 64·k fitting
        k = (low + high + 1) // 2
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            runs_at(64 * k, iterations, device, precision, history)
            peaks[64 * k] = torch.cuda.max_memory_allocated(device) / GIB
            print(f"  {64 * k} px fits in {budget_gib:.0f} GiB (peak {peaks[64 * k]:.2f} GiB)", flush=True)
            low = k
        except torch.cuda.OutOfMemoryError:
            print(f"  {64 * k} px does not fit in {budget_gib:.0f} GiB", flush=True)
            high = k - 1
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    torch.cuda.empty_cache()
    return {"budget_gib": budget_gib, "largest_square_px": 64 * low, "peak_gib": peaks.get(64 * low),
            "method": "measured (binary search, CUDA cap)", "at_limit": 64 * low == MAX_SIZE}


def peak_rss_gib() -> float:
    """This process's peak resident memory (Linux: VmHWM, which ``reset_peak_rss`` can restart)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux


def reset_peak_rss() -> None:
    """Restart the peak after imports, whose transient pages are not the run's (Linux >= 4.0; else kept)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def child_peak_rss(size: int, iterations: int, history: int) -> float:
    """Peak RSS (GiB) of a fresh process while it runs one transfer at ``size``."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import memory; "
            f"memory.reset_peak_rss(); "
            f"memory.runs_at({size}, {iterations}, memory.torch.device('cpu'), 'fp32', {history}); "
            "print(memory.peak_rss_gib())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--budgets", default="24,0", help="GiB; 0 = the whole device (CUDA) or 141 (H200) on the CPU")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--lbfgs-history", type=int, default=LBFGS_HISTORY, help="L-BFGS pairs kept (24 B/pixel each)")
    p.add_argument("--cpu-sizes", default="256,512,768,1024", help="sizes measured for the CPU fit")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    saved = saved_bytes_per_pixel()
    history = 2 * args.lbfgs_history * 3 * 4
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": device_name(device), "torch": torch.__version__, "precision": args.precision,
           "iterations": args.iterations, "lbfgs_history": args.lbfgs_history, "weights": "random init"}
    print(f"# {env}\nautograd saves {saved:.0f} B/pixel; the L-BFGS history holds {history} B/pixel", flush=True)
    rows = []
    if device.type == "cuda":
        whole = torch.cuda.get_device_properties(device).total_memory / GIB
        for budget in [float(b) or whole for b in args.budgets.split(",")]:
            rows.append(cuda_search(device, budget, args.iterations, args.precision, args.lbfgs_history))
    else:
        sizes = [int(s) for s in args.cpu_sizes.split(",")]
        points = []
        for size in sizes:
            points.append((size * size, child_peak_rss(size, args.iterations, args.lbfgs_history)))
            print(f"  {size} px: peak RSS {points[-1][1]:.2f} GiB", flush=True)
        n = len(points)
        mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        base = my - slope * mx
        if slope <= 0:
            print("peak RSS did not grow with the size: measure larger --cpu-sizes", file=sys.stderr)
            return 1
        for budget in [float(b) or 141.0 for b in args.budgets.split(",")]:
            side = int(((budget - base) / slope) ** 0.5) // 64 * 64
            rows.append({"budget_gib": budget, "largest_square_px": min(side, MAX_SIZE), "peak_gib": None,
                         "method": f"predicted from peak RSS at {args.cpu_sizes} px: {base:.2f} GiB + "
                                   f"{slope * GIB:.0f} B/pixel", "at_limit": side >= MAX_SIZE})
        env["rss_points"] = points
    print(f"\n{'budget GiB':>10s} {'largest square':>14s} {'peak GiB':>8s}  method")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] else "-"
        print(f"{r['budget_gib']:10.1f} {r['largest_square_px']:>11d} px {peak:>8s}  {r['method']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "saved_bytes_per_pixel": saved,
                                               "lbfgs_history_bytes_per_pixel": history, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
