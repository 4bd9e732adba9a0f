"""Stylising files: photos (or folders) → portraits in a folder, one :class:`FileResult` per photo, and the names
of every file the front ends write.

``style_transfer.py`` stylises one photo per call and names its output ``{content}_{style}_{exemplar}``;
:func:`stylize_files` runs the same transfer (:meth:`~dualstylegan.pipeline.StyleTransferPipeline.transfer`) over
many photos, reports each photo's outcome as it goes, and never overwrites a file unless asked. The CLI prints its
report from these results; a Python user iterates them. It is an iterator so that a streamed version (decode →
detect → align → batch → network → paste → write, with bounded queues) can replace its inside without changing
callers: results come in input order, one per photo.

Nothing here imports torch at import time.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .defaults import TRANSFER_TRUNCATION
from .errors import UsageError, is_user_error, sentence

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .pipeline import StyleTransferPipeline

#: An exemplar: a style id or exemplar name of the pack's code bank, an image file (``Path``), a PIL image, or an
#: image tensor (1, 3, H, W) in [−1, 1]. Image exemplars are prepared like the photos (:func:`faces.prepare_face`).
Exemplar = Union[int, str, os.PathLike, "Image.Image", "torch.Tensor"]


@dataclass(frozen=True)
class FileResult:
    """What became of one input photo: the ``portraits`` written (one per face), the ``extras`` (overview grids,
    the pasted-back photo), or ``error``, one sentence saying why it was skipped (``exception`` is the error)."""

    input: Path
    portraits: tuple[Path, ...] = ()
    extras: tuple[Path, ...] = ()
    error: str | None = None
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outputs(self) -> tuple[Path, ...]:
        return self.portraits + self.extras


# ----------------------------------------------------------------------------------------- inputs and outputs
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


# ----------------------------------------------------------------------------------------- the run
def stylize_files(pipe: StyleTransferPipeline, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                  *, exemplar: Exemplar = 0, align: bool = True, all_faces: bool = False, paste_back: bool = False,
                  overview: bool = False, overwrite: bool = False, weights: Sequence[float] | None = None,
                  structure=None, color=None, preserve_color: bool = False,
                  truncation: float = TRANSFER_TRUNCATION, wplus: bool = False, seed: int | None = None,
                  portrait_name: str | None = None, detector: str | None = None, face_threshold: float | None = None,
                  **transfer_options: Any) -> StylizeRun:
    """Stylise photos (files or folders) with one exemplar into ``out_dir``: one :class:`FileResult` per photo.

    Per photo: :func:`faces.prepare_face` (the largest face, every face with ``all_faces``, or the centred square
    without ``align``), :meth:`StyleTransferPipeline.transfer` per face with the weight / color / truncation /
    encoder / noise options (and ``transfer_options`` such as ``refine``), then the portrait
    (:func:`output_name`), with ``overview`` a content | reconstruction | exemplar | result grid, with
    ``paste_back`` the photo with its stylised faces put back (:func:`faces.paste_back`). A photo whose files
    exist is skipped unless ``overwrite`` (all of its outputs, or none). ``portrait_name`` names the portrait of a
    run of one photo and one face (``-o portrait.png``, :func:`split_output`).

    An image exemplar (file, PIL image, NumPy array) is aligned when it has a face and otherwise centre-cropped
    (:func:`faces.prepare_exemplar`), whatever ``align`` says about the photos; the returned :class:`StylizeRun`
    iterates the results and holds ``notices`` (e.g. "painting.png: no face was found in it; using its centred
    square as it is.") and ``exemplar_image``, the exemplar as the pipeline saw it (the overview's third column).

    Everything that concerns the whole run — the inputs, the output folder, the exemplar (prepared like the photos
    when it is an image), the weights and the truncation — is checked when this is called, raising one
    :class:`~dualstylegan.errors.DualStyleGANError`; a problem with one photo (unreadable, no face, an existing
    output) is its result's ``error`` and the run goes on. Any other exception is a bug and propagates.
    """
    from .pipeline import check_truncation

    files = collect_inputs(inputs)
    out = check_output_folder(out_dir)
    options = dict(weights=weights, structure=structure, color=color, preserve_color=preserve_color,
                   truncation=check_truncation(truncation), wplus=wplus, seed=seed, **transfer_options)
    pipe.weights_for(weights, structure, color)  # an impossible weight vector: one error, not one per photo
    if seed is not None:
        from .pipeline import check_seed

        check_seed(seed)
    tag = exemplar_tag(exemplar, pipe.codes)
    notices: list[str] = []
    ex = pipe.exemplar_input(exemplar, notices)
    if isinstance(ex, (int, str)):
        pipe.codes.resolve_name(ex)  # an unknown id or name: now, before any photo
    ex_image = (ex if not isinstance(ex, (int, str)) else pipe.render_exemplar(ex)) if overview else None
    faces_options = {"detector": detector or "hog", "threshold": face_threshold}
    run = _Run(pipe, out, ex, ex_image, tag, align, all_faces, paste_back, overwrite, options, portrait_name,
               faces_options)
    return StylizeRun(_results(run, files), notices, ex_image)


class StylizeRun(Iterator[FileResult]):
    """The results of :func:`stylize_files`, one :class:`FileResult` per photo as each is done, plus ``notices``
    (one line each, known when the call returns) and ``exemplar_image`` (None without ``overview``)."""

    def __init__(self, results: Iterator[FileResult], notices: list[str], exemplar_image=None):
        self._results, self.notices, self.exemplar_image = results, notices, exemplar_image

    def __iter__(self) -> StylizeRun:
        return self

    def __next__(self) -> FileResult:
        return next(self._results)


@dataclass
class _Run:
    """The settings of one :func:`stylize_files` call, checked."""

    pipe: Any
    out: Path
    exemplar: Any
    exemplar_image: Any
    tag: str
    align: bool
    all_faces: bool
    paste_back: bool
    overwrite: bool
    options: dict
    portrait_name: str | None = None
    faces: dict = None


def _results(run: _Run, files: Sequence[Path]) -> Iterator[FileResult]:
    stems = unique_stems(files)
    for path in files:
        portraits: list[Path] = []
        extras: list[Path] = []
        try:
            _stylize_one(run, path, stems[path], portraits, extras)
        except Exception as e:
            if not is_user_error(e):
                raise
            yield FileResult(path, tuple(portraits), tuple(extras), error=sentence(e), exception=e)
        else:
            yield FileResult(path, tuple(portraits), tuple(extras))


def _stylize_one(run: _Run, path: Path, stem: str, portraits: list[Path], extras: list[Path]) -> None:
    """One photo's files, appended to ``portraits`` / ``extras`` as they are written."""
    from .faces import paste_back, prepare_face
    from .images import load_image, make_grid, save_image, to_image, to_tensor

    photo = load_image(path)
    faces = prepare_face(photo, run.align, run.all_faces, name=path, **(run.faces or {}))
    style = run.pipe.style
    numbered = len(faces) > 1
    names = [output_name(stem, style, run.tag, face=i if numbered else None) for i in range(len(faces))]
    if run.portrait_name and len(names) == 1:
        names = [run.portrait_name]
    grids = [n[:-4] + "_overview.png" for n in names] if run.exemplar_image is not None else []
    pasted = [output_name(stem, style, run.tag, kind="pasted")] if run.paste_back else []
    check_free([run.out / n for n in (*names, *grids, *pasted)], run.overwrite)  # all of this photo's, or none
    stylised = []
    for i, face in enumerate(faces):
        r = run.pipe.transfer(to_tensor(face.image), run.exemplar, reconstruct=bool(grids), **run.options)
        portraits.append(save_image(r.image, run.out / names[i], overwrite=run.overwrite))
        if grids:
            grid = make_grid([r.content, r.reconstruction, run.exemplar_image, r.image], nrow=4, size=256)
            extras.append(save_image(grid, run.out / grids[i], overwrite=run.overwrite))
        stylised.append((to_image(r.image), face.quad))
    if pasted:
        for image, quad in stylised:
            photo = paste_back(photo, image, quad)
        extras.append(save_image(photo, run.out / pasted[0], overwrite=run.overwrite))


__all__ = ["IMAGE_EXTENSIONS", "Exemplar", "FileResult", "StylizeRun", "blend_names", "check_free", "check_inputs",
           "check_output_folder", "collect_inputs", "exemplar_tag", "generate_names", "output_name", "output_names",
           "short_stem", "split_output", "stylize_files", "unique_stems"]
