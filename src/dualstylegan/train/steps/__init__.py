"""The steps of the training recipe, one module each, registered in the order they run: importing this package
registers them. A new step is a new module here, imported below; the recipe and the CLI read the registry through
this package (:func:`steps`, :func:`step_names`, :func:`get_step`)."""
from ..step import get_step, step_names, steps
from . import prepare, finetune_stylegan, destylize, pretrain, finetune, refine_codes, fit_sampler, pack  # noqa: F401, E402, I001

__all__ = ["get_step", "step_names", "steps"]
