"""Images in and out: load any photo PIL can read as RGB, convert to and from [−1, 1] tensors, save, grids.

Tensors follow the reference code (torchvision's ``Normalize(0.5, 0.5)``; ``util.py`` writes images back): float
NCHW RGB in [−1, 1] with x = v/127.5 − 1, written back as the round-down uint8 of (x + 1)·127.5 (the reference's
``astype(np.uint8)``). Everything that can go wrong with a file — missing,
empty, not an image, truncated, a decompression bomb, a folder that cannot be written — is an :class:`ImageError`
whose message is one sentence naming the file.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_write
from .errors import DualStyleGANError, missing

log = logging.getLogger(__name__)

#: The largest image :func:`load_image` opens (8192² pixels); PIL's own bomb check allows ~179 M.
MAX_PIXELS = 8192 * 8192

#: Raster photo formats worth looking for in a folder (documents, vector and scientific formats PIL also opens —
#: .pdf, .eps, .fits, .h5 … — are left out).
_PHOTO_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".avif", ".avifs", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".jpf",
    ".qoi", ".mpo",
)


def image_extensions() -> frozenset[str]:
    """The photo extensions that PIL can open here (lower case, with the dot): :func:`load_image` and
    :func:`is_image_file` agree — an ``.avif`` that loads is also found in a folder. Plugins registered later
    (``pillow_heif.register_heif_opener()``) count from then on."""
    registered = Image.registered_extensions()
    return frozenset(e for e in _PHOTO_EXTENSIONS if registered.get(e) in Image.OPEN)


def __getattr__(name: str):
    """``IMAGE_EXTENSIONS``: :func:`image_extensions` when first asked for. Not at import: listing PIL's extensions
    imports every plugin (30–40 ms of a one-photo command; opening a JPEG or PNG needs only PIL's common five)."""
    if name == "IMAGE_EXTENSIONS":
        globals()[name] = value = image_extensions()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

if TYPE_CHECKING:
    import torch

ImageLike = Union[Image.Image, "torch.Tensor"]
_WHITE = (255, 255, 255)


class ImageError(DualStyleGANError, ValueError):
    """A file that cannot be read or written as an image; the message is one sentence naming the file."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


# ------------------------------------------------------------------------------------------------ loading
def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an RGB PIL image, fully decoded.

    EXIF orientation is applied; transparency is composited on white; 16-bit and float images are scaled to
    8 bits; CMYK, greyscale and palette images become RGB; an animation gives its first frame. Raises
    :class:`ImageError` for a missing, empty, unreadable, truncated or too large (> :data:`MAX_PIXELS`) file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"the image {path} {missing(path)}.", path)
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file.", path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"the image {path} is empty (0 bytes).", path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(_too_large(path, f"{w}×{h} pixels"), path)
                im.load()  # decode everything now: a truncated file fails here, not later
                img = _upright(im)  # a new image (the first frame), independent of the file closed below
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(_too_large(path, "too many pixels"), path) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file that can be read (unknown or corrupt format).", path) from None
    except PermissionError:
        raise ImageError(f"the image {path} cannot be read: permission denied.", path) from None
    except (OSError, SyntaxError, EOFError, ValueError) as e:
        if "truncated" in str(e) or isinstance(e, EOFError):
            raise ImageError(f"the image {path} is truncated (its data ends early); re-export or re-download it.",
                             path) from None
        raise ImageError(f"the image {path} is corrupt and cannot be decoded ({_reason(e)}).", path) from None
    except MemoryError:
        raise ImageError(_too_large(path, "not enough memory to decode it"), path) from None
    except Exception as e:  # noqa: BLE001 - a malformed file can trip any error inside a decoder
        raise ImageError(f"the image {path} is corrupt and cannot be decoded ({_reason(e)}).", path) from None
    try:
        return _rgb8(img)
    except Exception as e:  # noqa: BLE001 - an exotic mode PIL opens but cannot convert
        raise ImageError(f"the image {path} has a pixel format that cannot be converted to RGB ({_reason(e)}).",
                         path) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """An already opened PIL image → 8-bit RGB: EXIF orientation applied, transparency on white, 16-bit scaled."""
    return _rgb8(_upright(img))


def _upright(img: Image.Image) -> Image.Image:
    """A copy of ``img`` turned as its EXIF orientation says (a broken EXIF block is ignored, not fatal)."""
    try:
        out = ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block must not make the photo unreadable
        log.debug("ignoring an unreadable EXIF orientation: %s", e)
        out = None
    return img.copy() if out is None or out is img else out


def _rgb8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_deep_to_uint8(img), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _deep_to_uint8(img: Image.Image) -> np.ndarray:
    """A 16-bit (I;16*), 32-bit integer (I) or float (F) single-channel image → uint8, scaled, not clipped."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        a = a.astype(np.float64) / 257.0  # 0…65535 → 0…255
    elif img.mode == "I":
        a = a.astype(np.float64)
        hi = a.max(initial=0.0)
        if hi > 65535:
            a = a / hi * 255.0
        elif hi > 255:
            a = a / 257.0  # a 16-bit image read as 32-bit integers (older Pillow, some TIFFs)
    else:  # F
        a = np.nan_to_num(a.astype(np.float64))
        if a.max(initial=0.0) <= 1.0 and a.min(initial=0.0) >= 0.0:
            a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _too_large(path: Path, what: str) -> str:
    return (f"the image {path} is too large to open safely ({what}; the limit is {MAX_PIXELS:,} pixels); "
            f"resize it first.")


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------------ tensors
def to_tensor(img: Image.Image, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A PIL image → (1, 3, H, W) float32 in [−1, 1] (x = v/127.5 − 1), optionally resized first (Lanczos).

    ``size`` is an int (a square) or ``(width, height)`` as PIL orders it.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"to_tensor expects a PIL image, got {type(img).__name__}")
    img = _rgb8(img)  # no EXIF turn here: load_image already did it, and an image in memory is as it is
    if size is not None:
        wh = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
        if img.size != wh:
            img = img.resize(wh, Image.LANCZOS)
    import torch

    arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))  # H, W, 3
    return (arr.permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 127.5 - 1).contiguous()


def center_square(img: Image.Image, size: int) -> Image.Image:
    """The largest centred square of ``img``, resized to ``size``² (Lanczos): an unaligned photo or style image."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)) if (w, h) != (side, side) else img
    return img if img.size == (size, size) else img.resize((size, size), Image.LANCZOS)


def load_square(path: str | os.PathLike, size: int, uint8: bool = False) -> torch.Tensor:
    """An image file's largest centred square at ``size``² as a (1, 3, size, size) tensor: a style image.

    :func:`load_image` then :func:`center_square` (the reference's Resize + CenterCrop, Lanczos here) then
    :func:`to_tensor` — float32 in [−1, 1] (x = v/127.5 − 1); with ``uint8`` the raw 0…255 values instead (a
    quarter of the memory, for caches; ``t.float() / 127.5 − 1`` gives the float tensor exactly). Raises
    :class:`ImageError` as :func:`load_image` does.
    """
    img = center_square(load_image(path), int(size))
    if uint8:
        import torch

        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0).contiguous()
    return to_tensor(img)


def to_image(t: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (1, 3, H, W) tensor in [−1, 1] → RGB PIL image, uint8 = ⌊(x + 1)·127.5⌋ after clamping.

    Computed as ⌊x·127.5 + 127.5⌋ in float32, which makes ``to_image(to_tensor(img))`` exact for every uint8
    value (the literal (x + 1)·127.5 lands just below the integer for 63 of the 256 values). A one-channel
    tensor gives a grey RGB image; NaN becomes mid-grey.
    """
    if not _is_tensor(t):
        raise TypeError(f"to_image expects a tensor, got {type(t).__name__}")
    import torch

    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_image takes one image, got a batch of {t.shape[0]}; use make_grid for several")
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"to_image expects a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(t.shape)}")
    x = torch.nan_to_num(t.detach().to("cpu", torch.float32), nan=0.0).clamp(-1, 1)
    v = torch.floor(x * 127.5 + 127.5).clamp(0, 255).to(torch.uint8)
    if v.shape[0] == 1:
        v = v.expand(3, -1, -1)
    return Image.fromarray(v.permute(1, 2, 0).contiguous().numpy(), "RGB")


def _is_tensor(item: object) -> bool:
    """Whether ``item`` is a torch tensor — without importing torch (this module's photo reading and saving does not
    need it: a face-preparing process starts without it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(item, torch.Tensor)


def _as_pil(item: ImageLike) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if _is_tensor(item):
        return to_image(item)
    raise TypeError(f"expected a PIL image or an image tensor, got {type(item).__name__}")


# ------------------------------------------------------------------------------------------------ saving
def save_image(img: ImageLike, path: str | os.PathLike, overwrite: bool = False, **save_kwargs) -> Path:
    """Write a PIL image or a [−1, 1] tensor to ``path``; the format follows the extension.

    JPEG is written at quality 95 and PNG at zlib level 1, as the reference's ``cv2.imwrite`` does (``save_kwargs``
    override them). The file appears whole or not at all (written to a temporary file in the same folder, then
    renamed); an existing file is replaced only with ``overwrite``. Missing parent folders are created. Raises
    :class:`ImageError` for an existing file, an unknown extension or a folder that cannot be written.
    """
    pil = _as_pil(img)
    path = Path(path)
    fmt = _format_for(path)
    if fmt == "JPEG" and pil.mode not in ("RGB", "L", "CMYK"):
        pil = _rgb8(pil)
    if fmt == "JPEG":
        save_kwargs.setdefault("quality", 95)
    if fmt == "PNG":  # the reference's cv2.imwrite default (best speed): a 1024² portrait in ~0.07 s, not 0.2–0.4 s
        save_kwargs.setdefault("compress_level", 1)
    _write_atomic(path, lambda f: pil.save(f, format=fmt, **save_kwargs), overwrite)
    return path


def save_animation(frames: Sequence[ImageLike], path: str | os.PathLike, overwrite: bool = False,
                   duration: int = 80, loop: int = 0) -> Path:
    """Write frames (PIL images or tensors) as an animation (GIF, or WebP / PNG by extension), ``duration`` ms each.

    Written atomically like :func:`save_image`; raises :class:`ImageError` the same way.
    """
    if len(frames) == 0:
        raise ValueError("save_animation needs at least one frame")
    pils = [_as_pil(f).convert("RGB") for f in frames]
    path = Path(path)
    fmt = _format_for(path)
    if fmt not in ("GIF", "WEBP", "PNG"):
        raise ImageError(f"cannot write an animation to {path}: use a .gif, .webp or .png file name.", path)
    _write_atomic(path, lambda f: pils[0].save(f, format=fmt, save_all=True, append_images=pils[1:],
                                               duration=duration, loop=loop), overwrite)
    return path


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"cannot save {path}: the extension {ext or '(none)'} is not an image format "
                         f"that can be written; use .png or .jpg.", path)
    return fmt


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None], overwrite: bool) -> None:
    """:func:`dualstylegan.atomic.atomic_write`, its refusals and failures said as an :class:`ImageError`."""
    if path.is_dir():
        raise ImageError(f"cannot save to {path}: it is a folder.", path)
    if path.exists() and not overwrite:
        raise ImageError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why_ = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else _why(e)
        raise ImageError(f"cannot write {path}: its folder cannot be created ({why_}).", path) from None
    try:
        atomic_write(path, write, overwrite=overwrite)
    except FileExistsError:
        raise ImageError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.", path) from None
    except OSError as e:
        raise ImageError(f"cannot write {path}: {_why(e)}.", path) from None


def _why(e: OSError) -> str:
    return e.strerror or _reason(e)


def make_grid(items: Iterable[ImageLike | None], nrow: int = 8, padding: int = 2, size: int | None = None,
              background: tuple[int, int, int] = _WHITE) -> Image.Image:
    """Tile images into rows of ``nrow`` with ``padding`` pixels between and around them.

    Items are PIL images, tensors (3, H, W) / (N, 3, H, W) in [−1, 1] — a batch gives N cells — or None for an
    empty cell. With ``size`` each cell is ``size``² and every image is fitted into it (Lanczos); otherwise the
    cells take the largest width and height and smaller images are centred.
    """
    cells: list[Image.Image | None] = []
    for item in items:
        if _is_tensor(item) and item.ndim == 4:
            cells += [to_image(x) for x in item]
        else:
            cells.append(None if item is None else _as_pil(item).convert("RGB"))
    if not cells:
        raise ValueError("make_grid needs at least one image")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if size is not None:
        cw = ch = int(size)
        cells = [None if c is None else ImageOps.contain(c, (cw, ch), Image.LANCZOS) for c in cells]
    else:
        present = [c for c in cells if c is not None] or [Image.new("RGB", (1, 1))]
        cw, ch = max(c.width for c in present), max(c.height for c in present)
    cols = min(nrow, len(cells))
    rows = -(-len(cells) // cols)
    grid = Image.new("RGB", (cols * (cw + padding) + padding, rows * (ch + padding) + padding), tuple(background))
    for i, c in enumerate(cells):
        if c is None:
            continue
        r, k = divmod(i, cols)
        x = padding + k * (cw + padding) + (cw - c.width) // 2
        y = padding + r * (ch + padding) + (ch - c.height) // 2
        grid.paste(c, (x, y))
    return grid


# ------------------------------------------------------------------------------------------------ folders
def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name has an extension PIL opens (:func:`image_extensions`) and is not hidden (``.*``, ``._*``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    return suffix in image_extensions() and not p.name.startswith(".")


def iter_image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (by extension, see :func:`is_image_file`), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else missing(folder)
        raise NotADirectoryError(f"the folder {folder} {why}.")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in found if is_image_file(p) and p.is_file()), key=lambda p: str(p))


__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageError", "center_square", "is_image_file", "iter_image_files", "load_image",
    "load_square", "make_grid",
    "save_animation", "save_image", "to_image", "to_rgb", "to_tensor",
]
