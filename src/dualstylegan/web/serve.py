"""Serving the page: :func:`launch` on localhost, offline (no analytics, system fonts), every upload and cached file
in the app's own folder, and that folder removed on any stop — ``close()``, Ctrl+C (SIGINT) or SIGTERM.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

from .app import StyleApp
from .layout import build_layout, gradio

#: Laptop-size fixes to Gradio's stock CSS. A gallery's grid gives each column at least 100 px, so 4 columns in a
#: ~400 px column overflow and the 4th is cut off: the columns share the width instead (the thumbnails are square),
#: as many columns as asked even for a pack with fewer exemplars (else 3 thumbnails fill a row and overflow its height).
CSS = """
.grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
                  grid-template-rows: none !important; grid-auto-rows: auto !important; }
#gallery .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
#blend-a .grid-container, #blend-b .grid-container { grid-template-columns: repeat(6, minmax(0, 1fr)) !important; }
.grid-container .thumbnail-item { height: auto !important; aspect-ratio: 1 / 1; }
#title h2 { margin: 0; }
#result-error p, #blend-error p, #random-error p { color: var(--error-text-color); font-weight: 600; }
"""


def _theme(gr):
    """The default theme with system fonts: nothing is fetched from Google Fonts, the page loads offline."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])


@contextlib.contextmanager
def _sigterm_stops():
    """SIGTERM stops a blocking server the way Ctrl+C does (Gradio closes its server on KeyboardInterrupt), so that
    the clean-up below runs; the default handler would end the process on the spot. Only in the main thread (the
    only one that may set handlers); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _own_cache(app: StyleApp) -> str | None:
    """Gradio keeps uploads and served files in ``GRADIO_TEMP_DIR``: point it at the app's folder (read when the page
    and its server are built, and when an upload is checked), so that stopping the app removes them. Returns the
    previous value."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(app.outputs.folder)
    return previous


def _restore_cache(app: StyleApp, previous: str | None) -> None:
    if os.environ.get("GRADIO_TEMP_DIR") == str(app.outputs.folder):  # not changed since by another app
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def launch(app: StyleApp, *, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True,
           quiet: bool = False):
    """Serve ``app`` on ``host:port`` (localhost by default; never a public share link) and return its page
    (``gr.Blocks``). ``block=True`` serves until Ctrl+C or SIGTERM; ``block=False`` returns at once with the server
    running in a background thread (tests), and the page's ``.close()`` stops it. Either way the stop removes the
    app's folder: results, uploads and Gradio's cache. Uploads above ``app.max_upload_mb`` are refused by the server
    (and by the handlers, in one sentence)."""
    gr = gradio()
    previous = _own_cache(app)
    demo = None

    def stop(close=None, *args, **kwargs):
        try:
            if close is not None:
                close(*args, **kwargs)
        finally:
            app.close()
            _restore_cache(app, previous)

    try:
        demo = build_layout(app)
        demo.close = lambda *a, _close=demo.close, **k: stop(_close, *a, **k)
        with _sigterm_stops():
            demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                        prevent_thread_lock=not block, quiet=quiet, show_error=False,
                        max_file_size=f"{app.max_upload_mb:g}mb", ssr_mode=False, mcp_server=False, theme=_theme(gr),
                        css=CSS)
    except BaseException:
        demo.close() if demo is not None else stop()
        raise
    if block:  # the server has stopped (Ctrl+C, SIGTERM)
        demo.close(verbose=False)
    return demo


__all__ = ["CSS", "launch"]
