"""The inputs and outputs of a files run (:func:`dualstylegan.batch.stylize_files`, the CLI, the web app): collecting
the photos, checking them and the output folder before anything loads, and naming every file written —
``style_transfer.py``'s ``{content}_{style}_{exemplar}``, made unique, short enough for any file system.
Nothing here imports torch."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from .errors import UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: An exemplar: a style id or exemplar name of the pack's code bank, an image file (``Path``), a PIL image, or an
#: image tensor (1, 3, H, W) in [−1, 1]. Image exemplars are prepared like the photos (:func:`faces.prepare_face`).
Exemplar = Union[int, str, os.PathLike, "Image.Image", "torch.Tensor"]


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Photos and folders → the photo files, in order, each once; a folder gives its images (sorted). A folder
    with no images is a :class:`UsageError`; a missing or unreadable file is left for its :class:`FileResult`."""
    from .images import iter_image_files

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list(iter_image_files(p))
            if not found:
                raise UsageError(f"the folder {p} has no images")
            files += found
        else:
            files.append(p)
    return list(dict.fromkeys(files))  # a photo given twice is stylised once


def unique_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name stems, one per input file: 'me' for me.jpg, but 'me_jpg' and 'me_png' when both are given, and a
    number when a name still repeats (a/me.jpg and b/me.jpg), so that no photo's result replaces another's."""
    files = list(dict.fromkeys(files))
    per_stem = Counter(p.stem for p in files)
    out: dict[Path, str] = {}
    taken: set[str] = set()
    for p in files:
        base = p.stem if per_stem[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}".rstrip("_")
        base = short_stem(base)
        stem, k = base, 1
        while stem in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem)
        out[p] = stem
    return out


#: The longest stem of a photo (or exemplar) kept in an output name, in bytes: names stay well under the 255 bytes
#: file systems allow once the style, the exemplar and the kind are added.
MAX_STEM_BYTES = 80


def short_stem(stem: str, limit: int = MAX_STEM_BYTES) -> str:
    """``stem`` when it fits in ``limit`` UTF-8 bytes, else its start and 8 hex digits of its hash (distinct stems
    stay distinct): a 240-character photo name gives a file name the system accepts."""
    if len(stem.encode()) <= limit:
        return stem
    digest = hashlib.sha1(stem.encode()).hexdigest()[:8]
    head = stem.encode()[: limit - 9].decode(errors="ignore")
    return f"{head}~{digest}"


def exemplar_tag(exemplar: Exemplar, codes=None) -> str:
    """The exemplar's part of an output name: the code-bank file's stem ('Cartoons_00038_07', a bare name: the
    bank cannot steer where files go), an image file's stem, or 'exemplar' for an image in memory."""
    if isinstance(exemplar, (int, str)) and not isinstance(exemplar, bool):
        if codes is None:
            raise UsageError("this style pack has no code bank; give the exemplar as an image")
        if isinstance(exemplar, str) and exemplar not in codes.names and Path(exemplar).is_file():
            return short_stem(Path(exemplar).stem)  # an image file given by its name
        return short_stem(Path(codes.resolve_name(exemplar)).stem) or "exemplar"
    if isinstance(exemplar, os.PathLike):
        return short_stem(Path(exemplar).stem)
    return "exemplar"


def output_name(stem: str, style: str | None, tag: str, *, face: int | None = None, kind: str | None = None) -> str:
    """``{photo}[_face{i}]_{style}_{exemplar}[_{kind}].png``: the reference's ``{content}_{style}_{exemplar}`` naming,
    ``face`` numbering the faces of a photo with several, ``kind`` 'overview' or 'pasted'."""
    parts = [stem, *([f"face{face}"] if face is not None else []), style or "style", tag, *([kind] if kind else [])]
    return "_".join(parts) + ".png"


def output_names(files: Sequence[Path], style: str | None, tag: str) -> dict[Path, str]:
    """The portrait's file name of each input photo (one face each; :func:`output_name`), never two alike."""
    return {p: output_name(stem, style, tag) for p, stem in unique_stems(files).items()}


def generate_names(style: str | None, seed: int, n: int) -> list[str]:
    """``{style}_seed{seed}_{i:03d}.png`` for random portrait i of a ``generate`` call."""
    return [f"{style or 'style'}_seed{seed}_{i:03d}.png" for i in range(max(n, 0))]


def blend_names(stem: str, style: str | None, steps: int, tag_a: str | None = None,
                tag_b: str | None = None) -> tuple[list[str], str]:
    """(frame file names, animation file name) of a blend of the photo named ``stem`` from exemplar ``tag_a`` to
    ``tag_b`` (:func:`exemplar_tag`): ``{photo}_{style}_{a}-{b}_blend_{i:03d}.png`` and ``….gif``, so that blends of
    other exemplars do not collide."""
    tags = "-".join(dict.fromkeys(t for t in (tag_a, tag_b) if t))
    base = "_".join([short_stem(stem), style or "style", *([tags] if tags else []), "blend"])
    return [f"{base}_{i:03d}.png" for i in range(max(steps, 0))], f"{base}.gif"


#: Output names with these extensions are files, not folders (``-o portrait.png``).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def split_output(path: str | os.PathLike, several: bool) -> tuple[Path, str | None]:
    """An output given by a user → (folder, file name or None): ``portrait.png`` names the one file written when
    only one is (``several`` False), otherwise — a name without an image extension, or several outputs — it is the
    folder they are written to."""
    out = Path(path)
    if out.suffix.lower() in IMAGE_EXTENSIONS and not several and not out.is_dir():
        return check_output_folder(out.parent if str(out.parent) else "."), out.name
    return check_output_folder(out), None


def check_inputs(files: Iterable[Path]) -> list[Path]:
    """Every input file exists and can be read, checked before any model loads: one :class:`UsageError` naming
    the first that cannot (the run would otherwise load the networks and then skip it)."""
    files = list(files)
    for f in files:
        if not f.exists():
            raise UsageError(f"no such file: {f}")
        if not f.is_file():
            raise UsageError(f"{f} is not a file")
        if not os.access(f, os.R_OK):
            raise UsageError(f"{f} cannot be read: permission denied")
    return files


def check_output_folder(path: str | os.PathLike) -> Path:
    """The output folder, checked now (one error, not one per photo later); it is made when the first file is
    written (:func:`images.save_image`), so that a run that writes nothing leaves nothing behind."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"the output {out} exists and is not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())  # the folder itself or the one it will go in
    if not existing.is_dir():
        raise UsageError(f"cannot create the output folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == out else f" ({existing} is read-only)"
        raise UsageError(f"the output folder {out} cannot be written{where}: permission denied; choose another "
                         "output folder (-o)")
    return out


def check_free(targets: Iterable[Path], overwrite: bool) -> None:
    """Refuse a run that would stop half way on an existing file: all of its outputs, or none."""
    taken = next((t for t in targets if t.exists()), None)
    if taken is not None and not overwrite:
        raise UsageError(f"{taken} already exists; pass overwrite=True (--overwrite) to replace it")


__all__ = ["Exemplar", "IMAGE_EXTENSIONS", "MAX_STEM_BYTES", "blend_names", "check_free", "check_inputs", "check_output_folder", "collect_inputs", "exemplar_tag", "generate_names", "output_name", "output_names", "short_stem", "split_output", "unique_stems"]
