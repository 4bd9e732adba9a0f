"""Benchmark: where a 1024² DualStyleGAN pass spends its time, layer by layer and resolution by resolution.

Times every StyledConv, ToRGB and ModRes block of one fast-path pass (random weights of the official shapes, memory
kept as in a pipeline, forward hooks, the median of ``--repeats`` passes after two warm-up ones) and prints per
layer: its maps, milliseconds, MACs, the achieved MAC rate and that as a fraction of this machine's measured float32
matmul rate; then the totals by kind and by resolution. ``--ops`` adds torch's profiler table of one pass (self CPU
time by op and input shape: convolutions, transposed convolutions, blurs, elementwise passes). This is the profile
behind ``ops.PHASE_SIDES`` and the fused StyledConv (issue 12, item 1).

    python bench/bench_layers.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/bench_layers.py --ops
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import cpu_model, matmul_rate  # noqa: E402

from dualstylegan.allocator import retain_freed_memory  # noqa: E402
from dualstylegan.nets.dualstylegan import DualStyleGAN, ModRes  # noqa: E402
from dualstylegan.nets.layers import StyledConv, ToRGB  # noqa: E402


def layers(dsg: DualStyleGAN) -> dict[str, torch.nn.Module]:
    """The timed modules by their names in the network."""
    kinds = (StyledConv, ToRGB, ModRes)
    return {name: m for name, m in dsg.named_modules() if isinstance(m, kinds)}


def kind(m: torch.nn.Module) -> str:
    if isinstance(m, StyledConv):
        return "StyledConv up" if m.conv.upsample else "StyledConv"
    return type(m).__name__


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ops", action="store_true", help="also print torch's profiler table of one pass")
    args = p.parse_args(argv)
    retain_freed_memory()
    torch.manual_seed(0)
    dsg = DualStyleGAN(size=1024).eval().requires_grad_(False)
    kwargs = dict(z_plus_latent=True, truncation=0.75, truncation_latent=0, randomize_noise=False,
                  interp_weights=[0.75] * 7 + [1] * 11)
    z = torch.randn(args.batch, 18, 512)
    ex = dsg.map_extrinsic(torch.randn(args.batch, 18, 512))

    def run():
        with torch.no_grad():
            dsg([z], ex, **kwargs)

    timed = layers(dsg)
    times: dict[str, list[float]] = defaultdict(list)
    shapes: dict[str, tuple[tuple, tuple]] = {}
    started: dict[str, float] = {}

    def start(name: str) -> None:
        started[name] = time.perf_counter()

    def stop(name: str, x: torch.Tensor, out: torch.Tensor) -> None:  # None: the output stays the module's
        times[name].append(time.perf_counter() - started[name])
        shapes[name] = (tuple(x.shape[1:]), tuple(out.shape[1:]))

    for name, m in timed.items():
        m.register_forward_pre_hook(lambda mod, a, name=name: start(name))
        m.register_forward_hook(lambda mod, a, out, name=name: stop(name, a[0], out))
    with FlopCounterMode(display=False) as counter:
        run()
    flops = counter.get_flop_counts()
    macs = {name: sum(flops.get(f"DualStyleGAN.{name}", {}).values()) / 2 for name in timed}
    peak = matmul_rate("cpu")
    run()
    run()  # warm-up
    times.clear()
    total = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run()
        total.append(time.perf_counter() - t)
    peak = max(peak, matmul_rate("cpu"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_model()}), "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, batch {args.batch}, matmul {peak:.1f} GMAC/s, "
          "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    head = (f"{'layer':<22} {'kind':<14} {'channels in → out, maps':<34} {'ms':>7} {'GMACs':>6} {'GMAC/s':>7} "
            f"{'of matmul':>9}")
    print(head)
    print("-" * len(head))
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    by_side: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, m in timed.items():
        if name not in times:
            continue
        ms = statistics.median(times[name]) * len(times[name]) / args.repeats * 1e3  # calls per pass
        gmac = macs[name] / 1e9
        rate = gmac / ms * 1e3 if ms else 0.0
        (cin, *_), out = shapes[name]
        io = f"{cin} → {out[0]}, {out[1]}²"
        print(f"{name:<22} {kind(m):<14} {io:<34} {ms:>7.1f} {gmac:>6.2f} {rate:>7.1f} {rate / peak:>9.0%}")
        for table, key in ((by_kind, kind(m)), (by_side, out[-1])):
            table[key][0] += ms
            table[key][1] += gmac
    print("-" * len(head))
    pass_ms = statistics.median(total) * 1e3
    for title, table in (("kind", by_kind), ("resolution", by_side)):
        for key, (ms, gmac) in sorted(table.items(), key=lambda kv: str(kv[0]).zfill(8)):
            label = f"{key}²" if title == "resolution" else key
            print(f"{'by ' + title:<22} {label:<14} {'':<34} {ms:>7.1f} {gmac:>6.2f} {gmac / ms * 1e3:>7.1f} "
                  f"{gmac / ms * 1e3 / peak:>9.0%}")
    gmac_all = sum(macs.values()) / 1e9
    print(f"{'the whole pass':<22} {'':<14} {'':<34} {pass_ms:>7.1f} {gmac_all:>6.2f} "
          f"{gmac_all / pass_ms * 1e3:>7.1f} {gmac_all / pass_ms * 1e3 / peak:>9.0%}  (layers above: "
          f"{sum(v[0] for v in by_kind.values()):.1f} ms; the rest is the mapping, codes and hooks)")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            run()
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30,
                                                                 max_name_column_width=28,
                                                                 max_shapes_column_width=70))


if __name__ == "__main__":
    main()
