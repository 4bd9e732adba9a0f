"""``dualstylegan <verb>``: thin argument parsing over the library. Errors: one sentence, exit code 1."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

EXIT_ERROR = 1


class UsageError(Exception):
    """A bad command line or input, reported as one sentence."""


# ----------------------------------------------------------------------------------------- helpers
def _device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for, but MPS is not available")
    return name


def _dtype(name: str, device: str):
    import torch

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    if dtype != torch.float32 and device == "cpu":
        raise UsageError(f"--dtype {name} is for GPUs; on the CPU use float32")
    return dtype


def _weights(args) -> dict:
    if args.weights is not None and (args.structure is not None or args.color is not None):
        raise UsageError("give either --weights (18 numbers) or --structure/--color, not both")
    if args.weights is not None:
        return {"weights": args.weights}
    return {"structure": args.structure, "color": args.color}


def _load_pipeline(args, *, sampler: bool = False):
    """The verb's pipeline and its weight options, both checked (a bad weight vector is one error, not one per photo)."""
    from .pipeline import StyleTransferPipeline, check_truncation

    opts = _weights(args)
    device = _device(args.device)
    dtype = _dtype(args.dtype, device)
    kw = {"local_files_only": True} if args.offline else {}
    pipe = StyleTransferPipeline.from_pretrained(args.style, device=device, dtype=dtype,
                                                 wplus=getattr(args, "wplus", False), sampler=sampler, **kw)
    pipe.weights_for(**opts)
    check_truncation(args.truncation)
    return pipe, opts


def _inputs(paths: Sequence[str]) -> list[Path]:
    from .images import iter_image_files

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list(iter_image_files(p))
            if not found:
                raise UsageError(f"the folder {p} has no images")
            files += found
        else:
            files.append(p)  # a missing or bad file is reported per file
    return list(dict.fromkeys(files))  # a photo given twice is stylised once


def _unique_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name stems, one per input file: 'me' for me.jpg, but 'me_jpg' and 'me_png' when both are given, and a
    number when a name still repeats (a/me.jpg and b/me.jpg), so that no photo's result replaces another's."""
    from collections import Counter

    files = list(dict.fromkeys(files))
    per_stem = Counter(p.stem for p in files)
    out: dict[Path, str] = {}
    taken: set[str] = set()
    for p in files:
        base = p.stem if per_stem[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}".rstrip("_")
        stem, k = base, 1
        while stem in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem)
        out[p] = stem
    return out


def _out_folder(path: str) -> Path:
    """The output folder, checked now (one error, not one per photo later); it is made when the first file is
    written (:func:`images.save_image`), so that a run that writes nothing leaves nothing behind."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"the output {out} exists and is not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())  # the folder itself or the one it will go in
    if not existing.is_dir():
        raise UsageError(f"cannot create the output folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == out else f" ({existing} is read-only)"
        raise UsageError(f"the output folder {out} cannot be written{where}: permission denied; choose another with -o")
    return out


def _free(targets: Sequence[Path], overwrite: bool) -> None:
    """Refuse a run that would stop half way on an existing file: all of its outputs, or none."""
    taken = next((t for t in targets if t.exists()), None)
    if taken is not None and not overwrite:
        raise UsageError(f"{taken} already exists; pass --overwrite to replace it")


def _face(path: Path, align: bool, all_faces: bool = False):
    """[(aligned face tensor 256², quad or None)] for a photo; the original PIL image."""
    from .images import load_image, to_tensor

    img = load_image(path)
    if not align:
        return [(to_tensor(img), None)], img
    from .faces import NoFaceError, align as align_faces

    try:
        faces = align_faces(img, output_size=256, all_faces=all_faces)
    except NoFaceError:
        raise NoFaceError(f"no face was found in {path}; use a photo with a clearly visible, roughly frontal face, "
                          f"or --no-align if it is already an aligned face crop") from None
    return [(to_tensor(f.image), f.quad) for f in faces], img


# ----------------------------------------------------------------------------------------- verbs
def cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .images import make_grid, save_image, to_image

    files = _inputs(args.photos)
    if args.paste_back and args.no_align:
        raise UsageError("--paste-back needs face alignment: it cannot be combined with --no-align")
    if args.exemplar and args.style_id is not None:
        raise UsageError("give either --style-id or --exemplar, not both")
    out = _out_folder(args.output)
    pipe, opts = _load_pipeline(args)
    if args.exemplar:
        faces, _ = _face(Path(args.exemplar), not args.no_align)
        exemplar, tag = faces[0][0], Path(args.exemplar).stem
    else:
        exemplar = args.style_id or 0
        tag = Path(pipe.codes.name_of(exemplar)).stem  # a bare name: the code bank cannot steer where files go
    ex_image = None
    if args.overview:
        ex_image = exemplar if args.exemplar else pipe.render_exemplar(exemplar)
    stems = _unique_stems(files)
    failures = 0
    written = 0
    for path in tqdm(files, desc="stylising", unit="photo", disable=args.quiet or len(files) < 2):
        stem = stems[path]
        try:
            faces, original = _face(path, not args.no_align, args.all_faces)
            results = []
            for i, (content, quad) in enumerate(faces):
                r = pipe.transfer(content, exemplar, preserve_color=args.preserve_color, wplus=args.wplus,
                                  truncation=args.truncation, seed=args.seed, reconstruct=args.overview, **opts)
                suffix = f"_face{i}" if len(faces) > 1 else ""
                target = out / f"{stem}{suffix}_{pipe.style}_{tag}.png"
                save_image(r.image, target, overwrite=args.overwrite)
                written += 1
                if args.overview:
                    grid = make_grid([r.content, r.reconstruction, ex_image, r.image], nrow=4, size=256)
                    save_image(grid, out / f"{stem}{suffix}_{pipe.style}_{tag}_overview.png",
                               overwrite=args.overwrite)
                results.append((r, quad))
            if args.paste_back:
                from .faces import paste_back

                pasted = original
                for r, quad in results:
                    pasted = paste_back(pasted, to_image(r.image), quad)
                save_image(pasted, out / f"{stem}_{pipe.style}_{tag}_pasted.png", overwrite=args.overwrite)
        except Exception as e:  # noqa: BLE001 - every per-file problem is reported, then the next file
            if args.debug:
                raise
            failures += 1
            tqdm.write(f"skipped {path}: {sentence(e)}", file=sys.stderr)  # not through the bar
    print(f"{written} portrait(s) written to {out}" + (f"; {failures} of {len(files)} photo(s) failed"
                                                        if failures else ""))
    return EXIT_ERROR if failures else 0


def cmd_generate(args) -> int:
    from .images import save_image

    out = _out_folder(args.output)
    pipe, opts = _load_pipeline(args, sampler=True)
    targets = [out / f"{pipe.style}_seed{args.seed}_{i:03d}.png" for i in range(max(args.n, 0))]
    _free(targets, args.overwrite)
    images = pipe.generate(args.n, seed=args.seed, fix_content=args.fix_content, fix_color=args.fix_color,
                           fix_structure=args.fix_structure, truncation=args.truncation, **opts)
    for img, target in zip(images, targets):
        save_image(img, target, overwrite=args.overwrite)
    print(f"{len(images)} portrait(s) written to {out}")
    return 0


def cmd_blend(args) -> int:
    from .images import save_animation, save_image

    out = _out_folder(args.output)
    pipe, opts = _load_pipeline(args)
    stem = f"{Path(args.photo).stem}_{pipe.style}_blend"
    targets = [out / f"{stem}_{i:03d}.png" for i in range(max(args.steps, 0))]
    _free([*targets, out / f"{stem}.gif"], args.overwrite)
    content = _face(Path(args.photo), not args.no_align)[0][0][0]
    content_b = _face(Path(args.photo_b), not args.no_align)[0][0][0] if args.photo_b else None
    frames = pipe.blend(content, args.style_id, args.style_id_b, content_b=content_b, steps=args.steps,
                        wplus=args.wplus, truncation=args.truncation, **opts)
    for f, target in zip(frames, targets):
        save_image(f, target, overwrite=args.overwrite)
    save_animation(frames, out / f"{stem}.gif", overwrite=args.overwrite)
    print(f"{len(frames)} frame(s) and {stem}.gif written to {out}")
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

    device = _device(args.device)
    kw = {"local_files_only": True} if args.offline else {}

    def load(name: str):
        from .hub import StylePackError
        from .pipeline import StyleTransferPipeline

        try:  # with the W+ encoder when the pack has one
            return StyleTransferPipeline.from_pretrained(name, device=device, wplus=True, **kw)
        except StylePackError:
            return StyleTransferPipeline.from_pretrained(name, device=device, **kw)

    styles = args.style or web.ready_styles() or ["cartoon"]
    demo = web.build_app(load, styles=styles, align=not args.no_align, max_upload_mb=args.max_upload_mb,
                         max_concurrency=args.max_concurrency, exemplar_images=args.exemplar_images or ())
    demo.dualstylegan_pipelines.get(styles[0])  # fail now, not in the page, when the first pack cannot load
    print(f"serving {', '.join(styles)} on http://{args.host}:{args.port} (Ctrl+C stops)")
    web.launch(demo, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, quiet=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualstylegan", description="Exemplar-based portrait style transfer "
                                     "(DualStyleGAN, CVPR 2022) on the official checkpoints.")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("transfer", help="stylise face photos with an exemplar")
    p.add_argument("photos", nargs="+", help="photos or folders")
    p.add_argument("--style-id", type=int, help="exemplar id in the style's code bank (default: 0)")
    p.add_argument("--exemplar", help="any exemplar image instead of a style id (aligned like the photos)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colors")
    p.add_argument("--no-align", action="store_true", help="photos are already aligned 1:1 face crops")
    p.add_argument("--all-faces", action="store_true", help="stylise every face, not only the largest")
    p.add_argument("--paste-back", action="store_true", help="also paste the result into the original photo")
    p.add_argument("--overview", action="store_true", help="also save content | reconstruction | exemplar | result")
    p.add_argument("--seed", type=int, help="fresh noise from this seed (default: the stored noise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _weight_args(p, 0.75)
    _common(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("generate", help="random portraits in random styles (needs sampler.pt)")
    p.add_argument("-n", type=int, default=4, help="how many portraits (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--fix-content", action="store_true", help="one face for every portrait")
    p.add_argument("--fix-color", action="store_true", help="one color style for every portrait")
    p.add_argument("--fix-structure", action="store_true", help="one structure style for every portrait")
    _weight_args(p, 0.5, encodes=False)
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("blend", help="interpolate between two exemplars (and/or two photos): frames and a GIF")
    p.add_argument("photo", help="the content photo")
    p.add_argument("--photo-b", help="second content photo to interpolate toward")
    p.add_argument("--style-id", type=int, default=0, help="first exemplar id (default: 0)")
    p.add_argument("--style-id-b", type=int, help="second exemplar id (default: the first)")
    p.add_argument("--steps", type=int, default=8, help="number of frames (default: 8)")
    p.add_argument("--no-align", action="store_true", help="photos are already aligned 1:1 face crops")
    _weight_args(p, 0.75)
    _common(p)
    p.set_defaults(func=cmd_blend)

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
    p.add_argument("--no-align", action="store_true", help="photos are already aligned 1:1 face crops")
    p.add_argument("--exemplar-images", action="extend", nargs="+", metavar="DIR",
                   help="the style dataset's images (e.g. data/cartoon/images/train): the gallery shows them")
    p.add_argument("--offline", action="store_true", help="use only files already downloaded")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_web)

    from .train.cli import add_parsers as _add_train_parsers  # train + one verb per step (no torch at parse time)

    _add_train_parsers(sub)
    return parser


def sentence(e: BaseException) -> str:
    """What the user reads of an error: its first line (our messages are one sentence)."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


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
        print(f"error: {sentence(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
