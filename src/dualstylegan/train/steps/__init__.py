"""The steps of the training recipe, one module each, registered in the order they run (importing this package
registers them; :func:`dualstylegan.train.step.steps` does). A new step is a new module here, imported below."""
from . import prepare, finetune_stylegan, destylize, pretrain, finetune, refine_codes, fit_sampler, pack  # noqa: F401, I001
