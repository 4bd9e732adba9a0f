"""The options the ``dualstylegan`` verbs share (style, weights, faces, output and device), one definition each, and
the pipeline they describe (:func:`load_pipeline`); :mod:`dualstylegan.cli` and :mod:`dualstylegan.video_cli` build
their verbs from them. Nothing here imports torch until a pipeline is loaded."""
from __future__ import annotations

import argparse
import sys


def presets_help() -> str:
    """The registry's transfer presets, for --help: 'cartoon 0.75/1, caricature 1/1, anime 0 (layers 1-4) …'."""
    from .styles import list_styles

    def fmt(v) -> str:
        return f"{v:g}" if isinstance(v, (int, float)) else "/".join(dict.fromkeys(f"{x:g}" for x in v)) + " by layer"

    return ", ".join(f"{s.name} {fmt(s.structure)}/{fmt(s.color)}" for s in list_styles()[:3]) + \
        ", others 0.75/1"


def style_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", default="cartoon",
                   help="style name (cartoon, caricature, anime, arcane, comic, pixar, slamdunk, …), a local style "
                        "folder or a Hugging Face repo id (default: cartoon)")


def common_options(p: argparse.ArgumentParser, output_help: str = "output folder, or a file name such as portrait.png "
            "when one image is written (default: output)") -> None:
    p.add_argument("--offline", action="store_true",
                   help="use only files already downloaded, never the network, as HF_HUB_OFFLINE=1 (default: off)")
    p.add_argument("-o", "--output", default="output", help=output_help)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to run (default: auto, a GPU when there is one)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="float16/bfloat16 are for GPUs (default: float32)")
    p.add_argument("--debug", action="store_true", help="show tracebacks (default: one sentence per error)")


def weight_options(p: argparse.ArgumentParser, truncation: float, *, encodes: bool = True) -> None:
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="the 18 per-layer weights in [0, 1], 0: the photo's own, 1: the exemplar's "
                        "(default: the style's preset)")
    p.add_argument("--structure", type=float,
                   help=f"weight of layers 1-7 (structure) in [0, 1] (default: the style's preset: {presets_help()})")
    p.add_argument("--color", type=float, help="weight of layers 8-18 (color) in [0, 1] (default: the style's "
                                               "preset, 1)")
    p.add_argument("--truncation", type=float, default=truncation,
                   help=f"scale the intrinsic (face) code toward 0 by this factor; 1: none (default: {truncation})")
    if encodes:
        p.add_argument("--wplus", action="store_true",
                       help="encode in W+ with encoder_wplus.pt (default: Z+ with encoder.pt)")


def face_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-align", action="store_true",
                   help="photos are already face crops: their centred square is used as it is (default: find and "
                        "align the face); an --exemplar is aligned when it has a face either way")
    p.add_argument("--detector", default="hog", choices=["hog", "cnn"],
                   help="face detector: dlib's HOG, or its CNN (more robust, 15-30x slower on a CPU) "
                        "(default: hog)")
    p.add_argument("--face-threshold", type=float, metavar="SCORE",
                   help="detector score a face needs; lower finds more, and more that are not faces "
                        "(default: 0.4 for hog, 0.5 for cnn)")


def load_pipeline(args, *, sampler: bool = False):
    """The verb's pipeline and its weight options, both checked (a bad weight vector is one error, not one per photo)."""
    from . import hub
    from .devices import resolve_device, resolve_dtype
    from .pipeline import StyleTransferPipeline
    from .style_weights import check_truncation

    opts = {"weights": args.weights, "structure": args.structure, "color": args.color}
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    kw = {"local_files_only": True} if args.offline else {}
    hub.announce = lambda line: print(line, file=sys.stderr, flush=True)  # before huggingface_hub's own bar
    pipe = StyleTransferPipeline.from_pretrained(args.style, device=device, dtype=dtype,
                                                 wplus=getattr(args, "wplus", False), sampler=sampler, **kw)
    pipe.weights_for(**opts)
    check_truncation(args.truncation)
    return pipe, opts


__all__ = ["load_pipeline", "common_options", "face_options", "presets_help", "style_option", "weight_options"]
