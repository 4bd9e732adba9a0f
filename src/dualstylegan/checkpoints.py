"""File-level I/O: the official pickles (``torch.save`` files and ``*_code.npy`` banks), read without running code.

Every reader turns every failure into one :class:`CheckpointError` sentence that names the file, says what is
wrong and what to do. Nothing here knows about networks: :mod:`dualstylegan.official` maps state dicts to them.

* ``*.pt`` / ``*.pth`` (``torch.save`` pickles): ``torch.load(weights_only=True)``, which refuses any global
  beyond tensors and plain containers.
* ``*_code.npy`` (``np.save`` of a dict name → (1, 18, 512) float32): the .npy header is parsed by numpy's
  header readers and the pickled payload by an unpickler that knows only numpy's array-rebuilding globals.
* Writers are atomic: a temp file beside the target, fsync, ``os.replace``; a failed write leaves the old file.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from numpy.lib import format as npformat

from .atomic import atomic_write, disk_full
from .errors import DualStyleGANError, short

try:  # numpy >= 2 (and the forward-compatible alias of late 1.x)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

PathLike = str | os.PathLike
Tensors = dict[str, torch.Tensor]



class CheckpointError(DualStyleGANError, ValueError):
    """A checkpoint file that is missing, damaged, unsafe or of the wrong kind (one sentence, names the file)."""


# ------------------------------------------------------------------------------------------- helpers
def _existing_file(path: PathLike) -> Path:
    """``path`` as a Path once it is known to be a non-empty file; CheckpointError otherwise."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file; give the path of the file itself.")
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; download it again or check the path.")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p} is empty (0 bytes), probably an interrupted download; download it again.")
    try:
        open(p, "rb").close()
    except OSError as exc:
        raise CheckpointError(f"{p} cannot be read ({exc.strerror}); check its permissions.") from None
    return p


_NPY = "a .npy file"
_ZIP = "a zip archive (the format of torch.save)"
_PICKLE = "a Python pickle (perhaps a legacy torch.save file)"


def _sniff(p: Path) -> str | None:
    """What ``p`` looks like from its first bytes when that helps an error message ('a .npy file', …)."""
    with open(p, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x93NUMPY"):
        return _NPY
    if head.startswith(b"PK\x03\x04"):
        return _ZIP
    if head[:1] == b"\x80":
        return _PICKLE
    if b"\0" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > 3 or any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    lines = text.strip().splitlines()
    return f"a text file (it starts with {lines[0][:60] if lines else ''!r})"


def _wrong_format(p: Path, expected: str, exc: BaseException, native: tuple[str, ...]) -> CheckpointError:
    """The error for a file that could not be parsed as ``expected``: what it looks like when that is not one of
    the ``native`` formats (see :func:`_sniff`), else 'truncated'."""
    looks = _sniff(p)
    if looks is not None and looks not in native:
        hint = " — perhaps a download page or a Git LFS pointer was saved instead" if "text" in looks else ""
        return CheckpointError(f"{p} is {looks}, not {expected}{hint}; check the path or download it again.")
    return CheckpointError(f"{p} is truncated or not {expected} ({short(exc)}); download it again.")


# ------------------------------------------------------------------------------------------- torch files
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _torch_reason(exc: BaseException) -> BaseException:
    """The concise inner error of torch's long 'Weights only load failed …' message."""
    inner = exc.__context__ or exc.__cause__
    if inner is not None and str(inner).strip():
        return inner
    text = str(exc)
    tag = "WeightsUnpickler error:"
    return pickle.UnpicklingError(text[text.index(tag) + len(tag):]) if tag in text else exc


def load_torch_file(path: PathLike) -> Any:
    """A ``torch.save`` file (zip or legacy format) on the CPU, with ``weights_only=True``: no code is run."""
    p = _existing_file(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _torch_reason(exc)
        m = _GLOBAL_RE.search(str(reason))
        # a legacy (non-zip) file cut inside a name asks for e.g. 'torch._utils._rebuild': damaged, not hostile
        if m and not (m.group(1).startswith("torch.") and _sniff(p) == _PICKLE):
            raise CheckpointError(f"Refusing to load {p} because it asks to run code (global {m.group(1)}); "
                                  "nothing from it was executed — use the official file or re-save it as plain "
                                  "tensors.") from None
        raise _wrong_format(p, "a PyTorch checkpoint", reason, (_ZIP, _PICKLE)) from exc
    except MemoryError:
        raise CheckpointError(f"{p} is damaged or too large for the memory available; free memory or download it "
                              "again.") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError, ValueError…
        raise _wrong_format(p, "a PyTorch checkpoint", exc, (_ZIP, _PICKLE)) from exc


def save_torch_file(path: PathLike, obj: Any) -> None:
    """``torch.save(obj, path)`` atomically (official layouts that the training stages emit)."""
    write_file(Path(path), lambda f: torch.save(obj, f))


# ------------------------------------------------------------------------------------------- state dicts
def take(obj: Any, key: str, path: PathLike, what: str) -> dict:
    """``obj[key]`` as a dict (``'g_ema'``, ``'state_dict'``, ``'color'``…), or a 'wrong kind of file' error.

    ``what`` says what the file should have been, e.g. ``"a DualStyleGAN generator.pt"``."""
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
        return dict(obj[key])
    if isinstance(obj, Mapping):
        keys = sorted(map(str, obj))
        found = f"its top-level keys are {keys[:8]}{' …' if len(keys) > 8 else ''}"
    else:
        found = f"it holds a {type(obj).__name__}"
    raise CheckpointError(f"{path} is not {what}: it has no {key!r} entry ({found}); check that you gave the "
                          "right file.")


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries whose key starts with ``prefix``, prefix removed, in order (``'encoder.'`` of encoder.pt)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def check_state_dict(expected: Mapping[str, torch.Tensor], got: Mapping[str, Any], what: str) -> None:
    """Strict key and shape check; the error names the first problem in ``expected``'s order and ``what``
    (e.g. ``"generator.pt['g_ema']"``)."""
    problems: list[str] = []
    for key, ref in expected.items():
        if key not in got:
            problems.append(f"missing key {key!r} (shape {tuple(ref.shape)})")
        elif not isinstance(got[key], torch.Tensor):
            problems.append(f"{key!r} is a {type(got[key]).__name__}, not a tensor")
        elif tuple(got[key].shape) != tuple(ref.shape):
            problems.append(f"{key!r} has shape {tuple(got[key].shape)}, expected {tuple(ref.shape)}")
    problems += [f"unexpected key {key!r}" for key in got if key not in expected]
    if problems:
        n = len(problems) - 1
        more = f" (and {n} more difference{'s' if n > 1 else ''})" if n else ""
        raise CheckpointError(f"{what} does not match the network: {problems[0]}{more}; the file is for another "
                              "model or configuration.")


# ------------------------------------------------------------------------------------------- code banks
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(mod, name): getattr(_multiarray, name)
       for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")},
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dtypes and scalars, and plain containers; every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _validate_codes(codes: Any, where: str, style_dim: int) -> dict[str, np.ndarray]:
    if not isinstance(codes, Mapping):
        raise CheckpointError(f"{where} holds a {type(codes).__name__}, not a code bank (a dict exemplar name → "
                              "code); give an exstyle_code.npy / instyle_code.npy file.")
    if not codes:
        raise CheckpointError(f"{where} holds no codes; give a code bank with at least one exemplar.")
    out: dict[str, np.ndarray] = {}
    for name, code in codes.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{where} has a key {name!r} that is not a file name (str); it is not a code bank.")
        arr = code.detach().cpu().numpy() if isinstance(code, torch.Tensor) else np.asarray(code)
        if arr.dtype.kind != "f":
            raise CheckpointError(f"{where}: the code of {name!r} has dtype {arr.dtype}, not a float type; it is not "
                                  "a code bank.")
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[0] != 1) or arr.shape[-1] != style_dim:
            raise CheckpointError(f"{where}: the code of {name!r} has shape {arr.shape}, expected "
                                  f"(1, n_latent, {style_dim}) or (n_latent, {style_dim}); it is not a code bank.")
        out[name] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def load_code_bank(path: PathLike, style_dim: int = 512) -> dict[str, np.ndarray]:
    """An official ``*_code.npy`` (np.save of a dict name → float32 (1, 18, 512)), in file order, without
    running code: only numpy's array-rebuilding globals are allowed (numpy 1.x and 2.x names)."""
    p = _existing_file(path)
    with open(p, "rb") as f:
        try:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npformat.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npformat.read_array_header_2_0(f)
            elif version == (3, 0) and hasattr(npformat, "_read_array_header"):
                shape, _, dtype = npformat._read_array_header(f, version)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # noqa: BLE001 - ValueError, EOFError, SyntaxError from the header
            raise _wrong_format(p, "a .npy code bank", exc, (_NPY,)) from exc
        if dtype != np.dtype(object) or shape != ():
            raise CheckpointError(f"{p} holds a {dtype} array of shape {shape}, not a code bank (a dict exemplar "
                                  "name → code saved with np.save); give an exstyle_code.npy / instyle_code.npy "
                                  "file.")
        try:
            obj = _NumpyUnpickler(f).load()
        except _ForbiddenGlobal as exc:
            raise CheckpointError(f"Refusing to load {p} because it asks to run code (global {exc.name}); nothing "
                                  "from it was executed — use the official file.") from None
        except MemoryError:
            raise CheckpointError(f"{p} is damaged (it asks for more memory than there is); "
                                  "download it again.") from None
        except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, ValueError, TypeError…
            raise CheckpointError(f"{p} is truncated or damaged ({short(exc)}); download it again.") from None
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    return _validate_codes(obj, str(p), style_dim)


def save_code_bank(path: PathLike, codes: Mapping[str, Any], style_dim: int = 512) -> None:
    """Write the official layout (``np.save`` of the dict, float32 values, order kept) atomically."""
    bank = _validate_codes(codes, str(path), style_dim)
    write_file(Path(path), lambda f: np.save(f, bank, allow_pickle=True))


# ------------------------------------------------------------------------------------------- atomic writes
def write_file(path: PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """:func:`dualstylegan.atomic.atomic_write` with an ``OSError`` said as a :class:`CheckpointError` (a full disk
    says so; any previous file there is unchanged)."""
    path = Path(path)
    try:
        return atomic_write(path, write)
    except OSError as exc:
        if disk_full(exc):
            raise CheckpointError(f"Could not write {path} because the disk is full; free some space and try again "
                                  "(any previous file there is unchanged).") from None
        raise CheckpointError(f"Could not write {path} ({short(exc)}); check that the folder is writable "
                              "(any previous file there is unchanged).") from None
