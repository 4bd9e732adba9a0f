"""``dualstylegan video``: the verb over :func:`dualstylegan.video.stylize_video` (argument parsing only).

Nothing heavy is imported here, so that ``dualstylegan --help`` stays fast; ``cli.build_parser`` calls
:func:`add_parser`.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .defaults import TRANSFER_TRUNCATION

PORTRAIT_SIZES = (256, 512, 1024)


def cmd_video(args) -> int:
    from tqdm import tqdm

    from . import video
    from .cli_options import load_pipeline
    from .errors import UsageError

    if args.exemplar and args.style_id is not None:
        raise UsageError("give either --style-id or --exemplar, not both")
    src = Path(args.input)
    info = video.probe(src)  # a bad clip or output is refused before the networks load
    dst = Path(args.output) if args.output else src.with_name(f"{src.stem}_{Path(args.style).name}{'.mp4'}")
    video.check_output(src, dst, args.overwrite)
    pipe, opts = load_pipeline(args)
    exemplar = args.style_id or 0
    if args.exemplar:
        from .faces import prepare_face
        from .images import to_tensor

        exemplar = to_tensor(prepare_face(Path(args.exemplar), True)[0].image)
    size = args.size if args.size is None or args.size < pipe.generator.size else None
    bar = tqdm(total=info.frames or None, unit="frame", desc="stylising", disable=args.quiet)

    def progress(stats, _info):
        bar.update(stats.frames - bar.n)

    # a plain kill (SIGTERM) finishes the partial file like Ctrl+C
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = video.stylize_video(
            pipe, src, dst, exemplar, overwrite=args.overwrite, codec=args.codec or video.DEFAULT_CODEC,
            crf=video.DEFAULT_CRF if args.crf is None else args.crf, preset=args.preset or video.DEFAULT_PRESET,
            progress=progress, preserve_color=args.preserve_color, truncation=args.truncation, wplus=args.wplus,
            faces=args.faces, portrait_size=size, code_smoothing=args.code_smoothing,
            batch_size=args.batch_size or video.DEFAULT_BATCH,
            detect_every=args.detect_every, smoothing=None if args.no_smoothing else video.DEFAULT_SMOOTHING,
            **opts)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    s = result.stats
    if result.interrupted:
        where = f"{s.frames} frame(s) kept in {result.path}" if result.path else "nothing written"
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    print(f"{s.frames} frame(s), {s.faces} face(s) in {s.tracks} track(s) written to {result.path} "
          f"({s.fps:.1f} frames/s)")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``video`` verb to ``cli.build_parser``'s subparsers."""
    from .cli_options import common_options, style_option, weight_options

    # The defaults live in dualstylegan.video (numpy and PyAV behind it): None here means "video's default", so
    # that parsing imports nothing heavy; the help repeats them in words.

    p = sub.add_parser("video", help="stylise every face of a video clip, keeping its size, timing and sound "
                                     "(needs the video extra: pip install 'dualstylegan[video]')")
    style_option(p)
    p.add_argument("input", help="the video clip (anything FFmpeg reads: .mp4, .mov, .mkv, …)")
    p.add_argument("--style-id", type=int, help="exemplar id in the style's code bank (default: 0)")
    p.add_argument("--exemplar", help="any exemplar image instead of a style id (its face is aligned)")
    p.add_argument("--preserve-color", action="store_true", help="keep the faces' colors")
    p.add_argument("--faces", choices=["all", "largest"], default="all",
                   help="stylise every face, or follow only the largest one (default: all)")
    p.add_argument("--size", type=int, choices=PORTRAIT_SIZES,
                   help="render the portraits at this size by stopping the generator early (faster; default: full)")
    p.add_argument("--no-smoothing", action="store_true", help="align on the raw landmarks of each frame")
    p.add_argument("--code-smoothing", type=float, default=0.0, metavar="A",
                   help="average each face's code over time: weight A in [0, 1) of the previous frames (default: 0)")
    p.add_argument("--batch-size", type=int, help="faces per network call (default: 8)")
    p.add_argument("--detect-every", type=int, default=10, help="frames between searches for new faces (default: 10)")
    p.add_argument("--codec", help="video codec of the output (default: libx264)")
    p.add_argument("--crf", type=int,
                   help="constant rate factor: lower is better and larger, 0 lossless (default: 18)")
    p.add_argument("--preset", help="x264/x265 speed preset (default: medium)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    weight_options(p, TRANSFER_TRUNCATION)
    common_options(p, "the output video (default: INPUT_STYLE.mp4 beside the input)")
    p.set_defaults(output=None)
    p.set_defaults(func=cmd_video)
    return p


__all__ = ["add_parser", "cmd_video"]
