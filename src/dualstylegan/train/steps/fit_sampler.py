"""Step ``fit-sampler``: the extrinsic style code sampler fitted to the refined codes
(:func:`dualstylegan.train.fit_sampler.fit_sampler`, paper §3.4): ``sampler.pt``."""
from __future__ import annotations

from pathlib import Path

from ..step import Step, register_step


def settings(recipe) -> dict:
    c = recipe.config
    return {"epochs": c.sampler_epochs, "scale": c.scale, "seed": c.seed}


def epochs_for(config, n_codes: int) -> int:
    """The sampler's epochs: ``sampler_epochs``, or 500 000 / (augmented code count) as the reference, scaled."""
    from ..fit_sampler import augmented_count, default_epochs

    epochs = config.sampler_epochs
    return config.scaled(default_epochs(augmented_count(n_codes)) if epochs is None else epochs)


def run(recipe, folder: Path):
    from ... import official
    from ...codes import CodeBank
    from ..fit_sampler import fit_sampler

    c = recipe.config
    bank = CodeBank.load(recipe.output("refine-codes", "refined"))
    epochs = epochs_for(c, len(bank))
    sampler = fit_sampler(bank, epochs, seed=c.seed, device=recipe.device, progress=c.progress)
    official.save_sampler(folder / "sampler.pt", sampler)
    return {"sampler": folder / "sampler.pt"}, {"epochs": epochs}


STEP = register_step(Step(
    "fit-sampler", "train the extrinsic style code sampler: sampler.pt", run, settings, depends=("refine-codes",)))
