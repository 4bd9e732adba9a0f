"""Step ``destylize``: every style image's intrinsic and extrinsic codes (:func:`dualstylegan.train.destylize.
destylize`, paper §3.1): ``instyle_code.npy`` and ``exstyle_code.npy``."""
from __future__ import annotations

from pathlib import Path

from ..step import Step, register_step, to_device


def iterations(config) -> int:
    from ..destylize import DESTYLIZE_ITERATIONS

    return config.iterations("destylize_iters", DESTYLIZE_ITERATIONS)


def settings(recipe) -> dict:
    c = recipe.config
    return {"iters": iterations(c), "seed": c.seed}


def run(recipe, folder: Path):
    import torch

    from ... import official
    from ..destylize import EXSTYLE_NAME, INSTYLE_NAME, destylize

    c = recipe.config
    device = recipe.device
    g_prime = official.load_stylegan2(recipe.output("finetune-stylegan", "g_prime")).to(device)
    g = official.load_stylegan2(recipe.weights("ffhq")).to(device)
    encoder, _ = official.load_encoder(recipe.weights("encoder"), z_plus=True, with_decoder=False)
    lpips, id_loss = to_device(recipe.feature("lpips"), device), to_device(recipe.feature("identity"), device)
    destylize(recipe.images_dir, encoder.to(device), g_prime, g, lpips, id_loss, folder,
              iterations(c), seed=c.seed, progress=c.progress)
    del g_prime, g, encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"instyle": folder / INSTYLE_NAME, "exstyle": folder / EXSTYLE_NAME}, {}


STEP = register_step(Step(
    "destylize", "destylize every style image: instyle_code.npy and exstyle_code.npy", run, settings,
    depends=("prepare", "finetune-stylegan"), needs=("ffhq", "encoder", "lpips", "identity")))
