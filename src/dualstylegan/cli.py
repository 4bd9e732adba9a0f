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
from collections.abc import Sequence
from pathlib import Path

from .defaults import (
    BLEND_STEPS,
    GENERATE_COUNT,
    GENERATE_TRUNCATION,
    TRANSFER_TRUNCATION,
)
from .argtypes import positive_float, positive_int, seed_number
from .cli_options import common_options, face_options, load_pipeline, style_option, weight_options
from .errors import UsageError, is_user_error, sentence

EXIT_ERROR = 1
#: How this front end turns face alignment off, in place of the library's words (errors.SKIP_ALIGNMENT).
NO_ALIGN_HINT = "pass --no-align"


def say(e: BaseException) -> str:
    """The sentence the CLI prints for a user error: the library's, with its own way to skip alignment."""
    return sentence(e, NO_ALIGN_HINT)


# ----------------------------------------------------------------------------------------- helpers


def _check_seed(seed):
    if seed is not None:
        from .pipeline import check_seed

        check_seed(seed)


def _summary(counts: dict[str, int], where) -> str:
    """'5 file(s) written to out (2 portraits, 2 overviews, 1 pasted photo)'."""
    total = sum(counts.values())
    parts = [f"{n} {word if n == 1 else word + 's'}" for word, n in counts.items() if n]
    return f"{total} file(s) written to {where}" + (f" ({', '.join(parts)})" if parts else "")


# ----------------------------------------------------------------------------------------- verbs
def cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .batch import HeadStart, stylize_files
    from .outputs import check_inputs, collect_inputs, split_output
    from .sharding import barrier_and_gather, shard_from_env

    if args.exemplar and args.style_id is not None:
        raise UsageError("give either --style-id or --exemplar, not both")
    shard = shard_from_env()  # one process, or this rank of a torchrun job
    files = check_inputs(collect_inputs(args.photos))  # every input before any model loads
    if args.exemplar:
        check_inputs([Path(args.exemplar)])
    _check_seed(args.seed)
    several = len(files) > 1 or args.overview or args.paste_back or args.all_faces
    out, name = split_output(args.output, several)
    if shard.distributed and args.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # each rank on its own GPU of its machine
            torch.cuda.set_device(shard.local_rank % torch.cuda.device_count())
    head = None
    if files and not shard.distributed and HeadStart.worthwhile(not args.no_align, args.workers):
        # the first face is found while torch is imported and the networks load
        head = HeadStart(files[0], align=True, all_faces=args.all_faces, paste_back=args.paste_back,
                         detector=args.detector, face_threshold=args.face_threshold)
    try:
        if head is not None:
            head.share_cores()
        pipe, opts = load_pipeline(args)
        exemplar = Path(args.exemplar) if args.exemplar else (args.style_id or 0)
        results = stylize_files(pipe, files, out, exemplar=exemplar, align=not args.no_align,
                                all_faces=args.all_faces, paste_back=args.paste_back, overview=args.overview,
                                overwrite=args.overwrite, preserve_color=args.preserve_color,
                                truncation=args.truncation, wplus=args.wplus, seed=args.seed, portrait_name=name,
                                detector=args.detector, face_threshold=args.face_threshold, resume=args.resume,
                                shard=shard, batch_size=args.batch_size, workers=args.workers, head_start=head,
                                **opts)
    except BaseException:
        if head is not None:
            head.close()
        raise
    if shard.leader:
        for notice in results.notices:
            print(f"note: {notice}", file=sys.stderr)
    who = f"[rank {shard.rank}] " if shard.distributed else ""
    failures = skipped = 0
    counts = {"portrait": 0, "overview": 0, "pasted photo": 0}
    bar = tqdm(results, total=len(results), desc=f"{who}stylising", unit="photo",
               disable=args.quiet or len(results) < 2)
    for r in bar:
        if r.skipped:
            skipped += 1
            continue
        counts["portrait"] += len(r.portraits)
        counts["pasted photo"] += sum(p.stem.endswith("_pasted") for p in r.extras)
        counts["overview"] += sum(p.stem.endswith("_overview") for p in r.extras)
        if r.exception is not None:
            if args.debug:
                raise r.exception
            failures += 1
            tqdm.write(f"{who}skipped {r.input}: {say(r.exception)}", file=sys.stderr)  # not through the bar
    every = barrier_and_gather(shard, (counts, failures, skipped))  # rank 0 waits for the others
    if every is None:
        return EXIT_ERROR if failures else 0
    counts = {k: sum(c[k] for c, _, _ in every) for k in counts}
    failures, skipped = sum(f for _, f, _ in every), sum(s for _, _, s in every)
    where = out / name if name and counts["portrait"] == 1 else out
    line = _summary(counts, where)
    if skipped:
        line += f"; {skipped} photo(s) done by an earlier run"
    if shard.distributed:
        line += f"; {shard.world_size} processes"
    print(line + (f"; {failures} of {len(files)} photo(s) failed" if failures else ""))
    return EXIT_ERROR if failures else 0


def cmd_generate(args) -> int:
    from .outputs import check_free, generate_names, split_output
    from .defaults import GENERATE_BATCH
    from .images import save_image

    _check_seed(args.seed)
    if args.n < 1:
        raise UsageError(f"-n must be at least 1, got {args.n}")
    out, name = split_output(args.output, several=args.n > 1)
    pipe, opts = load_pipeline(args, sampler=True)
    targets = [out / n for n in ([name] if name else generate_names(pipe.style, args.seed, args.n))]
    check_free(targets, args.overwrite)
    batches = pipe.iter_generate(args.n, seed=args.seed, batch_size=GENERATE_BATCH, fix_content=args.fix_content,
                                 fix_color=args.fix_color, fix_structure=args.fix_structure,
                                 truncation=args.truncation, **opts)
    written = 0
    for batch in batches:  # one batch in memory at a time, each image written as it comes
        for img in batch:
            save_image(img, targets[written], overwrite=args.overwrite)
            written += 1
    print(_summary({"portrait": written}, targets[0] if name else out))
    return 0


#: The side of a blend's animation frames (the PNG frames keep the generator's size): the GIF is a preview, and
#: its frames are the only thing a blend keeps until the end.
BLEND_GIF_SIDE = 256


def cmd_blend(args) -> int:
    from .outputs import blend_names, check_free, check_inputs, check_output_folder, exemplar_tag
    from .images import save_animation, save_image, to_image

    check_inputs([Path(p) for p in (args.photo, args.photo_b) if p])
    if args.steps < 2:
        raise UsageError(f"a blend needs at least 2 steps, got {args.steps}")
    out = check_output_folder(args.output)
    pipe, opts = load_pipeline(args)
    tags = [exemplar_tag(i, pipe.codes) for i in (args.style_id, args.style_id_b) if i is not None]
    frame_names, gif_name = blend_names(Path(args.photo).stem, pipe.style, args.steps, *tags)
    targets = [out / n for n in frame_names]
    check_free([*targets, out / gif_name], args.overwrite)
    frames = pipe.iter_blend(Path(args.photo), args.style_id, args.style_id_b,
                             content_b=Path(args.photo_b) if args.photo_b else None, steps=args.steps,
                             wplus=args.wplus, truncation=args.truncation, align=not args.no_align, **opts)
    previews = []
    for f, target in zip(frames, targets):  # one frame tensor at a time
        save_image(f, target, overwrite=args.overwrite)
        image = to_image(f)
        if max(image.size) > BLEND_GIF_SIDE:
            image = image.resize((BLEND_GIF_SIDE, BLEND_GIF_SIDE), resample=1)  # LANCZOS
        previews.append(image)
    save_animation(previews, out / gif_name, overwrite=args.overwrite)
    print(f"{len(targets) + 1} file(s) written to {out} ({len(targets)} frames and {gif_name})")
    return 0


def cmd_styles(args) -> int:
    from .hub import list_styles

    rows = [("STYLE", "WHERE", "READY", "FILES HERE")]
    for s in list_styles():
        present = ", ".join(s.get("present", [])) or "nothing downloaded"
        rows.append((s["name"], s["published"], "ready" if s.get("ready") else "-", present))
    for row in rows:
        print(f"{row[0]:<14} {row[1]:<6} {row[2]:<6} {row[3]}")
    return 0


def cmd_download(args) -> int:
    from . import hub

    hub.announce = lambda line: print(line, file=sys.stderr, flush=True)
    files = hub.download_style(args.style_name, need_sampler=args.sampler, need_wplus=args.wplus)
    print(f"{files.name}: {files.folder}")
    return 0


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken, before anything loads or "serving on …" is printed."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}): another program may be using it; "
                         "choose another with --port") from None


def cmd_web(args) -> int:
    check_port(args.host, args.port)
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
TRANSFER_EXAMPLES = """examples:
  dualstylegan transfer me.jpg                           cartoon, exemplar 0 -> output/me_cartoon_<exemplar>.png
  dualstylegan transfer me.jpg --style anime --style-id 12 -o me_anime.png
  dualstylegan transfer photos/ --style caricature --structure 0.6 --color 0.8 --overview
  dualstylegan transfer group.jpg --all-faces --paste-back
  dualstylegan transfer me.jpg --exemplar painting.png   any image: aligned if it has a face, else centre-cropped
  dualstylegan transfer crop.png --no-align --offline     an aligned face crop, only files already downloaded
  dualstylegan transfer archive/ -o out --resume --workers 4 --batch-size 8
                                                         thousands of photos; rerun the same command after a stop
  torchrun --nproc-per-node 4 -m dualstylegan.cli transfer archive/ -o out --resume
                                                         one process per GPU, each on its share of the files
"""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return value


def _inference_parsers(sub) -> None:
    p = sub.add_parser("transfer", help="stylise face photos with an exemplar",
                       description="Stylise face photos with an exemplar of a style (paper §3.2).",
                       epilog=TRANSFER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    style_option(p)
    p.add_argument("photos", nargs="+", help="photos or folders of photos")
    p.add_argument("--style-id", type=int, help="exemplar id in the style's code bank (default: 0)")
    p.add_argument("--exemplar", help="any exemplar image instead of a style id (default: none)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colors (default: the exemplar's)")
    face_options(p)
    p.add_argument("--all-faces", action="store_true",
                   help="stylise every face (default: only the most confident one)")
    p.add_argument("--paste-back", action="store_true",
                   help="also paste the result into the original photo (default: off)")
    p.add_argument("--overview", action="store_true",
                   help="also save content | reconstruction | exemplar as used | result (default: off)")
    p.add_argument("--seed", type=seed_number, help="fresh noise from this seed, 0 to 2**64-1 (default: the stored noise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar for several photos)")
    p.add_argument("--resume", action="store_true",
                   help="record each photo in OUTPUT/manifest*.jsonl; rerun the same command to skip what is done, "
                        "retry what failed and redo what a kill interrupted (default: off)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="faces per encoder/generator call; above 1 the pixels may differ from one-by-one by a "
                        "rounding step (default: 1, bit for bit)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that decode, detect and align ahead of the networks (default: 0, in line)")
    weight_options(p, TRANSFER_TRUNCATION)
    common_options(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("generate", help="random portraits in random styles (needs sampler.pt)",
                       description="Random portraits in random styles of a pack (paper §3.4), written as they come.")
    style_option(p)
    p.add_argument("-n", type=int, default=GENERATE_COUNT,
                   help=f"how many portraits (default: {GENERATE_COUNT})")
    p.add_argument("--seed", type=seed_number, default=0, help="random seed, 0 to 2**64-1 (default: 0)")
    p.add_argument("--fix-content", action="store_true", help="one face for every portrait (default: off)")
    p.add_argument("--fix-color", action="store_true", help="one color style for every portrait (default: off)")
    p.add_argument("--fix-structure", action="store_true",
                   help="one structure style for every portrait (default: off)")
    weight_options(p, GENERATE_TRUNCATION, encodes=False)
    common_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("blend", help="interpolate between two exemplars (and/or two photos): frames and a GIF",
                       description="Interpolate between two exemplars and/or two photos (paper Fig. 13).")
    style_option(p)
    p.add_argument("photo", help="the content photo")
    p.add_argument("--photo-b", help="second content photo to interpolate toward (default: none)")
    p.add_argument("--style-id", type=int, default=0, help="first exemplar id (default: 0)")
    p.add_argument("--style-id-b", type=int, help="second exemplar id (default: the first)")
    p.add_argument("--steps", type=int, default=BLEND_STEPS, help=f"number of frames (default: {BLEND_STEPS})")
    p.add_argument("--no-align", action="store_true",
                   help="photos are already face crops: their centred square is used as it is (default: align)")
    weight_options(p, TRANSFER_TRUNCATION)
    common_options(p, "output folder (default: output)")
    p.set_defaults(func=cmd_blend)


def _service_parsers(sub) -> None:
    p = sub.add_parser("styles", help="known style packs and what is downloaded")
    p.set_defaults(func=cmd_styles, debug=False)

    p = sub.add_parser("download", help="download a style pack from the Hugging Face Hub")
    p.add_argument("style_name", help="style name (e.g. cartoon) or Hugging Face repo id")
    p.add_argument("--sampler", action="store_true",
                   help="require sampler.pt (Google Drive only: put it in the style's folder) (default: off)")
    p.add_argument("--wplus", action="store_true",
                   help="require encoder_wplus.pt (Google Drive only: put it in the models folder) (default: off)")
    p.add_argument("--debug", action="store_true", help="show tracebacks (default: one sentence per error)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("web", help="the web app (needs the web extra: pip install 'dualstylegan[web]')")
    p.add_argument("--style", action="extend", nargs="+", metavar="NAME_OR_PATH",
                   help="style packs to serve (default: every pack ready on this machine, else cartoon)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=7860, help="port to listen on (default: 7860)")
    p.add_argument("--max-concurrency", type=positive_int, default=1,
                   help="model calls run at once; the rest queue (default: 1)")
    p.add_argument("--max-upload-mb", type=positive_float, default=10,
                   help="largest accepted upload in megabytes (default: 10)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to run (default: auto, a GPU when there is one)")
    p.add_argument("--no-align", action="store_true",
                   help="photos are already face crops (default: the page's 'Align the face' box is ticked)")
    p.add_argument("--exemplar-images", action="extend", nargs="+", metavar="DIR",
                   help="the style dataset's images (e.g. data/cartoon/images/train): the gallery shows them "
                        "(default: renders of the codes)")
    p.add_argument("--offline", action="store_true",
                   help="use only files already downloaded, never the network, as HF_HUB_OFFLINE=1 (default: off)")
    p.add_argument("--debug", action="store_true", help="show tracebacks (default: one sentence per error)")
    p.set_defaults(func=cmd_web)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dualstylegan", description="Exemplar-based portrait style transfer "
                                     "(DualStyleGAN, CVPR 2022) on the official checkpoints.")
    parser.add_argument("--version", action="version", version=f"dualstylegan {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True)
    _inference_parsers(sub)
    _service_parsers(sub)
    from .train.cli import (
        add_parsers as _add_train_parsers,  # train + one verb per step (no torch at parse time)
    )

    _add_train_parsers(sub)
    from .video_cli import add_parser as _add_video_parser  # the video verb (PyAV only when it runs)

    _add_video_parser(sub)
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
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        if is_user_error(e):
            print(f"error: {say(e)}", file=sys.stderr)
        else:  # a bug: say so, and how to see where
            print(f"error: {sentence(e)} (an unexpected {type(e).__name__}: rerun with --debug for the traceback)",
                  file=sys.stderr)
        return EXIT_ERROR


def run() -> None:
    """The ``dualstylegan`` command: :func:`main`, then exit without Python's teardown of torch's modules (0.25–0.4 s
    of a one-photo ``transfer`` on the 2-core EPYC, ``bench/bench_cli.py``) when nothing is left to finish: every
    output is written and closed when a verb returns, no other thread runs, and neither the web app (its folder is
    removed at exit), training nor a distributed process group is in this process. Otherwise a normal exit."""
    code = main()
    if _nothing_left_to_finish():
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _nothing_left_to_finish() -> bool:
    import threading

    if any(name in sys.modules for name in ("gradio", "dualstylegan.web.app", "dualstylegan.train.loop")):
        return False
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return False
    main_thread = threading.main_thread()
    return all(t is main_thread or t.daemon for t in threading.enumerate())


if __name__ == "__main__":
    run()
