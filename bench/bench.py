"""Speed harness: stylelab against a plain tutorial-style Gatys loop, side by side.

    python bench/bench.py                                   # all backbones, 256/512/1024 px, 500 iterations
    python bench/bench.py --backbones vgg19 --sizes 256 --iterations 50 --repeats 2    # quick, e.g. on a CPU

Random-init weights (timing does not depend on the values), fixed seeds, generated images. Per backbone,
size and variant (a lever: precision, channels_last, sync per evaluation): ms per iteration (median time
between progress reports, each after a device sync, divided by the evaluations between them, after a
burn-in), end-to-end seconds for N iterations with the style/content targets included (median of repeats),
images/s, peak device memory, GFLOP per iteration (torch's FlopCounterMode), the FLOP floor at
--peak-tflops, and the numerics guard: the final loss's relative difference and the output's PSNR against
the fp32 run on the same inputs. For VGG19 also a batch of --batch contents per variant (images/s). The
reference runs in the same process at the precision of the fp32 and tf32 variants, its repeats alternating
with theirs, so ratios are side by side.
Prints a table last and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

from stylelab import transfer  # noqa: E402
from stylelab.api import resolve_layers  # noqa: E402
from stylelab.backbones import create_backbone  # noqa: E402
from stylelab.images import resize  # noqa: E402
from stylelab.optimize import LossSpec, StyleObjective  # noqa: E402
from stylelab.runtime import device_name, numeric_mode, resolve_device  # noqa: E402
from stylelab.samples import sample_content, sample_style  # noqa: E402
from stylelab.study.environment import environment  # noqa: E402

BURN_IN = 5  # evaluations excluded from the per-iteration median (allocator, cuDNN autotuning)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images(size: int):
    content = resize(sample_content(), (size * 3 // 4 // 16 * 16, size))  # 4:3, sides multiples of 16
    style = resize(sample_style(), tuple(content.shape[-2:]))  # the tutorial needs equal sizes
    return content, style


def evaluation_cost(backbone: str, content, style, device) -> tuple[float, int]:
    """(GFLOP, operator calls) of one loss evaluation's forward + backward: FLOPs by PyTorch's FLOP counter,
    calls as top-level aten operators seen by the profiler (on CUDA each launches at least one kernel)."""
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
    x.grad = None
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        total, _ = objective(x)
        total.backward()
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::")
              and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    return counter.get_total_flops() / 1e9, ops


# Levers, each a set of transfer() options; fp32 is the numerics reference (the default, precision auto, is bf16
# on a CPU with AMX).
VARIANTS = {
    "fp32": {"precision": "fp32"},
    "fp32-nhwc": {"precision": "fp32", "channels_last": True},  # same arithmetic, other order: the chaos floor
    # PyTorch's own convolutions (auto: Winograd on AVX2 CPUs, Zen 4)
    "fp32-direct": {"precision": "fp32", "convolution": "direct"},
    # NNPACK's Winograd on every large 3×3 map, whatever the CPU
    "fp32-winograd": {"precision": "fp32", "convolution": "winograd"},
    # a host sync after every evaluation (the default reports every 10 on CUDA)
    "fp32-sync": {"precision": "fp32", "report_every": 1},
    "default": {},  # the product's defaults (precision auto: bf16 + NHWC on a CPU with AMX)
    "tf32": {"precision": "tf32"},
    "bf16": {"precision": "bf16"},
    "bf16-nhwc": {"precision": "bf16", "channels_last": True},
}


def per_iteration(stamps: list[tuple[int, float]]) -> float | None:
    """Median seconds per evaluation from (iteration, elapsed) reports after the burn-in."""
    steps = [(t1 - t0) / (i1 - i0) for (i0, t0), (i1, t1) in zip(stamps, stamps[1:]) if i0 >= BURN_IN]
    return statistics.median(steps) if steps else None


def time_stylelab(backbone, content, style, iterations, repeats, device, batch=1, **options):
    """(ms/it, e2e s, peak bytes, last result(s)) for ``batch`` copies of the content (flipped alternately)."""
    per_it, end_to_end, peak, result = [], [], 0, None
    contents = [content if i % 2 == 0 else content.flip(-1) for i in range(batch)]
    for _ in range(repeats):
        stamps = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = transfer(contents if batch > 1 else content, style, backbone=backbone, weights="random",
                          size=max(content.shape[-2:]), iterations=iterations, device=device, batch_size=batch,
                          callback=lambda e, stamps=stamps: stamps.append((e.iteration, e.elapsed)), **options)
        first = result[0] if batch > 1 else result
        per_it.append(per_iteration(stamps) or first.seconds / iterations)
        end_to_end.append(first.seconds)
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
    return statistics.median(per_it), statistics.median(end_to_end), peak, result


def alternately(repeats: int, *timers):
    """Each timer (a function of ``repeats``) called once per round, in turn, so that slow drift of the machine
    (other tenants, clocks) falls on all of them alike; returns each one's (median ms, median e2e, max peak, last
    extra values)."""
    runs = [[timer(1) for timer in timers] for _ in range(repeats)]
    out = []
    for i in range(len(timers)):
        mine = [run[i] for run in runs]
        out.append((statistics.median(m[0] for m in mine), statistics.median(m[1] for m in mine),
                    max(m[2] for m in mine), *mine[-1][3:]))
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """dB of b against a, for [0, 1] images; None (JSON null) when they are identical."""
    mse = (a.double() - b.double()).pow(2).mean().item()
    return None if mse == 0 else 10 * math.log10(1.0 / mse)


def time_reference(content, style, iterations, repeats, device, precision="fp32"):
    features = reference.vgg19_features().to(device)
    per_iteration, end_to_end, peak = [], [], 0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        start = time.perf_counter()
        with numeric_mode(precision):
            _, evaluations = reference.run(features, content.to(device), style.to(device), iterations)
        sync(device)
        seconds = time.perf_counter() - start
        per_iteration.append(seconds / evaluations)
        end_to_end.append(seconds / evaluations * iterations)  # scaled to exactly N evaluations
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
    return statistics.median(per_iteration), statistics.median(end_to_end), peak


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbones", default="vgg19,clip-rn50,clip-rn50-sequential,clip-vit-b16")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"levers to time: {', '.join(VARIANTS)}")
    p.add_argument("--batch", type=int, default=8, help="contents per batch for the images/s rows (VGG19; 0: none)")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense fp32 rate for the FLOP floor (default: 67 on H100/H200, else none)")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    name = device_name(device)
    peak_tflops = args.peak_tflops or (67.0 if any(g in name for g in ("H100", "H200")) else None)
    variants = [v for v in args.variants.split(",") if device.type == "cuda" or VARIANTS[v].get("precision") != "tf32"]
    torch.manual_seed(0)
    env = {**environment(device), "machine": platform.machine(),
           "variants": {v: VARIANTS[v] for v in variants}, "weights": "random init (timing only)",
           "iterations": args.iterations, "repeats": args.repeats}
    print(f"# {env}", flush=True)
    warm = images(64)
    transfer(*warm, weights="random", size=64, iterations=BURN_IN + 2, device=device)  # module load, handles
    rows = []

    def add(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    for size in [int(s) for s in args.sizes.split(",")]:
        content, style = images(size)
        for backbone in args.backbones.split(","):
            gflop, ops = evaluation_cost(backbone, content, style, device)
            exact, references = None, {}
            for variant in variants:
                ours = partial(time_stylelab, backbone, content, style, args.iterations, device=device,
                               **VARIANTS[variant])  # called with the number of repeats
                precision = VARIANTS[variant].get("precision", "fp32")
                paired = backbone == "vgg19" and not args.no_reference and variant in ("fp32", "tf32")
                if paired:  # the reference at the same precision, timed in alternation with this variant
                    theirs = partial(time_reference, content, style, args.iterations, device=device,
                                     precision=precision)
                    (ms, e2e, peak, result), references[precision] = alternately(args.repeats, ours, theirs)
                else:
                    ms, e2e, peak, result = ours(args.repeats)
                exact = exact or result
                add({"impl": "stylelab", "variant": variant, "backbone": backbone, "size": size, "batch": 1,
                     "ms_per_iteration": ms * 1e3, "end_to_end_s": e2e, "images_per_s": 1 / e2e,
                     "peak_mem_gb": peak / 2**30, "gflop_per_iteration": gflop, "ops_per_evaluation": ops,
                     "floor_s": gflop * args.iterations / (peak_tflops * 1e3) if peak_tflops else None,
                     "loss_rel_diff_vs_fp32": abs(result.final.loss - exact.final.loss) / exact.final.loss,
                     "psnr_vs_fp32_db": psnr(result.image, exact.image)})
            if backbone == "vgg19" and args.batch > 1:
                for variant in variants:
                    ms, e2e, peak, results = time_stylelab(backbone, content, style, args.iterations, 1, device,
                                                           batch=args.batch, **VARIANTS[variant])
                    add({"impl": "stylelab", "variant": variant, "backbone": backbone, "size": size,
                         "batch": args.batch, "ms_per_iteration": ms * 1e3, "end_to_end_s": e2e,
                         "images_per_s": args.batch / e2e, "peak_mem_gb": peak / 2**30,
                         "gflop_per_iteration": gflop * args.batch, "floor_s": None,
                         "loss_rel_diff_vs_fp32": abs(results[0].final.loss - exact.final.loss) / exact.final.loss,
                         "psnr_vs_fp32_db": psnr(results[0].image, exact.image)})
            for precision, (ms_r, e2e_r, peak_r) in references.items():
                add({"impl": "reference", "variant": precision, "backbone": "vgg19", "size": size, "batch": 1,
                     "ms_per_iteration": ms_r * 1e3, "end_to_end_s": e2e_r, "images_per_s": 1 / e2e_r,
                     "peak_mem_gb": peak_r / 2**30, "gflop_per_iteration": None, "floor_s": None})
    for row in rows:  # each stylelab row against the reference at the same size and precision family
        ref = next((r for r in rows if r["impl"] == "reference" and r["size"] == row["size"]
                    and r["variant"] == ("tf32" if row.get("variant", "").startswith("tf32") else "fp32")), None)
        if row["impl"] == "stylelab" and row["backbone"] == "vgg19" and ref:
            row["speedup_vs_reference"] = row["images_per_s"] / ref["images_per_s"]
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    print(f"\n{'impl':9s} {'variant':9s} {'backbone':20s} {'px':>4s} {'B':>2s} {'ms/it':>8s} {'e2e s':>7s} "
          f"{'img/s':>6s} {'peak GB':>7s} {'GFLOP/it':>8s} {'floor s':>7s} {'Δloss':>7s} {'PSNR':>6s} {'vs ref':>6s}")
    for r in rows:
        floor = f"{r['floor_s']:.2f}" if r["floor_s"] else "-"
        gf = f"{r['gflop_per_iteration']:.1f}" if r["gflop_per_iteration"] else "-"
        speed = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else ""
        dl = f"{r['loss_rel_diff_vs_fp32']:.1e}" if "loss_rel_diff_vs_fp32" in r else ""
        ps = "" if "psnr_vs_fp32_db" not in r else "same" if r["psnr_vs_fp32_db"] is None else f"{r['psnr_vs_fp32_db']:.1f}"
        print(f"{r['impl']:9s} {r['variant']:9s} {r['backbone']:20s} {r['size']:4d} {r['batch']:2d} "
              f"{r['ms_per_iteration']:8.2f} {r['end_to_end_s']:7.2f} {r['images_per_s']:6.2f} {r['peak_mem_gb']:7.2f} "
              f"{gf:>8s} {floor:>7s} {dl:>7s} {ps:>6s} {speed:>6s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
