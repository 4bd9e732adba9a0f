"""Facial destylization (paper §3.1; the reference's ``destylize.py``).

Every style image S gets two Z+ codes that the later stages train on:

* **Stage I — embedding.** z_e⁺ = E(S) with the Z+ pSp encoder: the *extrinsic* style code of S
  (``exstyle_code.npy``).
* **Stage II — latent optimisation.** ẑ⁺ starts at z_e⁺ and, with the noise maps, is optimised by Adam (lr 0.1 with
  the cosine ramp) so that the *fine-tuned* StyleGAN g′ rebuilds S:
  L = LPIPS(g′(ẑ⁺)↓256, S) + 0.1·ID + mean over the code of the std over its rows + 1e5·noise regularisation,
  the noise maps re-normalised after every step (Eq. 1).
* **Stage III — image embedding.** Rows 8… of ẑ⁺ are reset to z_e⁺ (colors kept), the *original* FFHQ StyleGAN g
  renders g(ẑ⁺) at truncation 0.7 toward 0 — the destylized face — and z_i⁺ = E(g(ẑ⁺)), rows 8… again from z_e⁺,
  is the *intrinsic* style code of S (``instyle_code.npy``).

:func:`destylize` runs the three stages on a folder (or a dict) of style images, one image at a time, keeps each
image's result in ``out_dir/codes/`` so that an interrupted run resumes where it stopped, writes a visual log row
per image to ``out_dir/log/`` and finally both code banks in the official layout.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..codes import CodeBank
from ..losses import LOSS_SIZE, pool_to
from ..refine import NOISE_WEIGHT, LossFn, as_image_batch, fresh_noise, frozen, module_device

log = logging.getLogger(__name__)

#: The reference's recipe (``destylize.py``).
DESTYLIZE_ITERATIONS = 300
DESTYLIZE_LR = 0.1
ID_WEIGHT = 0.1
STD_WEIGHT = 1.0
DESTYLIZE_TRUNCATION = 0.7
#: Rows of ẑ⁺ and z_i⁺ from this one on are taken from z_e⁺ (the reference's ``[:, 8:18]``; "color kept"). These
#: are codes of the StyleGANs g′ and g, not of DualStyleGAN, so this is not ``config.color_rows`` (from row 7): the
#: reference keeps StyleGAN's fine rows (64² and up) only.
COLOR_KEEP_FROM = 8
INSTYLE_NAME = "instyle_code.npy"
EXSTYLE_NAME = "exstyle_code.npy"

ImageInput = Mapping[str, torch.Tensor] | str | os.PathLike


# ------------------------------------------------------------------------------------------- style images
class StyleImages(Mapping):
    """Style images by name, from a dict of tensors or a folder of image files (loaded lazily).

    A folder's images are its image files (:func:`dualstylegan.images.iter_image_files`) keyed by file name, each
    the largest centred square resized to ``size``² (the reference's Resize(256) + CenterCrop(256)). Tensors of a
    dict are used as they are (square, [−1, 1]).
    """

    def __init__(self, images: ImageInput, size: int = LOSS_SIZE):
        self.size = size
        self._tensors: dict[str, torch.Tensor] = {}
        self._files: dict[str, Path] = {}
        if isinstance(images, (str, os.PathLike)):
            from ..images import iter_image_files

            folder = Path(images)
            if not folder.is_dir():
                raise NotADirectoryError(f"the style image folder {folder} does not exist; give the folder of the "
                                         "style's (aligned) images.")
            self._files = {p.name: p for p in iter_image_files(folder)}
            if not self._files:
                raise ValueError(f"the folder {folder} holds no image files (.png, .jpg, …).")
        elif isinstance(images, Mapping):
            self._tensors = {str(k): as_image_batch(v, str(k)) for k, v in images.items()}
            if not self._tensors:
                raise ValueError("no style images were given.")
        else:
            raise TypeError(f"images must be a folder path or a dict name → tensor, not {type(images).__name__}")

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self._tensors:
            return self._tensors[name]
        if name in self._files:
            from ..images import load_square

            return load_square(self._files[name], self.size)
        raise KeyError(f"there is no style image named {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in (self._tensors or self._files)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tensors or self._files))

    def __len__(self) -> int:
        return len(self._tensors or self._files)


def record_path(folder: Path, name: str) -> Path:
    """``folder/<name>.pt`` for a plain file name; other names get a stable hash so that they stay one file."""
    plain = name == Path(name).name and not name.startswith(".") and all(c not in name for c in "\\:*?\"<>|")
    stem = name if plain and name else "img_" + hashlib.sha1(name.encode()).hexdigest()[:16]
    return folder / f"{stem}.pt"


def _scalar(x: torch.Tensor | float) -> torch.Tensor:
    return x.sum() if isinstance(x, torch.Tensor) and x.ndim > 0 else x


# ------------------------------------------------------------------------------------------- one image
@dataclass
class Destylized:
    """One style image's destylization: its codes (1, L, 512) on the CPU, the loss history and the visual log."""

    name: str
    instyle: torch.Tensor  # z_i⁺
    exstyle: torch.Tensor  # z_e⁺
    optimized: torch.Tensor  # ẑ⁺ after stage II, rows COLOR_KEEP_FROM… reset to z_e⁺
    history: dict[str, list[float]] = field(default_factory=dict)
    visuals: list[torch.Tensor] = field(default_factory=list)

    def record(self, iterations: int) -> dict:
        return {"name": self.name, "instyle": self.instyle, "exstyle": self.exstyle, "optimized": self.optimized,
                "history": self.history, "iterations": int(iterations)}


def destylize_image(image: torch.Tensor, encoder: nn.Module, g_prime: nn.Module, g: nn.Module, lpips: LossFn,
                    id_loss: LossFn | None, iterations: int = DESTYLIZE_ITERATIONS, *, lr: float = DESTYLIZE_LR,
                    id_weight: float = ID_WEIGHT, std_weight: float = STD_WEIGHT, noise_weight: float = NOISE_WEIGHT,
                    truncation: float = DESTYLIZE_TRUNCATION, color_keep_from: int = COLOR_KEEP_FROM,
                    seed: int = 0, name: str = "image") -> Destylized:
    """Destylize one style image S (1, 3, H, H) in [−1, 1] (stages I–III above; paper §3.1).

    ``encoder``: the Z+ :class:`~dualstylegan.nets.encoder.PSPEncoder`; ``g_prime``: the StyleGAN2 fine-tuned on the
    style; ``g``: the original FFHQ StyleGAN2 (same architecture). ``lpips(x, y)`` and ``id_loss(x, y)`` are any
    callables (x generated, y the target); ``id_loss`` None drops the ID term. Noise maps start from ``seed``.
    """
    from ..losses import get_lr, latent_std_regularizer, noise_normalize_, noise_regularize

    config = getattr(encoder, "config", None)
    if config is not None and not getattr(config, "z_plus", True):
        raise ValueError("destylization needs the Z+ encoder (encoder.pt), not the W+ one (encoder_wplus.pt).")
    device = module_device(g_prime, encoder)
    target = as_image_batch(image, name).to(device)
    loss_size = min(LOSS_SIZE, g_prime.size)
    target_small = pool_to(target, loss_size)
    history: dict[str, list[float]] = {k: [] for k in ("perceptual", "id", "std", "noise", "loss", "lr")}

    with frozen(encoder, g_prime, g, lpips, id_loss):
        with torch.no_grad():
            z_e = encoder(target).detach()  # stage I: the extrinsic style code z_e⁺
        if z_e.ndim != 3:
            raise ValueError("destylization needs an encoder that returns one code per layer (B, L, 512).")
        noises = fresh_noise(g_prime, seed)
        noises = [n.to(device).detach().requires_grad_(True) for n in noises]
        z = z_e.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z, *noises], lr=lr)
        first = None
        for i in range(iterations):  # stage II: optimise ẑ⁺ and the noise so that g′ rebuilds S
            step_lr = get_lr(i / iterations, lr)
            optimizer.param_groups[0]["lr"] = step_lr
            fake, _ = g_prime([z], z_plus_latent=True, noise=noises)
            fake = pool_to(fake, loss_size)
            if first is None:
                first = fake.detach()
            l_perc = _scalar(lpips(fake, target_small))
            l_id = _scalar(id_loss(fake, target_small)) if id_loss is not None else fake.new_zeros(())
            l_std = latent_std_regularizer(z)
            l_noise = noise_regularize(noises)
            loss = l_perc + id_weight * l_id + std_weight * l_std + noise_weight * l_noise
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            noise_normalize_(noises)
            for key, value in (("perceptual", l_perc), ("id", l_id), ("std", l_std), ("noise", l_noise),
                               ("loss", loss)):
                history[key].append(float(torch.as_tensor(value).detach()))
            history["lr"].append(float(step_lr))

        with torch.no_grad():  # stage III: the destylized face g(ẑ⁺) and its intrinsic code z_i⁺
            noise = [n.detach() for n in noises]
            z_hat = z.detach().clone()
            z_hat[:, color_keep_from:] = z_e[:, color_keep_from:]
            optimized_view = pool_to(g_prime([z_hat], z_plus_latent=True, noise=noise)[0], loss_size)
            face, _ = g([z_hat], z_plus_latent=True, truncation=truncation, truncation_latent=0, noise=noise)
            face = pool_to(face, LOSS_SIZE)
            z_i = encoder(face).detach()
            z_i[:, color_keep_from:] = z_e[:, color_keep_from:]
            rebuilt, _ = g([z_i], z_plus_latent=True, truncation=truncation, truncation_latent=0, noise=noise)
            if first is None:  # no optimisation steps: show g′(z_e⁺) all the same
                first = pool_to(g_prime([z_e], z_plus_latent=True, noise=noise)[0], loss_size)
            visuals = [target_small, first, optimized_view, pool_to(face, loss_size), pool_to(rebuilt, loss_size)]

    return Destylized(name=name, instyle=z_i.cpu(), exstyle=z_e.cpu(), optimized=z_hat.cpu(), history=history,
                      visuals=[v.detach().cpu().clamp(-1, 1) for v in visuals])


# ------------------------------------------------------------------------------------------- a style set
def _load_record(path: Path, name: str) -> dict | None:
    """A finished image's record, or None when it is missing, damaged or belongs to another name."""
    if not path.is_file():
        return None
    from ..checkpoints import CheckpointError, load_torch_file

    try:
        rec = load_torch_file(path)
    except CheckpointError as e:
        log.warning("redoing %s: its saved result cannot be read (%s)", name, e)
        return None
    if not isinstance(rec, dict) or rec.get("name") != name or not all(
            isinstance(rec.get(k), torch.Tensor) for k in ("instyle", "exstyle")):
        return None
    return rec


def load_destylized(out_dir: str | os.PathLike, name: str) -> dict | None:
    """The saved result of one image of a :func:`destylize` run: {'name', 'instyle', 'exstyle', 'optimized',
    'history', 'iterations'}, or None when that image is not done."""
    return _load_record(record_path(Path(out_dir) / "codes", name), name)


def destylize(images: ImageInput, encoder: nn.Module, g_prime: nn.Module, g: nn.Module, lpips: LossFn,
              id_loss: LossFn | None, out_dir: str | os.PathLike, iterations: int = DESTYLIZE_ITERATIONS, *,
              lr: float = DESTYLIZE_LR, id_weight: float = ID_WEIGHT, noise_weight: float = NOISE_WEIGHT,
              truncation: float = DESTYLIZE_TRUNCATION, seed: int = 0, overwrite: bool = False,
              log_images: bool = True, progress: bool = True) -> tuple[CodeBank, CodeBank]:
    """Destylize every style image (paper §3.1) → (instyle z_i⁺, exstyle z_e⁺) code banks, keyed by image name in
    sorted order (style id i = the i-th name).

    ``images``: a folder of style images (centre square at 256²) or a dict name → (3, H, H) tensor in [−1, 1].
    Writes ``out_dir/instyle_code.npy`` and ``out_dir/exstyle_code.npy`` (the official layout), one result per
    image in ``out_dir/codes/`` (an image whose result is there is skipped unless ``overwrite``) and a log row per
    image in ``out_dir/log/``: S | g′(z_e⁺) | g′(ẑ⁺) | g(ẑ⁺), the destylized face | g(z_i⁺).
    Each image is destylized with the global generators seeded by ``seed`` and its name, its noise maps drawn from
    the same (:func:`~.seeding.seeded`): its codes do not depend on which images were done before, in this run or
    in an interrupted one.
    """
    from .seeding import seeded

    from tqdm import tqdm

    source = StyleImages(images)
    out = Path(out_dir)
    codes_dir, log_dir = out / "codes", out / "log"
    codes_dir.mkdir(parents=True, exist_ok=True)
    names = list(source)
    instyles: dict[str, torch.Tensor] = {}
    exstyles: dict[str, torch.Tensor] = {}
    done = 0
    bar = tqdm(names, desc="destylizing", unit="image", disable=not progress)
    for name in bar:
        path = record_path(codes_dir, name)
        rec = None if overwrite else _load_record(path, name)
        if rec is None:
            with seeded(seed, "destylize", name) as image_seed:
                result = destylize_image(source[name], encoder, g_prime, g, lpips, id_loss, iterations, lr=lr,
                                         id_weight=id_weight, noise_weight=noise_weight, truncation=truncation,
                                         seed=image_seed, name=name)
            if log_images:
                from ..images import make_grid, save_image

                save_image(make_grid(result.visuals, nrow=len(result.visuals)), log_dir / f"{path.stem}.png",
                           overwrite=True)
            rec = result.record(iterations)
            from ..checkpoints import save_torch_file

            save_torch_file(path, rec)
            done += 1
        instyles[name], exstyles[name] = rec["instyle"], rec["exstyle"]
    log.info("destylized %d image(s), %d taken from an earlier run", done, len(names) - done)
    instyle, exstyle = CodeBank(instyles, source=INSTYLE_NAME), CodeBank(exstyles, source=EXSTYLE_NAME)
    instyle.save(out / INSTYLE_NAME)
    exstyle.save(out / EXSTYLE_NAME)
    return instyle, exstyle


__all__ = ["COLOR_KEEP_FROM", "DESTYLIZE_ITERATIONS", "DESTYLIZE_LR", "DESTYLIZE_TRUNCATION", "EXSTYLE_NAME",
           "ID_WEIGHT", "INSTYLE_NAME", "NOISE_WEIGHT", "Destylized", "StyleImages", "destylize", "destylize_image",
           "load_destylized"]
