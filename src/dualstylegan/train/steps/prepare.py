"""Step ``prepare``: check, align and resize the style images (:func:`dualstylegan.train.data.prepare_style_images`)
into ``prepare/images``; the unusable ones are listed with a reason in ``prepare/rejected.txt``."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..step import RecipeError, Step, register_step, sha1_file


def source_fingerprint(style_dir: Path | None) -> str | None:
    """The style folder's files (names and sizes): adding or replacing images prepares them again."""
    if style_dir is None or not style_dir.is_dir():
        return None
    h = hashlib.sha1()
    for p in sorted(style_dir.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()


def settings(recipe) -> dict:
    c = recipe.config
    return {"size": c.size, "align": c.align, "sources": source_fingerprint(recipe.style_dir),
            "style_dir": os.fspath(recipe.style_dir) if recipe.style_dir else None}


def run(recipe, folder: Path):
    from ...images import is_image_file
    from ..data import prepare_style_images

    c = recipe.config
    src = recipe.style_dir
    images = folder / "images"
    try:
        kept, rejected = prepare_style_images(src, images, c.size, align=c.align, progress=c.progress)
    except ImportError as exc:  # no dlib: say how to do without it too
        raise RecipeError(f"{str(exc).strip().rstrip('.')}; or give --no-align when the style images are "
                          "already aligned face crops.") from None
    others = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith(".") and not is_image_file(p))
    rejected += [(p, f"{p.name} is not an image file (by its extension, {p.suffix or 'none'}).") for p in others]
    names = {p.name for p in kept}
    for stale in images.iterdir():  # images of sources no longer there (not the record of sources, .sources.json)
        if stale.is_file() and stale.name not in names and not stale.name.startswith("."):
            stale.unlink()
    lines = [f"{p.name}\t{reason}" for p, reason in rejected]
    (folder / "rejected.txt").write_text("".join(line + "\n" for line in lines))
    for line in lines:
        recipe.say("  rejected " + line.replace("\t", ": ", 1))
    if len(kept) < c.min_images:
        first = f" ({rejected[0][1].rstrip('.')})" if rejected else ""
        hint = "; --no-align uses the centred squares instead of detected faces" if c.align else ""
        raise RecipeError(f"only {len(kept)} of the images in {src} can be used{first}; a style needs at least "
                          f"{c.min_images} (see {folder / 'rejected.txt'}){hint}.")
    from ...images import iter_image_files
    from ..data import target_names

    sources = [p for p in iter_image_files(src) if not p.name.startswith(".")]
    for source, name in zip(sources, target_names(sources)):
        if name != f"{source.stem}.png" and name in names:
            recipe.say(f"  {source.name} is prepared as {name} (another file has the same name)")
    recipe.say(f"  {len(kept)} style image(s) ready in {images}, {len(rejected)} rejected")
    h = hashlib.sha1()
    for p in sorted(kept):
        h.update(p.name.encode() + b"\0" + sha1_file(p).encode())
    return {"images": images}, {"token": h.hexdigest()[:16], "kept": sorted(names),
                                "rejected": {p.name: reason for p, reason in rejected}}


STEP = register_step(Step(
    "prepare", "check, align and resize the style images into WORK_DIR/prepare/images", run, settings,
    style_dir=True))
