"""Benchmark: one 1024² DualStyleGAN forward (batch 1 and 4) and one pSp encoder forward.

Runs every model through the plain reference ops and through the fast path in the same process and prints one
table: median time, peak memory, MACs, achieved MAC/s, that as a fraction of this machine's measured float32
matmul rate, and the speed-up of the fast path over the reference ops measured side by side. On the CPU the fast
path runs twice: with glibc's default ``malloc`` ("fast") and with freed memory retained for reuse
("fast+retain", :func:`dualstylegan.allocator.retain_freed_memory`, what a loaded pipeline does).

To measure the AVX2 kernels on an AVX-512 machine, cap every library at AVX2:
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/bench_forward.py

    python bench/bench_forward.py                 # CPU (and CUDA too when available)
    python bench/bench_forward.py --device cuda --repeats 10
Weights are random (the shapes of the official files); timings do not depend on the values.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from dualstylegan.allocator import retain_freed_memory
from dualstylegan.cuda_graphs import GraphedCall
from dualstylegan.nets.dualstylegan import DualStyleGAN
from dualstylegan.nets.encoder import GradualStyleEncoder
from dualstylegan.ops import use_reference_ops


@dataclass
class Row:
    model: str
    batch: int
    device: str
    dtype: str
    ops: str
    median_s: float
    peak_mib: float
    gmacs: float
    matmul_gmacs_per_s: float

    @property
    def gmacs_per_s(self) -> float:
        return self.gmacs / self.median_s


def cpu_model() -> str:
    """lscpu's model name (what the capability line alone does not say)."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: str, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """Measured GMAC/s of an n×n matmul in ``dtype``: the best of ``repeats`` (the machine's practical peak for
    dense math; a median moved by 30 % between runs on a shared machine)."""
    if device == "cuda":
        n = 8192  # 2048² leaves an H100/H200 mostly idle
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return n ** 3 / min(times) / 1e9


def _rss_peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak resident set) on Linux
    except OSError:
        pass


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(fn, device: str, repeats: int) -> tuple[float, float]:
    """(median seconds, peak extra memory in MiB during the calls). On the CPU the baseline is taken before the
    warm-up call: memory a retaining allocator keeps from it still counts."""
    with torch.no_grad():
        if device == "cpu":
            _rss_peak_reset()
            base = _status_kib("VmRSS") * 1024
        fn()  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else _status_kib("VmHWM") * 1024
    return statistics.median(times), max(peak - base, 0) / 2 ** 20


def count_gmacs(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def workloads(device: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    dsg = DualStyleGAN(size=1024).eval().requires_grad_(False).to(device, dtype)
    kwargs = dict(z_plus_latent=True, truncation=0.75, truncation_latent=0, randomize_noise=False,
                  interp_weights=[0.75] * 7 + [1] * 11)

    def transfer(batch):
        zplus = torch.randn(batch, 18, 512, device=device, dtype=dtype)
        ex = dsg.map_extrinsic(torch.randn(batch, 18, 512, device=device, dtype=dtype))
        graphed = GraphedCall(lambda z, e: dsg([z], e, **kwargs)[0])
        return lambda graph=False: graphed(zplus, ex) if graph else dsg([zplus], ex, **kwargs)

    yield "DualStyleGAN 1024²", 1, transfer(1)
    yield "DualStyleGAN 1024²", 4, transfer(4)
    enc = GradualStyleEncoder().eval().requires_grad_(False).to(device, dtype)
    x = torch.randn(1, 3, 256, 256, device=device, dtype=dtype)
    graphed = GraphedCall(enc)
    yield "pSp encoder 256²", 1, lambda graph=False: graphed(x) if graph else enc(x)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--gpu-dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16",
                   "float16"], help="dtypes measured on CUDA (the CPU runs float32)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    rows: list[Row] = []
    for device in devices:
        for dtype_name in (["float32"] if device == "cpu" else args.gpu_dtypes):
            peak = matmul_rate(device, getattr(torch, dtype_name))
            first = len(rows)
            for model, batch, fn in workloads(device, getattr(torch, dtype_name)):
                gmacs = count_gmacs(fn)
                # on the CPU the kept memory is measured first, on a heap no other variant has shaped (as in a
                # pipeline, which keeps it from loading on); the reference ops' large blocks come last
                variants = [("fast+retain", False, False)] if device == "cpu" else []
                variants += [("fast", False, False), ("reference", True, False)]
                if device == "cuda":
                    variants.append(("fast+graph", False, True))
                for ops, ref, graph in variants:
                    retain_freed_memory(ops == "fast+retain")
                    with use_reference_ops(ref):
                        t, mem = measure(lambda: fn(graph), device, args.repeats)
                    rows.append(Row(model, batch, device, dtype_name, ops, t, mem, gmacs, peak))
                retain_freed_memory(False)
            # measured again after the workloads, the better of the two is the denominator of every row
            peak = max(peak, matmul_rate(device, getattr(torch, dtype_name)))
            for r in rows[first:]:
                r.matmul_gmacs_per_s = peak
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_model()}), "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg())
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    head = (f"{'model':<20} {'batch':>5} {'device':>6} {'dtype':>8} {'ops':>11} {'median s':>9} {'peak MiB':>9} {'GMACs':>7} "
            f"{'GMAC/s':>7} {'of matmul':>9} {'speed-up':>8}")
    print(head)
    print("-" * len(head))
    rank = {"reference": 0, "fast": 1, "fast+retain": 2, "fast+graph": 3}
    groups = list(dict.fromkeys((r.model, r.batch, r.device, r.dtype) for r in rows))
    rows.sort(key=lambda r: (groups.index((r.model, r.batch, r.device, r.dtype)), rank[r.ops]))
    for r in rows:
        ref = next(x for x in rows if (x.model, x.batch, x.device, x.dtype, x.ops)
                   == (r.model, r.batch, r.device, r.dtype, "reference"))
        print(f"{r.model:<20} {r.batch:>5} {r.device:>6} {r.dtype:>8} {r.ops:>11} {r.median_s:>9.3f} {r.peak_mib:>9.0f} "
              f"{r.gmacs:>7.1f} {r.gmacs_per_s:>7.1f} {r.gmacs_per_s / r.matmul_gmacs_per_s:>9.0%} "
              f"{ref.median_s / r.median_s:>7.2f}x")
    for r in {(x.device, x.dtype): x for x in rows}.values():
        print(f"matmul rate ({r.device}, {r.dtype}): {r.matmul_gmacs_per_s:.1f} GMAC/s")


if __name__ == "__main__":
    main()
