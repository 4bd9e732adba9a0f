"""File-level I/O: the official pickles (``torch.save`` files and ``*_code.npy`` banks), read without running code.

Every reader turns every failure into one :class:`CheckpointError` sentence that names the file, says what is
wrong and what to do. Nothing here knows about networks: :mod:`dualstylegan.official` maps state dicts to them.

* ``*.pt`` / ``*.pth`` (``torch.save`` pickles): ``torch.load(weights_only=True)``, which refuses any global
  beyond tensors and plain containers.
* ``*_code.npy`` (``np.save`` of a dict name → (1, 18, 512) float32): the .npy header is parsed by numpy's
  header readers and the pickled payload by :mod:`dualstylegan.safe_unpickle`, which calls nothing from numpy,
  counts its opcodes and refuses shared containers; codes must be finite in float32.
* Before ``torch.load``, a zip's records must be STORED and no larger than the file (:mod:`dualstylegan.limits`);
  :func:`check_weights` checks a state dict's tensors (real storage, finite) before anything is built from it.
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

from . import safe_unpickle
from .atomic import atomic_write, disk_full
from .errors import DualStyleGANError, missing, short
from .limits import Refused, check_tensors, check_zip

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
        raise CheckpointError(f"{p} {missing(p)}; download it again or check the path.")
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


def refused(path: PathLike, exc: BaseException) -> CheckpointError:
    """The sentence for a file outside :mod:`dualstylegan.limits` (``exc`` is its :class:`~.limits.Refused`)."""
    return CheckpointError(f"Refusing to load {path}: {exc}; nothing was built from it — use the official file or "
                           "download it again.")


def check_weights(tensors: Any, path: PathLike, *, finite: bool = True, checked=None) -> None:
    """Every tensor in ``tensors`` (a state dict, or nested containers such as an optimizer state) is dense, backed
    by its own bytes in the file (no stride-0 or overlapping views) and, with ``finite``, free of NaN/Inf; else one
    :class:`CheckpointError` naming ``path`` and the tensor. Call it before building anything from a state dict.
    ``checked(t)`` is called after each tensor that passed."""
    try:
        check_tensors(tensors, finite=finite, checked=checked)
    except Refused as exc:
        raise refused(path, exc) from None


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


def load_torch_file(path: PathLike, *, mmap: bool = False) -> Any:
    """A ``torch.save`` file (zip or legacy format) on the CPU, with ``weights_only=True``: no code is run.

    With ``mmap`` a zip file's tensors are memory-mapped (``MAP_PRIVATE``: read from the page cache when first
    touched, copied only when written) instead of read into memory — the same checks apply (:func:`check_zip`
    first; every record STORED and inside the file). A legacy (non-zip) file is read as usual."""
    p = _existing_file(path)
    try:
        check_zip(p)
    except Refused as exc:
        raise refused(p, exc) from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and _sniff(p) == _ZIP)
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
def _validate_codes(codes: Any, where: str, style_dim: int) -> dict[str, np.ndarray]:
    if not isinstance(codes, Mapping):
        raise CheckpointError(f"{where} holds a {type(codes).__name__}, not a code bank (a dict exemplar name → "
                              "code); give an exstyle_code.npy / instyle_code.npy file.")
    if not codes:
        raise CheckpointError(f"{where} holds no codes; give a code bank with at least one exemplar.")
    out: dict[str, np.ndarray] = {}
    for name, code in codes.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{where} has a key of type {type(name).__name__} that is not a file name (str); it "
                                  "is not a code bank.")
        arr = code.detach().cpu().numpy() if isinstance(code, torch.Tensor) else np.asarray(code)
        if arr.dtype.kind != "f":
            raise CheckpointError(f"{where}: the code of {name!r} has dtype {arr.dtype}, not a float type; it is not "
                                  "a code bank.")
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[0] != 1) or arr.shape[-1] != style_dim:
            raise CheckpointError(f"{where}: the code of {name!r} has shape {arr.shape}, expected "
                                  f"(1, n_latent, {style_dim}) or (n_latent, {style_dim}); it is not a code bank.")
        out[name] = finite_code(arr, name, where)
    return out


def finite_code(arr: np.ndarray, name: str, where: str) -> np.ndarray:
    """``arr`` as contiguous float32, or one sentence when it holds NaN/Inf or values beyond float32 (float64 codes
    of 1e300 would become Inf and render a uniform grey portrait)."""
    if not np.isfinite(arr).all():
        raise CheckpointError(f"{where}: the code of {name!r} holds NaN or infinite values; use the official file or "
                              "recompute the codes.")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise CheckpointError(f"{where}: the code of {name!r} has values too large for float32 (up to "
                              f"{float(np.abs(arr).max()):.3g}); use the official file or recompute the codes.")
    return out


def _read_npy_header(p: Path, f: IO[bytes]) -> None:
    """Parse the .npy header with numpy's readers; a code bank is a 0-d object array."""
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
                              "name → code saved with np.save); give an exstyle_code.npy / instyle_code.npy file.")


def load_code_bank(path: PathLike, style_dim: int = 512) -> dict[str, np.ndarray]:
    """An official ``*_code.npy`` (np.save of a dict name → float32 (1, 18, 512)), in file order, without
    running code and within the object-graph budget of :mod:`dualstylegan.safe_unpickle` (numpy 1.x and 2.x)."""
    p = _existing_file(path)
    with open(p, "rb") as f:
        _read_npy_header(p, f)
        data = f.read()
    try:
        top = safe_unpickle.root_object(safe_unpickle.load(data))
        if not isinstance(top, dict):
            raise CheckpointError(f"{p} holds a {type(top).__name__}, not a code bank (a dict exemplar name → code); "
                                  "give an exstyle_code.npy / instyle_code.npy file.")
        codes = {name: safe_unpickle.array(code, str(name)) if isinstance(name, str) else code
                 for name, code in top.items()}
    except safe_unpickle.ForbiddenGlobal as exc:
        raise CheckpointError(f"Refusing to load {p} because it asks to run code (global {exc.name}); nothing "
                              "from it was executed — use the official file.") from None
    except Refused as exc:
        raise refused(p, exc) from None
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{p} is damaged (it asks for more memory than there is); "
                              "download it again.") from None
    except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, ValueError, TypeError…
        raise CheckpointError(f"{p} is truncated or damaged ({short(exc)}); download it again.") from None
    return _validate_codes(codes, str(p), style_dim)


def save_code_bank(path: PathLike, codes: Mapping[str, Any], style_dim: int = 512) -> None:
    """Write the official layout (``np.save`` of the dict, float32 values, order kept) atomically."""
    bank = _validate_codes(codes, str(path), style_dim)
    write_file(Path(path), lambda f: np.save(f, bank, allow_pickle=True))


# ------------------------------------------------------------------------------------------- atomic writes
#: What PyTorch's zip writer (``caffe2/serialize/inline_container.cc``) says when a write to the file fails part-way.
_SHORT_WRITE = re.compile(r"inline_container\.cc.*(unexpected pos|failed writing)|PytorchStreamWriter failed", re.S)
def _short_write(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's zip writer failing to write (a RuntimeError, not the OSError underneath)."""
    return isinstance(exc, RuntimeError) and bool(_SHORT_WRITE.search(str(exc)))


def write_file(path: PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """:func:`dualstylegan.atomic.atomic_write` with an ``OSError`` — or torch's ``[enforce fail at
    inline_container.cc] unexpected pos …`` when the disk fills under ``torch.save`` — said as a
    :class:`CheckpointError` (a full disk says so; any previous file there is unchanged)."""
    path = Path(path)
    try:
        return atomic_write(path, write)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _short_write(exc):
            raise
        # torch's writer turns the OSError of a failed write into "unexpected pos …" (the OSError is its context,
        # when the file was a Python object); a short write with no other reason is the full disk (or quota)
        cause = _os_error_in(exc)
        if disk_full(cause or exc) or (cause is None and _short_write(exc)):
            raise CheckpointError(f"Could not write {path} because the disk is full; free some space and try again "
                                  "(any previous file there is unchanged).") from None
        raise CheckpointError(f"Could not write {path} ({short(cause or exc)}); check that the folder is writable "
                              "(any previous file there is unchanged).") from None


def _os_error_in(exc: BaseException) -> OSError | None:
    """``exc`` itself or the first OSError in its context/cause chain."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
