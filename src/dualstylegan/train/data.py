"""Style image sets for training: prepare a folder of artistic portraits once, then serve batches to the loop.

``prepare_style_images`` turns a folder of images of any size and format into square PNGs at the training
resolution — FFHQ-aligned on the largest face (the reference aligns its style sets the same way), or centre-cropped
when the faces cannot be detected (``align=False``; cartoons and anime often defeat dlib). ``ImageFolderDataset``
reads such a folder and hands the training loop batches of dataset indices → (B, 3, size, size) tensors in [−1, 1].
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..images import center_square, save_image

log = logging.getLogger(__name__)

Rejected = tuple[Path, str]


# ------------------------------------------------------------------------------------------- helpers
def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from ..images import to_image  # an aligner that returns tensors

    return to_image(image)


def _png_size(path: Path) -> tuple[int, int] | None:
    """The (w, h) of an existing, readable PNG, else None (a half-written or foreign file is redone)."""
    try:
        with Image.open(path) as im:
            return im.size if im.format == "PNG" else None
    except Exception:  # noqa: BLE001 - any unreadable file is simply prepared again
        return None


def target_names(files: Sequence[Path]) -> list[str]:
    """The prepared PNG's name of each source, all different even where file names compare equal ignoring case (as
    they do on Windows and macOS): ``<stem>.png`` for a stem no other source has (ignoring case); the sources that
    share a stem keep their extension, lower-cased (``a.jpg`` → ``a_jpg.png``), and a name still taken gets
    ``_2``, ``_3``, … in the sorted order of the sources (``a.png``, ``a.PNG`` → ``a_png.png``, ``a_png_2.png``)."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.casefold()] = stems.get(f.stem.casefold(), 0) + 1
    names: list[str | None] = [f"{f.stem}.png" if stems[f.stem.casefold()] == 1 else None for f in files]
    taken = {n[:-4].casefold() for n in names if n is not None}
    for i in sorted(range(len(files)), key=lambda i: str(files[i])):
        if names[i] is not None:
            continue
        base = f"{files[i].stem}_{files[i].suffix.lstrip('.').lower()}"
        name, k = base, 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name.casefold())
        names[i] = f"{name}.png"
    return [str(n) for n in names]


#: In the prepared folder: which source each PNG was made from (a PNG is reused only for the same source).
SOURCES_FILE = ".sources.json"


def _source_key(path: Path) -> dict:
    stat = path.stat()
    return {"source": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# ------------------------------------------------------------------------------------------- preparation
def prepare_style_images(src_folder: str | os.PathLike, dst_folder: str | os.PathLike, size: int = 1024,
                         align: bool = True, *, progress: bool = True) -> tuple[list[Path], list[Rejected]]:
    """Check, align and resize every image of ``src_folder`` into ``dst_folder`` as ``<stem>.png`` (``size``²; sources
    whose names would collide get distinct names, :func:`target_names`).

    Each image is read with :func:`dualstylegan.images.load_image` (any format PIL reads, EXIF orientation
    applied); with ``align`` the largest face is FFHQ-aligned at ``size`` (:func:`dualstylegan.faces.align`),
    otherwise the centred square is resized. A file already prepared at this size from the same source (name, size
    and time, recorded in ``dst_folder/.sources.json``) is skipped, so the function is idempotent and resumes an
    interrupted run; files are written atomically.

    Returns ``(kept, rejected)``: the prepared PNG paths, and ``(source, reason)`` for every image left out, the
    reason one sentence a person can act on.
    """
    from ..images import ImageError, iter_image_files, load_image

    src, dst = Path(src_folder), Path(dst_folder)
    if not src.is_dir():
        raise FileNotFoundError(f"the style image folder {src} does not exist; give the folder of style images.")
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    dst.mkdir(parents=True, exist_ok=True)
    if src.resolve() == dst.resolve():
        raise ValueError(f"the prepared images need a folder of their own, not the source folder {src}.")
    files = [p for p in iter_image_files(src) if not p.name.startswith(".")]
    caught: tuple[type[Exception], ...] = (ImageError,)
    if align:
        from ..faces import NoFaceError
        from ..faces import align as align_faces

        caught += (NoFaceError,)

    from tqdm import tqdm

    from ..atomic import read_json, write_json

    kept: list[Path] = []
    rejected: list[Rejected] = []
    made = read_json(dst / SOURCES_FILE) or {}
    for path, name in tqdm(list(zip(files, target_names(files))), desc="preparing style images", unit="image",
                           disable=not progress or len(files) < 2):
        target = dst / name
        if made.get(name) == _source_key(path) and _png_size(target) == (size, size):
            kept.append(target)
            continue
        try:
            img = load_image(path)
            if align:
                faces = align_faces(img, output_size=size)
                if not faces:
                    raise NoFaceError(f"no face was found in {path.name}.")
                out = _as_pil(faces[0].image)  # align() gives the largest face first
                if out.size != (size, size):
                    out = out.resize((size, size), Image.LANCZOS)
            else:
                out = center_square(img, size)
        except caught as exc:
            reason = str(exc).strip() or f"{path.name} could not be used."
            log.warning("skipping %s: %s", path, reason)
            rejected.append((path, reason))
            continue
        save_image(out, target, overwrite=True)
        made[name] = _source_key(path)
        write_json(dst / SOURCES_FILE, made)
        kept.append(target)
    return kept, rejected


# ------------------------------------------------------------------------------------------- dataset
class ImageFolderDataset:
    """The images of a folder as (3, size, size) tensors in [−1, 1] (x/127.5 − 1), for :class:`TrainLoop`.

    ``fetch(indices)`` returns the stacked batch, each image mirrored with probability 1/2 when ``hflip`` (the
    reference's ``RandomHorizontalFlip``) using torch's global generator, so a batch depends only on the indices
    and the RNG state the loop checkpoints. Images that are not ``size``² (an unprepared folder) are centre-cropped
    and resized. With ``cache`` the decoded images stay in memory as uint8 (3·size² bytes each).
    """

    def __init__(self, folder: str | os.PathLike, size: int, hflip: bool = True, cache: bool = True,
                 device: str | torch.device = "cpu"):
        from ..images import iter_image_files

        self.folder, self.size, self.hflip, self.cache = Path(folder), int(size), hflip, cache
        self.device = torch.device(device)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"the image folder {self.folder} does not exist; prepare the style images first.")
        # hidden files are left out: the temporary files of an interrupted preparation
        self.files = [p for p in iter_image_files(self.folder) if not p.name.startswith(".")]
        if not self.files:
            raise ValueError(f"the image folder {self.folder} holds no images; prepare the style images first.")
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> torch.Tensor:
        """Image ``i`` as a uint8 (3, size, size) tensor."""
        if i in self._cache:
            return self._cache[i]
        from ..images import load_square

        t = load_square(self.files[i], self.size, uint8=True)[0]
        if self.cache:
            self._cache[i] = t
        return t

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._load(int(i)).float() / 127.5 - 1

    def fetch(self, indices: Sequence[int]) -> torch.Tensor:
        batch = torch.stack([self._load(int(i)) for i in indices]).to(self.device)
        batch = batch.float() / 127.5 - 1
        if self.hflip:
            flip = (torch.rand(len(indices)) < 0.5).to(self.device)
            batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
        return batch

    __call__ = fetch
