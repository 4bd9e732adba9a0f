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
    from .pipeline import StyleTransferPipeline

    device = _device(args.device)
    dtype = _dtype(args.dtype, device)
    kw = {"local_files_only": True} if getattr(args, "offline", False) else {}
    return StyleTransferPipeline.from_pretrained(args.style, device=device, dtype=dtype,
                                                 wplus=getattr(args, "wplus", False), sampler=sampler, **kw)


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
    return files


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
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"the output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):  # one error now, not one per photo later
        raise UsageError(f"the output folder {out} cannot be written (permission denied); choose another with -o")
    return out


def _face(path: Path, align: bool, all_faces: bool = False):
    """[(aligned face tensor 256², quad or None)] for a photo; the original PIL image."""
    from .images import load_image, to_tensor

    img = load_image(path)
    if not align:
        return [(to_tensor(img), None)], img
    from .faces import align as align_faces

    faces = align_faces(img, output_size=256, all_faces=all_faces)
    return [(to_tensor(f.image), f.quad) for f in faces], img


# ----------------------------------------------------------------------------------------- verbs
def cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .images import make_grid, save_image, to_image

    files = _inputs(args.photos)
    opts = _weights(args)
    if args.paste_back and args.no_align:
        raise UsageError("--paste-back needs face alignment: it cannot be combined with --no-align")
    pipe = _load_pipeline(args)
    pipe.weights_for(**opts)  # a bad weight vector is one error now, not one per photo
    if args.exemplar:
        faces, _ = _face(Path(args.exemplar), not args.no_align)
        exemplar, tag = faces[0][0], Path(args.exemplar).stem
    else:
        exemplar = args.style_id
        tag = f"{pipe.codes.name_of(exemplar).rsplit('.', 1)[0]}" if pipe.codes is not None else str(exemplar)
    out = _out_folder(args.output)  # only once everything else is valid: a failed run leaves no empty folder
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
                    ex_img = exemplar if not isinstance(exemplar, int) else pipe.render_exemplar(exemplar)
                    grid = make_grid([r.content, r.reconstruction, ex_img, r.image], nrow=4, size=256)
                    save_image(grid, out / f"{stem}{suffix}_{pipe.style}_{tag}_overview.png",
                               overwrite=args.overwrite)
                results.append((r, quad))
            if args.paste_back and not args.no_align:
                from .faces import paste_back

                pasted = original
                for r, quad in results:
                    pasted = paste_back(pasted, to_image(r.image), quad)
                save_image(pasted, out / f"{stem}_{pipe.style}_{tag}_pasted.png", overwrite=args.overwrite)
        except Exception as e:  # noqa: BLE001 - every per-file problem is reported, then the next file
            if args.debug:
                raise
            failures += 1
            tqdm.write(f"skipped {path}: {_sentence(e)}", file=sys.stderr)  # not through the bar
    print(f"{written} portrait(s) written to {out}" + (f"; {failures} of {len(files)} photo(s) failed"
                                                        if failures else ""))
    return EXIT_ERROR if failures else 0


def cmd_generate(args) -> int:
    from .images import save_image

    opts = _weights(args)
    pipe = _load_pipeline(args, sampler=True)
    pipe.weights_for(**opts)
    out = _out_folder(args.output)
    images = pipe.generate(args.n, seed=args.seed, fix_content=args.fix_content, fix_color=args.fix_color,
                           fix_structure=args.fix_structure, truncation=args.truncation, **opts)
    for i, img in enumerate(images):
        save_image(img, out / f"{pipe.style}_seed{args.seed}_{i:03d}.png", overwrite=args.overwrite)
    print(f"{len(images)} portrait(s) written to {out}")
    return 0


def cmd_blend(args) -> int:
    from .images import save_animation, save_image

    opts = _weights(args)
    pipe = _load_pipeline(args)
    pipe.weights_for(**opts)
    content = _face(Path(args.photo), not args.no_align)[0][0][0]
    content_b = _face(Path(args.photo_b), not args.no_align)[0][0][0] if args.photo_b else None
    out = _out_folder(args.output)
    frames = pipe.blend(content, args.style_id, args.style_id_b, content_b=content_b, steps=args.steps,
                        wplus=args.wplus, truncation=args.truncation, **opts)
    stem = f"{Path(args.photo).stem}_{pipe.style}_blend"
    for i, f in enumerate(frames):
        save_image(f, out / f"{stem}_{i:03d}.png", overwrite=args.overwrite)
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
def _common(p: argparse.ArgumentParser, style: bool = True) -> None:
    if style:
        p.add_argument("--style", default="cartoon", help="style name, local style folder or hub id")
        p.add_argument("--offline", action="store_true", help="use only files already downloaded")
    p.add_argument("-o", "--output", default="output", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", action="store_true")


def _weight_args(p: argparse.ArgumentParser, truncation: float) -> None:
    p.add_argument("--weights", type=float, nargs="+", metavar="W", help="18 per-layer weights in [0, 1]")
    p.add_argument("--structure", type=float, help="weight of layers 1-7 (structure); style preset by default")
    p.add_argument("--color", type=float, help="weight of layers 8-18 (color); style preset by default")
    p.add_argument("--truncation", type=float, default=truncation)
    p.add_argument("--wplus", action="store_true", help="encode in W+ with encoder_wplus.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualstylegan", description="Exemplar-based portrait style transfer "
                                     "(DualStyleGAN, CVPR 2022) on the official checkpoints.")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("transfer", help="stylise face photos with an exemplar")
    p.add_argument("photos", nargs="+", help="photos or folders")
    p.add_argument("--style-id", type=int, default=0, help="exemplar id in the style's code bank")
    p.add_argument("--exemplar", help="any exemplar image instead of a style id")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colors")
    p.add_argument("--no-align", action="store_true", help="photos are already aligned 1:1 face crops")
    p.add_argument("--all-faces", action="store_true", help="stylise every face, not only the largest")
    p.add_argument("--paste-back", action="store_true", help="also paste the result into the original photo")
    p.add_argument("--overview", action="store_true", help="also save content | reconstruction | exemplar | result")
    p.add_argument("--seed", type=int, help="fresh noise from this seed (default: the stored noise)")
    _weight_args(p, 0.75)
    _common(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("generate", help="random portraits in random styles (needs sampler.pt)")
    p.add_argument("-n", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fix-content", action="store_true")
    p.add_argument("--fix-color", action="store_true")
    p.add_argument("--fix-structure", action="store_true")
    _weight_args(p, 0.5)
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("blend", help="interpolate between two exemplars (and/or two photos)")
    p.add_argument("photo")
    p.add_argument("--photo-b", help="second content photo")
    p.add_argument("--style-id", type=int, default=0)
    p.add_argument("--style-id-b", type=int)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--no-align", action="store_true")
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


def _sentence(e: BaseException) -> str:
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
        print(f"error: {_sentence(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
