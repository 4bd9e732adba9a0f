"""Step ``pack``: the style pack that ``transfer`` loads, in the official layout — ``<out>/<name>/generator.pt``,
``exstyle_code.npy``, ``refined_exstyle_code.npy``, ``instyle_code.npy``, ``sampler.pt``, ``training.json`` — and
``<out>/encoder.pt`` shared by the styles in ``<out>`` (in the style folder instead when ``<out>`` already holds a
different encoder.pt)."""
from __future__ import annotations

import os
from pathlib import Path

from ..step import RecipeError, Step, register_step, sha1_file, step_names

PACK_RECORD = "training.json"


def _same_file(a: Path, b: Path) -> bool:
    if not (a.is_file() and b.is_file()):
        return False
    if os.path.samefile(a, b):
        return True
    return a.stat().st_size == b.stat().st_size and sha1_file(a) == sha1_file(b)


def settings(recipe) -> dict:
    return {"name": recipe.name, "out": os.fspath(recipe.out.resolve())}


def _place_encoder(recipe, target: Path) -> Path:
    """encoder.pt shared in ``<out>``, or in the style folder when ``<out>`` holds another one."""
    from ...atomic import atomic_copy
    from ...hub import ENCODER

    encoder = recipe.weights("encoder")
    shared = recipe.out / ENCODER
    if not shared.exists() or _same_file(encoder, shared):
        if not shared.exists():
            atomic_copy(encoder, shared)
        (target / ENCODER).unlink(missing_ok=True)
        return shared
    atomic_copy(encoder, target / ENCODER)
    return target / ENCODER


def run(recipe, folder: Path):
    from ...atomic import atomic_copy, write_json
    from ...hub import CODES, GENERATOR, INSTYLE_CODES, REFINED_CODES, SAMPLER, resolve_style_pack

    target = recipe.pack_dir
    if (target / GENERATOR).exists() and not (target / PACK_RECORD).exists():
        raise RecipeError(f"{target} already holds a style pack that this training did not write; give another "
                          "--name or --out.")
    target.mkdir(parents=True, exist_ok=True)
    for src, name in ((recipe.output("finetune", "generator"), GENERATOR),
                      (recipe.output("destylize", "exstyle"), CODES),
                      (recipe.output("destylize", "instyle"), INSTYLE_CODES),
                      (recipe.output("refine-codes", "refined"), REFINED_CODES),
                      (recipe.output("fit-sampler", "sampler"), SAMPLER)):
        atomic_copy(src, target / name)
    placed = _place_encoder(recipe, target)
    write_json(target / PACK_RECORD, {
        "name": recipe.name, "work_dir": os.fspath(recipe.work_dir.resolve()),
        "style_dir": os.fspath(recipe.style_dir) if recipe.style_dir else None,
        "config": recipe.config.to_dict(),
        "steps": {s: {k: (recipe.marker(s) or {}).get(k) for k in ("token", "settings", "finished", "seconds")}
                  for s in step_names() if s != STEP.name}})
    files = resolve_style_pack(os.fspath(target), local_files_only=True)  # what transfer will load
    if files.encoder.resolve() != placed.resolve():
        raise RecipeError(f"the pack {target} would load {files.encoder} instead of the encoder it was trained "
                          f"with; remove that file.")
    recipe.say(f"  style pack written to {target}")
    return {"pack": target / GENERATOR, "encoder": placed}, {}


STEP = register_step(Step(
    "pack", "write the style pack (generator.pt, codes, sampler.pt, encoder.pt) that transfer loads", run, settings,
    depends=("destylize", "finetune", "refine-codes", "fit-sampler"), needs=("encoder",)))
