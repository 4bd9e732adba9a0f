"""Which device a run uses: one rule for the CLI, the web app, the pipeline and training.

``auto`` picks this process's CUDA GPU (``LOCAL_RANK`` under ``torchrun``), then Apple's MPS, then the CPU; a named
device that is not there is refused in one sentence. The reference code hard-codes ``cuda``.
"""
from __future__ import annotations

import os

from .errors import UsageError

DTYPES = ("float32", "float16", "bfloat16")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def local_rank() -> int:
    """This process's index on its machine under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str | None = "auto") -> str:
    """``auto``/None → the best device here; ``cuda`` → this rank's GPU (``cuda:LOCAL_RANK``); ``cpu``, ``mps``,
    ``cuda:N`` as given once checked. :class:`UsageError` when the device is not available."""
    import torch

    name = "auto" if name is None else str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local_rank()}" if "LOCAL_RANK" in os.environ else "cuda"
        return "mps" if _mps_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} was asked for, but no CUDA GPU is available.")
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            return f"cuda:{local_rank()}"
        return name
    if name == "mps" and not _mps_available():
        raise UsageError("--device mps was asked for, but MPS is not available.")
    if name not in ("cpu", "mps"):
        try:
            torch.device(name)
        except (RuntimeError, ValueError):
            raise UsageError(f"--device {name} is not a device; use auto, cpu, cuda, cuda:N or mps.") from None
    return name


def resolve_dtype(name: str, device: str):
    """The torch dtype named ``name`` for ``device``; half precision only on GPUs."""
    import torch

    if name not in DTYPES:
        raise UsageError(f"--dtype {name} is not one of {', '.join(DTYPES)}.")
    dtype = getattr(torch, name)
    if dtype != torch.float32 and str(device) == "cpu":
        raise UsageError(f"--dtype {name} is for GPUs; on the CPU use float32.")
    return dtype


__all__ = ["DTYPES", "local_rank", "resolve_device", "resolve_dtype"]
