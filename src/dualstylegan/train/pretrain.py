"""Stages I and II of DualStyleGAN's progressive fine-tuning (paper §3.3; the reference's ``pretrain_dualstylegan.py``).

**Stage I — initialisation** (:func:`init_dualstylegan`): the FFHQ StyleGAN2 becomes the intrinsic path
``generator``; the extrinsic path starts as (almost) nothing: every ModRes adds ≈ 1 % of a residual and every color
transform T_c is the identity plus 1 % noise (both by construction, :mod:`dualstylegan.nets.dualstylegan`). So the
fresh model *is* StyleGAN style mixing: ``G([z₁], map(z₂), use_res=True)`` ≈ ``g([z₁, z₂], inject_index=7)`` — the
structure layers 0…6 read z₁, the color layers 7… read T_c(w₂) ≈ w₂.

**Stage II — pre-training on faces** (:class:`PretrainStage`): the extrinsic path learns to reproduce style mixing
at deeper inject indices, l = 7 → 6 → 5 over the run (the reference runs 300, 300 and 3000 iterations:
:data:`INJECT_SCHEDULE`). Per step two codes z₁, z₂ are drawn; the target is g(z⁺_l) (z₁ in rows < l, z₂ from l
on); the extrinsic code z̃₂ is E(g(z₂)) (the pSp Z+ encoder on the generated face) every ``subspace_freq``-th step
and z₂ itself otherwise, so the model learns both the Gaussian and the encoder's code space. Losses: 0.1 ×
non-saturating adversarial (D also scaled by 0.1) + VGG19 L1 (weights 0.5, 0.5, 0.5, 0, 0 on relu1_1…relu5_1 at
256²) against the target, with lazy R1 (γ 10 every 16 steps) and path-length (2 every 4) regularisers. Only the
extrinsic path (``style`` = T_s and ``res``) and D are trained; the EMA copy follows ``res`` only.

The real faces of D come from an image folder (FFHQ) or, when there is none, from the FFHQ generator itself
(:class:`SampledFaces`).

As the reference, which calls its training function once per inject index, the step count of the lazy regularisers
and of ``subspace_freq``, the mean path length and the ADA state (unused, ADA is off) restart at each index (steps
300 and 600); ``restart_per_inject=False`` (``--pretrain-one-loop``) runs the indices as one continuous loop
instead. Either way the run is one loop with one checkpoint, and resumes exactly. E(g(z₂)) is mapped to W+ with
the mapping of the decoder stored in ``encoder.pt``, as the reference.

Deliberate differences from the reference: D's real faces may be generated ones when no FFHQ folder is given; the
data order does not restart at each inject index (the reference's new data iterator reshuffles; either is a
uniform draw of the faces).
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..losses import LOSS_SIZE, STAGE2_VGG_WEIGHTS, pool_to
from ..nets.dualstylegan import DualStyleGAN, DualStyleGANConfig
from ..nets.stylegan2 import Discriminator, Generator
from ..weight_files import load_vgg
from .gan import GANStage, mixing_noise
from .loop import LoopConfig, TrainLoop, accumulate, as_networks

#: (inject index l, relative length) of stage II: pretrain_dualstylegan.py runs ``iter // 10`` iterations at l = 7,
#: ``iter // 10`` at l = 6 and ``iter`` at l = 5 (300 / 300 / 3000 for its ``--iter 3000``).
INJECT_SCHEDULE: tuple[tuple[int, float], ...] = ((7, 1.0), (6, 1.0), (5, 10.0))
#: Total stage-II steps of the reference run (300 + 300 + 3000).
PRETRAIN_STEPS = 3600
#: VGG19 L1 weights on relu1_1 … relu5_1 of stage II.
PRETRAIN_VGG_WEIGHTS = STAGE2_VGG_WEIGHTS


# ------------------------------------------------------------------------------------------- stage I
def init_dualstylegan(stylegan: Generator, res_index: int = 6, seed: int | None = None) -> DualStyleGAN:
    """Stage I: a DualStyleGAN whose intrinsic path is a copy of ``stylegan`` (the FFHQ generator, weights and
    noise buffers) and whose extrinsic path is freshly initialised — ModRes ≈ 0, T_c ≈ identity, T_s random.

    The fresh model reproduces StyleGAN style mixing at inject index ``res_index + 1`` (see the module docstring).
    The extrinsic path's initial weights are drawn from ``seed`` (:func:`~.seeding.seeded` ``(seed, "init")``: the same
    in every process), or from torch's global generator when ``seed`` is None.
    """
    from .seeding import seeded

    cfg = stylegan.config
    config = DualStyleGANConfig(size=cfg.size, channel_multiplier=cfg.channel_multiplier, channels=cfg.channels,
                                blur_kernel=cfg.blur_kernel, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp,
                                res_index=res_index)
    with (seeded(seed, "init") if seed is not None else contextlib.nullcontext()):
        model = DualStyleGAN(config)
    model.generator.load_state_dict(stylegan.state_dict())
    device = next(stylegan.parameters()).device
    return model.to(device)


def inject_schedule_steps(steps: int, schedule: Sequence[tuple[int, float]] = INJECT_SCHEDULE) -> list[tuple[int, int]]:
    """The schedule as [(inject index, first step)], relative lengths scaled to ``steps`` (rounded)."""
    if not schedule:
        raise ValueError("the inject schedule is empty; give at least one (inject_index, length) pair")
    total = float(sum(float(w) for _, w in schedule))
    if total <= 0 or any(float(w) < 0 for _, w in schedule):
        raise ValueError("the inject schedule's lengths must be >= 0 with a positive sum")
    out, acc = [], 0.0
    for index, weight in schedule:
        out.append((int(index), int(round(steps * acc / total))))
        acc += float(weight)
    return out


def inject_index_at(step: int, steps: int, schedule: Sequence[tuple[int, float]] = INJECT_SCHEDULE) -> int:
    """The inject index l of stage II at ``step`` of a ``steps``-step run (7 → 6 → 5 for the reference)."""
    current = schedule[0][0]
    for index, start in inject_schedule_steps(steps, schedule):
        if step >= start:
            current = index
    return int(current)


# ------------------------------------------------------------------------------------------- data
class SampledFaces:
    """A 'dataset' of faces generated by the FFHQ generator, for stage II without an image folder.

    Item i is g(z_i) with z_i drawn from a generator seeded by (seed, i) and the generator's stored noise, so a
    batch depends only on its indices. ``fetch(indices)`` returns (B, 3, size, size) in [−1, 1] (no gradients).
    """

    def __init__(self, generator: Generator, n: int = 70_000, seed: int = 0,
                 device: str | torch.device | None = None):
        self.generator, self.n, self.seed = generator, int(n), int(seed)
        self.device = torch.device(device) if device is not None else next(generator.parameters()).device

    def __len__(self) -> int:
        return self.n

    def code(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        return torch.randn(self.generator.style_dim, generator=g)

    @torch.no_grad()
    def fetch(self, indices: Sequence[int]) -> torch.Tensor:
        z = torch.stack([self.code(i) for i in indices]).to(self.device)
        image, _ = self.generator([z], randomize_noise=False)
        return image.clamp(-1, 1)

    __call__ = fetch


# ------------------------------------------------------------------------------------------- shared stage
class DualStyleGANStage(GANStage):
    """What stages II and III share: networks ``g`` (trained), ``d``, ``g_ema``; only the extrinsic path
    (``res`` then ``style``, the reference optimizer's order) of ``g`` is trained, the intrinsic ``generator`` stays
    frozen; the EMA covers ``res`` only (as the reference: ``g_ema.style`` keeps its initial T_s although
    ``g.style`` trains). ``kwargs``: the schedule of :class:`~.gan.GANStage` (augmentation off unless asked for,
    as the reference's stage II; stage III turns it on). ``loss_size``: images are pooled to it for the losses.

    Subclasses implement :meth:`d_loss` / :meth:`g_loss` and :meth:`path_codes`; :meth:`d_real` says which images
    are D's reals in a batch.
    """

    name = "dualstylegan"

    def __init__(self, g: DualStyleGAN, d: Discriminator, g_ema: DualStyleGAN | None = None, *,
                 augment: bool = False, loss_size: int = LOSS_SIZE, **kwargs: Any):
        if g.size != d.config.size:
            raise ValueError(f"the generator makes {g.size}² images but the discriminator reads {d.config.size}²; "
                             "use the discriminator of the same StyleGAN2 checkpoint.")
        super().__init__(g, d, g_ema, self.extrinsic_parameters(g), augment=augment, **kwargs)
        self.g.generator.requires_grad_(False)
        self.style_dim, self.n_latent = g.style_dim, g.n_latent
        self.loss_size = int(loss_size)

    @staticmethod
    def extrinsic_parameters(model: DualStyleGAN) -> list[nn.Parameter]:
        """The extrinsic path's parameters: ``res`` (ModRes, T_c) then ``style`` (T_s)."""
        return list(model.res.parameters()) + list(model.style.parameters())

    def trainable(self, name: str) -> list[nn.Parameter]:
        if name == "g":
            return self.extrinsic_parameters(self.g)
        return super().trainable(name)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return pool_to(x, self.loss_size)

    def path_codes(self, batch: Any, n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(intrinsic z codes, W-space extrinsic code) of the path-length phase, ``n`` samples."""
        raise NotImplementedError

    def path_loss(self, batch: Any, step: int):
        """Lazy path-length regularisation of G(z, extrinsic) with respect to the intrinsic W+ latent."""
        styles, exstyle = self.path_codes(batch, self.path_batch(_batch_len(batch)))
        with torch.no_grad():  # the intrinsic mapping is frozen: differentiate with respect to its output
            latent = self.g.generator.latent_plus(styles)
        latent = latent.detach().requires_grad_(True)
        fake, _ = self.g([latent], exstyle, input_is_latent=True, use_res=True)
        return self.path_length_penalty(fake, latent)

    def update_ema(self) -> None:
        accumulate(self.g_ema.res, self.g.res, self.ema_decay)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        return _batch_len(next(iter(batch.values())))
    return len(batch)


def _perceptual(vgg: nn.Module | Callable | None, weights: Sequence[float], what: str):
    """A perceptual-loss callable (x, y) → scalar: a given callable, or PerceptualLoss on a VGG19Features."""
    from ..losses import PerceptualLoss
    from ..nets.perceptual import VGG19Features

    if isinstance(vgg, VGG19Features):
        return PerceptualLoss(vgg, list(weights))
    if callable(vgg):
        return vgg
    raise ValueError(f"{what} needs the VGG19 feature network (VGG19Features with ImageNet weights) or a "
                     "perceptual-loss callable (x, y) -> loss.")


# ------------------------------------------------------------------------------------------- stage II
class PretrainStage(DualStyleGANStage):
    """Stage II (pretrain_dualstylegan.py): learn to reproduce style mixing g(z⁺_l) on faces.

    ``encoder``: the pSp Z+ encoder (:class:`dualstylegan.nets.encoder.PSPEncoder`) or any callable image → Z+
    code (B, n_latent, 512); ``mapping`` turns its code, row by row, into the W+ extrinsic code: the mapping network
    of the decoder stored in ``encoder.pt``, as the reference (its pSp forward maps E's code with ``decoder.style``;
    :func:`pretrain` passes it when it loads the file). None: the frozen intrinsic generator's mapping — the same
    weights when encoder.pt's decoder is the FFHQ model the run starts from (pSp trains its encoder against a
    frozen FFHQ decoder), which a user's encoder.pt need not be.
    ``vgg``: a :class:`VGG19Features` (ImageNet weights) or a callable (fake, target) → perceptual loss.
    ``steps`` is the length of the run that ``inject_schedule`` [(l, relative length)] is spread over.
    ``restart_per_inject`` (default, the reference): each inject index starts its step count at 0 (lazy R1 and
    path-length schedules, ``subspace_freq``) with the mean path length at 0 and a fresh ADA controller, as the
    reference's three calls of its training function; False runs the indices as one continuous loop.
    The batch is D's real faces (B, 3, size, size). Each step's logs include ``inject_index`` and ``encoded``
    (1 when z̃₂ = E(g(z₂))).
    """

    name = "pretrain_dualstylegan"

    def __init__(self, g: DualStyleGAN, d: Discriminator, encoder: nn.Module | Callable[[torch.Tensor], torch.Tensor],
                 vgg: nn.Module | Callable | None = None, g_ema: DualStyleGAN | None = None, *,
                 steps: int = PRETRAIN_STEPS, inject_schedule: Sequence[tuple[int, float]] = INJECT_SCHEDULE,
                 subspace_freq: int = 4, adv_weight: float = 0.1,
                 vgg_weights: Sequence[float] = PRETRAIN_VGG_WEIGHTS, n_sample: int = 9, sample_seed: int = 0,
                 mapping: nn.Module | None = None, restart_per_inject: bool = True, **kwargs: Any):
        super().__init__(g, d, g_ema, **kwargs)
        self.restart_per_inject = bool(restart_per_inject)
        if mapping is not None:
            mapping = mapping.to(self.device).eval().requires_grad_(False)
        self.mapping = mapping
        n_styles = getattr(encoder, "n_styles", None)
        if n_styles is not None and n_styles != g.n_latent:
            raise ValueError(f"the encoder outputs {n_styles} style rows but the generator has {g.n_latent}; use "
                             "the encoder trained for this generator's resolution.")
        for index, _ in inject_schedule:
            if not 1 <= int(index) < g.n_latent:
                raise ValueError(f"inject index {index} is outside 1…{g.n_latent - 1}")
        if subspace_freq < 1:
            raise ValueError("subspace_freq must be >= 1")
        self.encoder = encoder
        if isinstance(encoder, nn.Module):
            encoder.eval().requires_grad_(False)
        self.perceptual = _perceptual(vgg, vgg_weights, "stage II")
        self.steps, self.inject_schedule = int(steps), tuple((int(i), float(w)) for i, w in inject_schedule)
        self.subspace_freq, self.adv_weight = int(subspace_freq), float(adv_weight)
        self.n_sample, self.sample_seed = int(n_sample), int(sample_seed)
        self._cache: dict[tuple[int, int], dict[str, Any]] = {}
        self._sample_codes: tuple[torch.Tensor, torch.Tensor] | None = None

    def inject_index(self, step: int) -> int:
        return inject_index_at(step, self.steps, self.inject_schedule)

    def segment_start(self, step: int) -> int:
        """The first step of the inject index that ``step`` trains (0 when the run is one loop)."""
        if not self.restart_per_inject:
            return 0
        starts = [start for _, start in inject_schedule_steps(self.steps, self.inject_schedule) if start <= step]
        return max(starts, default=0)

    def schedule_step(self, step: int) -> int:
        """The reference's iteration counter ``i``: from 0 at each inject index (its training function is called once
        per index), so the lazy R1 / path-length schedules and ``subspace_freq`` restart there."""
        return step - self.segment_start(step)

    def before_step(self, step: int) -> None:
        """At the first step of each later inject index: the mean path length back to 0 and a fresh ADA controller,
        as the reference's new call of its training function."""
        if self.restart_per_inject and step > 0 and self.segment_start(step) == step:
            self.mean_path_length = 0.0
            self.reset_ada()

    def encoded(self, step: int) -> bool:
        """Whether z̃₂ = E(g(z₂)) at ``step`` (every ``subspace_freq``-th step of the inject index's count, the
        reference's ``which == 0``)."""
        return self.schedule_step(step) % self.subspace_freq == 0

    @torch.no_grad()
    def encode_extrinsic(self, image: torch.Tensor) -> torch.Tensor:
        """E(image) mapped to W+ by ``mapping`` (encoder.pt's decoder's; else the intrinsic one): the extrinsic code
        of a face."""
        from ..nets.stylegan2 import map_rows

        code = self.encoder(image)
        return map_rows(self.mapping, code) if self.mapping is not None else self.g.map_extrinsic(code)

    def _codes(self, batch: torch.Tensor, step: int) -> dict[str, Any]:
        """z₁, z₂ and the extrinsic code of this (micro-)batch, shared by its D and G phases (the loop hands every
        phase of a step the same micro-batch objects)."""
        key = (step, batch.data_ptr())
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == step}
            n = batch.shape[0]
            z1, z2 = torch.randn(2, n, self.style_dim, device=self.device).unbind(0)
            with torch.no_grad():
                if self.encoded(step):
                    face, _ = self.g.generator([z2])
                    exstyle = self.encode_extrinsic(face)
                else:
                    exstyle = self.g.generator.get_latent(z2)
            self._cache[key] = {"z1": z1, "z2": z2, "exstyle": exstyle.detach()}
        return self._cache[key]

    def d_loss(self, batch: torch.Tensor, step: int):
        real, c = self.d_real(batch, step), self._codes(batch, step)
        with torch.no_grad():
            fake, _ = self.g([c["z1"]], c["exstyle"], use_res=True)
        return self.d_adversarial(real, fake, self.adv_weight)

    def g_loss(self, batch: torch.Tensor, step: int):
        from ..losses import g_nonsaturating_loss

        c = self._codes(batch, step)
        index = self.inject_index(step)
        with torch.no_grad():  # g(z⁺_l): z₁ in rows < l, z₂ from l on
            target, _ = self.g.generator([c["z1"], c["z2"]], inject_index=index)
        fake, _ = self.g([c["z1"]], c["exstyle"], use_res=True)
        perc = self.perceptual(self.pool(fake), self.pool(target).detach())
        adv = g_nonsaturating_loss(self.d(self.aug(fake))) * self.adv_weight
        return adv + perc, {"g": adv.item(), "perceptual": perc.item(), "inject_index": float(index),
                            "encoded": float(self.encoded(step))}

    def path_codes(self, batch: Any, n: int):
        styles = mixing_noise(n, self.style_dim, self.mixing, self.device)
        exstyle = self.g.generator.get_latent(torch.randn(n, self.style_dim, device=self.device))
        return styles, exstyle.detach()

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """g_ema(z₁, E(g(z₂))) on fixed codes with the stored noise (touches no global random generator)."""
        if self._sample_codes is None:
            gen = torch.Generator().manual_seed(self.sample_seed)
            z = torch.randn(2, self.n_sample, self.style_dim, generator=gen).to(self.device)
            face, _ = self.g_ema.generator([z[1]], randomize_noise=False)
            self._sample_codes = (z[0], self.encode_extrinsic(face))
        z1, exstyle = self._sample_codes
        image, _ = self.g_ema([z1], exstyle, use_res=True, randomize_noise=False)
        return image


# ------------------------------------------------------------------------------------------- one call


def save_pretrained_stage(path: str | os.PathLike, stage: DualStyleGANStage) -> None:
    """The reference's ``generator-pretrain.pt`` layout: {'g', 'd', 'g_ema', 'g_optim', 'd_optim'} — readable by
    :func:`dualstylegan.official.load_dualstylegan` (which takes ``g_ema``) and by :func:`finetune`."""
    from ..checkpoints import save_torch_file

    save_torch_file(path, {"g": stage.g.state_dict(), "d": stage.d.state_dict(), "g_ema": stage.g_ema.state_dict(),
                           "g_optim": stage.opt["g"].state_dict(), "d_optim": stage.opt["d"].state_dict()})


def pretrain(ffhq: str | os.PathLike | Sequence[nn.Module] | Mapping[str, Any],
             encoder: str | os.PathLike | nn.Module | Callable, out_dir: str | os.PathLike,
             vgg: str | os.PathLike | nn.Module | Callable, steps: int = PRETRAIN_STEPS, *,
             loop: LoopConfig | None = None, faces: str | os.PathLike | None = None, n_sampled_faces: int = 70_000,
             resume: bool = True, hflip: bool = True, **stage_kwargs: Any) -> DualStyleGAN:
    """Stages I + II: initialise DualStyleGAN from the FFHQ StyleGAN2 and pre-train its extrinsic path on faces.

    ``ffhq``: the rosinality ``stylegan2-ffhq-config-f.pt`` (its ``g_ema`` becomes the intrinsic path, its ``d`` the
    discriminator), a ``(generator, discriminator)`` pair, or a mapping {'g_ema' (or 'g'), 'd'}. ``encoder``:
    ``encoder.pt`` (the pSp Z+ encoder; its decoder's mapping maps the encoder's codes, as the reference) or a
    module (then ``mapping=`` may give that network). ``vgg``: torchvision's ``vgg19`` weights file, a :class:`VGG19Features` or a
    perceptual-loss callable. ``faces``: a folder of aligned real faces (FFHQ) for D; without one, faces sampled
    from the FFHQ generator are used. ``loop``: how the loop runs (:class:`LoopConfig`; its batch is per process, the
    reference: 4 per GPU). The run resumes from
    ``out_dir/checkpoint.pt``; ``stage_kwargs`` go to :class:`PretrainStage` (inject_schedule, subspace_freq, lr…).

    Writes ``out_dir/generator.pt`` ({'g', 'd', 'g_ema', 'g_optim', 'd_optim'}, the reference's
    ``generator-pretrain.pt``) and returns the EMA model ``g_ema``.
    """
    from .. import official
    from .finetune_stylegan import load_ffhq

    config = (loop or LoopConfig()).resolved(steps, out_dir)
    device, seed = config.device, config.seed
    nets = as_networks(ffhq, load_ffhq, "the FFHQ model")
    stylegan = nets["g_ema"] if nets["g_ema"] is not None else nets["g"]
    d = nets["d"]
    if isinstance(encoder, (str, os.PathLike)):
        encoder, decoder = official.load_encoder(encoder, z_plus=True, with_decoder=True)
        if decoder is not None:  # the reference maps E's codes with the mapping of encoder.pt's decoder
            stage_kwargs.setdefault("mapping", decoder.style)
    if isinstance(encoder, nn.Module):
        encoder = encoder.to(device).eval()
    vgg = load_vgg(vgg, device)
    stylegan = stylegan.to(device).eval()
    g = init_dualstylegan(stylegan, seed=seed).train()
    g_ema = copy.deepcopy(g).eval()
    d = d.to(device).train()
    stage_kwargs.setdefault("steps", steps)
    stage = PretrainStage(g, d, encoder, vgg, g_ema, **stage_kwargs)
    if faces is not None:
        from .data import ImageFolderDataset

        data = ImageFolderDataset(faces, g.size, hflip=hflip, device=device)
        fetch, n_items = data.fetch, len(data)
    else:
        sampled = SampledFaces(stylegan, n=n_sampled_faces, seed=seed, device=device)
        fetch, n_items = sampled.fetch, len(sampled)
    trainer = TrainLoop(stage, fetch, n_items, config)
    trainer.run(resume=resume)
    if trainer.dist.main:
        save_pretrained_stage(config.out_dir / "generator.pt", stage)
    return stage.g_ema
