"""The settings of training, as data: :class:`LoopConfig` (how a training loop runs, one set of defaults) and
:class:`RecipeConfig` (a whole run of ``dualstylegan train``). Each RecipeConfig field carries its command-line
option in its metadata, so :mod:`dualstylegan.train.cli` builds its options from this one table. No torch here:
``dualstylegan --help`` reads it.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..argtypes import positive_float, positive_int

#: A style needs at least this many usable images (the paper's sets have a few hundred).
MIN_STYLE_IMAGES = 2

RUN, ITERATIONS, LOSSES = "run", "iterations (default: the reference's)", "losses and data"


@dataclass
class LoopConfig:
    """How a training loop runs — one set of defaults for every stage, the recipe and the CLI.

    ``steps`` and ``out_dir`` are set by the stage function that takes the config (``finetune_stylegan``,
    ``pretrain``, ``finetune``). ``batch_size`` is per process (the reference: 4 on each of 8 GPUs); ``grad_accum``
    splits it into micro-batches. ``checkpoint_every`` / ``sample_every`` 100: a stage of 600–3600 steps loses at
    most 100 steps to an interruption and gets a sample grid at the same points (the reference's scripts sample
    every 100 steps too); ``sample_every`` 0 writes none. ``device`` None: the stage's device for a bare
    ``TrainLoop``, else the best one here (:func:`dualstylegan.devices.resolve_device`). ``tensorboard``:
    TensorBoard logs in ``out_dir/tb`` when it is installed.
    """

    steps: int = 0
    batch_size: int = 4
    out_dir: Path = Path("runs/stage")
    seed: int = 0
    grad_accum: int = 1          # micro-batches per step (small GPUs)
    amp: bool = False            # bfloat16 autocast on CUDA
    checkpoint_every: int = 100
    sample_every: int = 100
    log_every: int = 10
    progress: bool = True
    device: str | None = None
    tensorboard: bool = True

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if self.steps < 0 or self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ValueError("steps >= 0, batch_size >= 1 and a batch_size divisible by grad_accum are required")
        if self.checkpoint_every < 1 or self.sample_every < 0 or self.log_every < 1:
            raise ValueError("checkpoint_every >= 1, sample_every >= 0 and log_every >= 1 are required")

    def resolved(self, steps: int, out_dir: str | os.PathLike) -> LoopConfig:
        """This config for a run of ``steps`` steps into ``out_dir``, its device resolved."""
        from ..devices import resolve_device

        return replace(self, steps=int(steps), out_dir=Path(out_dir), device=resolve_device(self.device))


def option(default: Any, group: str | None, flag: str | None = None, help: str | None = None, **argparse_kw: Any):
    """A RecipeConfig field and its command-line option (``flag`` default ``--field-name``; ``argparse_kw``: type,
    metavar, action + const, …). ``group`` None: not an option."""
    return field(default=default, metadata={"group": group, "flag": flag, "help": help, **argparse_kw})


_LOOP = LoopConfig()


@dataclass
class RecipeConfig:
    """Settings of a training run; the defaults are the reference's for 1024² on GPUs, the loop options
    :class:`LoopConfig`'s.

    Iteration counts: ``finetune_stylegan_iters`` 600 (g′), ``destylize_iters`` 300 per image, ``pretrain_iters``
    3600 (300 + 300 + 3000 over inject indices 7, 6, 5), ``finetune_iters`` 1500, ``refine_iters`` 100 per
    exemplar, ``sampler_epochs`` None = 500 000 / (augmented code count) ≈ 500. ``scale`` multiplies all of them
    (at least 1 each) for a quick run. ``batch`` is per process (the reference: 4 on each of 8 GPUs;
    ``grad_accum`` splits it into micro-batches). ``style`` picks (λ_ID, λ_reg) from the style registry
    (:func:`dualstylegan.styles.get_style`; default: the run's name when it is registered, else (1, 0.01));
    ``lambda_id`` / ``lambda_reg`` override it. ``faces``: a folder of aligned real faces (FFHQ) for pre-training's
    discriminator, else faces sampled from the FFHQ generator. ``pretrained``: an existing pre-trained DualStyleGAN
    (``generator-pretrain.pt``, shared by all styles of one FFHQ model) instead of the pretrain step.
    ``pretrain_one_loop``, ``exemplars_per_epoch``, ``shared_id_inject``: this project's earlier choices where the
    reference differs (off: the reference's; see :mod:`dualstylegan.train.pretrain` and
    :mod:`dualstylegan.train.finetune`).
    """

    size: int = option(1024, RUN, help="training resolution, the FFHQ model's (default 1024)", type=positive_int)
    batch: int = option(_LOOP.batch_size, RUN, help=f"images per step and process (default {_LOOP.batch_size}, as "
                        "the reference on each of its 8 GPUs)", type=positive_int)
    grad_accum: int = option(_LOOP.grad_accum, RUN, help="split each batch into this many micro-batches",
                             type=positive_int)
    device: str | None = option(_LOOP.device, RUN, help="auto (default), cpu, cuda or cuda:N")
    amp: bool = option(_LOOP.amp, RUN, help="bfloat16 autocast on CUDA", action="store_const", const=True)
    seed: int = option(_LOOP.seed, RUN, type=int)
    align: bool = option(True, RUN, "--no-align", "the style images are already aligned face crops (no face "
                         "detection; centre square)", action="store_const", const=False)
    min_images: int = option(MIN_STYLE_IMAGES, RUN, help="fewest usable style images to train on (default "
                             f"{MIN_STYLE_IMAGES})", type=positive_int)
    checkpoint_every: int = option(_LOOP.checkpoint_every, RUN, help="steps between training checkpoints "
                                   f"(default {_LOOP.checkpoint_every})", type=positive_int)
    sample_every: int = option(_LOOP.sample_every, RUN, help=f"steps between sample grids (default "
                               f"{_LOOP.sample_every})", type=positive_int)
    tensorboard: bool = option(_LOOP.tensorboard, RUN, "--no-tensorboard", "no TensorBoard logs even when "
                               "tensorboard is installed", action="store_const", const=False)
    progress: bool = option(_LOOP.progress, RUN, "--quiet", "no progress bars", action="store_const", const=False)

    scale: float = option(1.0, ITERATIONS, "--steps-scale", "multiply every iteration count by this (at least 1 "
                          "each), e.g. 0.01 for a quick try", type=positive_float)
    finetune_stylegan_iters: int | None = option(None, ITERATIONS, help="g' fine-tuning steps (600)",
                                                 type=positive_int)
    destylize_iters: int | None = option(None, ITERATIONS, help="optimisation steps per style image (300)",
                                         type=positive_int)
    pretrain_iters: int | None = option(None, ITERATIONS, help="pre-training steps (3600 = 300 + 300 + 3000)",
                                        type=positive_int)
    finetune_iters: int | None = option(None, ITERATIONS, help="DualStyleGAN fine-tuning steps (1500)",
                                        type=positive_int)
    refine_iters: int | None = option(None, ITERATIONS, help="code refinement steps per exemplar (100)",
                                      type=positive_int)
    sampler_epochs: int | None = option(None, ITERATIONS, help="sampler epochs (500000 / augmented code count)",
                                        type=positive_int)

    style: str | None = option(None, LOSSES, "--style-preset", "(lambda_id, lambda_reg) of cartoon (1, 0.015), "
                               "caricature (4, 0.005) or anime (1, 0.02); default: the name's preset, else (1, 0.01)",
                               metavar="STYLE")
    lambda_id: float | None = option(None, LOSSES, help="identity loss weight of fine-tuning (0: no IR-SE50 needed "
                                     "there)", type=float)
    lambda_reg: float | None = option(None, LOSSES, help="L2 weight on the extrinsic path's ModRes blocks",
                                      type=float)
    lr_color: float | None = option(None, LOSSES, help="refinement learning rate of the color rows (0.1)",
                                    type=float)
    lr_structure: float | None = option(None, LOSSES, help="refinement learning rate of the structure rows "
                                        "(0.005)", type=float)
    faces: str | None = option(None, LOSSES, help="aligned real faces (FFHQ) for pre-training; default: faces "
                               "sampled from the FFHQ generator", metavar="DIR")
    pretrained: str | None = option(None, LOSSES, help="an existing pre-trained DualStyleGAN (generator-pretrain.pt)"
                                    " instead of the pretrain step", metavar="PATH")
    pretrain_one_loop: bool = option(False, LOSSES, help="pre-training: one step count over the three inject "
                                     "indices (default: restarted at each, with the mean path length, as the "
                                     "reference)", action="store_const", const=True)
    exemplars_per_epoch: bool = option(False, LOSSES, help="fine-tuning: each step's exemplars from the epoch's "
                                       "order, shared by the D and G phases (default: drawn with replacement for "
                                       "each phase, as the reference)", action="store_const", const=True)
    shared_id_inject: bool = option(False, LOSSES, help="fine-tuning: the identity loss's content image uses the "
                                    "fake's inject index (default: a new one, as the reference)",
                                    action="store_const", const=True)

    def __post_init__(self):
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.batch < 1 or self.grad_accum < 1 or self.batch % self.grad_accum:
            raise ValueError("batch must be >= 1 and divisible by grad_accum")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.min_images < 1:
            raise ValueError("min_images must be >= 1")

    def iterations(self, field_name: str, reference: int) -> int:
        """The iteration count of a step: its field, or ``reference`` (the stage's reference default, which the
        step passes: this module imports no stage), times ``scale``, at least 1."""
        value = getattr(self, field_name)
        return self.scaled(reference if value is None else value)

    def scaled(self, count: int) -> int:
        """``count`` times ``scale``, at least 1."""
        return max(1, round(int(count) * self.scale))

    def preset(self, name: str | None) -> tuple[float, float]:
        """(λ_ID, λ_reg) of the run: ``style``'s (else the run's name's when registered), overridden by the
        ``lambda_*`` fields."""
        from ..styles import get_style, is_registered

        style = self.style if self.style is not None else (name if is_registered(name) else None)
        lam_id, lam_reg = get_style(style).training
        return (float(self.lambda_id if self.lambda_id is not None else lam_id),
                float(self.lambda_reg if self.lambda_reg is not None else lam_reg))

    def loop(self) -> LoopConfig:
        """The training loop's settings of this run (steps and out dir are the step's)."""
        return LoopConfig(batch_size=self.batch, seed=self.seed, grad_accum=self.grad_accum, amp=self.amp,
                          checkpoint_every=self.checkpoint_every, sample_every=self.sample_every,
                          progress=self.progress, device=self.device, tensorboard=self.tensorboard)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipeConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


__all__ = ["MIN_STYLE_IMAGES", "LoopConfig", "RecipeConfig", "option"]
