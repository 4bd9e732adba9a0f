"""Stage III of DualStyleGAN's progressive fine-tuning: the style set (paper §3.3; the reference's
``finetune_dualstylegan.py``).

Every style image S comes with its destylized codes (:mod:`destylize`): the intrinsic z_i⁺ (the face under the
style) and the extrinsic z_e⁺ (the style itself). Steps alternate (``subspace_freq`` = 2):

* **random-content steps** (even steps): G(z, z_e⁺) for a random face z (style mixing 0.9) — adversarial loss +
  style loss (contextual loss 0.25 on relu3_1 + feature matching 0.25 on the pooled relu2_1, relu3_1, against the
  exemplar S of z_e⁺) + λ_ID · identity loss against G(z) without the extrinsic path;
* **paired steps** (odd steps): G(z_i⁺, z̃_e) must rebuild S — the same losses plus the perceptual VGG L1
  (weights 0, 0.5, 1, 0, 0) against S.

On both kinds the extrinsic code is jittered by N(0, 0.1) (added to the mapped W+ code, as the reference's
``get_paired_data`` does on its pre-mapped codes) and rows 8… of a paired z_i⁺ are re-drawn from N(0, 1) so that
the content's colors do not leak into the target's. L2 regularisation λ_reg · Σ‖p‖ over ``res`` keeps the extrinsic
path small (the "content" loss with λ_ID). Only ``res`` and ``style`` train, with an EMA of ``res`` only; lazy R1 and
path-length regularisers and ADA (on, as in the README's ``--augment`` runs) as in StyleGAN2.

(λ_ID, λ_reg) per style: :func:`dualstylegan.styles.get_style` (``Style.training``). The result is the style's ``generator.pt`` {'g_ema': state dict}.

As the reference, every phase draws its own exemplars, uniformly with replacement (the D phase, the G phase and the
path-length phase; R1 of a paired step reads the D phase's S), D's reals in random-content steps are the loop's
mirrored style images (the reference's lmdb loader), and the content image of the ID loss, G(z) without the
extrinsic path, draws its own inject index (so the ID loss compares two style mixings of z). ``exemplars=
'per_epoch'`` (``--exemplars-per-epoch``) takes a step's exemplars from the loop's batch instead (every exemplar
once per epoch, the same ones for the D and G phases); ``id_inject='shared'`` (``--shared-id-inject``) gives the
content image the fake's inject index.

(λ_ID, λ_reg) of caricature (4, 0.005) and anime (1, 0.02) come from the paper, not from the reference code: its
script's defaults are (1, 0.01) and its README's one training command, for cartoon, gives (1, 0.015).
"""
from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..images import load_square
from ..losses import STAGE3_VGG_WEIGHTS
from ..nets.dualstylegan import DualStyleGAN
from ..nets.stylegan2 import Discriminator
from .gan import mixing_noise
from .loop import LoopConfig, TrainLoop, as_networks
from ..weight_files import load_id_loss, load_vgg
from .pretrain import DualStyleGANStage

#: Perceptual VGG19 L1 weights (relu1_1 … relu5_1) of the paired steps.
FINETUNE_VGG_WEIGHTS = STAGE3_VGG_WEIGHTS
#: Rows of the intrinsic code from this one on are re-drawn N(0, 1) in paired steps (the reference's
#: ``random_ind=8``). Not the structure/color split (``config.color_rows`` starts at row 7): the reference keeps
#: row 7, the first color layer, from z_i⁺ and re-draws the finer ones only.
RECOLOR_FROM = 8
#: Stage-III steps of the README's runs (``--iter 1500``; the paper uses the 1400-step snapshot for cartoons).
FINETUNE_STEPS = 1500


# ------------------------------------------------------------------------------------------- data
class StyleSet:
    """The style set for stage III: images S (N, 3, size, size) in [−1, 1] with their intrinsic z_i⁺ and extrinsic
    z_e⁺ Z+ codes (N, n_latent, 512), in the same order.

    ``fetch(indices)`` → {'image': S (as stored, the paired targets), 'real': S mirrored at random when ``hflip``
    (D's reals in random-content steps, the reference's lmdb loader), 'instyle', 'exstyle'}, on ``device``.
    """

    def __init__(self, images: torch.Tensor, instyles: torch.Tensor, exstyles: torch.Tensor,
                 names: Sequence[str] | None = None, hflip: bool = True, device: str | torch.device = "cpu"):
        images, instyles, exstyles = (torch.as_tensor(t, dtype=torch.float32) for t in (images, instyles, exstyles))
        if instyles.ndim == 4 and instyles.shape[1] == 1:
            instyles = instyles[:, 0]
        if exstyles.ndim == 4 and exstyles.shape[1] == 1:
            exstyles = exstyles[:, 0]
        n = images.shape[0]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the style images must be (N, 3, H, W), got {tuple(images.shape)}")
        if n == 0:
            raise ValueError("the style set is empty")
        if instyles.shape[0] != n or exstyles.shape[0] != n or instyles.ndim != 3 or instyles.shape != exstyles.shape:
            raise ValueError(f"{n} style images need {n} intrinsic and extrinsic codes of one shape (N, L, 512); got "
                             f"{tuple(instyles.shape)} and {tuple(exstyles.shape)}")
        self.images, self.instyles, self.exstyles = images, instyles, exstyles
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.hflip, self.device = hflip, torch.device(device)

    @classmethod
    def from_files(cls, image_folder: str | os.PathLike, exstyle_codes, instyle_codes, size: int,
                   hflip: bool = True, device: str | torch.device = "cpu") -> StyleSet:
        """The reference's inputs: ``images/train/`` (the style images, any size: centre-cropped and resized to
        ``size``), ``exstyle_code.npy`` and ``instyle_code.npy`` (paths or :class:`CodeBank`). Exemplars are taken in
        the intrinsic bank's order; every one needs an extrinsic code and an image of the same file name."""
        from ..codes import CodeBank

        banks = [c if isinstance(c, CodeBank) else CodeBank.load(c) for c in (instyle_codes, exstyle_codes)]
        instyle_bank, exstyle_bank = banks
        folder = Path(image_folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"the style image folder {folder} does not exist; give the folder of the style "
                                    "images that were destylized.")
        images, ins, exs = [], [], []
        for name in instyle_bank.names:
            if name not in exstyle_bank:
                raise ValueError(f"{exstyle_bank.source} has no code for {name!r}, which {instyle_bank.source} has; "
                               "use the two code files written by the same destylization run.")
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"the style image {name} (named in {instyle_bank.source}) is not in {folder}.")
            images.append(load_square(path, size)[0])
            ins.append(instyle_bank[name])
            exs.append(exstyle_bank[name])
        return cls(torch.stack(images), torch.stack(ins), torch.stack(exs), names=instyle_bank.names, hflip=hflip,
                   device=device)

    def __len__(self) -> int:
        return self.images.shape[0]

    def fetch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        image = self.images[idx]
        real = image
        if self.hflip:
            flip = torch.rand(len(idx)) < 0.5
            real = torch.where(flip.view(-1, 1, 1, 1), image.flip(3), image)
        return {"image": image.to(self.device), "real": real.to(self.device),
                "instyle": self.instyles[idx].to(self.device), "exstyle": self.exstyles[idx].to(self.device)}

    __call__ = fetch


# ------------------------------------------------------------------------------------------- stage III
class FinetuneStage(DualStyleGANStage):
    """Stage III (finetune_dualstylegan.py) on :class:`StyleSet` batches.

    ``vgg``: a :class:`VGG19Features` (ImageNet weights) — the contextual, feature-matching and perceptual losses
    read its features. ``id_loss``: a callable (fake, content) → identity loss (e.g.
    ``losses.IdentityLoss(IdentityNet)``) or None when ``lambda_id`` is 0. ``style`` picks (λ_ID, λ_reg) from the
    style registry (:func:`dualstylegan.styles.get_style`); ``lambda_id`` / ``lambda_reg`` override it. ``style_set``: the
    exemplars the phases draw from (``exemplars='per_phase'``, the reference; ``'per_epoch'``: the loop's batch);
    ``id_inject``: 'fresh' (the reference) or 'shared' inject index of the ID loss's content image.
    ``sample_exstyles``: Z+ codes for the sample
    grid (e.g. the exemplars' z_e⁺; the first ``n_sample`` are used). ``kwargs``: the schedule of
    :class:`~.gan.GANStage` (lr, r1, d_reg_every, …, ADA on by default as in the README's ``--augment`` runs).
    """

    name = "finetune_dualstylegan"

    def __init__(self, g: DualStyleGAN, d: Discriminator, vgg: nn.Module | None,
                 id_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 g_ema: DualStyleGAN | None = None, *, style: str | None = None, lambda_id: float | None = None,
                 lambda_reg: float | None = None, cx_weight: float = 0.25, fm_weight: float = 0.25,
                 perc_weight: float = 1.0, vgg_weights: Sequence[float] = FINETUNE_VGG_WEIGHTS,
                 subspace_freq: int = 2, subspace_std: float = 0.1, recolor_from: int = RECOLOR_FROM,
                 augment: bool = True, sample_exstyles: torch.Tensor | None = None, n_sample: int = 9,
                 sample_seed: int = 0, style_set: StyleSet | None = None, exemplars: str = "per_phase",
                 id_inject: str = "fresh", **kwargs: Any):
        super().__init__(g, d, g_ema, augment=augment, **kwargs)
        if exemplars not in ("per_phase", "per_epoch"):
            raise ValueError(f"exemplars must be 'per_phase' or 'per_epoch', not {exemplars!r}")
        if id_inject not in ("fresh", "shared"):
            raise ValueError(f"id_inject must be 'fresh' or 'shared', not {id_inject!r}")
        if exemplars == "per_phase" and style_set is None:
            raise ValueError("exemplars='per_phase' (the reference's draws) needs style_set=, the StyleSet to draw "
                             "from; or give exemplars='per_epoch' to use the loop's batches.")
        self.style_set, self.exemplars, self.id_inject = style_set, exemplars, id_inject
        self._d_reals: dict[tuple[int, int], torch.Tensor] = {}
        from ..styles import get_style

        preset_id, preset_reg = get_style(style).training
        self.style_name = style
        self.lambda_id = float(preset_id if lambda_id is None else lambda_id)
        self.lambda_reg = float(preset_reg if lambda_reg is None else lambda_reg)
        if self.lambda_id > 0 and id_loss is None:
            raise ValueError("stage III with lambda_id > 0 needs an identity loss (losses.IdentityLoss on the IR-SE50 "
                             "model_ir_se50.pth); give id_loss= or set lambda_id=0.")
        if subspace_freq < 1:
            raise ValueError("subspace_freq must be >= 1")
        self.cx_weight, self.fm_weight, self.perc_weight = float(cx_weight), float(fm_weight), float(perc_weight)
        self.vgg_weights = tuple(float(w) for w in vgg_weights)
        if vgg is None and max(self.cx_weight, self.fm_weight, self.perc_weight) > 0:
            raise ValueError("stage III needs the VGG19 feature network (VGG19Features with ImageNet weights) for "
                             "its contextual, feature-matching and perceptual losses.")
        self.vgg, self.id_loss = vgg, id_loss
        for net in (vgg, id_loss):
            if isinstance(net, nn.Module):
                net.eval().requires_grad_(False)
        self.subspace_freq, self.subspace_std = int(subspace_freq), float(subspace_std)
        self.recolor_from = int(recolor_from)
        self.sample_seed = int(sample_seed)
        self.sample_exstyles = sample_exstyles[:n_sample] if sample_exstyles is not None else None

    # ------------------------------------------------------------------------------------ codes
    def paired(self, step: int) -> bool:
        """Whether ``step`` is a paired step (the reference's ``which = i % subspace_freq`` > 0)."""
        return step % self.subspace_freq != 0

    @torch.no_grad()
    def jittered_extrinsic(self, exstyle: torch.Tensor) -> torch.Tensor:
        """The W+ extrinsic code of z_e⁺ (mapped by the frozen intrinsic mapping) + N(0, subspace_std)."""
        w = self.g.map_extrinsic(exstyle)
        return w + torch.randn_like(w) * self.subspace_std if self.subspace_std > 0 else w

    def recolored(self, instyle: torch.Tensor) -> torch.Tensor:
        """z_i⁺ with rows ``recolor_from``… re-drawn from N(0, 1) (breaks content/target color correlation)."""
        out = instyle.clone()
        if self.recolor_from < out.shape[1]:
            out[:, self.recolor_from:] = torch.randn_like(out[:, self.recolor_from:])
        return out

    def draw(self, batch: Mapping[str, torch.Tensor], step: int) -> dict[str, Any]:
        """One draw of a phase's codes: the intrinsic codes (random z with style mixing, or the recolored z_i⁺),
        the jittered extrinsic code and the inject index (drawn once, shared by G(z, ·) and G(z) of the ID loss)."""
        n = batch["exstyle"].shape[0]
        exstyle = self.jittered_extrinsic(batch["exstyle"])
        if self.paired(step):
            return {"styles": [self.recolored(batch["instyle"])], "z_plus": True, "inject": None, "exstyle": exstyle}
        styles = mixing_noise(n, self.style_dim, self.mixing, self.device)
        inject = random.randint(1, self.n_latent - 1) if len(styles) > 1 else None
        return {"styles": styles, "z_plus": False, "inject": inject, "exstyle": exstyle}

    def generate(self, codes: Mapping[str, Any], use_res: bool = True) -> torch.Tensor:
        image, _ = self.g(codes["styles"], codes["exstyle"] if use_res else None, use_res=use_res,
                          z_plus_latent=codes["z_plus"], inject_index=codes["inject"])
        return image

    def exemplar_batch(self, batch: Mapping[str, torch.Tensor], n: int | None = None) -> Mapping[str, torch.Tensor]:
        """The exemplars of one phase: with ``exemplars='per_phase'`` ``n`` (default the batch's size) drawn anew,
        uniformly with replacement (torch's generator; the reference's ``get_paired_data``) as
        {'image', 'instyle', 'exstyle'}; with ``'per_epoch'`` the loop's batch (its first ``n``)."""
        size = batch["exstyle"].shape[0] if n is None else n
        if self.exemplars == "per_epoch":
            return {k: v[:size] for k, v in batch.items()}
        s = self.style_set
        idx = torch.randint(0, len(s), (size,))
        return {"image": s.images[idx].to(self.device), "instyle": s.instyles[idx].to(self.device),
                "exstyle": s.exstyles[idx].to(self.device)}

    def d_real(self, batch: Mapping[str, torch.Tensor], step: int) -> torch.Tensor:
        """Paired steps show D the paired S (of the D phase's exemplars), random-content steps the loop's
        (mirrored) style images."""
        if not self.paired(step):
            return batch["real"]
        if self.exemplars == "per_epoch":
            return batch["image"]
        return self._d_reals[(step, batch["real"].data_ptr())]

    def path_codes(self, batch: Mapping[str, torch.Tensor], n: int):
        styles = mixing_noise(n, self.style_dim, self.mixing, self.device)
        return styles, self.jittered_extrinsic(self.exemplar_batch(batch, n)["exstyle"])

    # ------------------------------------------------------------------------------------ losses
    def d_loss(self, batch: Mapping[str, torch.Tensor], step: int):
        ex = self.exemplar_batch(batch)
        if self.exemplars == "per_phase":  # R1 of a paired step reads the same S
            self._d_reals = {k: v for k, v in self._d_reals.items() if k[0] == step}
            self._d_reals[(step, batch["real"].data_ptr())] = ex["image"]
        with torch.no_grad():
            fake = self.generate(self.draw(ex, step))
        return self.d_adversarial(self.d_real(batch, step), fake)

    def vgg_depth(self, paired: bool) -> int:
        """How many VGG19 outputs (relu1_1 …) the style losses of a step read."""
        from ..losses import CONTEXTUAL_LAYER, FEATURE_MATCHING_LAYERS

        depth = 0
        if self.cx_weight > 0:
            depth = CONTEXTUAL_LAYER + 1
        if self.fm_weight > 0:
            depth = max(depth, max(FEATURE_MATCHING_LAYERS) + 1)
        if paired and self.perc_weight > 0:
            depth = max(depth, max((i + 1 for i, w in enumerate(self.vgg_weights) if w > 0), default=0))
        return depth

    def style_losses(self, fake: torch.Tensor, target: torch.Tensor, paired: bool) -> dict[str, torch.Tensor]:
        """Style loss against the exemplar S — contextual (cosine, band width 0.2, relu3_1) · cx_weight + feature
        matching (MSE of the pooled relu2_1, relu3_1) · fm_weight — and on paired steps the perceptual L1 (weights
        0, 0.5, 1, 0, 0) · perc_weight; the VGG19 features of the fake and of S are computed once, as the reference."""
        from ..losses import CONTEXTUAL_LAYER, contextual_loss, feature_matching, perceptual_l1, vgg_features

        depth = self.vgg_depth(paired)
        if depth == 0:
            return {}
        with torch.no_grad():
            real_feats = vgg_features(self.vgg, target, depth)
        fake_feats = vgg_features(self.vgg, fake, depth)
        terms: dict[str, torch.Tensor] = {}
        if self.cx_weight > 0:
            terms["cx"] = contextual_loss(fake_feats[CONTEXTUAL_LAYER], real_feats[CONTEXTUAL_LAYER]) * self.cx_weight
        if self.fm_weight > 0:
            terms["fm"] = feature_matching(fake_feats, real_feats) * self.fm_weight
        if paired and self.perc_weight > 0:
            terms["perceptual"] = perceptual_l1(fake_feats, real_feats, self.vgg_weights) * self.perc_weight
        return terms

    def g_loss(self, batch: Mapping[str, torch.Tensor], step: int):
        from ..losses import g_nonsaturating_loss, modres_l2

        paired = self.paired(step)
        ex = self.exemplar_batch(batch)
        codes = self.draw(ex, step)
        fake = self.generate(codes)
        target = self.pool(ex["image"])
        fake_small = self.pool(fake)
        terms = self.style_losses(fake_small, target, paired)
        if self.lambda_id > 0:
            if self.id_inject == "fresh" and codes["inject"] is not None:  # the reference: a new inject index
                codes = {**codes, "inject": random.randint(1, self.n_latent - 1)}
            with torch.no_grad():
                content = self.pool(self.generate(codes, use_res=False))
            terms["id"] = self.id_loss(fake_small, content) * self.lambda_id
        terms["g"] = g_nonsaturating_loss(self.d(self.aug(fake)))
        terms["l2"] = modres_l2(self.g) * self.lambda_reg
        loss = sum(terms.values())
        logs = {k: v.item() for k, v in terms.items()}
        logs["paired"] = float(paired)
        return loss, logs

    # ------------------------------------------------------------------------------------ samples
    @torch.no_grad()
    def samples(self) -> torch.Tensor | None:
        """g_ema(z, z_e⁺) on fixed random faces and the given exemplar codes, stored noise."""
        if self.sample_exstyles is None:
            return None
        ex = self.sample_exstyles.to(self.device)
        gen = torch.Generator().manual_seed(self.sample_seed)
        z = torch.randn(ex.shape[0], self.style_dim, generator=gen).to(self.device)
        image, _ = self.g_ema([z], self.g_ema.map_extrinsic(ex), use_res=True, randomize_noise=False)
        return image


# ------------------------------------------------------------------------------------------- one call
def load_pretrain_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A stage-II file ({'g', 'd', 'g_ema', 'g_optim'?, 'd_optim'?}: the reference's ``generator-pretrain.pt`` or
    :func:`pretrain`'s ``generator.pt``) → {'g', 'd', 'g_ema' modules, optimizer states}. ``g`` falls back to
    ``g_ema`` when the file has none."""
    from ..official import load_training_checkpoint

    return load_training_checkpoint(path, dualstylegan=True, what="a pre-trained DualStyleGAN (generator-pretrain.pt)",
                                    no_discriminator="give the pre-training file (generator-pretrain.pt), not a "
                                                     "style's generator.pt.")


def finetune(pretrained: str | os.PathLike | Sequence[nn.Module] | Mapping[str, Any],
             style_set: StyleSet | str | os.PathLike, out_dir: str | os.PathLike,
             vgg: str | os.PathLike | nn.Module, id_loss: str | os.PathLike | nn.Module | Callable | None = None,
             style: str | None = None, steps: int = FINETUNE_STEPS, *, loop: LoopConfig | None = None,
             exstyle_codes=None, instyle_codes=None, snapshots: Sequence[int] = (), resume: bool = True,
             hflip: bool = True, **stage_kwargs: Any) -> DualStyleGAN:
    """Stage III: fine-tune a pre-trained DualStyleGAN on a style set; write ``out_dir/generator.pt``.

    ``pretrained``: the stage-II file (:func:`load_pretrain_checkpoint`), a mapping {'g', 'd', 'g_ema'?} or a
    ``(g, d)`` / ``(g, d, g_ema)`` tuple of modules (trained in place). ``style_set``: a :class:`StyleSet`, or the
    folder of style images together with ``exstyle_codes`` and ``instyle_codes`` (the destylization's
    ``exstyle_code.npy`` / ``instyle_code.npy``). ``vgg``: torchvision's ``vgg19`` weights file or a
    :class:`VGG19Features`; ``id_loss``: ``model_ir_se50.pth``, an IdentityNet or a callable (needed unless
    ``lambda_id=0``). ``style`` picks (λ_ID, λ_reg) from the style registry. ``loop``: how the loop runs
    (:class:`LoopConfig`; its batch is per process, the reference: 4 per GPU on 8 GPUs). ``snapshots``: steps at which ``out_dir/generator-<step>.pt`` is also written
    (the reference writes every 100 from 1000 on; users pick the best looking one). The run resumes from
    ``out_dir/checkpoint.pt``. ``stage_kwargs`` go to :class:`FinetuneStage`.

    Returns the EMA model; ``out_dir/generator.pt`` is {'g_ema': state dict}, the official layout.
    """
    from .. import official

    base = (loop or LoopConfig()).resolved(steps, out_dir)
    device = base.device
    nets = as_networks(pretrained, load_pretrain_checkpoint, "the pre-trained DualStyleGAN")
    g, d = nets["g"].to(device).train(), nets["d"].to(device).train()
    g_ema = nets["g_ema"].to(device).eval() if nets["g_ema"] is not None else None
    if not isinstance(style_set, StyleSet):
        if exstyle_codes is None or instyle_codes is None:
            raise ValueError("a style image folder needs exstyle_codes and instyle_codes (the destylization's "
                             "exstyle_code.npy and instyle_code.npy)")
        style_set = StyleSet.from_files(style_set, exstyle_codes, instyle_codes, g.size, hflip=hflip, device=device)
    else:
        style_set.device = torch.device(device)
    if style_set.images.shape[-1] != g.size:
        raise ValueError(f"the style images are {style_set.images.shape[-1]}² but the generator makes {g.size}²")
    vgg = load_vgg(vgg, device)
    id_fn = load_id_loss(id_loss)
    if isinstance(id_fn, nn.Module):
        id_fn = id_fn.to(device).eval()
    stage_kwargs.setdefault("sample_exstyles", style_set.exstyles)
    stage = FinetuneStage(g, d, vgg, id_fn, g_ema, style=style, style_set=style_set, **stage_kwargs)
    for key in ("g", "d"):
        if f"{key}_optim" in nets:  # the reference resumes the stage-II optimizers
            stage.opt[key].load_state_dict(nets[f"{key}_optim"])
    out = Path(out_dir)
    wanted = {int(s) for s in snapshots if 0 < int(s) <= steps}
    ends = sorted(wanted | {steps})
    for i, end in enumerate(ends):
        trainer = TrainLoop(stage, style_set.fetch, len(style_set), replace(base, steps=end))
        trainer.run(resume=resume or i > 0)
        if trainer.dist.main and trainer.step == end:  # a run resumed past a snapshot leaves that snapshot alone
            if end in wanted:
                official.save_dualstylegan(out / f"generator-{end:06d}.pt", stage.g_ema)
            if end == steps:
                official.save_dualstylegan(out / "generator.pt", stage.g_ema)
    return stage.g_ema
