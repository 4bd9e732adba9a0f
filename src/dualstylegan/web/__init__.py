"""The web app (``dualstylegan web``): a thin Gradio front end over :class:`~dualstylegan.pipeline.StyleTransferPipeline`.

Three tabs, each one pipeline call:

* **Transfer** — a photo (aligned like FFHQ unless asked not to) and an exemplar (a code-bank exemplar picked from a
  gallery of thumbnails, or any image) → an artistic portrait (§3.2, ``style_transfer.py``); structure / color
  weights (layers 1–7 / 8–18, §3.2) or all 18 per-layer weights, color preservation, truncation, Z+ or W+ encoding.
* **Random portraits** — random faces in random styles of the pack with the extrinsic style sampler (§3.4,
  ``generate.py``).
* **Blend** — an animation interpolating the extrinsic codes of two exemplars (Fig. 13).

:class:`StyleApp` (:mod:`.app`) holds the behaviour — handlers taking and returning plain values, callable without
Gradio; :mod:`.files` keeps its files (uploads' faces, results, the images shown); :func:`build_layout`
(:mod:`.layout`) wires them to a Gradio page and :func:`launch` (:mod:`.serve`) serves it on localhost.
Gradio is an optional extra (``pip install 'dualstylegan[web]'``) imported only by the layout. Every request is
guarded: a bad upload, no face, an unknown style id or an impossible weight vector becomes one sentence in the page;
a bug becomes "something went wrong", its traceback in the log.

    from dualstylegan.web import StyleApp, launch
    launch(StyleApp({"cartoon": pipe}))
"""
from __future__ import annotations

from .app import (
                  BUG_MESSAGE,
                  GALLERY,
                  PAGE_SIZE,
                  REFINE_MAX,
                  THUMBNAIL_SIZE,
                  UPLOADED,
                  GalleryPage,
                  Outcome,
                  Pipelines,
                  StyleApp,
                  StyleView,
                  TransferView,
                  WeightControls,
                  check_refine,
                  format_weights,
                  pack_loader,
                  parse_weights,
                  ready_styles,
                  refine_control,
                  weight_controls,
)
from .files import FaceCache, ResultFiles, WebError, inside, release_memory
from .layout import GRADIO_MISSING, build_layout, example_photos
from .serve import launch

__all__ = ["BUG_MESSAGE", "GALLERY", "GRADIO_MISSING", "PAGE_SIZE", "REFINE_MAX", "THUMBNAIL_SIZE", "UPLOADED",
           "FaceCache", "GalleryPage", "Outcome", "Pipelines", "ResultFiles", "StyleApp", "StyleView", "TransferView",
           "WebError", "WeightControls", "build_layout", "check_refine", "example_photos", "format_weights", "inside",
           "launch", "pack_loader", "parse_weights", "ready_styles", "refine_control", "release_memory",
           "weight_controls"]
