"""The training verbs of ``dualstylegan``: ``train`` (every step, resumable) and one verb per registered step.

Parsing only: the verbs and their help come from the step registry (:mod:`dualstylegan.train.step`), the options
from :class:`~dualstylegan.train.config.RecipeConfig`'s fields and :data:`~dualstylegan.weight_files.WEIGHT_FILES`
— none of which imports torch, so ``dualstylegan --help`` stays fast. Errors are exceptions with a one-sentence
message (the main CLI prints ``error: <sentence>``, exit 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from .config import RUN, RecipeConfig

#: Help of the weight-file options (the files themselves: weights.WEIGHT_FILES).
_FILE_HELP = {
    "ffhq": "stylegan2-ffhq-config-f.pt (rosinality, with the discriminator)",
    "encoder": "the pSp encoder.pt of DualStyleGAN",
    "vgg": "torchvision's ImageNet VGG19 weights, vgg19-dcbb9e9d.pth",
    "lpips": "the LPIPS v0.1 linear layers, vgg.pth of the lpips package",
    "lpips_vgg16": "torchvision's VGG16 weights for LPIPS, vgg16-397923af.pth",
    "identity": "the IR-SE50 identity network, model_ir_se50.pth",
}
_CONFIG_FIELDS = tuple(f for f in dataclasses.fields(RecipeConfig) if f.metadata.get("group"))


def _options(p: argparse.ArgumentParser) -> None:
    """The options every training verb shares; all default to None (= the stored or the reference setting)."""
    files = p.add_argument_group("weight files (looked for in the usual places when not given; see the README)")
    for key, text in _FILE_HELP.items():
        files.add_argument("--" + key.replace("_", "-"), metavar="PATH", help=text)
    files.add_argument("--download", action="store_true", default=None,
                       help="download the files that have a direct link (VGG19, VGG16, LPIPS, encoder.pt)")
    groups = {RUN: p.add_argument_group(RUN)}
    groups[RUN].add_argument("--out", metavar="DIR", help="where the style pack goes (default WORK_DIR/models): "
                             "OUT/NAME/ and OUT/encoder.pt")
    for f in sorted(_CONFIG_FIELDS, key=lambda f: f.metadata["group"] != RUN):  # the run group first
        meta = dict(f.metadata)
        group, flag = meta.pop("group"), meta.pop("flag") or "--" + f.name.replace("_", "-")
        if group not in groups:
            if len(groups) == 1:  # the run group ends with --debug
                groups[RUN].add_argument("--debug", action="store_true", help="show tracebacks")
            groups[group] = p.add_argument_group(group)
        groups[group].add_argument(flag, dest=f.name, **{k: v for k, v in meta.items() if v is not None})


def add_parsers(sub) -> None:
    """Add ``train`` and the per-step verbs to the main CLI's subparsers."""
    from .steps import steps

    registered = steps()
    p = sub.add_parser("train", help="train a new style from a folder of style images (every step; re-run to resume)",
                       description=f"Train a new style: {', '.join(s.name for s in registered)}. Finished steps are "
                                   "skipped and an interrupted one resumes from its checkpoint.")
    p.add_argument("style_dir", help="folder of style images (any size and format)")
    p.add_argument("--name", required=True, help="the style's name (its folder in the pack)")
    p.add_argument("--work-dir", help="where the steps write (default runs/NAME)")
    _options(p)
    p.set_defaults(func=cmd_train)

    for step in registered:
        text = step.help
        p = sub.add_parser(step.name, help=f"training step: {text}",
                           description=f"{text[0].upper()}{text[1:]}. Runs this step now (resuming its checkpoint), "
                                       "reading the earlier steps' outputs from WORK_DIR; settings not given are "
                                       "those stored in WORK_DIR/recipe.json.")
        p.add_argument("work_dir", help="the training work dir (runs/NAME)")
        p.add_argument("--name", help="the style's name (stored in the work dir by an earlier step)")
        if step.style_dir:
            p.add_argument("--style-dir", help="folder of style images (stored in the work dir once given)")
        p.add_argument("--restart", action="store_true", help="discard this step's earlier results first")
        _options(p)
        p.set_defaults(func=cmd_step, step=step.name)


def _overrides(args) -> tuple[dict, dict]:
    config = {f.name: getattr(args, f.name, None) for f in _CONFIG_FIELDS}
    files = {k: getattr(args, k, None) for k in _FILE_HELP}
    return {k: v for k, v in config.items() if v is not None}, {k: v for k, v in files.items() if v is not None}


def _echo(line: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # one voice under torchrun
        print(line, flush=True)


def _done(pack: Path) -> None:
    _echo(f"style pack ready: {pack} (use it with: dualstylegan transfer PHOTO --style {pack} --style-id 0)")


def _listing_missing_files(cmd):
    """Several missing weight files are one error of several lines (a sentence, then one line per file); the main
    CLI prints the first line of an error, so the training verbs print this one whole."""
    import functools
    import sys

    @functools.wraps(cmd)
    def run(args) -> int:
        from ..weight_files import MissingWeightsError

        try:
            return cmd(args)
        except MissingWeightsError as exc:
            if getattr(args, "debug", False) or len(str(exc).splitlines()) < 2:
                raise
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


@_listing_missing_files
def cmd_train(args) -> int:
    from .recipe import train_style

    config, files = _overrides(args)
    result = train_style(args.style_dir, args.name, args.work_dir, out=args.out, config=RecipeConfig(**config),
                         download=bool(args.download), echo=_echo, **files)
    ran = ", ".join(result.ran) or "nothing (every step was done)"
    _echo(f"ran: {ran}")
    _done(result.pack)
    return 0


@_listing_missing_files
def cmd_step(args) -> int:
    from .recipe import Recipe
    from .steps import get_step

    step = get_step(args.step)
    config, files = _overrides(args)
    recipe = Recipe.from_work_dir(args.work_dir, name=args.name, style_dir=getattr(args, "style_dir", None),
                                  out=args.out, config=config, files=files, download=bool(args.download), echo=_echo)
    if step.style_dir and recipe.style_dir is None:
        raise ValueError("the style image folder is not known yet; give --style-dir.")
    recipe.work_dir.mkdir(parents=True, exist_ok=True)
    recipe.save()
    _echo(f"{step.name}: {step.help}")
    result = recipe.run_step(step.name, restart=args.restart)
    _echo(f"{step.name}: done in {result.seconds:.1f} s")
    if step.name == "pack":
        _done(recipe.pack_dir)
    return 0
