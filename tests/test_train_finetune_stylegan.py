"""Stage I (g′): style image preparation, ADA, and fine-tuning StyleGAN2 with the shared loop — tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualstylegan.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from dualstylegan.train.ada import ADA, augment
from dualstylegan.train.data import ImageFolderDataset, prepare_style_images
from dualstylegan.train.finetune_stylegan import FinetuneStyleGAN, finetune_stylegan
from dualstylegan.train.loop import LoopConfig, TrainLoop

SIZE = 32
NARROW = {4: 64, 8: 64, 16: 32, 32: 32}
ODD_SIZES = [(37, 45), (50, 33), (64, 64), (29, 29), (80, 41), (33, 70), (48, 52), (41, 39)]


def write_style_set(folder: Path) -> list[Path]:
    """~8 'style images': a coloured blob on a plain background, odd sizes, PNG and JPEG; plus a fake PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(ODD_SIZES):
        yy, xx = np.mgrid[:h, :w]
        cx, cy, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), min(w, h) * 0.3
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None]
        img = np.where(blob, rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8)
        path = folder / f"style{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(img).save(path)
        paths.append(path)
    (folder / "broken.png").write_text("this is not an image\n")
    return paths


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("styles")
    write_style_set(root / "raw")
    kept, rejected = prepare_style_images(root / "raw", root / "prepared", size=SIZE, align=False, progress=False)
    assert len(kept) == len(ODD_SIZES) and len(rejected) == 1
    return root / "prepared"


def tiny_nets(seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(size=SIZE, channels=NARROW, style_dim=32, n_mlp=2))
    d = Discriminator(DiscriminatorConfig(size=SIZE, channels=NARROW))
    return g, d


def run_stage(prepared: Path, out: Path, steps: int, seed: int = 0, **stage_kw):
    g, d = tiny_nets()
    kw = dict(d_reg_every=2, g_reg_every=3, ada_target=-1.0, ada_kimg=0.1, ada_interval=2)
    kw.update(stage_kw)
    stage = FinetuneStyleGAN(g, d, **kw)
    data = ImageFolderDataset(prepared, SIZE)
    cfg = LoopConfig(steps=steps, batch_size=4, out_dir=out, seed=seed, checkpoint_every=100, sample_every=0,
                     progress=False, tensorboard=False)
    loop = TrainLoop(stage, data.fetch, len(data), cfg)
    return stage, loop.run()


# ------------------------------------------------------------------------------------------- data
def test_prepare_rejects_bad_files_keeps_odd_sizes_and_is_idempotent(tmp_path):
    sources = write_style_set(tmp_path / "raw")
    kept, rejected = prepare_style_images(tmp_path / "raw", tmp_path / "out", size=SIZE, align=False,
                                          progress=False)
    assert sorted(p.name for p in kept) == sorted(f"{p.stem}.png" for p in sources)
    for p in kept:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (SIZE, SIZE) and im.mode == "RGB"
    assert [p.name for p, _ in rejected] == ["broken.png"]
    reason = rejected[0][1]
    assert reason and "\n" not in reason
    mtimes = {p: p.stat().st_mtime_ns for p in kept}
    again, rejected_again = prepare_style_images(tmp_path / "raw", tmp_path / "out", size=SIZE, align=False,
                                                 progress=False)
    assert again == kept and len(rejected_again) == 1
    assert {p: p.stat().st_mtime_ns for p in again} == mtimes  # nothing rewritten


def test_dataset_fetch_is_deterministic_and_flips(prepared):
    ds = ImageFolderDataset(prepared, SIZE)
    torch.manual_seed(3)
    a = ds.fetch([0, 1, 2, 0])
    torch.manual_seed(3)
    b = ds.fetch([0, 1, 2, 0])
    assert a.shape == (4, 3, SIZE, SIZE) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    plain = ImageFolderDataset(prepared, SIZE, hflip=False).fetch([0] * 8)
    flipped = ImageFolderDataset(prepared, SIZE).fetch([0] * 8)
    assert all(torch.equal(f, plain[0]) or torch.equal(f, plain[0].flip(2)) for f in flipped)


# ------------------------------------------------------------------------------------------- ADA
def test_ada_p_rises_when_d_is_overconfident_and_falls_otherwise():
    ada = ADA(target=0.6, interval=2, interval_images=0, adjust=0.05)
    for _ in range(10):
        logs = ada.update(torch.full((4, 1), 3.0))  # D sure that every real is real: r_t = 1
    assert ada.p == pytest.approx(0.25) and logs["ada_rt"] == 1.0
    state = ada.state()
    for _ in range(6):
        ada.update(-torch.ones(4, 1))  # r_t = −1 < target
    assert ada.p == pytest.approx(0.10)
    ada.load_state(state)
    assert ada.p == pytest.approx(0.25)
    speed = ADA(interval=1, interval_images=8, speed_kimg=0.008)  # 8 images move p all the way, once 8 are seen
    speed.update(torch.ones(4))
    assert speed.p == 0.0
    speed.update(torch.ones(4))
    assert speed.p == 1.0


def test_augment_is_identity_at_p0_and_differentiable():
    x = torch.rand(6, 3, SIZE, SIZE) * 2 - 1
    assert augment(x, 0.0) is x
    torch.manual_seed(0)
    x.requires_grad_(True)
    y = augment(x, 0.9)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- the stage
def test_stage_runs_regularisers_at_their_intervals_and_updates_g_ema(prepared, tmp_path):
    g0, _ = tiny_nets()
    stage, history = run_stage(prepared, tmp_path, 7)
    for step, logs in enumerate(history):
        assert ("r1" in logs) == (step % 2 == 0) and ("path" in logs) == (step % 3 == 0)
        assert all(np.isfinite(v) for v in logs.values())
        assert {"d", "g", "real_score", "fake_score", "ada_p"} <= set(logs)
    assert history[-1]["ada_p"] > 0  # the (forced-up) ADA probability moved, so augmentation ran
    assert any(not torch.equal(a, b) for a, b in zip(g0.parameters(), stage.g_ema.parameters()))
    assert stage.samples().shape == (9, 3, SIZE, SIZE)
    ref = FinetuneStyleGAN(*tiny_nets())
    assert ref.ema_decay == stage.ema_decay == 0.5 ** (32 / 10_000)  # the reference's constant, whatever the batch
    c = 16 / 17
    assert ref.opt["d"].param_groups[0]["lr"] == pytest.approx(0.002 * c)
    assert ref.opt["d"].param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** c))


def test_discriminator_learns_to_separate_reals_from_a_frozen_generator(prepared, tmp_path):
    g, d = tiny_nets()
    stage = FinetuneStyleGAN(g, d, augment=False, r1=0.0)
    for group in stage.opt["g"].param_groups:
        group["lr"] = 0.0
    data = ImageFolderDataset(prepared, SIZE)
    cfg = LoopConfig(steps=20, batch_size=4, out_dir=tmp_path, sample_every=0, progress=False,
                     tensorboard=False)
    history = TrainLoop(stage, data.fetch, len(data), cfg).run()
    first = np.mean([h["d"] for h in history[:4]])
    last = np.mean([h["d"] for h in history[-4:]])
    assert last < first
    assert np.mean([h["real_score"] - h["fake_score"] for h in history[-4:]]) > 0


def test_resume_is_exact(prepared, tmp_path):
    straight, _ = run_stage(prepared, tmp_path / "straight", 8)
    run_stage(prepared, tmp_path / "split", 4)
    resumed, history = run_stage(prepared, tmp_path / "split", 8)
    assert len(history) == 4
    for name in ("g", "d", "g_ema"):
        for (k, a), b in zip(straight.networks()[name].state_dict().items(),
                             resumed.networks()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    assert straight.ada.state() == resumed.ada.state()
    assert float(straight.mean_path_length) == float(resumed.mean_path_length)


def test_finetune_stylegan_writes_an_official_checkpoint(prepared, tmp_path):
    from dualstylegan import official

    g, d = tiny_nets(1)
    ffhq = tmp_path / "ffhq.pt"
    official.save_stylegan2(ffhq, g, d, g=g.state_dict())
    loop = LoopConfig(batch_size=4, device="cpu", progress=False, sample_every=3, tensorboard=False)
    out = finetune_stylegan(ffhq, prepared, tmp_path / "run", steps=3, loop=loop)
    assert out == tmp_path / "run" / "finetune-000003.pt"
    g_prime = official.load_stylegan2(out)
    assert g_prime.size == SIZE and g_prime.style_dim == 32
    assert official.load_discriminator(out).config.size == SIZE
    assert any(not torch.equal(a, b) for a, b in zip(g.state_dict().values(), g_prime.state_dict().values()))
    assert (tmp_path / "run" / "samples" / "000003.png").exists()
    # a second call finds the finished run and writes the same weights
    loop = LoopConfig(batch_size=4, device="cpu", progress=False, tensorboard=False)
    again = official.load_stylegan2(finetune_stylegan(ffhq, prepared, tmp_path / "run", steps=3, loop=loop))
    assert all(torch.equal(a, b) for a, b in zip(g_prime.state_dict().values(), again.state_dict().values()))
