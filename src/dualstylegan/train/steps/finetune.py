"""Step ``finetune``: DualStyleGAN fine-tuned on the style set (:func:`dualstylegan.train.finetune.finetune`, paper
§3.3 stage III): the style's ``generator.pt``."""
from __future__ import annotations

from pathlib import Path

from ..step import Step, register_step


def iterations(config) -> int:
    from ..finetune import FINETUNE_STEPS

    return config.iterations("finetune_iters", FINETUNE_STEPS)


def settings(recipe) -> dict:
    c = recipe.config
    lam_id, lam_reg = c.preset(recipe.name)
    return {"iters": iterations(c), "seed": c.seed, "lambda_id": lam_id, "lambda_reg": lam_reg,
            "exemplars_per_epoch": c.exemplars_per_epoch, "shared_id_inject": c.shared_id_inject}


def needs(recipe) -> tuple[str, ...]:
    """The IR-SE50 identity network only when λ_ID > 0."""
    return ("vgg", "identity") if recipe.config.preset(recipe.name)[0] > 0 else ("vgg",)


def run(recipe, folder: Path):
    from ..finetune import finetune

    c = recipe.config
    lam_id, lam_reg = c.preset(recipe.name)
    finetune(recipe.output("pretrain", "generator"), recipe.images_dir, folder, recipe.feature("vgg"),
             id_loss=recipe.feature("identity") if lam_id > 0 else None, steps=iterations(c),
             loop=recipe.loop_config(), exstyle_codes=recipe.output("destylize", "exstyle"),
             instyle_codes=recipe.output("destylize", "instyle"), lambda_id=lam_id, lambda_reg=lam_reg,
             exemplars="per_epoch" if c.exemplars_per_epoch else "per_phase",
             id_inject="shared" if c.shared_id_inject else "fresh")
    return {"generator": folder / "generator.pt"}, {}


STEP = register_step(Step(
    "finetune", "fine-tune DualStyleGAN on the style set: the style's generator.pt", run, settings,
    depends=("prepare", "destylize", "pretrain"), needs=needs, loop=True))
