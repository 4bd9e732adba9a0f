"""Step ``finetune-stylegan``: g′, the FFHQ StyleGAN2 fine-tuned on the style images
(:func:`dualstylegan.train.finetune_stylegan.finetune_stylegan`, paper §3.1)."""
from __future__ import annotations

import os
from pathlib import Path

from ..step import Step, register_step


def iterations(config) -> int:
    from ..finetune_stylegan import FINETUNE_STYLEGAN_STEPS

    return config.iterations("finetune_stylegan_iters", FINETUNE_STYLEGAN_STEPS)


def settings(recipe) -> dict:
    c = recipe.config
    return {"iters": iterations(c), "seed": c.seed}


def run(recipe, folder: Path):
    from ..finetune_stylegan import finetune_stylegan

    c = recipe.config
    path = finetune_stylegan(os.fspath(recipe.weights("ffhq")), recipe.images_dir, folder,
                             steps=iterations(c), loop=recipe.loop_config(), size=c.size)
    return {"g_prime": path}, {}


STEP = register_step(Step(
    "finetune-stylegan", "fine-tune the FFHQ StyleGAN2 on the style images (g')", run, settings,
    depends=("prepare",), needs=("ffhq",), loop=True))
