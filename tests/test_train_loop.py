"""The shared training loop: exact resume, atomic checkpoints under kill -9, accumulation, lazy phases."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dualstylegan.checkpoints import load_torch_file
from dualstylegan.train.loop import BatchSampler, LoopConfig, Phase, Stage, TrainLoop

DATA = torch.randn(40, 4, generator=torch.Generator().manual_seed(3)) + 2


class ToyGAN(Stage):
    """A 4-d GAN with a lazy R1 phase, EMA and stage state: enough to exercise every loop path."""

    name = "toy"

    def __init__(self):
        torch.manual_seed(0)
        self.g, self.d = nn.Linear(8, 4), nn.Linear(4, 1)
        self.g_ema = nn.Linear(8, 4)
        self.g_ema.load_state_dict(self.g.state_dict())
        self.opt = {"g": torch.optim.Adam(self.g.parameters(), 1e-2), "d": torch.optim.Adam(self.d.parameters(), 1e-2)}
        self.counter = 0

    def networks(self):
        return {"g": self.g, "d": self.d, "g_ema": self.g_ema}

    def optimizers(self):
        return self.opt

    def d_loss(self, real, step):
        fake = self.g(torch.randn(real.shape[0], 8))
        loss = F.softplus(self.d(fake)).mean() + F.softplus(-self.d(real)).mean()
        return loss, {"d": loss.item()}

    def g_loss(self, real, step):
        loss = F.softplus(-self.d(self.g(torch.randn(real.shape[0], 8)))).mean()
        return loss, {"g": loss.item()}

    def r1(self, real, step):
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.d(real).sum(), real, create_graph=True)
        return grad.pow(2).sum(1).mean(), {"r1": 1.0}

    def phases(self):
        return [Phase("d", ["d"], self.d_loss), Phase("d", ["d"], self.r1, every=2), Phase("g", ["g"], self.g_loss)]

    def after_step(self, step):
        from dualstylegan.train.loop import accumulate
        accumulate(self.g_ema, self.g, 0.9)
        self.counter += 1
        return {}

    def state(self):
        return {"counter": self.counter}

    def load_state(self, s):
        self.counter = s["counter"]


def run(tmp: Path, steps: int, **kw) -> ToyGAN:
    stage = ToyGAN()
    cfg = LoopConfig(steps=steps, batch_size=4, out_dir=tmp, checkpoint_every=kw.pop("checkpoint_every", 2),
                     sample_every=0, progress=False, tensorboard=False, **kw)
    TrainLoop(stage, lambda idx: DATA[idx], len(DATA), cfg).run()
    return stage


def states_equal(a: ToyGAN, b: ToyGAN) -> bool:
    return all(torch.equal(x, y) for n in ("g", "d", "g_ema")
               for x, y in zip(a.networks()[n].state_dict().values(), b.networks()[n].state_dict().values()))


def test_resume_is_exact(tmp_path):
    whole = run(tmp_path / "whole", 7)
    run(tmp_path / "split", 3)
    resumed = run(tmp_path / "split", 7)
    assert resumed.counter == whole.counter == 7
    assert states_equal(whole, resumed)
    assert not states_equal(whole, run(tmp_path / "other", 7, seed=1))  # the test can fail


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    """With deterministic losses, two micro-batches of 2 give the step of one batch of 4."""
    class Det(ToyGAN):
        def phases(self):
            return [Phase("d", ["d"], lambda real, step: (F.softplus(-self.d(real)).mean(), {}))]
    a, b = Det(), Det()
    for stage, accum in ((a, 1), (b, 2)):
        cfg = LoopConfig(steps=3, batch_size=4, grad_accum=accum, out_dir=tmp_path / str(accum), sample_every=0,
                         progress=False, tensorboard=False)
        TrainLoop(stage, lambda idx: DATA[idx], len(DATA), cfg).run()
    for x, y in zip(a.d.parameters(), b.d.parameters()):
        torch.testing.assert_close(x, y)


def test_batch_sampler_covers_epochs_and_splits_ranks():
    from dualstylegan.train.loop import Dist
    s = BatchSampler(10, 5, seed=0)
    first_epoch = next(s) + next(s)
    assert sorted(first_epoch) == list(range(10))
    r0, r1 = BatchSampler(10, 2, dist=Dist(0, 2)), BatchSampler(10, 2, dist=Dist(1, 2))
    a, b = next(r0), next(r1)
    assert not set(a) & set(b)


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    """A process killed (SIGKILL) half-way through writing a checkpoint leaves the previous one loadable."""
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_train_loop import run
        import dualstylegan.checkpoints as ck
        real_save = torch.save
        calls = []
        def dying_save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) == 2:  # the second checkpoint: write half of it, then die like kill -9
                import io
                buf = io.BytesIO(); real_save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)
        torch.save = dying_save
        run(__import__("pathlib").Path({str(tmp_path)!r}), 6, checkpoint_every=2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    ckpt = load_torch_file(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 2
    resumed = run(tmp_path, 6)
    assert states_equal(resumed, run(tmp_path / "fresh", 6))


def test_a_damaged_checkpoint_says_to_restart_the_step(tmp_path):
    """A training checkpoint that cannot be read is not something to download again: the step starts over."""
    import pytest

    from dualstylegan.checkpoints import CheckpointError

    run(tmp_path, 2)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # cut short, as a full disk or a bad copy does
    with pytest.raises(CheckpointError, match="--restart") as info:
        run(tmp_path, 4)
    assert "download" not in str(info.value) and str(ckpt) in str(info.value)
