"""Benchmark: ``dualstylegan transfer`` end to end, one photo, in a fresh process (cold process, warm file cache).

Writes (once, into ``--pack``) a full-size style pack in the official layouts with random weights — a 1024²
DualStyleGAN ``generator.pt``, a full pSp ``encoder.pt`` with its 1024² decoder, a code bank — and a 256² photo,
then runs the CLI ``--repeats`` times, each in a new Python process, and prints side by side: wall time of the whole
process, time to import, to load the networks, to find and align the face (``--align``), to compute (encode +
synthesise), the rest, the interpreter's start and exit, and peak RSS, next to the compute of the same networks
measured in-process after a warm-up. The goal (issue 12): wall ≤ 1.5 × compute, peak RSS ≤ 1.5 GB.

    python bench/bench_cli.py                     # pack in $TMPDIR/dualstylegan-bench-pack; --no-align
    python bench/bench_cli.py --pack /tmp/pack --repeats 5
    python bench/bench_cli.py --align             # the default path on a real photo (tests/data/obama.jpg)
The phase times come from the child itself (``DUALSTYLEGAN_BENCH_TIMES``: the CLI process records when its imports,
loads and computations end, see ``_child`` below); the peak RSS is the child's ``ru_maxrss``. The package's
bytecode is written first (:func:`compile_package`), as an installed package has it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STYLE = "benchstyle"


def cpu_line() -> str:
    import torch

    model = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                     model)
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"CPU: {model}, {os.cpu_count()} CPUs, torch capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}; load average {load}")


def build_pack(root: Path) -> Path:
    """models/encoder.pt + models/<STYLE>/{generator.pt, exstyle_code.npy} at full size, and photo.png."""
    import numpy as np
    import torch
    from PIL import Image

    from dualstylegan import official
    from dualstylegan.codes import CodeBank
    from dualstylegan.nets.dualstylegan import DualStyleGAN
    from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
    from dualstylegan.nets.stylegan2 import Generator

    style = root / "models" / STYLE
    if (style / "exstyle_code.npy").is_file() and (root / "photo.png").is_file():
        return root
    style.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.no_grad():
        dsg = DualStyleGAN(size=1024)
        official.save_dualstylegan(style / "generator.pt", dsg)
        decoder = Generator(dsg.generator.config)
        del dsg
        enc = PSPEncoder(EncoderConfig(z_plus=True, start_from_latent_avg=True), latent_avg=torch.randn(512) * 0.1)
        official.save_encoder(root / "models" / "encoder.pt", enc, decoder)
        del enc, decoder
    rng = np.random.default_rng(0)
    CodeBank({f"{i:03d}.jpg": rng.standard_normal((1, 18, 512)).astype(np.float32) for i in range(4)}).save(
        style / "exstyle_code.npy")
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    Image.fromarray(img).save(root / "photo.png")
    return root


# --------------------------------------------------------------------------------------------------- the child
def _child(argv: list[str], times_path: str) -> None:
    """Run the CLI in this (fresh) process, recording when imports, loads and computations end."""
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    from dualstylegan import cli  # without torch: the verb imports it when it loads the networks

    marks["import"] = time.perf_counter() - t0
    spans = {"load": 0.0, "compute": 0.0, "face": 0.0}

    def timed(obj, name, span):
        fn = getattr(obj, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spans[span] += time.perf_counter() - t
        setattr(obj, name, wrapper)

    from dualstylegan import faces

    timed(faces, "prepare_face", "face")  # in this process: dlib's models load on the first call (a head start
    # finds the first face in a forked process: this process's wait for it counts as "other")
    from dualstylegan import batch

    share_cores = batch.HeadStart.share_cores

    def share_and_time(self):  # where torch is imported when a head start runs
        t = time.perf_counter()
        import torch  # noqa: F401

        marks["import"] += time.perf_counter() - t
        return share_cores(self)
    batch.HeadStart.share_cores = share_and_time
    load_pipeline = cli.load_pipeline

    def load_and_time(*a, **k):
        t = time.perf_counter()
        from dualstylegan import pipeline as pl  # torch and the networks' modules

        marks["import"] += time.perf_counter() - t
        cls = pl.StyleTransferPipeline
        timed(cls, "_encode_eager", "compute")
        timed(cls, "_synthesize_eager", "compute")
        t = time.perf_counter()
        try:
            return load_pipeline(*a, **k)
        finally:
            spans["load"] += time.perf_counter() - t
    cli.load_pipeline = load_and_time
    original_main = cli.main

    def main_then_record(args=None):
        rc = original_main(argv)
        marks.update(spans)
        marks["rc"] = rc
        marks["total_inside"] = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks["peak_rss_mib"] = usage.ru_maxrss / 1024
        marks["cpu"] = usage.ru_utime + usage.ru_stime
        Path(times_path).write_text(json.dumps(marks))
        return rc
    cli.main = main_then_record
    cli.run()  # the console command's entry: main, then its exit


def compile_package() -> bool:
    """Writes the bytecode of the ``dualstylegan`` package being measured, as ``pip install`` does for an installed
    one: an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (this project's machines set it) otherwise
    compiles its ~50 modules from source in every run (60 ms on the 2-core EPYC), a cost no installed user pays."""
    import compileall

    import dualstylegan

    return bool(compileall.compile_dir(Path(dualstylegan.__file__).parent, quiet=2))


def run_cli(root: Path, out: Path, threads: int, align: Path | None = None) -> dict:
    times = out / "times.json"
    env = dict(os.environ, DUALSTYLEGAN_HOME=str(root), HF_HUB_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    photo = [str(align)] if align else [str(root / "photo.png"), "--no-align"]
    argv = ["transfer", "--style", str(root / "models" / STYLE), *photo,
            "--style-id", "1", "--device", "cpu", "--quiet", "-o", str(out / "portraits")]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(times), "--", *argv], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not times.is_file():
        raise SystemExit(f"the CLI failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    marks = json.loads(times.read_text())
    if marks["rc"]:
        raise SystemExit(f"the CLI exited with {marks['rc']}:\n{proc.stderr}")
    marks["wall"] = wall
    return marks


def in_process_compute(root: Path, repeats: int) -> float:
    """Median seconds of encode + synthesise for one photo with the networks already loaded and warm."""
    import torch

    from dualstylegan.pipeline import StyleTransferPipeline

    pipe = StyleTransferPipeline.from_pretrained(str(root / "models" / STYLE), device="cpu",
                                                 local_files_only=True)
    content = pipe.content_tensor(root / "photo.png", align=False)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            t = time.perf_counter()
            pipe.transfer(content, 1)
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[3:], argv[1])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", type=Path, default=Path(tempfile.gettempdir()) / "dualstylegan-bench-pack")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the child (0: torch's default)")
    p.add_argument("--align", type=Path, nargs="?", const=Path(__file__).resolve().parents[1] / "tests" / "data"
                   / "obama.jpg", default=None, metavar="PHOTO",
                   help="run the default path (face detection and alignment) on PHOTO instead of --no-align on a "
                        "synthetic square (default photo: tests/data/obama.jpg)")
    args = p.parse_args(argv)
    root = build_pack(args.pack)
    compiled = compile_package()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_cli(root, Path(tmp), args.threads, args.align)  # warms the file cache
        for i in range(args.repeats):
            d = Path(tmp) / str(i)
            d.mkdir()
            rows.append(run_cli(root, d, args.threads, args.align))
    warm = in_process_compute(root, args.repeats)
    print(cpu_line())
    if not compiled:
        print("note: the package's bytecode could not be written; every run compiled its modules from source")
    head = (f"{'run':>4} {'wall s':>7} {'import s':>8} {'load s':>7} {'face s':>6} {'compute s':>9} {'other s':>7} "
            f"{'start+exit s':>12} {'CPU s':>6} {'peak RSS MiB':>12} {'wall/compute':>12} {'wall/warm compute':>17}")
    print(head)
    print("-" * len(head))
    for i, r in enumerate(rows):
        other = r["total_inside"] - r["import"] - r["load"] - r["face"] - r["compute"]  # photo, PNG, bookkeeping
        outside = r["wall"] - r["total_inside"]  # interpreter start and exit
        print(f"{i:>4} {r['wall']:>7.2f} {r['import']:>8.2f} {r['load']:>7.2f} {r['face']:>6.2f} "
              f"{r['compute']:>9.2f} {other:>7.2f} "
              f"{outside:>12.2f} {r['cpu']:>6.1f} {r['peak_rss_mib']:>12.0f} {r['wall'] / r['compute']:>12.2f} "
              f"{r['wall'] / warm:>17.2f}")
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("wall", "import", "load", "face", "compute", "peak_rss_mib")}
    print(f"median: wall {med['wall']:.2f} s = import {med['import']:.2f} + load {med['load']:.2f} + face "
          f"{med['face']:.2f} + compute "
          f"{med['compute']:.2f} (+ rest); peak RSS {med['peak_rss_mib']:.0f} MiB; compute of the loaded networks "
          f"in-process, warm: {warm:.2f} s (wall = {med['wall'] / warm:.2f}× that)")


if __name__ == "__main__":
    main()
