"""``dualstylegan <verb>``: thin argument parsing over the library (the reference's ``style_transfer.py`` and
``generate.py`` as verbs). Each verb parses, calls the library, and prints what came back.

Errors: a user error (:class:`~dualstylegan.errors.DualStyleGANError`, or the system refusing a file) prints
``error: <one sentence>``; anything else is a bug and says to rerun with ``--debug`` for the traceback. Exit code 1
either way. torch is imported by the verbs that need it, not at parse time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .defaults import BLEND_STEPS, GENERATE_COUNT, GENERATE_TRUNCATION, TRANSFER_TRUNCATION
from .errors import UsageError, is_user_error, sentence

EXIT_ERROR = 1
#: How this front end turns face alignment off, in the words of the library's messages (faces.SKIP_ALIGNMENT).
NO_ALIGN_HINT = "pass --no-align"


def say(e: BaseException) -> str:
    """The sentence the CLI prints for a user error: the library's, with its own way to skip alignment."""
    text = sentence(e)
    faces = sys.modules.get("dualstylegan.faces")  # only an error from there mentions alignment
    if faces is not None and isinstance(e, (faces.NoFaceError, faces.MissingExtraError)):
        text = text.replace(faces.SKIP_ALIGNMENT, NO_ALIGN_HINT)
    return text


# ----------------------------------------------------------------------------------------- helpers
def _load_pipeline(args, *, sampler: bool = False):
    """The verb's pipeline and its weight options, both checked (a bad weight vector is one error, not one per photo)."""
    from .devices import resolve_device, resolve_dtype
    from .pipeline import StyleTransferPipeline, check_truncation

    opts = {"weights": args.weights, "structure": args.structure, "color": args.color}
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    kw = {"local_files_only": True} if args.offline else {}
    pipe = StyleTransferPipeline.from_pretrained(args.style, device=device, dtype=dtype,
                                                 wplus=getattr(args, "wplus", False), sampler=sampler, **kw)
    pipe.weights_for(**opts)
    check_truncation(args.truncation)
    return pipe, opts


def _face_tensor(path: str, align: bool):
    from .faces import prepare_face
    from .images import to_tensor

    return to_tensor(prepare_face(Path(path), align)[0].image)


# ----------------------------------------------------------------------------------------- verbs
def cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .batch import check_output_folder, collect_inputs, stylize_files

    files = collect_inputs(args.photos)
    if args.exemplar and args.style_id is not None:
        raise UsageError("give either --style-id or --exemplar, not both")
    out = check_output_folder(args.output)
    pipe, opts = _load_pipeline(args)
    exemplar = Path(args.exemplar) if args.exemplar else (args.style_id or 0)
    results = stylize_files(pipe, files, out, exemplar=exemplar, align=not args.no_align, all_faces=args.all_faces,
                            paste_back=args.paste_back, overview=args.overview, overwrite=args.overwrite,
                            preserve_color=args.preserve_color, truncation=args.truncation, wplus=args.wplus,
                            seed=args.seed, **opts)
    failures = written = 0
    for r in tqdm(results, total=len(files), desc="stylising", unit="photo", disable=args.quiet or len(files) < 2):
        written += len(r.portraits)
        if r.exception is not None:
            if args.debug:
                raise r.exception
            failures += 1
            tqdm.write(f"skipped {r.input}: {say(r.exception)}", file=sys.stderr)  # not through the bar
    print(f"{written} portrait(s) written to {out}" + (f"; {failures} of {len(files)} photo(s) failed"
                                                        if failures else ""))
    return EXIT_ERROR if failures else 0


def cmd_generate(args) -> int:
    from .batch import check_free, check_output_folder, generate_names
    from .images import save_image

    out = check_output_folder(args.output)
    pipe, opts = _load_pipeline(args, sampler=True)
    targets = [out / name for name in generate_names(pipe.style, args.seed, args.n)]
    check_free(targets, args.overwrite)
    images = pipe.generate(args.n, seed=args.seed, fix_content=args.fix_content, fix_color=args.fix_color,
                           fix_structure=args.fix_structure, truncation=args.truncation, **opts)
    for img, target in zip(images, targets):
        save_image(img, target, overwrite=args.overwrite)
    print(f"{len(images)} portrait(s) written to {out}")
    return 0


def cmd_blend(args) -> int:
    from .batch import blend_names, check_free, check_output_folder
    from .images import save_animation, save_image

    out = check_output_folder(args.output)
    pipe, opts = _load_pipeline(args)
    frame_names, gif_name = blend_names(Path(args.photo).stem, pipe.style, args.steps)
    targets = [out / name for name in frame_names]
    check_free([*targets, out / gif_name], args.overwrite)
    content = _face_tensor(args.photo, not args.no_align)
    content_b = _face_tensor(args.photo_b, not args.no_align) if args.photo_b else None
    frames = pipe.blend(content, args.style_id, args.style_id_b, content_b=content_b, steps=args.steps,
                        wplus=args.wplus, truncation=args.truncation, **opts)
    for f, target in zip(frames, targets):
        save_image(f, target, overwrite=args.overwrite)
    save_animation(frames, out / gif_name, overwrite=args.overwrite)
    print(f"{len(frames)} frame(s) and {gif_name} written to {out}")
    return 0


def cmd_styles(args) -> int:
    from .hub import list_styles

    for s in list_styles():
        present = ", ".join(s.get("present", [])) or "nothing downloaded"
        print(f"{s['name']:<14} {s['published']:<6} {present}")
    return 0


def cmd_download(args) -> int:
    from .hub import download_style

    files = download_style(args.style_name, need_sampler=args.sampler, need_wplus=args.wplus)
    print(f"{files.name}: {files.folder}")
    return 0


def cmd_web(args) -> int:
    from . import web
    from .devices import resolve_device

    loader = web.pack_loader(resolve_device(args.device), local_files_only=args.offline)
    styles = args.style or web.ready_styles() or ["cartoon"]
    app = web.StyleApp(loader, styles=styles, align=not args.no_align, max_upload_mb=args.max_upload_mb,
                       max_concurrency=args.max_concurrency, exemplar_images=args.exemplar_images or ())
    app.pipelines.get(styles[0])  # fail now, not in the page, when the first pack cannot load
    print(f"serving {', '.join(styles)} on http://{args.host}:{args.port} (Ctrl+C stops)")
    web.launch(app, host=args.host, port=args.port, quiet=True)
    return 0


# ----------------------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", default="cartoon", help="style name, local style folder or hub id (default: cartoon)")
    p.add_argument("--offline", action="store_true", help="use only files already downloaded")
    p.add_argument("-o", "--output", default="output", help="output folder (default: output)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to run (default: a GPU when there is one)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="float16/bfloat16 are for GPUs (default: float32)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _weight_args(p: argparse.ArgumentParser, truncation: float, *, encodes: bool = True) -> None:
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="the 18 per-layer weights in [0, 1] (0: the photo's own, 1: the exemplar's)")
    p.add_argument("--structure", type=float, help="weight of layers 1-7 (structure); style preset by default")
    p.add_argument("--color", type=float, help="weight of layers 8-18 (color); style preset by default")
    p.add_argument("--truncation", type=float, default=truncation,
                   help=f"scale the intrinsic (face) code toward 0 by this factor; 1: none (default: {truncation})")
    if encodes:
        p.add_argument("--wplus", action="store_true", help="encode in W+ with encoder_wplus.pt")


def _inference_parsers(sub) -> None:
    p = sub.add_parser("transfer", help="stylise face photos with an exemplar")
    p.add_argument("photos", nargs="+", help="photos or folders")
    p.add_argument("--style-id", type=int, help="exemplar id in the style's code bank (default: 0)")
    p.add_argument("--exemplar", help="any exemplar image instead of a style id (aligned like the photos)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colors")
    p.add_argument("--no-align", action="store_true",
                   help="photos are already face crops: their centred square is used as it is")
    p.add_argument("--all-faces", action="store_true", help="stylise every face, not only the largest")
    p.add_argument("--paste-back", action="store_true", help="also paste the result into the original photo")
    p.add_argument("--overview", action="store_true", help="also save content | reconstruction | exemplar | result")
    p.add_argument("--seed", type=int, help="fresh noise from this seed (default: the stored noise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _weight_args(p, TRANSFER_TRUNCATION)
    _common(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("generate", help="random portraits in random styles (needs sampler.pt)")
    p.add_argument("-n", type=int, default=GENERATE_COUNT, help=f"how many portraits (default: {GENERATE_COUNT})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--fix-content", action="store_true", help="one face for every portrait")
    p.add_argument("--fix-color", action="store_true", help="one color style for every portrait")
    p.add_argument("--fix-structure", action="store_true", help="one structure style for every portrait")
    _weight_args(p, GENERATE_TRUNCATION, encodes=False)
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("blend", help="interpolate between two exemplars (and/or two photos): frames and a GIF")
    p.add_argument("photo", help="the content photo")
    p.add_argument("--photo-b", help="second content photo to interpolate toward")
    p.add_argument("--style-id", type=int, default=0, help="first exemplar id (default: 0)")
    p.add_argument("--style-id-b", type=int, help="second exemplar id (default: the first)")
    p.add_argument("--steps", type=int, default=BLEND_STEPS, help=f"number of frames (default: {BLEND_STEPS})")
    p.add_argument("--no-align", action="store_true",
                   help="photos are already face crops: their centred square is used as it is")
    _weight_args(p, TRANSFER_TRUNCATION)
    _common(p)
    p.set_defaults(func=cmd_blend)


def _service_parsers(sub) -> None:
    p = sub.add_parser("styles", help="known style packs and what is downloaded")
    p.set_defaults(func=cmd_styles, debug=False)

    p = sub.add_parser("download", help="download a style pack from the Hugging Face Hub")
    p.add_argument("style_name")
    p.add_argument("--sampler", action="store_true", help="require sampler.pt (Google Drive only: local)")
    p.add_argument("--wplus", action="store_true", help="require encoder_wplus.pt (Google Drive only: local)")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("web", help="the web app (needs the web extra: pip install 'dualstylegan[web]')")
    p.add_argument("--style", action="extend", nargs="+", metavar="NAME_OR_PATH",
                   help="style packs to serve (default: every pack ready on this machine, else cartoon)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-concurrency", type=int, default=1, help="model calls run at once; the rest queue")
    p.add_argument("--max-upload-mb", type=float, default=10, help="largest accepted upload")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--no-align", action="store_true", help="photos are already face crops (the page's default)")
    p.add_argument("--exemplar-images", action="extend", nargs="+", metavar="DIR",
                   help="the style dataset's images (e.g. data/cartoon/images/train): the gallery shows them")
    p.add_argument("--offline", action="store_true", help="use only files already downloaded")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_web)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualstylegan", description="Exemplar-based portrait style transfer "
                                     "(DualStyleGAN, CVPR 2022) on the official checkpoints.")
    sub = parser.add_subparsers(dest="verb", required=True)
    _inference_parsers(sub)
    _service_parsers(sub)
    from .train.cli import add_parsers as _add_train_parsers  # train + one verb per step (no torch at parse time)

    _add_train_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "debug", False):
        # huggingface_hub logs each retry of an unreachable Hub; our own message says what to do instead
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract: one sentence, non-zero exit
        if getattr(args, "debug", False):
            raise
        if is_user_error(e):
            print(f"error: {say(e)}", file=sys.stderr)
        else:  # a bug: say so, and how to see where
            print(f"error: {sentence(e)} (an unexpected {type(e).__name__}: rerun with --debug for the traceback)",
                  file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
