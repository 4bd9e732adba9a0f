"""What a file may declare before anything is built from it: the gap between pickles and safetensors' promise.

A ``torch.save`` file or an ``np.save`` code bank is a program for an unpickler; even with only harmless opcodes
and globals it can declare far more than it holds. Every limit here is checked on what was read — before a
network is constructed, before a tensor is copied, before a nested structure is walked — so that a hostile or
broken file is refused in milliseconds, with memory proportional to its size:

* **zip records** (:func:`check_zip`): ``torch.save`` writes every record STORED (uncompressed, PyTorch's
  ``caffe2/serialize/inline_container.cc``); a compressed record, or records declaring more bytes than the file
  holds, is refused before ``torch.load`` inflates anything.
* **tensors** (:func:`check_tensors`): each tensor's storage really holds its declared shape — dense, strided,
  no stride-0 dimension, within its storage, no two tensors sharing bytes — so the bytes a state dict declares
  are the bytes in the file; floating values are finite (a NaN weight renders a uniform grey portrait).
* **configs** (:func:`check_stylegan`, :func:`check_encoder`, :func:`check_sampler`): the official families —
  StyleGAN2 / DualStyleGAN of rosinality's ``model.py`` and the paper's ``model/dualstylegan.py`` at 8²…1024²
  with at most the official channel table (narrow test tables are smaller), pSp encoders with the options of
  ``model/encoder/psp.py`` and at most the official IR-SE widths, samplers of ``model/sampler/icp.py`` shape.
* **object graphs**: :data:`MAX_PICKLE_NODES` for a code bank's unpickler (:mod:`dualstylegan.safe_unpickle`)
  and for walking a loaded checkpoint (:func:`iter_tensors`).

Functions raise :class:`Refused` with a phrase; :mod:`dualstylegan.checkpoints` and :mod:`dualstylegan.official`
turn it into one sentence naming the file.
"""
from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .nets.config import default_channels

#: Objects an unpickled code bank or a walk over a loaded checkpoint may hold: an official bank has ~25 per
#: exemplar (a few hundred exemplars), a full training checkpoint ~10 000 entries.
MAX_PICKLE_NODES = 1_000_000
#: Resolutions of the official family (rosinality's StyleGAN2 and DualStyleGAN generate 2^k squares).
MIN_SIZE, MAX_SIZE = 8, 1024
#: Widest style code and deepest mapping network (the official 512 and 8).
MAX_STYLE_DIM, MAX_N_MLP = 512, 8
#: The official channel table (channel multiplier 2) bounds every resolution's width.
MAX_CHANNELS = default_channels(2)
#: pSp (``model/encoder/helpers.py``): IR-SE stage widths and units per depth; style-head width.
MAX_ENCODER_WIDTHS = (64, 128, 256, 512)
ENCODER_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
MAX_HEAD_CHANNELS, MAX_INPUT_NC = 512, 32
#: The sampler's MLP (``train_sampler.py``: 128-d noise, 128 hidden units) and its rows (≤ 18 at 1024²).
MAX_SAMPLER_DIM, MAX_SAMPLER_ROWS = 512, 2 * int(math.log2(MAX_SIZE)) - 2


class Refused(ValueError):
    """A file declares something outside these limits; the message is a phrase (the caller names the file)."""


# ------------------------------------------------------------------------------------------- zip records
def check_zip(path: Path) -> None:
    """A ``torch.save`` zip archive whose records are all STORED and together no larger than the file."""
    file_size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not readable as a zip here: torch.load's own error words it
    declared = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise Refused(f"its record {info.filename!r} is compressed ({_METHODS.get(info.compress_type, 'method')} "
                          f"{info.compress_type}), which torch.save never writes")
        if info.file_size != info.compress_size:
            raise Refused(f"its record {info.filename!r} declares {info.file_size} bytes but stores "
                          f"{info.compress_size}")
        declared += info.file_size
    if declared > file_size:
        raise Refused(f"its records declare {declared} bytes, more than the file's {file_size}")


_METHODS = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


# ------------------------------------------------------------------------------------------- tensors
def iter_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted key, tensor) for every tensor inside nested dicts/lists/tuples; each container is walked once (a
    file of shared references cannot make this explode), a tensor under two keys is yielded twice; more than
    :data:`MAX_PICKLE_NODES` objects → :class:`Refused`."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(prefix, obj)]
    visits = 0
    while stack:
        key, item = stack.pop()
        visits += 1
        if visits > MAX_PICKLE_NODES:
            raise Refused(f"it holds more than {MAX_PICKLE_NODES} objects")
        if isinstance(item, (Mapping, list, tuple)):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, torch.Tensor):
            yield key, item
        elif isinstance(item, Mapping):
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{key}.{i}" if key else str(i), v) for i, v in reversed(list(enumerate(item))))


def _extent(t: torch.Tensor) -> int:
    """Elements of the storage a strided tensor reaches, from its offset to its last element."""
    return t.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))


def check_tensor(key: str, t: torch.Tensor) -> None:
    """One tensor is dense, strided, on real memory, without stride-0 dimensions and inside its storage."""
    if t.is_meta:
        raise Refused(f"its tensor {key!r} is a meta tensor (a shape without data)")
    if t.layout != torch.strided or t.is_quantized:
        kind = "quantized" if t.is_quantized else str(t.layout).replace("torch.", "")
        raise Refused(f"its tensor {key!r} is {kind}, not a dense tensor")
    if t.is_complex():
        raise Refused(f"its tensor {key!r} is complex ({t.dtype})")
    if t.numel() == 0:
        return
    if any(s == 0 and n > 1 for n, s in zip(t.shape, t.stride())) or any(s < 0 for s in t.stride()):
        raise Refused(f"its tensor {key!r} declares shape {tuple(t.shape)} on {_storage_bytes(t)} bytes "
                      "(a stride-0 view)")
    if _extent(t) * t.element_size() > _storage_bytes(t):
        raise Refused(f"its tensor {key!r} reaches beyond its storage")


def _finite(t: torch.Tensor) -> bool:
    """No NaN or Inf in ``t`` (min and max propagate NaN; one pass over the data, no full-size temporary, unlike
    ``isfinite(t).all()``)."""
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _storage_bytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def check_tensors(tensors: Mapping[str, Any] | Any, *, finite: bool = True, prefix: str = "",
                  checked: Callable[[torch.Tensor], None] | None = None) -> None:
    """Every tensor in ``tensors`` (a state dict or nested containers) passes :func:`check_tensor`; no two
    tensors share bytes (their sizes add up to at most their storages'), so what is built from them is no larger
    than the file; with ``finite``, floating values are all finite. ``checked(t)`` is called after each tensor
    passed (a memory-mapped file gives its pages back one tensor at a time)."""
    used: dict[tuple[int, int], list] = {}
    for key, t in iter_tensors(tensors, prefix):
        check_tensor(key, t)
        if t.numel() == 0:
            continue
        storage = t.untyped_storage()
        entry = used.setdefault((storage.data_ptr(), storage.nbytes()), [0, key])
        entry[0] += t.numel() * t.element_size()
        if entry[0] > storage.nbytes():
            raise Refused(f"its tensor {key!r} shares its storage with {entry[1]!r} (overlapping views)")
        if finite and t.is_floating_point() and not _finite(t):
            raise Refused(f"its tensor {key!r} holds NaN or infinite values")
        if checked is not None:
            checked(t)


# ------------------------------------------------------------------------------------------- configs
def check_stylegan(config: Any, what: str = "network") -> None:
    """A StyleGAN2 generator / DualStyleGAN / discriminator config within the official family."""
    size = int(config.size)
    if not MIN_SIZE <= size <= MAX_SIZE or size & (size - 1):
        raise Refused(f"it declares a {size}² {what}; the official family is {MIN_SIZE}² to {MAX_SIZE}²")
    for res, ch in sorted(config.channel_table.items()):
        if res <= size and not 1 <= ch <= MAX_CHANNELS.get(res, 0):
            raise Refused(f"it declares {ch} channels at {res}² in its {what}; the official table has "
                          f"{MAX_CHANNELS.get(res, 0)}")
    style_dim = getattr(config, "style_dim", None)
    if style_dim is not None and not 1 <= style_dim <= MAX_STYLE_DIM:
        raise Refused(f"it declares a style width of {style_dim}; the official one is {MAX_STYLE_DIM}")
    n_mlp = getattr(config, "n_mlp", None)
    if n_mlp is not None and not 1 <= n_mlp <= MAX_N_MLP:
        raise Refused(f"it declares a {n_mlp}-layer mapping network; the official one has {MAX_N_MLP}")
    res_index = getattr(config, "res_index", None)
    if res_index is not None and not 0 <= res_index < config.n_latent:
        raise Refused(f"its res_index {res_index} is outside 0…{config.n_latent - 1}")


def check_encoder(config: Any) -> None:
    """A pSp encoder config (from a file's ``opts``) within the official family."""
    if not MIN_SIZE <= config.output_size <= MAX_SIZE:
        raise Refused(f"its opts declare output_size {config.output_size}; the official family is {MIN_SIZE} to "
                      f"{MAX_SIZE}")
    if config.num_layers not in ENCODER_UNITS:
        raise Refused(f"its opts declare a {config.num_layers}-layer IR body; pSp has {sorted(ENCODER_UNITS)}")
    widths = config.widths or MAX_ENCODER_WIDTHS
    units = config.units or ENCODER_UNITS[config.num_layers]
    if any(not 1 <= int(w) <= m for w, m in zip(widths, MAX_ENCODER_WIDTHS)):
        raise Refused(f"its opts declare widths {tuple(widths)}; the official ones are {MAX_ENCODER_WIDTHS}")
    if any(not 1 <= int(u) <= m for u, m in zip(units, ENCODER_UNITS[config.num_layers])):
        raise Refused(f"its opts declare units {tuple(units)}; the official ones are {ENCODER_UNITS[config.num_layers]}")
    if not 1 <= config.head_channels <= MAX_HEAD_CHANNELS or not 1 <= config.input_nc <= MAX_INPUT_NC:
        raise Refused(f"its opts declare head_channels {config.head_channels} and input_nc {config.input_nc}; the "
                      f"limits are {MAX_HEAD_CHANNELS} and {MAX_INPUT_NC}")


def check_sampler(config: Any, part: str) -> None:
    """One half of a ``sampler.pt`` (structure or color MLP) within the official shape."""
    if not 1 <= config.rows <= MAX_SAMPLER_ROWS:
        raise Refused(f"its {part!r} part declares {config.rows} style rows; there are at most {MAX_SAMPLER_ROWS}")
    if not 1 <= config.noise_dim <= MAX_SAMPLER_DIM or not 1 <= config.hidden_dim <= MAX_SAMPLER_DIM:
        raise Refused(f"its {part!r} part declares noise {config.noise_dim} and hidden width {config.hidden_dim}; "
                      f"the official ones are 128 (at most {MAX_SAMPLER_DIM})")


__all__ = ["MAX_PICKLE_NODES", "Refused", "check_encoder", "check_sampler", "check_stylegan", "check_tensor",
           "check_tensors", "check_zip", "iter_tensors"]
