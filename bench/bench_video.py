"""Benchmark: stylising video — frames/s at 1024², 512² and 256² portraits, the time share of each pipeline stage,
and the flicker ratio with and without landmark smoothing, side by side in one run.

Clips are made here from a real photo (scikit-image's astronaut), 640×360 at 25 frames/s:
  * still — the photo with per-frame sensor noise (σ = 4) and sub-pixel jitter (±0.7 px): the ideal output is still;
  * pan   — a slow pan and zoom across a group photo (three faces from the photo, mirrored and tinted).

Flicker ratio = mean |output_t − output_t−1| inside the face regions ÷ the same for the input (1: as steady as the
input); the face regions are the FFHQ quads of dlib's raw landmarks on each input frame.

    python bench/bench_video.py                      # random weights of the official 1024² shapes, CPU
    python bench/bench_video.py --style cartoon      # a real style pack
    python bench/bench_video.py --device cuda --frames 48
Timings do not depend on the weights; flicker does (real packs give the meaningful numbers).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dualstylegan import video as V

W, H, FPS = 640, 360, 25


# ------------------------------------------------------------------------------------------------ clips
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((100, 0, 360, 260))  # her face, 260²


def still_clip(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (W, H), (90, 100, 110))
    canvas.paste(photo().resize((300, 300), Image.LANCZOS), (170, 30))
    base = np.asarray(canvas)
    for _ in range(n):
        dx, dy = rng.uniform(-0.7, 0.7, 2)
        img = np.asarray(Image.fromarray(base).transform((W, H), Image.AFFINE, (1, 0, -dx, 0, 1, -dy),
                                                         Image.BILINEAR)).astype(np.float32)
        yield np.uint8(np.clip(img + rng.normal(0, 4, img.shape), 0, 255))


def group_photo() -> Image.Image:
    face = photo()
    group = Image.new("RGB", (1280, 720), (70, 80, 60))
    for x, y, s, flip, tint in ((80, 200, 320, False, (1, 1, 1)), (480, 140, 360, True, (1.1, 0.95, 0.9)),
                                (880, 220, 300, False, (0.9, 1, 1.1))):
        f = face.transpose(Image.FLIP_LEFT_RIGHT) if flip else face
        f = Image.fromarray(np.uint8(np.clip(np.asarray(f) * np.array(tint), 0, 255))).resize((s, s), Image.LANCZOS)
        group.paste(f, (x, y))
    return group


def pan_clip(n: int):
    group = group_photo()
    for i in range(n):
        t = i / max(n - 1, 1)
        zoom = 1.0 + 0.15 * t  # a 640×360 window (× 1/zoom) drifting right
        w, h = 1280 / 1.4 / zoom, 720 / 1.4 / zoom
        x, y = 40 + 260 * t, 80 + 20 * t
        yield np.asarray(group.transform((W, H), Image.EXTENT, (x, y, x + w, y + h), Image.BICUBIC))


def write(path: Path, frames) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "12"}
        s.codec_context.time_base = Fraction(1, FPS)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# ------------------------------------------------------------------------------------------------ pipelines
def random_pipeline(device: str):
    """The official 1024² shapes with random weights (DualStyleGAN + the IR-SE50 pSp encoder)."""
    from dualstylegan.codes import CodeBank
    from dualstylegan.nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
    from dualstylegan.nets.encoder import EncoderConfig, PSPEncoder
    from dualstylegan.pipeline import StyleTransferPipeline

    torch.manual_seed(0)
    g = DualStyleGAN(DualStyleGANConfig())
    enc = PSPEncoder(EncoderConfig(start_from_latent_avg=True), latent_avg=torch.randn(512) * 0.1)
    codes = CodeBank({"000.jpg": np.random.default_rng(0).standard_normal((1, 18, 512)).astype(np.float32)})
    return StyleTransferPipeline(g, enc, codes).to(device)


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    return f"{os.cpu_count()}-core {cpu} ({isa}, {torch.get_num_threads()} torch threads)"


# ------------------------------------------------------------------------------------------------ runs
def speed(pipe, clip: Path, out: Path, size: int | None, batch: int):
    res = V.stylize_video(pipe, clip, out, 0, overwrite=True, portrait_size=size, batch_size=batch)
    return res.stats


def flicker(pipe, clip: Path, smoothing, size: int) -> float:
    from dualstylegan.faces import detect_landmarks, ffhq_quad

    frames = list(V.read_frames(clip))
    styler = V.VideoStyler(pipe, 0, smoothing=smoothing, portrait_size=size)
    meter = V.FlickerMeter()
    for f_in, f_out in zip(frames, styler.frames(frames)):
        quads = [ffhq_quad(lm) for lm in detect_landmarks(Image.fromarray(f_in.image))]
        meter.add(f_in.image, f_out.image, V.quad_mask(f_in.image.shape[:2], quads))
    return meter.ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", help="a style pack (name or folder); default: random weights, official shapes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=8, help="frames per speed run (default: 8)")
    ap.add_argument("--flicker-frames", type=int, default=16, help="frames per flicker clip (default: 16)")
    ap.add_argument("--batch", type=int, default=V.DEFAULT_BATCH)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 512, 256])
    args = ap.parse_args()

    if args.style:
        from dualstylegan.pipeline import StyleTransferPipeline

        pipe = StyleTransferPipeline.from_pretrained(args.style, device=args.device)
        weights = f"style pack {args.style}"
    else:
        pipe = random_pipeline(args.device)
        weights = "random weights, official 1024² shapes"
    print(f"machine: {machine(args.device)}; device {args.device}; {weights}; clips {W}×{H} @ {FPS} frames/s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        still = write(tmp / "still.mp4", still_clip(max(args.frames, args.flicker_frames)))
        pan = write(tmp / "pan.mp4", pan_clip(args.flicker_frames))
        speed_clip = write(tmp / "speed.mp4", still_clip(args.frames, seed=1))

        print(f"\n| portrait | frames/s | faces | {' | '.join(V.STAGES)} |")
        print("|---|---|---|" + "---|" * len(V.STAGES))
        for size in args.sizes:
            t = time.perf_counter()
            stats = speed(pipe, speed_clip, tmp / f"out{size}.mp4", size, args.batch)
            wall = time.perf_counter() - t
            total = sum(stats.seconds.values())
            shares = " | ".join(f"{100 * stats.seconds[s] / total:.0f} %" for s in V.STAGES)
            print(f"| {size}² | {stats.frames / wall:.2f} | {stats.faces} | {shares} |", flush=True)

        size = min(args.sizes)
        print(f"\n| clip | flicker, raw landmarks | flicker, smoothed (One-Euro) |  ({size}² portraits)")
        print("|---|---|---|")
        for name, clip in (("still photo, noise + sub-pixel jitter", still), ("slow pan/zoom, group photo", pan)):
            raw = flicker(pipe, clip, None, size)
            smooth = flicker(pipe, clip, V.DEFAULT_SMOOTHING, size)
            print(f"| {name} | {raw:.3f} | {smooth:.3f} |", flush=True)


if __name__ == "__main__":
    main()
