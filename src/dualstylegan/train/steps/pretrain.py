"""Step ``pretrain``: DualStyleGAN initialised from the FFHQ StyleGAN2, its extrinsic path pre-trained on faces
(:func:`dualstylegan.train.pretrain.pretrain`, paper §3.3 stages I–II) — or an existing ``generator-pretrain.pt``
given with ``--pretrained`` (shared by all styles of one FFHQ model), which is only recorded."""
from __future__ import annotations

import os
from pathlib import Path

from ..step import Step, register_step


def _given(recipe) -> Path | None:
    p = recipe.config.pretrained
    return Path(p).expanduser().resolve() if p is not None else None


def iterations(config) -> int:
    from ..pretrain import PRETRAIN_STEPS

    return config.iterations("pretrain_iters", PRETRAIN_STEPS)


def settings(recipe) -> dict:
    c = recipe.config
    if c.pretrained is not None:
        return {"pretrained": os.fspath(_given(recipe))}
    return {"iters": iterations(c), "seed": c.seed, "faces": c.faces, "one_loop": c.pretrain_one_loop}


def needs(recipe) -> tuple[str, ...]:
    return () if recipe.config.pretrained is not None else ("ffhq", "encoder", "vgg")


def check(recipe) -> None:
    c = recipe.config
    if c.pretrained is not None and not Path(c.pretrained).is_file():
        from ...weight_files import MissingWeightsError

        raise MissingWeightsError(f"The pre-trained DualStyleGAN {c.pretrained} does not exist: give --pretrained "
                                  "PATH to a generator-pretrain.pt, or leave it out to pre-train.")


def run(recipe, folder: Path):
    c = recipe.config
    if c.pretrained is not None:
        from ..finetune import load_pretrain_checkpoint

        path = _given(recipe)
        load_pretrain_checkpoint(path)  # fail now, not in the middle of finetune, when it is the wrong file
        return {"generator": path}, {}
    from ..pretrain import pretrain

    faces = Path(c.faces).expanduser() if c.faces else None
    pretrain(os.fspath(recipe.weights("ffhq")), os.fspath(recipe.weights("encoder")), folder, recipe.feature("vgg"),
             steps=iterations(c), loop=recipe.loop_config(), faces=faces, restart_per_inject=not c.pretrain_one_loop)
    return {"generator": folder / "generator.pt"}, {}


STEP = register_step(Step(
    "pretrain", "initialise DualStyleGAN from the FFHQ StyleGAN2 and pre-train its extrinsic path on faces", run,
    settings, needs=needs, loop=True, check=check, instant=lambda recipe: recipe.config.pretrained is not None))
