"""What a step of the training recipe is — one object per step, registered in order (in the manner of timm's model
registry) — and the registry itself.

A :class:`Step` says everything the recipe (:mod:`dualstylegan.train.recipe`) and the CLI
(:mod:`dualstylegan.train.cli`) need: its name (also its verb and folder), the steps whose outputs it reads, the
weight files it needs, its help text, its settings (a change makes it run again) and how to run it. Each step is
defined and registered by its own module in :mod:`dualstylegan.train.steps`; those modules import torch and the
training code only inside their functions, so the CLI reads the registry without them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DualStyleGANError

if TYPE_CHECKING:
    from .recipe import Recipe

#: What a step's ``run`` returns: (outputs {key: path}, extra fields of its marker; ``token`` names its result).
StepOutput = tuple[dict[str, Path], dict[str, Any]]


class RecipeError(DualStyleGANError, RuntimeError):
    """A training run that cannot go on; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class Step:
    """One step of the recipe.

    ``run(recipe, folder)`` does the work in the step's folder → :data:`StepOutput`. ``settings(recipe)``: what its
    result depends on besides its inputs (JSON-able). ``depends``: the steps whose outputs it reads. ``needs``: the
    weight-file keys it needs (:data:`dualstylegan.weight_files.WEIGHT_FILES`), or a function of the recipe.
    ``loop``: run by every rank under ``torchrun`` (the training-loop steps; the others run on rank 0), and resumable
    with a larger iteration count. ``check(recipe)``: what to verify before anything runs (raises
    :class:`RecipeError`). ``instant(recipe)``: running it now costs nothing (a later step may run it on demand).
    ``style_dir``: it reads the style image folder itself.
    """

    name: str
    help: str
    run: Callable[[Recipe, Path], StepOutput]
    settings: Callable[[Recipe], dict[str, Any]]
    depends: tuple[str, ...] = ()
    needs: tuple[str, ...] | Callable[[Recipe], tuple[str, ...]] = ()
    loop: bool = False
    check: Callable[[Recipe], None] | None = None
    instant: Callable[[Recipe], bool] | None = None
    style_dir: bool = False

    def needed(self, recipe: Recipe) -> tuple[str, ...]:
        return tuple(self.needs(recipe) if callable(self.needs) else self.needs)


_REGISTRY: dict[str, Step] = {}


def register_step(step: Step) -> Step:
    """Add a step after the registered ones (its ``depends`` must be registered already)."""
    unknown = [d for d in step.depends if d not in _REGISTRY]
    if unknown:
        raise ValueError(f"step {step.name!r} depends on unregistered steps {unknown}")
    _REGISTRY[step.name] = step
    return step


def steps() -> tuple[Step, ...]:
    """Every registered step, in the order they run (importing :mod:`dualstylegan.train.steps` registers them;
    this module imports none of them, so the registry has no import cycle)."""
    return tuple(_REGISTRY.values())


def step_names() -> tuple[str, ...]:
    return tuple(s.name for s in steps())


def get_step(name: str) -> Step:
    for s in steps():
        if s.name == name:
            return s
    raise RecipeError(f"there is no step {name!r}; the steps are {', '.join(step_names())}.")


def to_device(net: Any, device: str) -> Any:
    """A feature-net module moved to ``device``; any other callable as it is."""
    import torch

    return net.to(device) if isinstance(net, torch.nn.Module) else net


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["RecipeError", "Step", "StepOutput", "get_step", "register_step", "sha1_file", "step_names", "steps", "to_device"]
