"""The web app's behaviour, without Gradio: :class:`StyleApp`, whose handlers take and return plain values.

Each handler is one library call — :meth:`StyleApp.transfer` is ``style_transfer.py``'s transfer (paper §3.2) of a
face prepared by :func:`dualstylegan.faces.prepare_face`, :meth:`StyleApp.random` is ``generate.py`` (§3.4),
:meth:`StyleApp.blend` interpolates extrinsic codes (Fig. 13) — on a pipeline of :class:`Pipelines`. Handlers
raise; :meth:`StyleApp.message` turns an exception into the sentence the page shows: the user's error in its own
words, a bug as "something went wrong" with its traceback in the log. :mod:`.layout` wires the handlers to Gradio.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..outputs import blend_names, exemplar_tag, output_name
from ..defaults import BLEND_STEPS, GENERATE_TRUNCATION, TRANSFER_TRUNCATION
from ..errors import is_user_error, sentence
from .messages import say
from .files import FaceCache, ResultFiles, WebError, inside
from .video import MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS, VideoHandler

log = logging.getLogger("dualstylegan.web")

#: Exemplar thumbnails per gallery page (each is one generator pass: ~1 s at 1024² on a CPU, then cached).
PAGE_SIZE = 16
THUMBNAIL_SIZE = 128
GALLERY, UPLOADED = "Gallery", "Uploaded image"
BUG_MESSAGE = "Something went wrong on the server (it is logged); please try again"
#: A progress callback: ``progress(fraction or (done, total), desc=..., unit=...)`` (``gr.Progress`` is one).
Progress = Callable[..., Any]


def _quiet(*args, **kwargs) -> None:
    """The progress callback of a handler called without one."""


def parse_weights(text: str) -> list[float]:
    """'0.75, 0.75 … 1' → 18 floats (commas and/or spaces); a WeightError sentence otherwise."""
    from ..style_weights import N_WEIGHTS, WeightError, check_weights

    parts = [p for p in re.split(r"[\s,;]+", (text or "").strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise WeightError(f"the per-layer weights must be {N_WEIGHTS} numbers between 0 and 1, separated by "
                          "commas") from None
    return check_weights(values, N_WEIGHTS)


def format_weights(weights: Sequence[float]) -> str:
    return ", ".join(f"{w:g}" for w in weights)


def ready_styles() -> list[str]:
    """The style packs whose generator, codes and encoder are all on this machine (no network)."""
    from ..hub import list_styles

    return [s["name"] for s in list_styles() if s.get("ready")]


def pack_loader(device: str = "cpu", local_files_only: bool = False) -> Callable[[str], Any]:
    """A loader ``name → StyleTransferPipeline`` on ``device``, with the W+ encoder when the pack has one."""
    def load(name: str):
        from ..hub import StylePackError
        from ..pipeline import StyleTransferPipeline

        kw = {"local_files_only": True} if local_files_only else {}
        try:
            return StyleTransferPipeline.from_pretrained(name, device=device, wplus=True, **kw)
        except StylePackError:
            return StyleTransferPipeline.from_pretrained(name, device=device, **kw)
    return load


# ----------------------------------------------------------------------------------------- state
class Pipelines:
    """Style pack name → pipeline: given ready (a dict), or loaded on first use by ``loader(name)`` and kept."""

    def __init__(self, source: Mapping[str, Any] | Callable[[str], Any], names: Sequence[str] | None = None,
                 exemplar_images: Sequence[str | os.PathLike] = ()):
        self.exemplar_images = [Path(d) for d in exemplar_images]
        if isinstance(source, Mapping):
            self._loaded, self._loader = dict(source), None
            self.names = list(names or source)
        elif callable(source):
            self._loaded, self._loader = {}, source
            self.names = list(names) if names else ready_styles()
        else:
            raise TypeError("pipelines must be a dict name → StyleTransferPipeline or a loader name → pipeline")
        if not self.names:
            raise WebError("there is no style pack to serve: give one with --style NAME_OR_PATH")
        self._lock = threading.Lock()
        self._thumbs: dict[tuple[str, int], Any] = {}
        self._thumb_lock = threading.Lock()

    def get(self, name: str):
        if name not in self.names:
            raise WebError(f"this app does not serve the style pack {name!r}; choose one of {', '.join(self.names)}")
        with self._lock:  # one load at a time (a loaded pack only waits while another one loads)
            if name not in self._loaded:
                self._loaded[name] = self._loader(name)
            return self._loaded[name]

    def exemplar_file(self, code_name: str) -> Path | None:
        """The exemplar's own image in the user's dataset folders (the code bank's keys are its file names, e.g.
        ``Cartoons_00038_07.jpg`` in ``data/cartoon/images/train/``; a trained pack's are in ``prepare/images/``).
        Only a file inside a folder, resolved: a key such as ``../x/secret.png``, an absolute path or a link out of
        the folder finds nothing (a code bank is data from elsewhere; its keys must not reach other files)."""
        code_name = str(code_name)
        names = [code_name, Path(code_name).with_suffix(".png").name] if code_name else []
        for folder in self.exemplar_images:
            for name in names:
                found = inside(folder, name)
                if found is not None:
                    return found
        return None

    def thumbnails(self, name: str, ids: Sequence[int], progress: Progress = _quiet) -> list:
        """PIL thumbnails of code-bank exemplars, cached: the exemplar's own image when a dataset folder has it,
        else rendered from its code (``render_exemplar``)."""
        from ..images import ImageError, center_square, load_image, to_image

        pipe = self.get(name)
        out = []
        for i, style_id in enumerate(ids):
            key = (name, style_id)
            with self._thumb_lock:
                thumb = self._thumbs.get(key)
            if thumb is None:
                progress((i, len(ids)), desc="rendering the exemplar thumbnails", unit="exemplars")
                own = self.exemplar_file(pipe.codes.name_of(style_id)) if self.exemplar_images else None
                try:
                    thumb = center_square(load_image(own), THUMBNAIL_SIZE) if own is not None else None
                except ImageError:
                    log.warning("cannot read the exemplar image %s; rendering it from its code instead", own)
                if thumb is None:
                    thumb = to_image(pipe.render_exemplar(style_id, size=THUMBNAIL_SIZE))
                with self._thumb_lock:
                    self._thumbs[key] = thumb
            out.append(thumb)
        return out


# ----------------------------------------------------------------------------------------- what handlers return
@dataclass
class GalleryPage:
    items: list  # [(PIL thumbnail, caption)]
    ids: list[int]
    page: int
    label: str


@dataclass
class StyleView:
    """What the page shows for a style pack: its gallery, its preset weights, what it can do."""

    gallery: GalleryPage
    exemplar_names: list[str]
    chosen: str
    structure: float
    color: float
    per_layer: bool
    weights_text: str
    wplus: bool
    has_sampler: bool
    sampler_message: str = ""


@dataclass
class TransferView:
    face: Any       # the face used (PIL)
    portrait: Any   # the result (PIL)
    png: str        # its file, for download
    info: str


@dataclass
class Outcome:
    """A request's answer for the result area: the new ``result``, or — when it failed — ``result`` None and the
    ``error`` sentence; the page then keeps showing the last good result beside that sentence."""

    result: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


# ----------------------------------------------------------------------------------------- which controls apply
@dataclass(frozen=True)
class WeightControls:
    sliders: bool   # the structure / color sliders take input
    weights: bool   # the 18 per-layer weights take input
    note: str       # said under the sliders


def weight_controls(per_layer: bool) -> WeightControls:
    """The 18 per-layer weights replace the two sliders (§3.2): while they are in use the sliders are disabled and
    say so; otherwise the per-layer box is disabled."""
    if per_layer:
        return WeightControls(False, True, "The 18 per-layer weights (Advanced) are in use; untick them to use "
                                           "these sliders.")
    return WeightControls(True, False, "")


REFINE_MAX = 300  # steps of latent optimisation (§3.4): ~0.1–1 s each on a CPU at 256²


def refine_control(source: str) -> bool:
    """Whether the refine-steps control applies: only to an uploaded exemplar image (a code-bank exemplar's code is
    already refined, refined_exstyle_code.npy)."""
    return source == UPLOADED


def check_refine(steps, source: str) -> int:
    """The refine steps a transfer runs: 0 for a gallery exemplar, else an integer in [0, REFINE_MAX]."""
    if not refine_control(source) or not steps:
        return 0
    steps = int(steps)
    if not 0 <= steps <= REFINE_MAX:
        raise WebError(f"the refine steps must be between 0 and {REFINE_MAX}, got {steps}")
    return steps


@dataclass
class StyleApp(VideoHandler):
    """The web app over style pack pipelines: ``pipelines`` is a dict name → ready :class:`StyleTransferPipeline`
    or a loader ``name → pipeline`` for the names in ``styles`` (default: the packs ready on this machine).
    ``align`` is the default of the page's "align the face" box; at most ``max_concurrency`` model calls run at
    once; uploads over ``max_upload_mb`` are refused; ``exemplar_images``: the style datasets' folders, whose
    images the gallery shows (else the image rendered from its code). Video clips (:meth:`video`) longer than
    ``max_video_seconds`` or larger than ``max_video_pixels`` per frame are refused before any work."""

    source: Mapping[str, Any] | Callable[[str], Any]
    styles: Sequence[str] | None = None
    align: bool = True
    max_upload_mb: float = 10
    max_concurrency: int = 1
    title: str = "DualStyleGAN"
    exemplar_images: Sequence[str | os.PathLike] = ()
    max_video_seconds: float = MAX_VIDEO_SECONDS
    max_video_pixels: int = MAX_VIDEO_PIXELS
    pipelines: Pipelines = field(init=False)

    transfer_truncation = TRANSFER_TRUNCATION
    generate_truncation = GENERATE_TRUNCATION
    blend_steps = BLEND_STEPS

    def __post_init__(self):
        self.pipelines = Pipelines(self.source, self.styles, self.exemplar_images)
        self.max_concurrency = max(1, int(self.max_concurrency))
        self.faces = FaceCache(self.max_upload_mb)
        self.outputs = ResultFiles()

    def close(self) -> None:
        """Remove the app's files: results, shown images and (once served) Gradio's uploads and cache."""
        self.outputs.close()

    def attempt(self, handler: Callable[..., Any], *args, **kwargs) -> Outcome:
        """``handler(*args, **kwargs)`` as an :class:`Outcome`: its result, or its error's sentence
        (:meth:`message`) — never an exception, so that the page keeps the last good result on show."""
        try:
            return Outcome(handler(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - the contract: a sentence for the user, a bug in the log
            return Outcome(None, self.message(e))

    @property
    def default_preset(self) -> tuple[float, float]:
        """The sliders' (structure, color) before a pack is chosen: a style the registry does not know."""
        from ..styles import DEFAULT

        return float(DEFAULT.structure), float(DEFAULT.color)

    # ------------------------------------------------------------------ errors
    def message(self, e: BaseException) -> str:
        """The sentence the page shows for ``e``: a user error in its words (logged briefly), or — for a bug —
        :data:`BUG_MESSAGE`, its traceback in the log."""
        if is_user_error(e):
            log.info("request refused: %s", sentence(e))
            return say(e)
        log.error("request failed", exc_info=e)
        return BUG_MESSAGE

    # ------------------------------------------------------------------ the gallery
    def gallery_page(self, name: str, page: int, progress: Progress = _quiet) -> GalleryPage:
        pipe = self.pipelines.get(name)
        n = len(pipe.codes) if pipe.codes is not None else 0
        pages = max(1, -(-n // PAGE_SIZE))
        page = min(max(0, int(page)), pages - 1)
        ids = list(range(page * PAGE_SIZE, min(n, (page + 1) * PAGE_SIZE)))
        thumbs = self.pipelines.thumbnails(name, ids, progress)
        items = [(t, f"{i}: {Path(pipe.codes.name_of(i)).stem}") for t, i in zip(thumbs, ids)]
        label = (f"Exemplars {ids[0]}–{ids[-1]} of {n} (page {page + 1} of {pages})" if ids
                 else "This style pack has no code bank; upload an exemplar image")
        return GalleryPage(items, ids, page, label)

    def exemplar_label(self, name: str, style_id) -> str:
        try:
            pipe = self.pipelines.get(name)
            return f"Exemplar **{int(style_id)}**: {pipe.codes.name_of(int(style_id))}"
        except Exception:  # noqa: BLE001 - only a label
            return "Exemplar: choose one in the gallery"

    @staticmethod
    def selected(ids: Sequence[int], index) -> int:
        """The style id of the gallery's ``index``-th thumbnail (0 when there is none)."""
        return ids[index] if isinstance(index, int) and 0 <= index < len(ids) else 0

    def style_view(self, name: str, progress: Progress = _quiet) -> StyleView:
        """Choosing a pack: load it (on first use), its first gallery page and its preset weights (§4)."""
        from ..styles import get_style

        progress(0, desc=f"loading the style pack {name}")
        pipe = self.pipelines.get(name)
        gallery = self.gallery_page(name, 0, progress)
        preset_s, preset_c = get_style(pipe.style).preset
        per_layer = not isinstance(preset_s, (int, float))
        names = pipe.codes.names if pipe.codes is not None else []
        has_sampler = pipe.sampler is not None
        return StyleView(
            gallery, names, self.exemplar_label(name, 0), float(max(preset_s) if per_layer else preset_s),
            float(preset_c), per_layer, format_weights(pipe.weights_for()), pipe.encoder_wplus is not None,
            has_sampler, "" if has_sampler else
            f"The style pack **{name}** has no sampler (sampler.pt), so it cannot draw random styles.")

    # ------------------------------------------------------------------ faces
    def face(self, path: str | None, align: bool, what: str = "photo"):
        """The face of an upload as the pipeline will see it (PIL), or one sentence why there is none."""
        return self.faces.get(path, what, align)

    # ------------------------------------------------------------------ the model calls
    def transfer(self, name: str, photo: str | None, align: bool, source: str, style_id, exemplar_path: str | None,
                 structure: float, color: float, per_layer: bool, weights_text: str, preserve_color: bool,
                 truncation: float, encoder: str, progress: Progress = _quiet, refine: int = 0) -> TransferView:
        """The Transfer tab (``style_transfer.py``, §3.2): photo + exemplar (a gallery id or an uploaded image).
        ``refine``: steps of latent optimisation of an uploaded exemplar's code (§3.4; ignored for the gallery's)."""
        from ..images import to_image, to_tensor

        t0 = time.perf_counter()
        progress(0.0, desc="loading the style pack")
        pipe = self.pipelines.get(name)
        progress(0.1, desc="finding the face" if align else "reading the photo")
        face = self.face(photo, align, "photo")
        exemplar, tag, said = self._exemplar(pipe, source, style_id, exemplar_path, align)
        wkw = ({"weights": parse_weights(weights_text)} if per_layer
               else {"structure": float(structure), "color": float(color)})
        wplus = encoder == "W+"
        if wplus and pipe.encoder_wplus is None:
            raise WebError("this style pack has no W+ encoder (encoder_wplus.pt); choose Z+")
        steps = check_refine(refine, source)
        progress(0.3, desc=f"refining the exemplar's code ({steps} steps), then stylising" if steps else "stylising")
        result = pipe.transfer(to_tensor(face), exemplar, preserve_color=bool(preserve_color),
                               truncation=float(truncation), wplus=wplus, refine=steps, **wkw)
        progress(0.9, desc="saving")
        portrait = to_image(result.image)
        png = self.outputs.png(portrait, output_name(Path(str(photo)).stem, pipe.style, tag))
        weights = ("per-layer weights " + format_weights(result.weights) if per_layer
                   else f"structure {float(structure):g}, color {float(color):g}")
        said += f" refined in {steps} steps" if steps else ""
        info = (f"{name}, {said}; {weights}; {encoder}{', colors preserved' if preserve_color else ''}; "
                f"truncation {float(truncation):g}; {portrait.width}×{portrait.height} in "
                f"{time.perf_counter() - t0:.1f} s")
        return TransferView(face, portrait, png, info)

    def _exemplar(self, pipe, source: str, style_id, exemplar_path: str | None, align: bool):
        """(what the pipeline takes, the output name's tag, how the info line says it)."""
        from ..images import to_tensor

        if source == UPLOADED:
            image = to_tensor(self.face(exemplar_path, align, "exemplar"))
            return image, exemplar_tag(Path(str(exemplar_path))), "your exemplar image"
        if pipe.codes is None:
            raise WebError("this style pack has no code bank; upload an exemplar image")
        if style_id is None:
            raise WebError("choose an exemplar in the gallery or type its style id")
        style_id = int(style_id)
        ex_name = pipe.codes.name_of(style_id)
        return style_id, exemplar_tag(style_id, pipe.codes), f"exemplar {style_id} ({ex_name})"

    def random(self, name: str, n: int, seed, fix_content: bool, fix_structure: bool, fix_color: bool,
               truncation: float, progress: Progress = _quiet) -> list:
        """The Random portraits tab (``generate.py``, §3.4): [(PIL portrait, caption)]."""
        from ..images import to_image

        progress(0.0, desc="loading the style pack")
        pipe = self.pipelines.get(name)
        if pipe.sampler is None:
            raise WebError(f"the style pack {name} has no sampler (sampler.pt), so it cannot draw random styles")
        progress(0.2, desc="drawing random portraits")
        seed = int(seed or 0)
        images = pipe.generate(int(n), seed=seed, fix_content=bool(fix_content), fix_structure=bool(fix_structure),
                               fix_color=bool(fix_color), truncation=float(truncation))
        return [(to_image(im[None]), f"seed {seed}, #{i}") for i, im in enumerate(images)]

    def blend(self, name: str, photo: str | None, align: bool, ex_a: int | str | None, ex_b: int | str | None,
              steps: int, duration_ms: int, bounce: bool, progress: Progress = _quiet) -> str:
        """The Blend tab (Fig. 13): an endless GIF from exemplar ``ex_a`` to ``ex_b`` (style ids, as the thumbnails
        pick them, or code-bank names); its path."""
        from ..images import to_image, to_tensor

        progress(0.0, desc="loading the style pack")
        pipe = self.pipelines.get(name)
        if pipe.codes is None:
            raise WebError("this style pack has no code bank to blend")
        ex_a, ex_b = (None if e is None or e == "" else e if isinstance(e, str) else int(e) for e in (ex_a, ex_b))
        if ex_a is None or ex_b is None:
            raise WebError("choose two exemplars to blend")
        progress(0.1, desc="finding the face" if align else "reading the photo")
        face = self.face(photo, align, "photo")
        progress(0.3, desc="blending")
        frames = pipe.blend(to_tensor(face), ex_a, ex_b, steps=int(steps))
        _, gif_name = blend_names(Path(str(photo)).stem, pipe.style, int(steps))
        return self.outputs.gif([to_image(f) for f in frames], gif_name, int(duration_ms), bool(bounce))


__all__ = ["BUG_MESSAGE", "GALLERY", "PAGE_SIZE", "REFINE_MAX", "THUMBNAIL_SIZE", "UPLOADED", "FaceCache",
           "GalleryPage", "Outcome", "Pipelines", "ResultFiles", "StyleApp", "StyleView", "TransferView", "WebError",
           "WeightControls", "check_refine", "format_weights", "pack_loader", "parse_weights", "ready_styles",
           "refine_control", "say", "weight_controls"]
