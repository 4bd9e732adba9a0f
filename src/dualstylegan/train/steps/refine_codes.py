"""Step ``refine-codes``: the extrinsic style codes refined against their exemplars
(:func:`dualstylegan.train.refine_codes.refine_codes` on :func:`dualstylegan.refine.refine_extrinsic`, paper §3.4):
``refined_exstyle_code.npy``."""
from __future__ import annotations

from pathlib import Path

from ..step import Step, register_step, to_device


def settings(recipe) -> dict:
    from ...refine import LR_COLOR, LR_STRUCTURE, REFINE_ITERATIONS

    c = recipe.config
    return {"iters": c.iterations("refine_iters", REFINE_ITERATIONS), "seed": c.seed,
            "lr_color": c.lr_color if c.lr_color is not None else LR_COLOR,
            "lr_structure": c.lr_structure if c.lr_structure is not None else LR_STRUCTURE}


def run(recipe, folder: Path):
    from ... import official
    from ...codes import CodeBank
    from ..refine_codes import REFINED_NAME, refine_codes

    s = settings(recipe)
    device = recipe.device
    generator = official.load_dualstylegan(recipe.output("finetune", "generator")).to(device)
    refine_codes(generator, CodeBank.load(recipe.output("destylize", "instyle")),
                 CodeBank.load(recipe.output("destylize", "exstyle")), recipe.images_dir,
                 to_device(recipe.feature("lpips"), device), to_device(recipe.feature("vgg"), device), s["iters"],
                 s["lr_color"], s["lr_structure"], out_dir=folder, seed=recipe.config.seed,
                 progress=recipe.config.progress)
    return {"refined": folder / REFINED_NAME}, {}


STEP = register_step(Step(
    "refine-codes", "refine the extrinsic style codes: refined_exstyle_code.npy", run, settings,
    depends=("prepare", "destylize", "finetune"), needs=("lpips", "vgg")))
