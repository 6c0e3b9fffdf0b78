"""The optimizer's own cost: torch.optim.LBFGS against stylelab's BatchedLBFGS, network left out.

    python bench/lbfgs.py                       # 512x384 image, history 100 (full), CUDA if present
    python bench/lbfgs.py --device cpu --steps 20

The loss is a cheap quadratic of the image, so what is timed is one L-BFGS iteration with a full history:
milliseconds per step (median, synchronized), operator calls per step (torch.profiler, top-level aten ops,
the quadratic's few included; on CUDA each is at least one kernel launch) and host reads per step (``.item()``/``bool()`` on a tensor, the
calls that wait for the device). Both run the same algorithm from the same start on the same gradients.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from stylelab.lbfgs import BatchedLBFGS
from stylelab.runtime import device_name, resolve_device


def quadratic(x: torch.Tensor, target: torch.Tensor, scale: torch.Tensor):
    """½ Σ s·(x − t)² per pixel and its gradient, without autograd (the optimizer is what is timed). The
    target moves a little every call, so the run never converges and every pair has curvature: the history
    stays full, as in a 500-iteration style transfer."""
    target.add_(0.01 * torch.randn_like(target))
    diff = x - target
    return 0.5 * (scale * diff * diff).sum(), scale * diff


def run_torch(x0, target, scale, steps, history):
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, max_eval=1, tolerance_grad=-1, tolerance_change=-1,
                            history_size=history)

    def closure():
        loss, grad = quadratic(x.detach(), target, scale)
        x.grad = grad
        return loss

    return lambda: opt.step(closure)


def run_ours(x0, target, scale, steps, history):
    x = x0.clone()
    opt = BatchedLBFGS(x, history=history)

    def step():
        _, grad = quadratic(x, target, scale)
        opt.step(grad)

    return step


def measure(make, x0, target, scale, steps, history, device):
    torch.manual_seed(0)
    step = make(x0, target.clone(), scale, steps, history)
    for _ in range(history + 2):  # fill the history: the steady state of a long run
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    reads = count_host_reads(step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::")
              and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    return statistics.median(times) * 1e3, ops, reads


def count_host_reads(step) -> int:
    """Calls of Tensor.item / __bool__ / __float__ during one step."""
    counts = {"n": 0}
    saved = {name: getattr(torch.Tensor, name) for name in ("item", "__bool__", "__float__")}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            counts["n"] += 1
            return original(self, *args, **kwargs)
        return wrapper

    for name, original in saved.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        step()
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)
    return counts["n"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, args.height, args.width)
    x0, target = (torch.rand(shape, generator=generator).to(device) for _ in range(2))
    scale = (0.5 + torch.rand(shape, generator=generator)).to(device)  # a spread of curvatures
    rows = []
    for name, make in (("torch.optim.LBFGS", run_torch), ("stylelab BatchedLBFGS", run_ours)):
        ms, ops, reads = measure(make, x0, target, scale, args.steps, args.history, device)
        rows.append({"optimizer": name, "ms_per_step": ms, "ops_per_step": ops, "host_reads_per_step": reads})
        print(json.dumps(rows[-1]), flush=True)
    env = {"device": device_name(device), "torch": torch.__version__, "image": list(shape), "history": args.history,
           "steps": args.steps}
    print(f"\n# {env}\n{'optimizer':24s} {'ms/step':>8s} {'ops/step':>8s} {'host reads':>10s}")
    for r in rows:
        print(f"{r['optimizer']:24s} {r['ms_per_step']:8.2f} {r['ops_per_step']:8d} {r['host_reads_per_step']:10d}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
