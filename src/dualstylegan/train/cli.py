"""The training verbs of ``dualstylegan``: ``train`` (every step, resumable) and one verb per step.

Parsing only: torch and the training code are imported inside the command functions, so ``dualstylegan --help``
stays fast. Errors are exceptions with a one-sentence message (the main CLI prints ``error: <sentence>``, exit 1).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

STEP_HELP = {
    "prepare": "check, align and resize the style images into WORK_DIR/prepare/images",
    "finetune-stylegan": "fine-tune the FFHQ StyleGAN2 on the style images (g')",
    "destylize": "destylize every style image: instyle_code.npy and exstyle_code.npy",
    "pretrain": "initialise DualStyleGAN from the FFHQ StyleGAN2 and pre-train its extrinsic path on faces",
    "finetune": "fine-tune DualStyleGAN on the style set: the style's generator.pt",
    "refine-codes": "refine the extrinsic style codes: refined_exstyle_code.npy",
    "fit-sampler": "train the extrinsic style code sampler: sampler.pt",
    "pack": "write the style pack (generator.pt, codes, sampler.pt, encoder.pt) that transfer loads",
}

#: argparse dest → RecipeConfig field.
_CONFIG_ARGS = ("size", "batch", "device", "align", "min_images", "finetune_stylegan_iters", "destylize_iters",
                "pretrain_iters", "finetune_iters", "refine_iters", "sampler_epochs", "scale", "style", "lambda_id",
                "lambda_reg", "lr_color", "lr_structure", "faces", "pretrained", "seed", "grad_accum", "amp",
                "checkpoint_every", "sample_every", "progress", "tensorboard")
_FILE_ARGS = ("ffhq", "encoder", "vgg", "lpips", "lpips_vgg16", "identity")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def _options(p: argparse.ArgumentParser) -> None:
    """The options every training verb shares; all default to None (= the stored or the reference setting)."""
    files = p.add_argument_group("weight files (looked for in the usual places when not given; see the README)")
    files.add_argument("--ffhq", metavar="PATH", help="stylegan2-ffhq-config-f.pt (rosinality, with the discriminator)")
    files.add_argument("--encoder", metavar="PATH", help="the pSp encoder.pt of DualStyleGAN")
    files.add_argument("--vgg", metavar="PATH", help="torchvision's ImageNet VGG19 weights, vgg19-dcbb9e9d.pth")
    files.add_argument("--lpips", metavar="PATH", help="the LPIPS v0.1 linear layers, vgg.pth of the lpips package")
    files.add_argument("--lpips-vgg16", metavar="PATH", help="torchvision's VGG16 weights for LPIPS, "
                       "vgg16-397923af.pth")
    files.add_argument("--identity", metavar="PATH", help="the IR-SE50 identity network, model_ir_se50.pth")
    files.add_argument("--download", action="store_true", default=None,
                       help="download the files that have a direct link (VGG19, VGG16, LPIPS, encoder.pt)")

    run = p.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help="where the style pack goes (default WORK_DIR/models): "
                     "OUT/NAME/ and OUT/encoder.pt")
    run.add_argument("--size", type=_positive_int, help="training resolution, the FFHQ model's (default 1024)")
    run.add_argument("--batch", type=_positive_int, help="images per step and process (default 4, as the "
                     "reference on each of its 8 GPUs)")
    run.add_argument("--grad-accum", type=_positive_int, help="split each batch into this many micro-batches")
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--amp", action="store_const", const=True, help="bfloat16 autocast on CUDA")
    run.add_argument("--seed", type=int)
    run.add_argument("--no-align", dest="align", action="store_const", const=False,
                     help="the style images are already aligned face crops (no face detection; centre square)")
    run.add_argument("--min-images", type=_positive_int, help="fewest usable style images to train on (default 2)")
    run.add_argument("--checkpoint-every", type=_positive_int, help="steps between training checkpoints (default 100)")
    run.add_argument("--sample-every", type=_positive_int, help="steps between sample grids (default 100)")
    run.add_argument("--no-tensorboard", dest="tensorboard", action="store_const", const=False,
                     help="no TensorBoard logs even when tensorboard is installed")
    run.add_argument("--quiet", dest="progress", action="store_const", const=False, help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show tracebacks")

    it = p.add_argument_group("iterations (default: the reference's)")
    it.add_argument("--steps-scale", dest="scale", type=_positive_float,
                    help="multiply every iteration count by this (at least 1 each), e.g. 0.01 for a quick try")
    it.add_argument("--finetune-stylegan-iters", type=_positive_int, help="g' fine-tuning steps (600)")
    it.add_argument("--destylize-iters", type=_positive_int, help="optimisation steps per style image (300)")
    it.add_argument("--pretrain-iters", type=_positive_int, help="pre-training steps (3600 = 300 + 300 + 3000)")
    it.add_argument("--finetune-iters", type=_positive_int, help="DualStyleGAN fine-tuning steps (1500)")
    it.add_argument("--refine-iters", type=_positive_int, help="code refinement steps per exemplar (100)")
    it.add_argument("--sampler-epochs", type=_positive_int, help="sampler epochs (500000 / augmented code count)")

    losses = p.add_argument_group("losses and data")
    losses.add_argument("--style-preset", dest="style", metavar="STYLE",
                        help="(lambda_id, lambda_reg) of cartoon (1, 0.015), caricature (4, 0.005) or anime (1, 0.02);"
                             " default: the name's preset, else (1, 0.01)")
    losses.add_argument("--lambda-id", type=float,
                        help="identity loss weight of fine-tuning (0: no IR-SE50 needed there)")
    losses.add_argument("--lambda-reg", type=float, help="L2 weight on the extrinsic path's ModRes blocks")
    losses.add_argument("--lr-color", type=float, help="refinement learning rate of the color rows (0.1)")
    losses.add_argument("--lr-structure", type=float, help="refinement learning rate of the structure rows (0.005)")
    losses.add_argument("--faces", metavar="DIR", help="aligned real faces (FFHQ) for pre-training; default: faces "
                        "sampled from the FFHQ generator")
    losses.add_argument("--pretrained", metavar="PATH", help="an existing pre-trained DualStyleGAN "
                        "(generator-pretrain.pt) instead of the pretrain step")


def add_parsers(sub) -> None:
    """Add ``train`` and the per-step verbs to the main CLI's subparsers."""
    p = sub.add_parser("train", help="train a new style from a folder of style images (every step; re-run to resume)",
                       description="Train a new style: prepare, finetune-stylegan, destylize, pretrain, finetune, "
                                   "refine-codes, fit-sampler, pack. Finished steps are skipped and an interrupted "
                                   "one resumes from its checkpoint.")
    p.add_argument("style_dir", help="folder of style images (any size and format)")
    p.add_argument("--name", required=True, help="the style's name (its folder in the pack)")
    p.add_argument("--work-dir", help="where the steps write (default runs/NAME)")
    _options(p)
    p.set_defaults(func=cmd_train)

    for step, text in STEP_HELP.items():
        p = sub.add_parser(step, help=f"training step: {text}",
                           description=f"{text[0].upper()}{text[1:]}. Runs this step now (resuming its checkpoint), "
                                       "reading the earlier steps' outputs from WORK_DIR; settings not given are "
                                       "those stored in WORK_DIR/recipe.json.")
        p.add_argument("work_dir", help="the training work dir (runs/NAME)")
        p.add_argument("--name", help="the style's name (stored in the work dir by an earlier step)")
        if step == "prepare":
            p.add_argument("--style-dir", help="folder of style images (stored in the work dir once given)")
        p.add_argument("--restart", action="store_true", help="discard this step's earlier results first")
        _options(p)
        p.set_defaults(func=cmd_step, step=step)


def _overrides(args) -> tuple[dict, dict]:
    config = {k: getattr(args, k, None) for k in _CONFIG_ARGS}
    files = {k: getattr(args, k, None) for k in _FILE_ARGS}
    return {k: v for k, v in config.items() if v is not None}, {k: v for k, v in files.items() if v is not None}


def _echo(line: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # one voice under torchrun
        print(line, flush=True)


def _done(pack: Path) -> None:
    _echo(f"style pack ready: {pack} (use it with: dualstylegan transfer PHOTO --style {pack} --style-id 0)")


def cmd_train(args) -> int:
    from .recipe import RecipeConfig, train_style

    config, files = _overrides(args)
    result = train_style(args.style_dir, args.name, args.work_dir, out=args.out, config=RecipeConfig(**config),
                         download=bool(args.download), echo=_echo, **files)
    ran = ", ".join(result.ran) or "nothing (every step was done)"
    _echo(f"ran: {ran}")
    _done(result.pack)
    return 0


def cmd_step(args) -> int:
    from .recipe import Recipe

    config, files = _overrides(args)
    recipe = Recipe.from_work_dir(args.work_dir, name=args.name, style_dir=getattr(args, "style_dir", None),
                                  out=args.out, config=config, files=files, download=bool(args.download), echo=_echo)
    if args.step == "prepare" and recipe.style_dir is None:
        raise ValueError("the style image folder is not known yet; give --style-dir.")
    recipe.work_dir.mkdir(parents=True, exist_ok=True)
    recipe.save()
    _echo(f"{args.step}: running")
    result = recipe.run_step(args.step, restart=args.restart)
    _echo(f"{args.step}: done in {result.seconds:.1f} s")
    if args.step == "pack":
        _done(recipe.pack_dir)
    return 0
