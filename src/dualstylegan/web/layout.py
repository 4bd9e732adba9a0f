"""The page: Gradio components wired to :class:`~dualstylegan.web.app.StyleApp`'s handlers.

Nothing here decides anything: each event calls one handler with the components' values and shows what it returns.
A failed request leaves the last good result on show and says why beside it (:meth:`StyleApp.attempt`). The page is
laid out for a laptop (1280×800): the photo on the left, shared by the tabs; in the Transfer tab the exemplars and
weights in the middle and the result on the right, at the top, scrolled into view when it arrives.
:mod:`.serve` serves the page.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from types import SimpleNamespace

from .app import (
    GALLERY,
    REFINE_MAX,
    UPLOADED,
    StyleApp,
    WebError,
    refine_control,
    weight_controls,
)

GRADIO_MISSING = "the web app needs Gradio, which is not installed: run pip install 'dualstylegan[web]'"
MODEL = {"concurrency_id": "model"}  # every event that runs a network (or decodes a photo) shares the queue's limit
EXAMPLES = Path(__file__).with_name("examples")
#: After a result arrives: bring it into view when it is not (block 'nearest': no jump when it is already visible).
SCROLL_TO = "() => {{ const e = document.getElementById('{}'); if (e) e.scrollIntoView({{block: 'nearest'}}); }}"


def gradio():
    """Gradio, imported with analytics and its version check off (the app must work offline)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio as gr
    except ImportError:
        raise WebError(GRADIO_MISSING) from None
    return gr


def example_photos() -> list[str]:
    """The example photos the page offers to click (scikit-image's astronaut; see examples/SOURCE.md)."""
    return sorted(str(p) for p in EXAMPLES.glob("*.jpg")) if EXAMPLES.is_dir() else []


def build_layout(app: StyleApp):
    """The Gradio page (``gr.Blocks``, queued: at most ``app.max_concurrency`` model calls at once, the others wait
    with their position shown) over ``app``'s handlers."""
    gr = gradio()
    # Gradio 6: theme and css are arguments of launch() (see serve.launch); uploads older than an hour are deleted
    with gr.Blocks(title=app.title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        names = app.pipelines.names
        with gr.Row(equal_height=True, elem_id="top"):
            gr.Markdown(f"## {app.title}\nA face photo + an exemplar → an artistic portrait (*Pastiche Master*, "
                        "CVPR 2022)", elem_id="title")
            style = gr.Dropdown(names, value=names[0], label="Style pack", elem_id="style", scale=1)
            align = gr.Checkbox(value=app.align, label="Align the face (off: the photo is a square face crop)",
                                elem_id="align", scale=1)
        ui = SimpleNamespace(style=style, align=align)
        with gr.Row(elem_id="main"):
            with gr.Column(scale=1, min_width=250, elem_id="photo-column"):
                _photo_column(gr, ui)
            with gr.Column(scale=4, min_width=640), gr.Tabs():
                with gr.Tab("Transfer", id="transfer"):
                    _transfer_tab(gr, app, ui)
                with gr.Tab("Random portraits", id="random"):
                    _random_tab(gr, app, ui)
                with gr.Tab("Blend", id="blend"):
                    _blend_tab(gr, app, ui)
                with gr.Tab("Video", id="video"):
                    _video_tab(gr, app, ui)
        ui.ids, ui.page = gr.State([]), gr.State(0)
        _wire(gr, app, ui, demo)
    demo.queue(default_concurrency_limit=app.max_concurrency, max_size=max(8, 8 * app.max_concurrency))
    return demo


def _photo_column(gr, ui: SimpleNamespace) -> None:
    ui.photo = gr.Image(label="Photo", type="filepath", image_mode=None, elem_id="photo",
                        sources=["upload", "webcam", "clipboard"], height=230)
    photos = example_photos()
    if photos:
        ui.examples = gr.Examples([[p] for p in photos], inputs=[ui.photo], label="Example photos (click one)",
                                  elem_id="examples")
    ui.face = gr.Image(label="Face used", interactive=False, format="png", elem_id="face", height=170)


def _transfer_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:  # long: one component per line of the page
    structure, color = app.default_preset
    with gr.Row():
        with gr.Column(scale=5, min_width=330):
            ui.gallery = gr.Gallery(label="Exemplars of this style pack (click one)", columns=4, height=250,
                                    allow_preview=False, format="png", elem_id="gallery")
            with gr.Row(equal_height=True):
                ui.prev_btn = gr.Button("◀", size="sm", elem_id="prev-page", scale=0, min_width=40)
                ui.page_label = gr.Markdown(elem_id="page-label")
                ui.next_btn = gr.Button("▶", size="sm", elem_id="next-page", scale=0, min_width=40)
            with gr.Row(equal_height=True):
                ui.style_id = gr.Number(value=0, precision=0, minimum=0, label="Style id", elem_id="style-id",
                                        min_width=90)
                ui.source = gr.Radio([GALLERY, UPLOADED], value=GALLERY, label="Exemplar from", elem_id="source",
                                     scale=2)
            ui.chosen = gr.Markdown(elem_id="chosen")
            with gr.Accordion("…or upload any exemplar image", open=False, elem_id="exemplar-panel"):
                with gr.Row():
                    ui.exemplar = gr.Image(label="Exemplar image", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard"], elem_id="exemplar", height=170)
                    ui.exemplar_face = gr.Image(label="Exemplar used", interactive=False, format="png", height=170,
                                                elem_id="exemplar-face")
                ui.refine = gr.Slider(0, REFINE_MAX, value=0, step=10, interactive=False, elem_id="refine",
                                      label="Refine the uploaded exemplar's code (steps; 0: off)",
                                      info="Fits the exemplar's style code to the image (§3.4); ~1 s per 10 steps.")
            ui.structure = gr.Slider(0, 1, value=structure, step=0.05, label="Structure weight (layers 1–7)",
                                     elem_id="structure")
            ui.color = gr.Slider(0, 1, value=color, step=0.05, label="Color weight (layers 8–18)", elem_id="color")
            ui.weights_note = gr.Markdown(elem_id="weights-note")
            with gr.Row():
                ui.preserve = gr.Checkbox(label="Preserve the photo's colors", elem_id="preserve-color")
                ui.encoder = gr.Radio(["Z+", "W+"], value="Z+", label="Encode the photo in", elem_id="encoder")
            with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                ui.truncation = gr.Slider(0, 1, value=app.transfer_truncation, step=0.05, label="Truncation",
                                          elem_id="truncation")
                ui.per_layer = gr.Checkbox(label="Use the 18 per-layer weights below instead of the two sliders",
                                           elem_id="per-layer")
                ui.weights_text = gr.Textbox(label="Per-layer weights (18 numbers in [0, 1]; 1–7 structure, "
                                             "8–18 color)", elem_id="weights", interactive=False)
        with gr.Column(scale=4, min_width=300, elem_id="result-view"):
            ui.run = gr.Button("Stylise", variant="primary", elem_id="run")
            ui.error = gr.Markdown(elem_id="result-error")
            ui.before_after = gr.ImageSlider(label="Before / after", type="filepath", format="png", height=330,
                                             elem_id="before-after", interactive=False)
            ui.info = gr.Markdown(elem_id="result-info")
            ui.download = gr.File(label="Download the portrait (PNG)", elem_id="download", interactive=False,
                                  visible=False)  # shown with the first result: an empty one is a tall blank box


def _random_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:
    ui.random_msg = gr.Markdown(visible=False, elem_id="random-msg")
    with gr.Row():
        ui.n = gr.Slider(1, 8, value=4, step=1, label="Portraits", elem_id="random-n")
        ui.seed = gr.Number(value=0, precision=0, label="Seed", elem_id="random-seed")
        ui.random_trunc = gr.Slider(0, 1, value=app.generate_truncation, step=0.05, label="Truncation")
    with gr.Row(equal_height=True):
        ui.fix_content = gr.Checkbox(label="Same face")
        ui.fix_structure = gr.Checkbox(label="Same structure style")
        ui.fix_color = gr.Checkbox(label="Same color style")
        ui.random_btn = gr.Button("Draw", variant="primary", elem_id="random-run")
    ui.random_error = gr.Markdown(elem_id="random-error")
    ui.random_gallery = gr.Gallery(label="Random portraits", columns=4, height=380, format="png",
                                   elem_id="random-gallery")


def _blend_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:
    with gr.Row():
        with gr.Column(scale=5, min_width=330):
            gr.Markdown("Blends the styles of two exemplars on the photo at the left (Fig. 13 of the paper).")
            ui.gallery_a = gr.Gallery(label="From exemplar (click one)", columns=6, height=150, allow_preview=False,
                                      format="png", elem_id="blend-a")
            ui.chosen_a = gr.Markdown(elem_id="chosen-a")
            ui.gallery_b = gr.Gallery(label="To exemplar (click one)", columns=6, height=150, allow_preview=False,
                                      format="png", elem_id="blend-b")
            ui.chosen_b = gr.Markdown(elem_id="chosen-b")
            with gr.Row():
                ui.ex_a = gr.Number(value=0, precision=0, minimum=0, label="From style id", elem_id="blend-id-a")
                ui.ex_b = gr.Number(value=1, precision=0, minimum=0, label="To style id", elem_id="blend-id-b")
            with gr.Row():
                ui.steps = gr.Slider(2, 24, value=app.blend_steps, step=1, label="Frames")
                ui.duration = gr.Slider(40, 500, value=120, step=10, label="Milliseconds per frame")
            ui.bounce = gr.Checkbox(value=True, label="Play back and forth")
        with gr.Column(scale=4, min_width=300, elem_id="blend-view"):
            ui.blend_btn = gr.Button("Blend", variant="primary", elem_id="blend-run")
            ui.blend_error = gr.Markdown(elem_id="blend-error")
            ui.blend_out = gr.Image(label="Blend", interactive=False, height=330, elem_id="blend-result")
            ui.blend_file = gr.File(label="Download the animation (GIF)", interactive=False, visible=False,
                                    elem_id="blend-file")


def _video_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:
    from .video import DEFAULT_PORTRAIT_SIZE, PORTRAIT_SIZES, video_unavailable

    missing = video_unavailable()
    gr.Markdown(f"Stylises every face of a short clip (at most {app.max_video_seconds:g} s and "
                f"{app.max_video_pixels / 1e6:.1f} megapixels a frame, e.g. 1920×1080) with the exemplar below; "
                "the sound is kept." + (f"\n\n⚠ {missing}" if missing else ""), elem_id="video-note")
    with gr.Row():
        with gr.Column(scale=5, min_width=330):
            ui.clip = gr.Video(label="Video clip", sources=["upload"], include_audio=True, height=250,
                               elem_id="video-clip")
            ui.gallery_v = gr.Gallery(label="Exemplar (click one)", columns=6, height=150, allow_preview=False,
                                      format="png", elem_id="video-gallery")
            ui.chosen_v = gr.Markdown(elem_id="video-chosen")
            with gr.Row():
                ui.video_id = gr.Number(value=0, precision=0, minimum=0, label="Style id", elem_id="video-style-id")
                ui.video_size = gr.Radio(list(PORTRAIT_SIZES), value=DEFAULT_PORTRAIT_SIZE, elem_id="video-size",
                                         label="Portrait size (smaller: faster; full: the model's size)")
        with gr.Column(scale=4, min_width=300, elem_id="video-view"):
            ui.video_btn = gr.Button("Stylise the video", variant="primary", elem_id="video-run",
                                     interactive=not missing)
            ui.video_error = gr.Markdown(elem_id="video-error")
            ui.video_out = gr.Video(label="Stylised video", interactive=False, height=330, elem_id="video-result")
            ui.video_info = gr.Markdown(elem_id="video-info")
            ui.video_file = gr.File(label="Download the video (MP4)", interactive=False, visible=False,
                                    elem_id="video-file")


def _guarded(gr, app: StyleApp, fn):
    """Every failure of a request → one sentence in the page (gr.Error); the server carries on."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - the contract: a message for the user, never a crash
            raise gr.Error(app.message(e), print_exception=False) from None
    return wrapper


def _failed(gr, outcome, n_outputs: int) -> tuple:
    """A failed request: the result components unchanged (the last good result stays), the sentence beside them
    and in a toast."""
    gr.Warning(outcome.error)
    return (f"⚠ {outcome.error}", *[gr.update()] * n_outputs)


def _handlers(gr, app: StyleApp) -> SimpleNamespace:  # long: one small function per event, each needs gr and app
    """The events' functions: a handler's plain values in, Gradio updates out."""
    shown = app.outputs.shown  # PIL → a file written once (see ResultFiles.shown)

    def page_items(g):
        return [(shown(im), caption) for im, caption in g.items]

    def on_style(name, progress=gr.Progress()):
        v = app.style_view(name, progress)
        g, names = v.gallery, v.exemplar_names
        items, top = page_items(g), max(0, len(names) - 1)
        return (gr.update(value=items, selected_index=None), g.ids, g.page, g.label,
                gr.update(value=0, maximum=top), v.chosen, GALLERY,
                gr.update(value=v.structure), gr.update(value=v.color), gr.update(value=v.per_layer), v.weights_text,
                gr.update(choices=["Z+", "W+"] if v.wplus else ["Z+"], value="Z+", interactive=v.wplus,
                          info=None if v.wplus else "W+ needs encoder_wplus.pt in the style pack"),
                gr.update(value=v.sampler_message, visible=not v.has_sampler), gr.update(interactive=v.has_sampler),
                gr.update(value=items, selected_index=None), gr.update(value=items, selected_index=None),
                gr.update(value=0, maximum=top), gr.update(value=min(1, top), maximum=top),
                app.exemplar_label(name, 0), app.exemplar_label(name, min(1, top)),
                gr.update(value=items, selected_index=None), gr.update(value=0, maximum=top),
                app.exemplar_label(name, 0))

    def on_page(name, page, delta, progress):
        g = app.gallery_page(name, int(page) + int(delta), progress)
        items = page_items(g)
        return (gr.update(value=items, selected_index=None), g.ids, g.page, g.label,
                gr.update(value=items, selected_index=None), gr.update(value=items, selected_index=None),
                gr.update(value=items, selected_index=None))

    def on_select(name, ids, evt):
        style_id = app.selected(ids, evt.index)
        return style_id, app.exemplar_label(name, style_id), GALLERY

    def on_select_id(ids, evt):
        return app.selected(ids, evt.index)

    for f in (on_select, on_select_id):  # a real class: Gradio finds the event data by annotation
        f.__annotations__["evt"] = gr.SelectData

    def preview(path, align, what):
        """A new upload: show the face that will be used, or reject the file (a warning, the upload cleared)."""
        if not path:
            return gr.update(), None
        try:
            return gr.update(), shown(app.face(path, align, what))
        except Exception as e:  # noqa: BLE001 - rejected with one sentence
            gr.Warning(app.message(e))
            return gr.update(value=None), None

    def on_exemplar_upload(path, align):
        photo_update, face = preview(path, align, "exemplar")
        return photo_update, face, (UPLOADED if face is not None else GALLERY)

    def on_per_layer(per_layer):
        c = weight_controls(bool(per_layer))
        return (gr.update(interactive=c.sliders), gr.update(interactive=c.sliders), c.note,
                gr.update(interactive=c.weights))

    # Gradio finds the progress tracker among the named parameters: each handler's are spelled out
    def run_transfer(name, photo, align, source, style_id, exemplar, structure, color, per_layer, weights_text,
                     preserve_color, truncation, encoder, refine, progress=gr.Progress()):
        o = app.attempt(app.transfer, name, photo, align, source, style_id, exemplar, structure, color, per_layer,
                        weights_text, preserve_color, truncation, encoder, progress=progress, refine=refine)
        if not o.ok:
            return _failed(gr, o, 3)
        v = o.result
        return "", (shown(v.face), shown(v.portrait)), v.info, gr.update(value=v.png, visible=True)

    def run_random(name, n, seed, fix_content, fix_structure, fix_color, truncation, progress=gr.Progress()):
        o = app.attempt(app.random, name, n, seed, fix_content, fix_structure, fix_color, truncation,
                        progress=progress)
        if not o.ok:
            return _failed(gr, o, 1)
        return "", [(shown(im), caption) for im, caption in o.result]

    def run_blend(name, photo, align, ex_a, ex_b, steps, duration_ms, bounce, progress=gr.Progress()):
        o = app.attempt(app.blend, name, photo, align, ex_a, ex_b, steps, duration_ms, bounce, progress=progress)
        return _failed(gr, o, 2) if not o.ok else ("", o.result, gr.update(value=o.result, visible=True))

    def run_video(name, clip, style_id, size, progress=gr.Progress()):
        o = app.attempt(app.video, name, clip, style_id, size, progress=progress)
        if not o.ok:
            return _failed(gr, o, 3)
        path, info = o.result
        return "", path, info, gr.update(value=path, visible=True)

    guard = functools.partial(_guarded, gr, app)
    return SimpleNamespace(on_style=guard(on_style), on_page=guard(on_page), on_select=on_select,
                           on_select_id=on_select_id, preview=preview, on_exemplar_upload=on_exemplar_upload,
                           on_per_layer=on_per_layer, run_transfer=guard(run_transfer), run_random=guard(run_random),
                           run_blend=guard(run_blend), run_video=guard(run_video))


def _wire(gr, app: StyleApp, ui: SimpleNamespace, demo) -> None:  # long: one line per event of the page
    h = _handlers(gr, app)
    for comp in (ui.photo, ui.exemplar):
        _keep_uploads_as_they_are(comp)
    style_outputs = [ui.gallery, ui.ids, ui.page, ui.page_label, ui.style_id, ui.chosen, ui.source, ui.structure,
                     ui.color, ui.per_layer, ui.weights_text, ui.encoder, ui.random_msg, ui.random_btn, ui.gallery_a,
                     ui.gallery_b, ui.ex_a, ui.ex_b, ui.chosen_a, ui.chosen_b, ui.gallery_v, ui.video_id, ui.chosen_v]
    demo.load(h.on_style, [ui.style], style_outputs, **MODEL)
    ui.style.change(h.on_style, [ui.style], style_outputs, **MODEL)
    page_outputs = [ui.gallery, ui.ids, ui.page, ui.page_label, ui.gallery_a, ui.gallery_b, ui.gallery_v]
    ui.prev_btn.click(lambda s, p, pr=gr.Progress(): h.on_page(s, p, -1, pr), [ui.style, ui.page], page_outputs,
                      **MODEL)
    ui.next_btn.click(lambda s, p, pr=gr.Progress(): h.on_page(s, p, 1, pr), [ui.style, ui.page], page_outputs,
                      **MODEL)
    ui.gallery.select(h.on_select, [ui.style, ui.ids], [ui.style_id, ui.chosen, ui.source], concurrency_limit=None)
    ui.style_id.change(app.exemplar_label, [ui.style, ui.style_id], [ui.chosen], concurrency_limit=None)
    for gallery, number, label in ((ui.gallery_a, ui.ex_a, ui.chosen_a), (ui.gallery_b, ui.ex_b, ui.chosen_b),
                                   (ui.gallery_v, ui.video_id, ui.chosen_v)):
        gallery.select(h.on_select_id, [ui.ids], [number], concurrency_limit=None)
        number.change(app.exemplar_label, [ui.style, number], [label], concurrency_limit=None)
    ui.photo.change(lambda p, a: h.preview(p, a, "photo"), [ui.photo, ui.align], [ui.photo, ui.face],
                    api_name="preview_photo", **MODEL)
    ui.exemplar.change(h.on_exemplar_upload, [ui.exemplar, ui.align], [ui.exemplar, ui.exemplar_face, ui.source],
                       **MODEL)
    ui.source.change(lambda s: gr.update(interactive=refine_control(s)), [ui.source], [ui.refine],
                     concurrency_limit=None)
    ui.per_layer.change(h.on_per_layer, [ui.per_layer], [ui.structure, ui.color, ui.weights_note, ui.weights_text],
                        concurrency_limit=None)
    for image, shown, what in ((ui.photo, ui.face, "photo"), (ui.exemplar, ui.exemplar_face, "exemplar")):
        ui.align.change(functools.partial(h.preview, what=what), [image, ui.align], [image, shown], **MODEL)
    transfer_inputs = [ui.style, ui.photo, ui.align, ui.source, ui.style_id, ui.exemplar, ui.structure, ui.color,
                       ui.per_layer, ui.weights_text, ui.preserve, ui.truncation, ui.encoder, ui.refine]
    ui.run.click(h.run_transfer, transfer_inputs, [ui.error, ui.before_after, ui.info, ui.download],
                 api_name="run_transfer", **MODEL).then(None, js=SCROLL_TO.format("result-view"))
    ui.random_btn.click(h.run_random, [ui.style, ui.n, ui.seed, ui.fix_content, ui.fix_structure, ui.fix_color,
                                       ui.random_trunc], [ui.random_error, ui.random_gallery], api_name="run_random",
                        **MODEL).then(None, js=SCROLL_TO.format("random-gallery"))
    ui.blend_btn.click(h.run_blend, [ui.style, ui.photo, ui.align, ui.ex_a, ui.ex_b, ui.steps, ui.duration,
                                     ui.bounce], [ui.blend_error, ui.blend_out, ui.blend_file], api_name="run_blend",
                       **MODEL).then(None, js=SCROLL_TO.format("blend-view"))
    ui.video_btn.click(h.run_video, [ui.style, ui.clip, ui.video_id, ui.video_size],
                       [ui.video_error, ui.video_out, ui.video_info, ui.video_file], api_name="run_video",
                       **MODEL).then(None, js=SCROLL_TO.format("video-view"))


def _keep_uploads_as_they_are(component) -> None:
    """The upload's own file, never a copy: Gradio would open an uploaded image with PIL before the handler runs
    (a file PIL cannot read fails there with a message for developers) and may write a re-encoded copy into its
    cache. The path goes to ``images.load_image``, which checks the size before decoding and rejects a bad file in
    one sentence (the component's class is unchanged, so the page is the stock image component)."""
    original = component.preprocess

    def preprocess(payload):
        path = getattr(payload, "path", None)
        if path and not (getattr(payload, "url", None) or "").startswith("data:"):
            return str(path)
        return original(payload)

    component.preprocess = preprocess


__all__ = ["EXAMPLES", "GRADIO_MISSING", "build_layout", "example_photos", "gradio"]
