"""The web app (``dualstylegan web``): a thin Gradio front end over :class:`~dualstylegan.pipeline.StyleTransferPipeline`.

Three tabs, each one pipeline call:

* **Transfer** — a photo (aligned like FFHQ unless asked not to) and an exemplar (a code-bank exemplar picked from a
  gallery of thumbnails, or any image) → an artistic portrait (§3.3); structure / color weights (layers 1–7 / 8–18,
  §3.2) or all 18 per-layer weights, color preservation, truncation, Z+ or W+ encoding.
* **Random portraits** — random faces in random styles of the pack with the extrinsic style sampler (§3.4).
* **Blend** — an animation interpolating the extrinsic codes of two exemplars (Fig. 13).

Gradio is an optional extra (``pip install 'dualstylegan[web]'``). :func:`build_app` takes ready pipelines (or a
loader) so tests can inject tiny ones; :func:`launch` starts the server on localhost. Every request is guarded: a bad
upload, no face, an unknown style id or an impossible weight vector becomes one sentence in the page, never a crash.
The page loads offline: no analytics, no version check, system fonts only.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cli import sentence  # an exception's first line: the page says what the CLI says
from .images import center_square

log = logging.getLogger(__name__)

GRADIO_MISSING = "the web app needs Gradio, which is not installed: run pip install 'dualstylegan[web]'"
#: Exemplar thumbnails per gallery page (each is one generator pass: ~1 s at 1024² on a CPU, then cached).
PAGE_SIZE = 16
THUMBNAIL_SIZE = 128
FACE_SIZE = 256
GALLERY, UPLOADED = "Gallery", "Uploaded image"


class WebError(RuntimeError):
    """A request the app cannot serve (no photo, a file over the size limit, …), said in one sentence."""


def _for_people(e: BaseException) -> bool:
    """Whether ``e``'s message is meant for people: a bad file (ImageError, NoFaceError, OSError), an unknown style
    id (StyleIdError), bad weights (WeightError), a pack that cannot load (StylePackError). The rest are bugs, logged
    with their traceback too."""
    from .hub import StylePackError

    return isinstance(e, (WebError, StylePackError, ValueError, KeyError, OSError))


def _gradio():
    """Gradio, imported with analytics and its version check off (the app must work offline)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio as gr
    except ImportError:
        raise WebError(GRADIO_MISSING) from None
    return gr


def _message(e: BaseException) -> str:
    """The exception's sentence as shown in the page (capitalised)."""
    text = sentence(e)
    return text[:1].upper() + text[1:]


# ----------------------------------------------------------------------------------------- images and faces
def _face(path, align: bool):
    """The face the pipeline sees (PIL, 256²) in a file: the largest face aligned like FFHQ (:mod:`faces`), or the
    central square. :class:`images.ImageError` / :class:`faces.NoFaceError` (one sentence) when there is none."""
    from .images import load_image

    image = load_image(path)
    if not align:
        return center_square(image, FACE_SIZE)
    from .faces import align as align_faces

    try:
        return align_faces(image, output_size=FACE_SIZE)[0].image
    except ImportError as e:  # no dlib: say how to install it, or to untick the box
        raise WebError(f"{sentence(e)}; or untick 'Align the face'") from None


# ----------------------------------------------------------------------------------------- state
class Pipelines:
    """Style pack name → pipeline: given ready (a dict), or loaded on first use by ``loader(name)`` and kept."""

    def __init__(self, source: Mapping[str, Any] | Callable[[str], Any], names: Sequence[str] | None = None,
                 exemplar_images: Sequence[str | os.PathLike] = ()):
        self.exemplar_images = [Path(d) for d in exemplar_images]
        if isinstance(source, Mapping):
            self._loaded = dict(source)
            self._loader = None
            self.names = list(names or source)
        elif callable(source):
            self._loaded = {}
            self._loader = source
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
        ``Cartoons_00038_07.jpg`` in ``data/cartoon/images/train/``; a trained pack's are in ``prepare/images/``)."""
        for folder in self.exemplar_images:
            for candidate in (folder / code_name, folder / Path(code_name).with_suffix(".png").name):
                if candidate.is_file():
                    return candidate
        return None

    def thumbnails(self, name: str, ids: Sequence[int], progress=None) -> list:
        """PIL thumbnails of code-bank exemplars, cached: the exemplar's own image when a dataset folder has it,
        else rendered from its code (``render_exemplar``)."""
        from .images import ImageError, load_image, to_image

        pipe = self.get(name)
        out = []
        for i, style_id in enumerate(ids):
            key = (name, style_id)
            with self._thumb_lock:
                thumb = self._thumbs.get(key)
            if thumb is None:
                if progress is not None:
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


def ready_styles() -> list[str]:
    """The style packs whose generator, codes and encoder are all on this machine (no network)."""
    from .hub import list_styles

    return [s["name"] for s in list_styles() if s.get("ready")]


class _Faces:
    """The last few prepared faces, by (file, mtime, align): the preview and the run do not align twice."""

    def __init__(self, max_upload_mb: float, size: int = 16):
        self.max_bytes = int(max_upload_mb * 2**20)
        self.max_upload_mb = max_upload_mb
        self._cache: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, path: str | None, what: str, align: bool):
        if not path:
            raise WebError(f"upload {'an' if what[0] in 'aeiou' else 'a'} {what} first")  # a photo, an exemplar
        try:
            st = os.stat(path)
        except OSError:
            raise WebError(f"the {what} upload is gone; upload it again") from None
        if st.st_size > self.max_bytes:
            raise WebError(f"the {what} is {st.st_size / 2**20:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        key = (str(path), st.st_mtime_ns, bool(align))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            face = _face(path, align)
        except Exception as e:  # noqa: BLE001 - said in one sentence, naming which upload it was
            if _for_people(e):
                # the upload's name, not where the server keeps it
                text = sentence(e).replace(str(path), Path(path).name)
                raise WebError(f"the {what}: {text}") from e
            raise
        with self._lock:
            self._cache[key] = face
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return face


class _Outputs:
    """Result files (PNG, GIF) for download, in one temporary folder; files older than an hour are removed."""

    def __init__(self, max_age_s: float = 3600):
        self.folder = Path(tempfile.mkdtemp(prefix="dualstylegan-web-"))
        self.max_age_s = max_age_s
        weakref.finalize(self, shutil.rmtree, self.folder, True)  # removed with the app (or at exit)

    def path(self, name: str) -> Path:
        now = time.time()
        for old in self.folder.glob("*/*"):
            try:
                if now - old.stat().st_mtime > self.max_age_s:
                    old.unlink()
                    old.parent.rmdir()
            except OSError:
                pass
        sub = self.folder / uuid.uuid4().hex[:12]
        sub.mkdir()
        return sub / re.sub(r"[^\w.-]+", "_", name)

    def png(self, image, name: str) -> str:
        from .images import save_image

        return str(save_image(image, self.path(name)))

    def gif(self, frames: list, name: str, duration_ms: int, bounce: bool) -> str:
        """An endless GIF; ``bounce``: played forward, then backward (a → b → a)."""
        from .images import save_animation

        if bounce and len(frames) > 2:
            frames = frames + frames[-2:0:-1]
        return str(save_animation(frames, self.path(name), duration=int(duration_ms)))


def parse_weights(text: str) -> list[float]:
    """'0.75, 0.75 … 1' → 18 floats (commas and/or spaces); a WeightError sentence otherwise."""
    from .pipeline import WeightError, check_weights

    parts = [p for p in re.split(r"[\s,;]+", (text or "").strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise WeightError("the per-layer weights must be 18 numbers between 0 and 1, separated by commas") from None
    return check_weights(values, 18)


def format_weights(weights: Sequence[float]) -> str:
    return ", ".join(f"{w:g}" for w in weights)


# ----------------------------------------------------------------------------------------- the app
def build_app(pipelines: Mapping[str, Any] | Callable[[str], Any], *, styles: Sequence[str] | None = None,
              align: bool = True, max_upload_mb: float = 10, max_concurrency: int = 1, title: str = "DualStyleGAN",
              exemplar_images: Sequence[str | os.PathLike] = ()):
    """The Gradio app (``gr.Blocks``, queued) over ``pipelines``: a dict style name → ready
    :class:`StyleTransferPipeline`, or a loader ``name → pipeline`` for the names in ``styles`` (default: the packs
    ready on this machine). ``align`` is the default of the page's "align the face" box. At most
    ``max_concurrency`` model calls run at once; the others wait in the queue with their position shown.
    ``exemplar_images``: folders of the style datasets; the gallery shows an exemplar's own image when one of them
    has it (else the image rendered from its code)."""
    gr = _gradio()
    from .images import to_image, to_tensor
    from .pipeline import PRESETS

    pipes = Pipelines(pipelines, styles, exemplar_images)
    faces = _Faces(max_upload_mb)
    outputs = _Outputs()
    max_concurrency = max(1, int(max_concurrency))

    def error(message: str):
        return gr.Error(message, print_exception=False)  # logged below, with the traceback when unexpected

    def guarded(fn):
        """Every failure of a request → one sentence in the page (gr.Error); the server carries on."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001 - the contract: a message for the user, never a crash
                if _for_people(e):
                    log.info("request refused: %s", sentence(e))
                else:
                    log.exception("request failed")
                raise error(_message(e)) from None
        return wrapper

    def page_ids(pipe, page: int) -> tuple[list[int], int, int]:
        n = len(pipe.codes) if pipe.codes is not None else 0
        pages = max(1, -(-n // PAGE_SIZE))
        page = min(max(0, int(page)), pages - 1)
        return list(range(page * PAGE_SIZE, min(n, (page + 1) * PAGE_SIZE))), page, pages

    def gallery_page(name: str, page: int, progress):
        pipe = pipes.get(name)
        ids, page, pages = page_ids(pipe, page)
        thumbs = pipes.thumbnails(name, ids, progress)
        items = [(t, f"{i}: {Path(pipe.codes.name_of(i)).stem}") for t, i in zip(thumbs, ids)]
        n = len(pipe.codes) if pipe.codes is not None else 0
        label = (f"Exemplars {ids[0]}–{ids[-1]} of {n} (page {page + 1} of {pages})" if ids
                 else "This style pack has no code bank; upload an exemplar image")
        return items, ids, page, label

    def exemplar_label(name: str, style_id) -> str:
        try:
            pipe = pipes.get(name)
            return f"Exemplar **{int(style_id)}**: {pipe.codes.name_of(int(style_id))}"
        except Exception:  # noqa: BLE001 - only a label
            return "Exemplar: choose one in the gallery"

    # ------------------------------------------------------------------ handlers
    @guarded
    def on_style(name, progress=gr.Progress()):
        progress(0, desc=f"loading the style pack {name}")
        pipe = pipes.get(name)
        items, ids, page, label = gallery_page(name, 0, progress)
        preset_s, preset_c = PRESETS.get((pipe.style or "").lower(), (0.75, 1.0))
        per_layer = not isinstance(preset_s, (int, float))
        s_value = float(preset_s) if not per_layer else max(preset_s)
        wplus = pipe.encoder_wplus is not None
        has_sampler = pipe.sampler is not None
        names = pipe.codes.names if pipe.codes is not None else []
        return (
            gr.update(value=items, selected_index=None), ids, page, label,
            gr.update(value=0, maximum=max(0, len(names) - 1)), exemplar_label(name, 0), GALLERY,
            gr.update(value=s_value), gr.update(value=float(preset_c)), gr.update(value=per_layer),
            format_weights(pipe.weights_for()),
            gr.update(choices=["Z+", "W+"] if wplus else ["Z+"], value="Z+", interactive=wplus,
                      info=None if wplus else "W+ needs encoder_wplus.pt in the style pack"),
            gr.update(value="" if has_sampler else
                      f"The style pack **{name}** has no sampler (sampler.pt), so it cannot draw random styles.",
                      visible=not has_sampler),
            gr.update(interactive=has_sampler),
            gr.update(choices=names, value=names[0] if names else None),
            gr.update(choices=names, value=names[min(1, len(names) - 1)] if names else None),
        )

    @guarded
    def on_page(name, page, delta, progress=gr.Progress()):
        items, ids, page, label = gallery_page(name, int(page) + int(delta), progress)
        return gr.update(value=items, selected_index=None), ids, page, label

    def on_select(name, ids, evt):
        style_id = ids[evt.index] if isinstance(evt.index, int) and evt.index < len(ids) else 0
        return style_id, exemplar_label(name, style_id), GALLERY

    on_select.__annotations__["evt"] = gr.SelectData  # a real class: Gradio finds the event data by annotation

    def on_style_id(name, style_id):
        return exemplar_label(name, style_id)

    def preview(path, do_align, what):
        """A new upload: show the face that will be used, or reject the file (a warning, the upload cleared)."""
        if not path:
            return gr.update(), None
        try:
            return gr.update(), faces.get(path, what, do_align)
        except Exception as e:  # noqa: BLE001 - rejected with one sentence
            if not _for_people(e):
                log.exception("preview failed")
            gr.Warning(_message(e))
            return gr.update(value=None), None

    def on_exemplar_upload(path, do_align):
        photo_update, face = preview(path, do_align, "exemplar")
        return photo_update, face, (UPLOADED if face is not None else GALLERY)

    @guarded
    def run_transfer(name, photo, do_align, source, style_id, exemplar_path, structure, color, per_layer,
                     weights_text, preserve_color, truncation, encoder, progress=gr.Progress()):
        t0 = time.perf_counter()
        progress(0.0, desc="loading the style pack")
        pipe = pipes.get(name)
        progress(0.1, desc="finding the face" if do_align else "reading the photo")
        face = faces.get(photo, "photo", do_align)
        if source == UPLOADED:
            exemplar = to_tensor(faces.get(exemplar_path, "exemplar", do_align))
            tag, said = "exemplar", "your exemplar image"
        else:
            if pipe.codes is None:
                raise WebError("this style pack has no code bank; upload an exemplar image")
            if style_id is None:
                raise WebError("choose an exemplar in the gallery or type its style id")
            exemplar = int(style_id)
            ex_name = pipe.codes.name_of(exemplar)
            tag, said = f"{exemplar}", f"exemplar {exemplar} ({ex_name})"
        wkw = {"weights": parse_weights(weights_text)} if per_layer else {"structure": float(structure),
                                                                           "color": float(color)}
        wplus = encoder == "W+"
        if wplus and pipe.encoder_wplus is None:
            raise WebError("this style pack has no W+ encoder (encoder_wplus.pt); choose Z+")
        progress(0.3, desc="stylising")
        result = pipe.transfer(to_tensor(face), exemplar, preserve_color=bool(preserve_color),
                               truncation=float(truncation), wplus=wplus, **wkw)
        progress(0.9, desc="saving")
        portrait = to_image(result.image)
        png = outputs.png(portrait, f"{Path(str(photo)).stem}_{pipe.style}_{tag}.png")
        weights = ("per-layer weights " + format_weights(result.weights) if per_layer
                   else f"structure {float(structure):g}, color {float(color):g}")
        info = (f"{name}, {said}; {weights}; {encoder}{', colors preserved' if preserve_color else ''}; "
                f"truncation {float(truncation):g}; {portrait.width}×{portrait.height} in "
                f"{time.perf_counter() - t0:.1f} s")
        return (face, portrait), png, info

    @guarded
    def run_random(name, n, seed, fix_content, fix_structure, fix_color, truncation, progress=gr.Progress()):
        progress(0.0, desc="loading the style pack")
        pipe = pipes.get(name)
        if pipe.sampler is None:
            raise WebError(f"the style pack {name} has no sampler (sampler.pt), so it cannot draw random styles")
        progress(0.2, desc="drawing random portraits")
        images = pipe.generate(int(n), seed=int(seed or 0), fix_content=bool(fix_content),
                               fix_structure=bool(fix_structure), fix_color=bool(fix_color),
                               truncation=float(truncation))
        return [(to_image(im[None]), f"seed {int(seed or 0)}, #{i}") for i, im in enumerate(images)]

    @guarded
    def run_blend(name, photo, do_align, ex_a, ex_b, steps, duration_ms, bounce, progress=gr.Progress()):
        progress(0.0, desc="loading the style pack")
        pipe = pipes.get(name)
        if pipe.codes is None:
            raise WebError("this style pack has no code bank to blend")
        if not ex_a or not ex_b:
            raise WebError("choose two exemplars to blend")
        progress(0.1, desc="finding the face" if do_align else "reading the photo")
        face = faces.get(photo, "photo", do_align)
        progress(0.3, desc="blending")
        frames = pipe.blend(to_tensor(face), ex_a, ex_b, steps=int(steps))
        gif = outputs.gif([to_image(f) for f in frames],
                          f"{pipe.style}_{Path(ex_a).stem}_to_{Path(ex_b).stem}.gif", int(duration_ms), bool(bounce))
        return gif, gif

    # ------------------------------------------------------------------ layout
    model = {"concurrency_id": "model"}  # every event that runs a network shares the queue's limit

    # Gradio 6: the theme is an argument of launch() (see `launch` below); uploads older than an hour are deleted
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {title}\nTurn a face photo into an artistic portrait in the style of an exemplar "
                    "(DualStyleGAN, *Pastiche Master*, CVPR 2022).")
        with gr.Row():
            style = gr.Dropdown(pipes.names, value=pipes.names[0], label="Style pack", elem_id="style", scale=3)
            do_align = gr.Checkbox(value=align, label="Align the face (off: the photo is already a square face crop)",
                                   elem_id="align", scale=2)
        with gr.Tabs():
            with gr.Tab("Transfer", id="transfer"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(label="Photo", type="filepath", image_mode=None, elem_id="photo",
                                         sources=["upload", "webcam", "clipboard"], height=280)
                        face = gr.Image(label="Face used", interactive=False, format="png", elem_id="face",
                                        height=200)
                    with gr.Column():
                        gallery = gr.Gallery(label="Exemplars of this style pack", columns=4, height=300,
                                             allow_preview=False, format="png", elem_id="gallery")
                        page_label = gr.Markdown(elem_id="page-label")
                        with gr.Row():
                            prev_btn = gr.Button("◀ Previous", size="sm", elem_id="prev-page")
                            next_btn = gr.Button("Next ▶", size="sm", elem_id="next-page")
                        with gr.Row():
                            style_id = gr.Number(value=0, precision=0, minimum=0, label="Style id", elem_id="style-id")
                            source = gr.Radio([GALLERY, UPLOADED], value=GALLERY, label="Exemplar from",
                                              elem_id="source")
                        chosen = gr.Markdown(elem_id="chosen")
                        with gr.Accordion("…or upload any exemplar image", open=False):
                            exemplar = gr.Image(label="Exemplar image", type="filepath", image_mode=None,
                                                sources=["upload", "clipboard"], elem_id="exemplar", height=200)
                            exemplar_face = gr.Image(label="Exemplar used", interactive=False, format="png",
                                                     height=160, elem_id="exemplar-face")
                    with gr.Column():
                        structure = gr.Slider(0, 1, value=0.75, step=0.05, label="Structure weight (layers 1–7)",
                                              elem_id="structure")
                        color = gr.Slider(0, 1, value=1.0, step=0.05, label="Color weight (layers 8–18)",
                                          elem_id="color")
                        with gr.Row():
                            preserve = gr.Checkbox(label="Preserve the photo's colors", elem_id="preserve-color")
                            encoder = gr.Radio(["Z+", "W+"], value="Z+", label="Encode the photo in",
                                               elem_id="encoder")
                        with gr.Accordion("Advanced", open=False):
                            truncation = gr.Slider(0, 1, value=0.75, step=0.05, label="Truncation",
                                                   elem_id="truncation")
                            per_layer = gr.Checkbox(label="Use the 18 per-layer weights below instead of the sliders",
                                                    elem_id="per-layer")
                            weights_text = gr.Textbox(label="Per-layer weights (18 numbers in [0, 1]; 1–7 structure, "
                                                      "8–18 color)", elem_id="weights")
                        run = gr.Button("Stylise", variant="primary", elem_id="run")
                with gr.Column(elem_id="result-view"):
                    before_after = gr.ImageSlider(label="Before / after", type="pil", format="png", height=420,
                                                  elem_id="before-after", interactive=False)
                    download = gr.File(label="Download the portrait (PNG)", elem_id="download", interactive=False,
                                       height=90)
                    info = gr.Markdown(elem_id="result-info")

            with gr.Tab("Random portraits", id="random"):
                random_msg = gr.Markdown(visible=False, elem_id="random-msg")
                with gr.Row():
                    n = gr.Slider(1, 8, value=4, step=1, label="Portraits", elem_id="random-n")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="random-seed")
                    random_trunc = gr.Slider(0, 1, value=0.5, step=0.05, label="Truncation")
                with gr.Row():
                    fix_content = gr.Checkbox(label="Same face")
                    fix_structure = gr.Checkbox(label="Same structure style")
                    fix_color = gr.Checkbox(label="Same color style")
                random_btn = gr.Button("Draw", variant="primary", elem_id="random-run")
                random_gallery = gr.Gallery(label="Random portraits", columns=4, format="png",
                                            elem_id="random-gallery")

            with gr.Tab("Blend", id="blend"):
                with gr.Row():
                    with gr.Column():
                        blend_photo = gr.Image(label="Photo", type="filepath", image_mode=None, height=240,
                                               sources=["upload", "webcam", "clipboard"], elem_id="blend-photo")
                        blend_face = gr.Image(label="Face used", interactive=False, format="png", height=160)
                    with gr.Column():
                        ex_a = gr.Dropdown(label="From exemplar", elem_id="blend-a")
                        ex_b = gr.Dropdown(label="To exemplar", elem_id="blend-b")
                        steps = gr.Slider(2, 24, value=8, step=1, label="Frames")
                        duration = gr.Slider(40, 500, value=120, step=10, label="Milliseconds per frame")
                        bounce = gr.Checkbox(value=True, label="Play back and forth")
                        blend_btn = gr.Button("Blend", variant="primary", elem_id="blend-run")
                    with gr.Column():
                        blend_out = gr.Image(label="Blend", interactive=False, elem_id="blend-result")
                        blend_file = gr.File(label="Download the animation (GIF)", interactive=False)

        ids = gr.State([])
        page = gr.State(0)

        # ------------------------------------------------------------------ events
        for comp in (photo, exemplar, blend_photo):
            _keep_unreadable_uploads(comp)
        style_outputs = [gallery, ids, page, page_label, style_id, chosen, source, structure, color, per_layer,
                         weights_text, encoder, random_msg, random_btn, ex_a, ex_b]
        demo.load(on_style, [style], style_outputs, **model)
        style.change(on_style, [style], style_outputs, **model)
        prev_btn.click(lambda s, p, pr=gr.Progress(): on_page(s, p, -1, pr), [style, page],
                       [gallery, ids, page, page_label], **model)
        next_btn.click(lambda s, p, pr=gr.Progress(): on_page(s, p, 1, pr), [style, page],
                       [gallery, ids, page, page_label], **model)
        gallery.select(on_select, [style, ids], [style_id, chosen, source], concurrency_limit=None)
        style_id.change(on_style_id, [style, style_id], [chosen], concurrency_limit=None)
        photo.change(lambda p, a: preview(p, a, "photo"), [photo, do_align], [photo, face], **model)
        blend_photo.change(lambda p, a: preview(p, a, "photo"), [blend_photo, do_align], [blend_photo, blend_face],
                           **model)
        exemplar.change(on_exemplar_upload, [exemplar, do_align], [exemplar, exemplar_face, source], **model)
        for image, shown, what in ((photo, face, "photo"), (blend_photo, blend_face, "photo"),
                                   (exemplar, exemplar_face, "exemplar")):  # the align box: show the faces anew
            do_align.change(functools.partial(preview, what=what), [image, do_align], [image, shown], **model)
        transfer_inputs = [style, photo, do_align, source, style_id, exemplar, structure, color, per_layer,
                           weights_text, preserve, truncation, encoder]
        run.click(run_transfer, transfer_inputs, [before_after, download, info], **model)
        random_btn.click(run_random, [style, n, seed, fix_content, fix_structure, fix_color, random_trunc],
                         [random_gallery], **model)
        blend_btn.click(run_blend, [style, blend_photo, do_align, ex_a, ex_b, steps, duration, bounce],
                        [blend_out, blend_file], **model)

    demo.queue(default_concurrency_limit=max_concurrency, max_size=max(8, 8 * max_concurrency))
    demo.dualstylegan_max_upload_mb = max_upload_mb
    demo.dualstylegan_pipelines = pipes
    return demo


def _keep_unreadable_uploads(component) -> None:
    """Gradio opens an uploaded image with PIL before the handler runs, and a file PIL cannot read fails there with
    a message for developers. Keep such a file's path instead, so that ``images.load_image`` rejects it in one
    sentence (the component's class is unchanged, so the page is the stock image component)."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - reported by our loader
            path = getattr(payload, "path", None)
            if path:
                return str(path)
            raise

    component.preprocess = preprocess


def _theme(gr):
    """The default theme with system fonts: nothing is fetched from Google Fonts, the page loads offline."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])


def launch(demo, *, host: str = "127.0.0.1", port: int | None = 7860, max_upload_mb: float | None = None,
           block: bool = True, quiet: bool = False):
    """Serve ``demo`` on ``host:port`` (localhost by default; never a public share link). ``block=False`` returns
    at once with the server running in a background thread (tests). Uploads above ``max_upload_mb`` are refused
    by the server (and by the handlers, in one sentence). Returns what ``gr.Blocks.launch`` returns."""
    gr = _gradio()
    mb = max_upload_mb if max_upload_mb is not None else getattr(demo, "dualstylegan_max_upload_mb", 10)
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                       quiet=quiet, show_error=False, max_file_size=f"{mb:g}mb", ssr_mode=False, mcp_server=False,
                       theme=_theme(gr))
