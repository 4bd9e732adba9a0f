"""The page: Gradio components wired to :class:`~dualstylegan.web.app.StyleApp`'s handlers, and :func:`launch`.

Nothing here decides anything: each event calls one handler with the components' values and shows what it returns;
an exception becomes one sentence in the page (:meth:`StyleApp.message`). The page loads offline: no analytics, no
version check, system fonts only.
"""
from __future__ import annotations

import functools
import os
from types import SimpleNamespace

from .app import GALLERY, UPLOADED, StyleApp, WebError

GRADIO_MISSING = "the web app needs Gradio, which is not installed: run pip install 'dualstylegan[web]'"
MODEL = {"concurrency_id": "model"}  # every event that runs a network shares the queue's limit


def gradio():
    """Gradio, imported with analytics and its version check off (the app must work offline)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio as gr
    except ImportError:
        raise WebError(GRADIO_MISSING) from None
    return gr


def build_layout(app: StyleApp):
    """The Gradio page (``gr.Blocks``, queued: at most ``app.max_concurrency`` model calls at once, the others wait
    with their position shown) over ``app``'s handlers."""
    gr = gradio()
    # Gradio 6: the theme is an argument of launch() (see `launch` below); uploads older than an hour are deleted
    with gr.Blocks(title=app.title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {app.title}\nTurn a face photo into an artistic portrait in the style of an exemplar "
                    "(DualStyleGAN, *Pastiche Master*, CVPR 2022).")
        names = app.pipelines.names
        with gr.Row():
            style = gr.Dropdown(names, value=names[0], label="Style pack", elem_id="style", scale=3)
            align = gr.Checkbox(value=app.align, label="Align the face (off: the photo is already a square face crop)",
                                elem_id="align", scale=2)
        ui = SimpleNamespace(style=style, align=align, ids=None, page=None)
        with gr.Tabs():
            with gr.Tab("Transfer", id="transfer"):
                _transfer_tab(gr, app, ui)
            with gr.Tab("Random portraits", id="random"):
                _random_tab(gr, app, ui)
            with gr.Tab("Blend", id="blend"):
                _blend_tab(gr, app, ui)
        ui.ids, ui.page = gr.State([]), gr.State(0)
        _wire(gr, app, ui, demo)
    demo.queue(default_concurrency_limit=app.max_concurrency, max_size=max(8, 8 * app.max_concurrency))
    return demo


def _transfer_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:  # long: one component per line of the page
    structure, color = app.default_preset
    with gr.Row():
        with gr.Column():
            ui.photo = gr.Image(label="Photo", type="filepath", image_mode=None, elem_id="photo",
                                sources=["upload", "webcam", "clipboard"], height=280)
            ui.face = gr.Image(label="Face used", interactive=False, format="png", elem_id="face", height=200)
        with gr.Column():
            ui.gallery = gr.Gallery(label="Exemplars of this style pack", columns=4, height=300, allow_preview=False,
                                    format="png", elem_id="gallery")
            ui.page_label = gr.Markdown(elem_id="page-label")
            with gr.Row():
                ui.prev_btn = gr.Button("◀ Previous", size="sm", elem_id="prev-page")
                ui.next_btn = gr.Button("Next ▶", size="sm", elem_id="next-page")
            with gr.Row():
                ui.style_id = gr.Number(value=0, precision=0, minimum=0, label="Style id", elem_id="style-id")
                ui.source = gr.Radio([GALLERY, UPLOADED], value=GALLERY, label="Exemplar from", elem_id="source")
            ui.chosen = gr.Markdown(elem_id="chosen")
            with gr.Accordion("…or upload any exemplar image", open=False):
                ui.exemplar = gr.Image(label="Exemplar image", type="filepath", image_mode=None,
                                       sources=["upload", "clipboard"], elem_id="exemplar", height=200)
                ui.exemplar_face = gr.Image(label="Exemplar used", interactive=False, format="png", height=160,
                                            elem_id="exemplar-face")
        with gr.Column():
            ui.structure = gr.Slider(0, 1, value=structure, step=0.05, label="Structure weight (layers 1–7)",
                                     elem_id="structure")
            ui.color = gr.Slider(0, 1, value=color, step=0.05, label="Color weight (layers 8–18)", elem_id="color")
            with gr.Row():
                ui.preserve = gr.Checkbox(label="Preserve the photo's colors", elem_id="preserve-color")
                ui.encoder = gr.Radio(["Z+", "W+"], value="Z+", label="Encode the photo in", elem_id="encoder")
            with gr.Accordion("Advanced", open=False):
                ui.truncation = gr.Slider(0, 1, value=app.transfer_truncation, step=0.05, label="Truncation",
                                          elem_id="truncation")
                ui.per_layer = gr.Checkbox(label="Use the 18 per-layer weights below instead of the sliders",
                                           elem_id="per-layer")
                ui.weights_text = gr.Textbox(label="Per-layer weights (18 numbers in [0, 1]; 1–7 structure, "
                                             "8–18 color)", elem_id="weights")
            ui.run = gr.Button("Stylise", variant="primary", elem_id="run")
    with gr.Column(elem_id="result-view"):
        ui.before_after = gr.ImageSlider(label="Before / after", type="pil", format="png", height=420,
                                         elem_id="before-after", interactive=False)
        ui.download = gr.File(label="Download the portrait (PNG)", elem_id="download", interactive=False, height=90)
        ui.info = gr.Markdown(elem_id="result-info")


def _random_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:
    ui.random_msg = gr.Markdown(visible=False, elem_id="random-msg")
    with gr.Row():
        ui.n = gr.Slider(1, 8, value=4, step=1, label="Portraits", elem_id="random-n")
        ui.seed = gr.Number(value=0, precision=0, label="Seed", elem_id="random-seed")
        ui.random_trunc = gr.Slider(0, 1, value=app.generate_truncation, step=0.05, label="Truncation")
    with gr.Row():
        ui.fix_content = gr.Checkbox(label="Same face")
        ui.fix_structure = gr.Checkbox(label="Same structure style")
        ui.fix_color = gr.Checkbox(label="Same color style")
    ui.random_btn = gr.Button("Draw", variant="primary", elem_id="random-run")
    ui.random_gallery = gr.Gallery(label="Random portraits", columns=4, format="png", elem_id="random-gallery")


def _blend_tab(gr, app: StyleApp, ui: SimpleNamespace) -> None:
    with gr.Row():
        with gr.Column():
            ui.blend_photo = gr.Image(label="Photo", type="filepath", image_mode=None, height=240,
                                      sources=["upload", "webcam", "clipboard"], elem_id="blend-photo")
            ui.blend_face = gr.Image(label="Face used", interactive=False, format="png", height=160)
        with gr.Column():
            ui.ex_a = gr.Dropdown(label="From exemplar", elem_id="blend-a")
            ui.ex_b = gr.Dropdown(label="To exemplar", elem_id="blend-b")
            ui.steps = gr.Slider(2, 24, value=app.blend_steps, step=1, label="Frames")
            ui.duration = gr.Slider(40, 500, value=120, step=10, label="Milliseconds per frame")
            ui.bounce = gr.Checkbox(value=True, label="Play back and forth")
            ui.blend_btn = gr.Button("Blend", variant="primary", elem_id="blend-run")
        with gr.Column():
            ui.blend_out = gr.Image(label="Blend", interactive=False, elem_id="blend-result")
            ui.blend_file = gr.File(label="Download the animation (GIF)", interactive=False)


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


def _handlers(gr, app: StyleApp) -> SimpleNamespace:
    """The events' functions: a handler's plain values in, Gradio updates out."""
    def on_style(name, progress=gr.Progress()):
        v = app.style_view(name, progress)
        g, names = v.gallery, v.exemplar_names
        return (gr.update(value=g.items, selected_index=None), g.ids, g.page, g.label,
                gr.update(value=0, maximum=max(0, len(names) - 1)), v.chosen, GALLERY,
                gr.update(value=v.structure), gr.update(value=v.color), gr.update(value=v.per_layer), v.weights_text,
                gr.update(choices=["Z+", "W+"] if v.wplus else ["Z+"], value="Z+", interactive=v.wplus,
                          info=None if v.wplus else "W+ needs encoder_wplus.pt in the style pack"),
                gr.update(value=v.sampler_message, visible=not v.has_sampler), gr.update(interactive=v.has_sampler),
                gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=names, value=names[min(1, len(names) - 1)] if names else None))

    def on_page(name, page, delta, progress):
        g = app.gallery_page(name, int(page) + int(delta), progress)
        return gr.update(value=g.items, selected_index=None), g.ids, g.page, g.label

    def on_select(name, ids, evt):
        style_id = app.selected(ids, evt.index)
        return style_id, app.exemplar_label(name, style_id), GALLERY

    on_select.__annotations__["evt"] = gr.SelectData  # a real class: Gradio finds the event data by annotation

    def preview(path, align, what):
        """A new upload: show the face that will be used, or reject the file (a warning, the upload cleared)."""
        if not path:
            return gr.update(), None
        try:
            return gr.update(), app.face(path, align, what)
        except Exception as e:  # noqa: BLE001 - rejected with one sentence
            gr.Warning(app.message(e))
            return gr.update(value=None), None

    def on_exemplar_upload(path, align):
        photo_update, face = preview(path, align, "exemplar")
        return photo_update, face, (UPLOADED if face is not None else GALLERY)

    # Gradio finds the progress tracker among the named parameters: each handler's are spelled out
    def run_transfer(name, photo, align, source, style_id, exemplar, structure, color, per_layer, weights_text,
                     preserve_color, truncation, encoder, progress=gr.Progress()):
        v = app.transfer(name, photo, align, source, style_id, exemplar, structure, color, per_layer, weights_text,
                         preserve_color, truncation, encoder, progress=progress)
        return (v.face, v.portrait), v.png, v.info

    def run_random(name, n, seed, fix_content, fix_structure, fix_color, truncation, progress=gr.Progress()):
        return app.random(name, n, seed, fix_content, fix_structure, fix_color, truncation, progress=progress)

    def run_blend(name, photo, align, ex_a, ex_b, steps, duration_ms, bounce, progress=gr.Progress()):
        gif = app.blend(name, photo, align, ex_a, ex_b, steps, duration_ms, bounce, progress=progress)
        return gif, gif

    guard = functools.partial(_guarded, gr, app)
    return SimpleNamespace(on_style=guard(on_style), on_page=guard(on_page), on_select=on_select, preview=preview,
                           on_exemplar_upload=on_exemplar_upload, run_transfer=guard(run_transfer),
                           run_random=guard(run_random), run_blend=guard(run_blend))


def _wire(gr, app: StyleApp, ui: SimpleNamespace, demo) -> None:  # long: one line per event of the page
    h = _handlers(gr, app)
    for comp in (ui.photo, ui.exemplar, ui.blend_photo):
        _keep_unreadable_uploads(comp)
    style_outputs = [ui.gallery, ui.ids, ui.page, ui.page_label, ui.style_id, ui.chosen, ui.source, ui.structure,
                     ui.color, ui.per_layer, ui.weights_text, ui.encoder, ui.random_msg, ui.random_btn, ui.ex_a,
                     ui.ex_b]
    demo.load(h.on_style, [ui.style], style_outputs, **MODEL)
    ui.style.change(h.on_style, [ui.style], style_outputs, **MODEL)
    page_outputs = [ui.gallery, ui.ids, ui.page, ui.page_label]
    ui.prev_btn.click(lambda s, p, pr=gr.Progress(): h.on_page(s, p, -1, pr), [ui.style, ui.page], page_outputs,
                      **MODEL)
    ui.next_btn.click(lambda s, p, pr=gr.Progress(): h.on_page(s, p, 1, pr), [ui.style, ui.page], page_outputs,
                      **MODEL)
    ui.gallery.select(h.on_select, [ui.style, ui.ids], [ui.style_id, ui.chosen, ui.source], concurrency_limit=None)
    ui.style_id.change(app.exemplar_label, [ui.style, ui.style_id], [ui.chosen], concurrency_limit=None)
    ui.photo.change(lambda p, a: h.preview(p, a, "photo"), [ui.photo, ui.align], [ui.photo, ui.face], **MODEL)
    ui.blend_photo.change(lambda p, a: h.preview(p, a, "photo"), [ui.blend_photo, ui.align],
                          [ui.blend_photo, ui.blend_face], **MODEL)
    ui.exemplar.change(h.on_exemplar_upload, [ui.exemplar, ui.align], [ui.exemplar, ui.exemplar_face, ui.source],
                       **MODEL)
    for image, shown, what in ((ui.photo, ui.face, "photo"), (ui.blend_photo, ui.blend_face, "photo"),
                               (ui.exemplar, ui.exemplar_face, "exemplar")):  # the align box: show the faces anew
        ui.align.change(functools.partial(h.preview, what=what), [image, ui.align], [image, shown], **MODEL)
    transfer_inputs = [ui.style, ui.photo, ui.align, ui.source, ui.style_id, ui.exemplar, ui.structure, ui.color,
                       ui.per_layer, ui.weights_text, ui.preserve, ui.truncation, ui.encoder]
    ui.run.click(h.run_transfer, transfer_inputs, [ui.before_after, ui.download, ui.info], api_name="run_transfer",
                 **MODEL)
    ui.random_btn.click(h.run_random, [ui.style, ui.n, ui.seed, ui.fix_content, ui.fix_structure, ui.fix_color,
                                       ui.random_trunc], [ui.random_gallery], api_name="run_random", **MODEL)
    ui.blend_btn.click(h.run_blend, [ui.style, ui.blend_photo, ui.align, ui.ex_a, ui.ex_b, ui.steps, ui.duration,
                                     ui.bounce], [ui.blend_out, ui.blend_file], api_name="run_blend", **MODEL)


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


def launch(app: StyleApp, *, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True,
           quiet: bool = False):
    """Serve ``app`` on ``host:port`` (localhost by default; never a public share link) and return its page
    (``gr.Blocks``; ``.close()`` stops it). ``block=False`` returns at once with the server running in a
    background thread (tests). Uploads above ``app.max_upload_mb`` are refused by the server (and by the
    handlers, in one sentence)."""
    gr = gradio()
    demo = build_layout(app)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                quiet=quiet, show_error=False, max_file_size=f"{app.max_upload_mb:g}mb", ssr_mode=False,
                mcp_server=False, theme=_theme(gr))
    return demo


__all__ = ["GRADIO_MISSING", "build_layout", "gradio", "launch"]
