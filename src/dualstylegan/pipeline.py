"""StyleTransferPipeline: content photo + exemplar → artistic portrait (paper §3.2, Fig. 1–2), inference only.

image → align → encode (intrinsic code) ─┐
exemplar (style id / name / any image) → extrinsic code ─→ DualStyleGAN(w) → portrait

The networks of a style pack and three calls: :meth:`~StyleTransferPipeline.transfer` (the reference's
``style_transfer.py``), :meth:`~StyleTransferPipeline.generate` (``generate.py``, §3.4) and
:meth:`~StyleTransferPipeline.blend` (Fig. 13); the generator is ``model/dualstylegan.py``'s. Preparing a photo's
face is :func:`dualstylegan.faces.prepare_face`; stylising files is :func:`dualstylegan.batch.stylize_files`; the
per-style weight presets are :func:`dualstylegan.styles.get_style`'s and the default truncations
:mod:`dualstylegan.defaults`'.
"""
from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .codes import CodeBank
from .defaults import (
    BLEND_STEPS,
    GENERATE_BATCH,
    GENERATE_TRUNCATION,
    TRANSFER_TRUNCATION,
)
from .inputs import ImageInput, OptionError, check_seed, local_feature_net
from .inputs import as_photo as _as_photo
from .nets.dualstylegan import DualStyleGAN
from .nets.encoder import ENCODER_INPUT_SIZE
from .nets.stylegan2 import Generator
from .style_weights import N_WEIGHTS, WeightError, check_truncation, check_weights, interp_weights
from .styles import get_style

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


def _missing(what: str) -> Exception:
    """The pack lacks a file this call needs: the user's to fix (:class:`~dualstylegan.hub.StylePackError`)."""
    from .hub import StylePackError

    return StylePackError(what)


@dataclass
class TransferResult:
    image: torch.Tensor                 # (1, 3, size, size) in [-1, 1]
    content: torch.Tensor               # the (aligned) content at 256² in [-1, 1]
    intrinsic: torch.Tensor             # (1, 18, 512) Z+ (or W+ with wplus) code of the content
    extrinsic: torch.Tensor             # (1, 18, 512) Z+ code of the exemplar, as used (after Z+ color preservation)
    weights: list[float] = field(default_factory=list)
    reconstruction: torch.Tensor | None = None  # the encoder's reconstruction of the content, 256²
    refine_distance: str | None = None  # the distance refine=N minimised ("LPIPS + contextual", …); None: no refine

    @property
    def pil(self) -> Image.Image:
        """The portrait as a PIL image."""
        from .images import to_image

        return to_image(self.image)


@dataclass
class PortraitOutput:
    """What calling the pipeline returns (as diffusers pipelines return ``.images``): one PIL portrait per face,
    and each face's :class:`TransferResult` (codes, weights, the tensors)."""

    images: list
    results: list[TransferResult]
    notices: list[str] = field(default_factory=list)  # e.g. an exemplar without a face, centre-cropped


class StyleTransferPipeline:
    """Everything a style pack needs at inference: DualStyleGAN, the pSp encoder(s), the code bank, the sampler."""

    def __init__(self, generator: DualStyleGAN, encoder, codes: CodeBank | None = None, *,
                 decoder: Generator | None = None, encoder_wplus=None, sampler=None, style: str | None = None,
                 cuda_graphs: bool = True):
        from .cuda_graphs import GraphedCall

        self.generator = generator.eval().requires_grad_(False)
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.encoder_wplus = encoder_wplus.eval().requires_grad_(False) if encoder_wplus is not None else None
        self.decoder = decoder
        self.sampler = sampler.eval().requires_grad_(False) if sampler is not None else None
        self.codes = codes
        self.style = style
        # On a GPU the networks are replayed from CUDA graphs (launch-bound otherwise); eager on the CPU.
        self._synthesize_graphed = GraphedCall(self._synthesize_eager)
        self._encode_graphed = GraphedCall(self._encode_eager)
        self.cuda_graphs = cuda_graphs

    _decoder: Generator | None = None
    _decoder_file: Path | None = None  # encoder.pt, whose decoder.* loads on first use (from_pretrained)

    @property
    def decoder(self) -> Generator | None:
        """The encoder's StyleGAN2 decoder (reconstructions only), loaded from encoder.pt on first use."""
        if self._decoder is None and self._decoder_file is not None:
            from . import official

            decoder, self._decoder_file = official.load_decoder(self._decoder_file), None
            if decoder is not None:
                self.decoder = decoder.to(self.device, self.dtype)
        return self._decoder

    @decoder.setter
    def decoder(self, decoder: Generator | None) -> None:
        self._decoder = decoder.eval().requires_grad_(False) if decoder is not None else None

    @property
    def cuda_graphs(self) -> bool:
        """Replay the generator and the encoders from CUDA graphs on a GPU (same results to 1e-4, about 2× faster there)."""
        return self._synthesize_graphed.enabled

    @cuda_graphs.setter
    def cuda_graphs(self, enabled: bool) -> None:
        for call in (self._synthesize_graphed, self._encode_graphed):
            call.enabled = bool(enabled)
            call.reset()

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, wplus: bool = False, sampler: bool = False,
                        cuda_graphs: bool = True, **hub_kwargs) -> StyleTransferPipeline:
        """A style name ("cartoon"), a local style folder or a hub id → a ready pipeline (see :mod:`hub`), on
        ``device`` (``"auto"``: the best one here, :func:`dualstylegan.devices.resolve_device`)."""
        from . import official
        from .devices import resolve_device
        from .hub import resolve_style_pack

        device = resolve_device(device) if isinstance(device, str) else device  # refused before anything loads
        if torch.device(device).type == "cpu":
            from .allocator import retain_freed_memory

            retain_freed_memory()  # activations reuse freed memory instead of page-faulting it in on every pass
        files = resolve_style_pack(str(name_or_path), need_sampler=sampler, need_wplus=wplus, **hub_kwargs)
        generator = official.load_dualstylegan(files.generator)
        # the encoders' weights are resident only while they run; the 1024² decoder loads on a first reconstruction
        encoder, decoder = official.load_encoder(files.encoder, with_decoder=False, page_out=True)
        encoder_wplus = (official.load_encoder(files.encoder_wplus, with_decoder=False, page_out=True)[0]
                         if (wplus and files.encoder_wplus) else None)
        style_sampler = official.load_sampler(files.sampler) if files.sampler else None
        codes = CodeBank.load(files.codes)
        rows = sorted({len(code) for code in codes.values()})
        if rows != [generator.n_latent]:
            from .hub import StylePackError

            raise StylePackError(f"{files.codes.name} holds codes of {' and '.join(map(str, rows))} rows but "
                                 f"{files.generator.name} needs {generator.n_latent} (one per layer): the two files "
                                 f"come from different models.")
        pipe = cls(generator, encoder, codes, decoder=decoder, encoder_wplus=encoder_wplus, sampler=style_sampler,
                   style=files.name, cuda_graphs=cuda_graphs)
        pipe._decoder_file = files.encoder
        return pipe.to(device, dtype)

    def to(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> StyleTransferPipeline:
        for name in ("generator", "encoder", "encoder_wplus", "_decoder", "sampler"):
            net = getattr(self, name)
            if net is not None:
                setattr(self, name, net.to(device=device, dtype=dtype) if dtype else net.to(device))
        self.cuda_graphs = self.cuda_graphs  # recorded graphs point at the old tensors
        return self

    @property
    def device(self) -> torch.device:
        return self.generator.generator.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        return self.generator.generator.input.input.dtype

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @property
    def n_structure(self) -> int:
        """Structure rows of a code (7 at 1024²: the paper's layers 1–7, §3.2); the rest are color rows."""
        return self.generator.config.n_structure

    @property
    def structure_rows(self) -> slice:
        return self.generator.config.structure_rows

    @property
    def color_rows(self) -> slice:
        return self.generator.config.color_rows

    # ------------------------------------------------------------------------------------ codes
    def _as_input(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim == 3:
            image = image[None]
        return image.to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, image: torch.Tensor, wplus: bool = False) -> torch.Tensor:
        """An aligned face (1, 3, H, W) in [−1, 1] → its intrinsic code (1, 18, 512): Z+, or W+ with ``wplus``."""
        if (self.encoder_wplus if wplus else self.encoder) is None:
            raise _missing("this style pack has no W+ encoder (encoder_wplus.pt)" if wplus
                           else "this pipeline has no encoder")
        return self._encode_graphed(F.adaptive_avg_pool2d(self._as_input(image), ENCODER_INPUT_SIZE), wplus=wplus)

    def _encode_eager(self, image: torch.Tensor, wplus: bool = False) -> torch.Tensor:
        return (self.encoder_wplus if wplus else self.encoder)(image)

    @torch.no_grad()
    def synthesize(self, intrinsic: torch.Tensor, extrinsic_w: torch.Tensor, *,
                   noise: Sequence[torch.Tensor] | None = None, **options) -> torch.Tensor:
        """DualStyleGAN(intrinsic code, extrinsic W+ code, **options) with stored noise (or ``noise``) → images,
        replayed from a CUDA graph on a GPU. ``options`` are the generator's (weights, truncation, …)."""
        return self._synthesize_graphed(intrinsic, extrinsic_w, *(noise or ()), **options)

    def _synthesize_eager(self, intrinsic: torch.Tensor, extrinsic_w: torch.Tensor, *noise: torch.Tensor,
                          **options) -> torch.Tensor:
        image, _ = self.generator([intrinsic], extrinsic_w, noise=list(noise) or None, randomize_noise=False,
                                  **options)
        return image

    @torch.no_grad()
    def reconstruct(self, code: torch.Tensor, wplus: bool = False) -> torch.Tensor | None:
        """The encoder's decoder applied to an intrinsic code, pooled to 256² (the reference's ``img_rec``)."""
        decoder = self.decoder if self.decoder is not None else self.generator.generator
        image, _ = decoder([code], input_is_latent=wplus, z_plus_latent=not wplus, randomize_noise=False)
        return F.adaptive_avg_pool2d(image.clamp(-1, 1), ENCODER_INPUT_SIZE)

    def exemplar_code(self, exemplar: int | str | torch.Tensor) -> torch.Tensor:
        """Extrinsic Z+ code (1, 18, 512) of a style id, an exemplar name from the code bank, or any image tensor
        (encoded by the Z+ encoder: the reference scripts cannot take an unseen exemplar)."""
        if isinstance(exemplar, torch.Tensor):
            return self.encode(exemplar, wplus=False)
        if self.codes is None:
            raise _missing("this pipeline has no code bank; give the exemplar as an image")
        return self.codes.code(exemplar).to(self.device, self.dtype)

    def weights_for(self, weights: Sequence[float] | None = None, structure=None, color=None) -> list[float]:
        """The weight vector (:data:`N_WEIGHTS` long like the paper's; a smaller model reads its first n_latent):
        explicit ``weights``, else ``structure``/``color`` shorthands, else the style's preset (§4, Fig. 6–7:
        :func:`dualstylegan.styles.get_style`)."""
        if weights is not None:
            if structure is not None or color is not None:
                raise WeightError("give either the full weight vector or structure/color, not both")
            return check_weights(weights, self.n_weights)
        preset_s, preset_c = get_style(self.style).preset
        return interp_weights(preset_s if structure is None else structure, preset_c if color is None else color,
                              self.n_structure, self.n_weights)

    @property
    def n_weights(self) -> int:
        """Length of a weight vector: :data:`N_WEIGHTS`, or ``n_latent`` for a generator above 1024²."""
        return max(N_WEIGHTS, self.n_latent)

    @torch.no_grad()
    def render_exemplar(self, exemplar: int | str, size: int = ENCODER_INPUT_SIZE) -> torch.Tensor:
        """A thumbnail of a code-bank exemplar as the generator sees it: its Z+ code as both the intrinsic and
        the extrinsic code, w = 1 (the exemplar images themselves are not part of a style pack)."""
        ex = self.exemplar_code(exemplar)
        image = self.synthesize(ex, self.generator.map_extrinsic(ex), z_plus_latent=True, use_res=True,
                                interp_weights=[1.0] * self.n_weights)
        return F.adaptive_avg_pool2d(image.clamp(-1, 1), size)

    # ------------------------------------------------------------------------------------ inputs
    def content_tensor(self, photo: ImageInput, align: bool = True) -> torch.Tensor:
        """A photo as the face tensor the encoder takes: a tensor as it is (an aligned face in [−1, 1]); a file, PIL
        image or NumPy array through :func:`dualstylegan.faces.prepare_face` (FFHQ-aligned, or its centred square
        without ``align``)."""
        if isinstance(photo, torch.Tensor):
            return photo
        from .faces import prepare_face
        from .images import to_tensor

        return to_tensor(prepare_face(_as_photo(photo), align)[0].image)

    def exemplar_input(self, exemplar, notices: list[str] | None = None):
        """An exemplar as :meth:`exemplar_code` takes it: a style id, a code-bank name (a string naming a file that
        is not in the bank is read as that file), or an image — file, PIL, NumPy array — prepared by
        :func:`dualstylegan.faces.prepare_exemplar` (aligned when it has a face, else its centred square, with a
        notice logged and appended to ``notices``). A tensor is taken as it is."""
        if isinstance(exemplar, torch.Tensor):
            return exemplar
        if isinstance(exemplar, (numbers.Integral, np.integer)) and not isinstance(exemplar, bool):
            return int(exemplar)
        if isinstance(exemplar, str) and (self.codes is None or not Path(exemplar).is_file()
                                          or exemplar in self.codes.names):
            return exemplar
        from .faces import prepare_exemplar
        from .images import to_tensor

        prepared = prepare_exemplar(_as_photo(exemplar))
        if prepared.notice:
            log.warning("%s", prepared.notice)
            if notices is not None:
                notices.append(prepared.notice)
        return to_tensor(prepared.face.image)

    def __call__(self, photo: ImageInput, exemplar=0, *, align: bool = True, all_faces: bool = False,
                 **options) -> PortraitOutput:
        """``pipe(photo, exemplar, ...)`` → :class:`PortraitOutput` with one PIL portrait per face (``.images``).

        ``photo`` and ``exemplar`` take every form :meth:`content_tensor` / :meth:`exemplar_input` do; ``align``
        and ``all_faces`` are :func:`dualstylegan.faces.prepare_face`'s; ``options`` are :meth:`transfer`'s
        (``structure``, ``color``, ``weights``, ``preserve_color``, ``truncation``, ``refine``, …).
        """
        notices: list[str] = []
        if isinstance(photo, torch.Tensor):
            contents = [photo]
        else:
            from .faces import prepare_face
            from .images import to_tensor

            contents = [to_tensor(f.image) for f in prepare_face(_as_photo(photo), align, all_faces)]
        ex = self.exemplar_input(exemplar, notices)
        results = [self.transfer(c, ex, **options) for c in contents]
        return PortraitOutput([r.pil for r in results], results, notices)

    # ------------------------------------------------------------------------------------ transfer
    @torch.no_grad()
    def transfer(self, content: ImageInput, exemplar: int | str | ImageInput, *,
                 weights: Sequence[float] | None = None, structure=None, color=None,
                 preserve_color: bool = False, truncation: float = TRANSFER_TRUNCATION, wplus: bool = False,
                 seed: int | None = None, reconstruct: bool = False, refine: int = 0,
                 fit_content: int = 0, align: bool = True, progress: bool = True) -> TransferResult:
        """Stylise a face with an exemplar (``style_transfer.py``; paper §3.2).

        ``content``: an aligned face tensor (1, 3, H, W in [−1, 1]), or a file / PIL image / NumPy array prepared
        by :meth:`content_tensor` (``align``). ``exemplar``: a style id, a code-bank name or any image
        (:meth:`exemplar_input`). ``preserve_color`` keeps the content's colors: Z+ path: rows 8–18 of the
        exemplar's Z+ code are the content's; W+ path (``wplus``): the same rows of the mapped exemplar code are the
        content's W+ rows. (The other documented way is ``color=0``.) Deterministic (stored noise) unless ``seed``.

        ``refine=N`` (an image exemplar only): N steps of latent optimisation of its extrinsic code against that
        image (§3.4, :meth:`refine_extrinsic`; a progress bar unless ``progress=False``; the distance used is
        :attr:`TransferResult.refine_distance`). ``fit_content=N``: N steps of optimising the intrinsic code so that
        its reconstruction matches the content more closely (beyond the reference).
        """
        w = self.weights_for(weights, structure, color)
        truncation = check_truncation(truncation)
        exemplar = self.exemplar_input(exemplar)
        if refine and not isinstance(exemplar, torch.Tensor):
            raise OptionError("refine applies to an exemplar given as an image; code-bank exemplars are already "
                              "refined (refined_exstyle_code.npy)")
        content = self.content_tensor(content, align)
        content = F.adaptive_avg_pool2d(self._as_input(content), ENCODER_INPUT_SIZE)  # style_transfer.py's pooling
        intrinsic = self.encode(content, wplus=wplus)
        if fit_content:
            intrinsic = self.fit_intrinsic(intrinsic, content, fit_content, wplus=wplus)
        ex_z = self.exemplar_code(exemplar).clone()
        distance = None
        if refine:
            ex_z = self.refine_extrinsic(ex_z, exemplar, refine, progress=progress)
            distance = self.refine_distance()
        color_rows = self.color_rows
        if preserve_color and not wplus:
            ex_z[:, color_rows] = intrinsic[:, color_rows]
        ex_w = self.generator.map_extrinsic(ex_z)
        if preserve_color and wplus:
            ex_w[:, color_rows] = intrinsic[:, color_rows]
        noise = None
        if seed is not None:
            noise = self.generator.generator.make_noise(torch.Generator().manual_seed(check_seed(seed)))
        image = self.synthesize(intrinsic, ex_w, noise=noise, z_plus_latent=not wplus, input_is_latent=wplus,
                                truncation=truncation, truncation_latent=0, use_res=True, interp_weights=w)
        rec = self.reconstruct(intrinsic, wplus) if reconstruct else None
        return TransferResult(image.clamp(-1, 1), content, intrinsic, ex_z, w, rec, distance)

    # ------------------------------------------------------------------------------------ optimisation
    #: Feature networks of the latent optimisations below (:mod:`dualstylegan.refine`); a style pack carries
    #: neither. Left None, they are loaded on first use from weight files already on this machine
    #: (:func:`dualstylegan.weight_files.find_weights`: the lpips package's ``vgg.pth`` with torchvision's VGG16,
    #: torchvision's VGG19; nothing is downloaded); set them to modules of your own, or to ``False`` to do without.
    lpips = None
    vgg = None

    def feature_nets(self) -> tuple[Any, Any]:
        """(LPIPS, VGG19 features) for the optimisations: the attributes, else found on this machine (once)."""
        if not getattr(self, "_looked_for_feature_nets", False):
            self._looked_for_feature_nets = True
            if self.lpips is None:
                self.lpips = local_feature_net("lpips")
            if self.vgg is None:
                self.vgg = local_feature_net("vgg")
        moved = []
        for net in (self.lpips, self.vgg):
            if isinstance(net, torch.nn.Module):
                net = net.to(self.device)
            moved.append(net or None)
        return moved[0], moved[1]

    def refine_distance(self) -> str:
        """The distance :meth:`refine_extrinsic` minimises with the feature networks at hand, in words."""
        lpips, vgg = self.feature_nets()
        return ("LPIPS" if lpips is not None else "mean squared error (no LPIPS weights found)") + \
            (" + contextual loss" if vgg is not None else "")

    def refine_extrinsic(self, ex_z: torch.Tensor, exemplar: torch.Tensor, steps: int, lr_color: float = 0.1,
                         lr_structure: float = 0.005, seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Latent optimisation of an image exemplar's Z+ extrinsic code against that image (§3.4,
        ``refine_exstyle.py``) by :func:`dualstylegan.refine.refine_extrinsic`, the function that refines a trained
        style's codes: the color rows at ``lr_color``, the structure rows at ``lr_structure`` and fresh noise maps
        (from ``seed``, dropped afterwards) are fitted so that G(code, code, w = 1) reproduces S — the exemplar's own
        code stands in for its destylized intrinsic code. The loss is the reference's (LPIPS + contextual loss on
        VGG19 relu3_1 + noise regularisation) with :meth:`feature_nets`; without LPIPS weights the mean squared
        error stands in, without VGG19 there is no contextual term (:meth:`refine_distance` says which ran; it is
        logged). ``progress`` shows a bar, one tick per step."""
        from tqdm.auto import tqdm

        from .refine import refine_extrinsic

        lpips, vgg = self.feature_nets()
        distance = self.refine_distance()
        log.info("refining the exemplar's code for %d steps with %s", steps, distance)
        target = F.adaptive_avg_pool2d(self._as_input(exemplar), 256)
        with tqdm(total=steps, desc=f"refining ({distance.split(' (')[0]})", unit="step",
                  disable=not progress) as bar:
            def counted(x, y):
                bar.update()
                return lpips(x, y) if lpips is not None else (x - y).pow(2).flatten(1).mean(1)

            code, _, _ = refine_extrinsic(self.generator, ex_z, ex_z, target, counted, vgg, steps, lr_color,
                                          lr_structure, interp_weights=[1.0] * max(18, self.n_latent), seed=seed)
        return code.to(self.device, self.dtype)

    def fit_intrinsic(self, intrinsic: torch.Tensor, content: torch.Tensor, steps: int, lr: float = 0.01,
                      wplus: bool = False) -> torch.Tensor:
        """Optimise the intrinsic code so that the plain generator reconstructs the content more faithfully
        (:func:`dualstylegan.refine.fit_intrinsic`: mean squared error, plus LPIPS when :attr:`lpips` is set)."""
        from .refine import fit_intrinsic

        return fit_intrinsic(self.generator.generator, intrinsic, self._as_input(content), steps, lr, wplus=wplus,
                             lpips=self.feature_nets()[0])

    # ------------------------------------------------------------------------------------ random styles
    @torch.no_grad()
    def generate(self, n: int = 1, seed: int = 0, *, fix_content: bool = False, fix_color: bool = False,
                 fix_structure: bool = False, weights: Sequence[float] | None = None, structure=None, color=None,
                 truncation: float = GENERATE_TRUNCATION) -> torch.Tensor:
        """Random portraits in random styles of this pack (``generate.py``, §3.4): the sampler draws structure and
        color codes independently; ``fix_*`` repeats sample 0's part across the batch. One (n, 3, H, W) tensor:
        for many portraits use :meth:`iter_generate`, which holds one batch at a time."""
        return torch.cat(list(self.iter_generate(n, seed, batch_size=max(int(n), 1), fix_content=fix_content,
                                                 fix_color=fix_color, fix_structure=fix_structure, weights=weights,
                                                 structure=structure, color=color, truncation=truncation)))

    def iter_generate(self, n: int = 1, seed: int = 0, *, batch_size: int = GENERATE_BATCH, fix_content: bool = False,
                      fix_color: bool = False, fix_structure: bool = False, weights: Sequence[float] | None = None,
                      structure=None, color=None, truncation: float = GENERATE_TRUNCATION):
        """:meth:`generate`'s portraits in batches of at most ``batch_size`` (b, 3, H, W), so that memory stays flat
        in ``n``: the random draws for all ``n`` are made first (a few floats each), so portrait i is the same
        for any batch size. Everything is checked before the first batch."""
        if self.sampler is None:
            raise _missing("this style pack has no sampler (sampler.pt); generate needs it")
        if n < 1:
            raise OptionError(f"n must be at least 1, got {n}")
        if batch_size < 1:
            raise OptionError(f"the batch size must be at least 1, got {batch_size}")
        w = self.weights_for(weights, structure, color)
        truncation = check_truncation(truncation)
        g = torch.Generator().manual_seed(check_seed(seed))
        z = torch.randn(n, self.generator.style_dim, generator=g)
        structure_noise = torch.randn(n, self.sampler.structure.config.noise_dim, generator=g)
        color_noise = torch.randn(n, self.sampler.color.config.noise_dim, generator=g)
        for fix, t in ((fix_content, z), (fix_structure, structure_noise), (fix_color, color_noise)):
            if fix:
                t[:] = t[:1]
        return self._generate_batches(z, structure_noise, color_noise, batch_size, w, truncation)

    @torch.no_grad()
    def _generate_batches(self, z, structure_noise, color_noise, batch_size, w, truncation):
        dev, dtype = self.device, self.dtype
        for i in range(0, len(z), batch_size):
            part = slice(i, i + batch_size)
            ex_z = self.sampler(structure_noise[part].to(dev, dtype), color_noise[part].to(dev, dtype))
            image = self.synthesize(z[part].to(dev, dtype), self.generator.map_extrinsic(ex_z),
                                    truncation=truncation, truncation_latent=0, use_res=True, interp_weights=w)
            yield image.clamp(-1, 1)

    # ------------------------------------------------------------------------------------ blending
    @torch.no_grad()
    def blend(self, content: ImageInput, exemplar_a, exemplar_b=None, *, content_b: ImageInput | None = None,
              steps: int = BLEND_STEPS, weights: Sequence[float] | None = None, structure=None, color=None,
              truncation: float = TRANSFER_TRUNCATION, wplus: bool = False, align: bool = True) -> list[torch.Tensor]:
        """A sequence interpolating the extrinsic codes (exemplar a → b) and/or the intrinsic codes
        (content → content_b) linearly in Z+ (Fig. 13). Returns ``steps`` images; :meth:`iter_blend` yields them
        one at a time. The photos and exemplars take every form :meth:`transfer` does."""
        return list(self.iter_blend(content, exemplar_a, exemplar_b, content_b=content_b, steps=steps,
                                    weights=weights, structure=structure, color=color, truncation=truncation,
                                    wplus=wplus, align=align))

    def iter_blend(self, content: ImageInput, exemplar_a, exemplar_b=None, *, content_b: ImageInput | None = None,
                   steps: int = BLEND_STEPS, weights: Sequence[float] | None = None, structure=None, color=None,
                   truncation: float = TRANSFER_TRUNCATION, wplus: bool = False, align: bool = True):
        """:meth:`blend`'s frames, one (1, 3, H, W) tensor at a time (memory flat in ``steps``); everything is
        checked and encoded before the first frame."""
        if steps < 2:
            raise OptionError(f"a blend needs at least 2 steps, got {steps}")
        w = self.weights_for(weights, structure, color)
        truncation = check_truncation(truncation)
        with torch.no_grad():
            in_a = self.encode(self.content_tensor(content, align), wplus)
            in_b = self.encode(self.content_tensor(content_b, align), wplus) if content_b is not None else in_a
            ex_a = self.exemplar_code(self.exemplar_input(exemplar_a))
            ex_b = self.exemplar_code(self.exemplar_input(exemplar_b)) if exemplar_b is not None else ex_a
        return self._blend_frames(in_a, in_b, ex_a, ex_b, steps, w, truncation, wplus)

    @torch.no_grad()
    def _blend_frames(self, in_a, in_b, ex_a, ex_b, steps, w, truncation, wplus):
        for t in torch.linspace(0, 1, steps).tolist():
            intrinsic = torch.lerp(in_a, in_b, t)
            ex_w = self.generator.map_extrinsic(torch.lerp(ex_a, ex_b, t))
            image = self.synthesize(intrinsic, ex_w, z_plus_latent=not wplus, input_is_latent=wplus,
                                    truncation=truncation, truncation_latent=0, use_res=True, interp_weights=w)
            yield image.clamp(-1, 1)
