"""Benchmark: a folder of real photos stylised one by one vs pipelined (worker processes) and batched, side by side.

Photos: tests/data's faces (obama, biden, a partial face) and scikit-image's astronaut, copied to --n files. Each
mode runs :func:`dualstylegan.batch.stylize_files` with FFHQ alignment (dlib) on the CPU-side, into its own
folder; the images/s include decoding, detection, alignment, the networks and writing. Portraits of the pipelined
batch-1 run are compared with the one-by-one run byte for byte; batched runs by their largest pixel difference.

    python bench/bench_batch.py                      # the tiny narrow test pack (64², random weights)
    python bench/bench_batch.py --n 64 --device cuda --style cartoon
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dualstylegan.batch import stylize_files
from dualstylegan.pipeline import StyleTransferPipeline

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def make_folder(folder: Path, n: int) -> Path:
    from skimage import data

    folder.mkdir(parents=True)
    sources = [ROOT / "tests/data" / f for f in ("obama.jpg", "biden.jpg", "obama_partial_face.jpg")]
    astronaut = folder.parent / "astronaut.png"
    Image.fromarray(data.astronaut()).save(astronaut)
    sources.append(astronaut)
    for i in range(n):
        src = sources[i % len(sources)]
        shutil.copyfile(src, folder / f"photo{i:03d}{src.suffix}")
    return folder


def run(pipe, photos: Path, out: Path, **kw) -> tuple[float, int]:
    t = time.perf_counter()
    results = list(stylize_files(pipe, [photos], out, **kw))
    return time.perf_counter() - t, sum(r.ok for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="photos in the folder (default: 32)")
    ap.add_argument("--style", help="a style pack (default: the tiny test pack, built here)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        if a.style:
            pipe = StyleTransferPipeline.from_pretrained(a.style, device=a.device)
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import build_tiny_pack

            pipe = StyleTransferPipeline.from_pretrained(str(build_tiny_pack(tmp / "pack")), device=a.device)
        photos = make_folder(tmp / "photos", a.n)
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
              f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
              f"load {os.getloadavg()[0]:.2f}; device {a.device}; style {pipe.style}; {a.n} photos")
        list(stylize_files(pipe, [next(photos.iterdir())], tmp / "warm"))  # first-call costs out of the figures
        modes = [("one by one", dict()),
                 (f"workers {a.workers}, batch 1", dict(workers=a.workers)),
                 (f"workers {a.workers}, batch {a.batch_size}", dict(workers=a.workers, batch_size=a.batch_size)),
                 (f"in line, batch {a.batch_size}", dict(batch_size=a.batch_size))]
        base = None
        print(f"{'mode':<22} {'s':>7} {'images/s':>9} {'ok':>4}  same pixels as one by one")
        for name, kw in modes:
            out = tmp / name.replace(" ", "_").replace(",", "")
            s, ok = run(pipe, photos, out, **kw)
            files = sorted(out.glob("*.png"))
            if base is None:
                base, same = files, "-"
            else:
                diffs = [np.abs(np.asarray(Image.open(f), int) - np.asarray(Image.open(g), int)).max()
                         for f, g in zip(base, files)]
                same = "bit for bit" if all(f.read_bytes() == g.read_bytes() for f, g in zip(base, files)) \
                    else f"max |diff| {max(diffs)}/255"
            print(f"{name:<22} {s:7.2f} {ok / s:9.2f} {ok:4d}  {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
