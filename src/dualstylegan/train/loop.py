"""The one GAN training loop that every stage shares (g′ fine-tuning, DualStyleGAN pre-training and fine-tuning).

Stages differ in networks, losses and schedules — a :class:`Stage` — never in loop code. The loop owns: data order,
discriminator / generator phases with gradient accumulation and mixed precision, lazy regularisers, EMA hooks,
``torchrun`` data parallelism (gradients averaged over ranks with torch.distributed), progress bars, sample grids,
TensorBoard (when installed) and atomic, exactly resumable checkpoints (networks, optimizers, stage state, RNG and
data position). What the three GAN stages share — the StyleGAN2 schedule, its regularisers, ADA and the EMA — is
:class:`dualstylegan.train.gan.GANStage`.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..checkpoints import CheckpointError, load_torch_file, save_torch_file
from ..errors import short
from .config import LoopConfig

CHECKPOINT_NAME = "checkpoint.pt"


# ------------------------------------------------------------------------------------------- the contract
@dataclass
class Phase:
    """One optimisation phase of an iteration: which optimizer, which networks get gradients, and the loss."""

    optimizer: str
    trains: Sequence[str]
    loss: Callable[[Any, int], tuple[torch.Tensor, dict[str, float]]]  # (micro-batch, step) → (loss, logs)
    every: int = 1  # lazy regularisation: run on steps where step % every == 0


class Stage:
    """What a training stage is. Subclasses set networks/optimizers and list their phases."""

    name = "stage"

    def networks(self) -> dict[str, nn.Module]:
        """Every network the checkpoint holds (trainable ones and EMA copies)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def trainable(self, name: str) -> list[nn.Parameter]:
        """The parameters of network ``name`` that a phase training it updates (default: all of them;
        DualStyleGAN stages train the extrinsic path only)."""
        return list(self.networks()[name].parameters())

    def before_step(self, step: int) -> None:
        """Anything to do before the phases of ``step`` (stage II resets its path-length mean at each inject index)."""

    def schedule_step(self, step: int) -> int:
        """The step number the lazy schedules (``Phase.every``) count with: ``step`` unless the stage restarts its
        count (stage II at each inject index, as the reference)."""
        return step

    def after_step(self, step: int) -> dict[str, float]:
        """EMA updates, augmentation probability updates, … (after all phases of a step)."""
        return {}

    def state(self) -> dict[str, Any]:
        """Stage state that is neither a network nor an optimizer (ADA p, mean path length)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def samples(self) -> torch.Tensor | None:
        """A batch of images in [−1, 1] to write as the sample grid, or None."""
        return None


# ------------------------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str, timeout: datetime.timedelta | None = None) -> Dist:
    """``torchrun`` sets WORLD_SIZE/RANK: join the process group once (NCCL on CUDA, Gloo otherwise), this rank's
    GPU selected first. ``timeout``: how long a collective waits (the recipe's ranks wait while rank 0 runs the
    per-image steps); default torch's."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    from ..devices import local_rank

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device) if ":" in str(device) else local_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", **({"timeout": timeout} if timeout is not None else {}))
    return Dist(dist.get_rank(), dist.get_world_size())


# ------------------------------------------------------------------------------------------- data order
class BatchSampler:
    """Endless, reproducible batches of dataset indices: a fresh permutation per epoch from (seed, epoch);
    its position is part of the checkpoint so a resumed run sees the same batches. Ranks take disjoint slices."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, dist: Dist = Dist()):
        if n < 1:
            raise ValueError("the dataset is empty")
        self.n, self.batch_size, self.seed, self.dist = n, batch_size, seed, dist
        self.epoch, self.pos = 0, 0

    def _perm(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        out: list[int] = []
        need = self.batch_size * self.dist.world
        while len(out) < need:
            perm = self._perm()
            take = perm[self.pos:self.pos + need - len(out)]
            out += take
            self.pos += len(take)
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out[self.dist.rank * self.batch_size:(self.dist.rank + 1) * self.batch_size]

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, s: dict[str, int]) -> None:
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])


# ------------------------------------------------------------------------------------------- helpers
def accumulate(ema: nn.Module, model: nn.Module, decay: float = 0.999) -> None:
    """EMA of parameters (buffers copied): ema ← decay · ema + (1 − decay) · model."""
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1 - decay)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - TensorBoard is optional
        return None
    return SummaryWriter(str(folder))


# ------------------------------------------------------------------------------------------- the loop
class TrainLoop:
    """Runs a :class:`Stage` for ``config.steps`` steps on batches from ``fetch(indices) -> batch`` (on the stage's
    device when ``config.device`` is None)."""

    def __init__(self, stage: Stage, fetch: Callable[[list[int]], Any], n_items: int, config: LoopConfig):
        if config.device is None:
            params = (p for m in stage.networks().values() for p in m.parameters())
            config = replace(config, device=str(next(params, torch.empty(0)).device))
        self.stage, self.fetch, self.config = stage, fetch, config
        self.dist = init_distributed(config.device)
        self.sampler = BatchSampler(n_items, config.batch_size, config.seed, self.dist)
        self.step = 0
        self.history: list[dict[str, float]] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.config.out_dir / CHECKPOINT_NAME

    # -------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        if not self.dist.main:
            return
        save_torch_file(self.checkpoint_path, {
            "stage": self.stage.name, "step": self.step,
            "networks": {k: m.state_dict() for k, m in self.stage.networks().items()},
            "optimizers": {k: o.state_dict() for k, o in self.stage.optimizers().items()},
            "stage_state": self.stage.state(), "sampler": self.sampler.state(), "rng": rng_state(),
        })

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        try:
            ckpt = load_torch_file(self.checkpoint_path)
        except CheckpointError as exc:  # a damaged or foreign checkpoint: it cannot be resumed, only restarted
            raise CheckpointError(f"The training checkpoint {self.checkpoint_path} cannot be resumed "
                                  f"({short(exc)}); run the step again with --restart to start it over.") from None
        if ckpt.get("stage") != self.stage.name:
            raise ValueError(f"{self.checkpoint_path} belongs to stage {ckpt.get('stage')!r}, not {self.stage.name!r}")
        for k, m in self.stage.networks().items():
            m.load_state_dict(ckpt["networks"][k])
        for k, o in self.stage.optimizers().items():
            o.load_state_dict(ckpt["optimizers"][k])
        self.stage.load_state(ckpt["stage_state"])
        self.sampler.load_state(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        return True

    # -------------------------------------------------------------------------------- one step
    def _autocast(self):
        if self.config.amp and self.config.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run_step(self, batch) -> dict[str, float]:
        networks = self.stage.networks()
        optimizers = self.stage.optimizers()
        logs: dict[str, float] = {}
        micro = _split(batch, self.config.grad_accum)
        self.stage.before_step(self.step)
        scheduled = self.stage.schedule_step(self.step)
        for phase in self.stage.phases():
            if scheduled % phase.every:
                continue
            for m in networks.values():
                requires_grad(m, False)
            trained = [p for name in phase.trains for p in self.stage.trainable(name)]
            for p in trained:
                p.requires_grad_(True)
            opt = optimizers[phase.optimizer]
            opt.zero_grad(set_to_none=True)
            for mb in micro:
                with self._autocast():
                    loss, phase_logs = phase.loss(mb, self.step)
                (loss / len(micro)).backward()
                for k, v in phase_logs.items():
                    logs[k] = logs.get(k, 0.0) + float(v) / len(micro)
            if self.dist.world > 1:
                _all_reduce_grads(trained, self.dist.world)
            opt.step()
        for m in networks.values():
            requires_grad(m, False)
        logs.update(self.stage.after_step(self.step))
        return logs

    # -------------------------------------------------------------------------------- run
    def run(self, resume: bool = True) -> list[dict[str, float]]:
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and self.load_checkpoint()):
            torch.manual_seed(cfg.seed + self.dist.rank)
            random.seed(cfg.seed + self.dist.rank)
        writer = _tensorboard(cfg.out_dir / "tb") if self.dist.main and cfg.tensorboard else None
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.stage.name,
                   disable=not (cfg.progress and self.dist.main), dynamic_ncols=True)
        while self.step < cfg.steps:
            logs = self.run_step(self.fetch(next(self.sampler)))
            self.history.append(logs)
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(logs.items())[:6]})
                if writer is not None:
                    for k, v in logs.items():
                        writer.add_scalar(f"{self.stage.name}/{k}", v, self.step)
            if self.dist.main and cfg.sample_every and (self.step % cfg.sample_every == 0 or self.step == cfg.steps):
                self._write_samples()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        if writer is not None:
            writer.close()
        return self.history

    def _write_samples(self) -> None:
        with torch.no_grad():
            images = self.stage.samples()
        if images is None:
            return
        from ..images import make_grid, save_image

        save_image(make_grid(list(images.detach().cpu().float())), self.config.out_dir / "samples" /
                   f"{self.step:06d}.png", overwrite=True)


def as_networks(given: str | os.PathLike | Mapping[str, Any] | Sequence[nn.Module],
                load: Callable[[str | os.PathLike], dict[str, Any]], what: str) -> dict[str, Any]:
    """The networks a stage starts from: a checkpoint path (read by ``load``), a mapping {'g', 'd', 'g_ema'?, …}
    or a ``(g, d)`` / ``(g, d, g_ema)`` tuple of modules → a dict with 'g', 'd' and 'g_ema' (None when not given)."""
    if isinstance(given, (str, os.PathLike)):
        return load(given)
    if isinstance(given, Mapping):
        return {"g_ema": None, **given}
    mods = list(given)
    if len(mods) not in (2, 3):
        raise ValueError(f"give {what} as a checkpoint file, (g, d) or (g, d, g_ema)")
    return {"g": mods[0], "d": mods[1], "g_ema": mods[2] if len(mods) == 3 else None}


def _split(batch, n: int):
    if n == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        return list(batch.chunk(n))
    if isinstance(batch, dict):
        parts = {k: _split(v, n) for k, v in batch.items()}
        return [{k: parts[k][i] for k in batch} for i in range(n)]
    if isinstance(batch, (list, tuple)):
        parts = [_split(v, n) for v in batch]
        return [type(batch)(p[i] for p in parts) for i in range(n)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into micro-batches")


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over the ranks (what DistributedDataParallel does, bucketed there), so stages keep calling
    their plain modules under torchrun."""
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)
