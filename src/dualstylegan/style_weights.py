"""The per-layer weight vector w of DualStyleGAN (paper §3.2: how much of the exemplar's extrinsic style each of the
18 layers takes — structure in layers 1–7, color in 8–18; ``style_transfer.py --weight``) and the truncation of
the intrinsic code: building them and refusing impossible ones in one sentence. No torch: the front ends check
options with these before loading a model."""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from .errors import DualStyleGANError

#: Length of a weight vector: one weight per layer of the paper's 1024² generator (``style_transfer.py --weight``
#: takes 18); a smaller generator reads the first ``n_latent``, so a vector means the same at every size.
N_WEIGHTS = 18


class WeightError(DualStyleGANError, ValueError):
    """An impossible weight vector (or truncation)."""


def interp_weights(structure: float | Sequence[float] = 0.75, color: float | Sequence[float] = 1.0,
                   n_structure: int = 7, n_latent: int = N_WEIGHTS) -> list[float]:
    """The per-layer weight vector w of §3.2: ``structure`` for layers 1–7, ``color`` for layers 8–18 (scalars or
    lists), as ``style_transfer.py --weight``; the defaults are :data:`dualstylegan.styles.DEFAULT`'s preset."""
    return check_weights(_part(structure, n_structure, "structure") + _part(color, n_latent - n_structure, "color"),
                         n_latent)


def _part(value: float | Sequence[float], n: int, what: str) -> list[float]:
    if isinstance(value, numbers.Real):
        return [float(value)] * n
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise WeightError(f"the {what} weight must be a number or {n} numbers, got {value!r}") from None
    if len(values) != n:
        raise WeightError(f"the {what} weights need {n} values, got {len(values)}")
    return values


def check_weights(weights: Sequence[float], n_latent: int = N_WEIGHTS) -> list[float]:
    """A valid weight vector: ``n_latent`` finite values in [0, 1] (0 = intrinsic only, 1 = full exemplar)."""
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError):
        raise WeightError(f"the weight vector must be {n_latent} numbers, got {weights!r}") from None
    if len(w) != n_latent:
        raise WeightError(f"the weight vector needs {n_latent} values (one per layer), got {len(w)}")
    bad = [v for v in w if not math.isfinite(v) or not 0.0 <= v <= 1.0]
    if bad:
        raise WeightError(f"every weight must be a number between 0 and 1, got {bad[0]}")
    return w


def check_truncation(truncation: float) -> float:
    """A usable truncation ψ (the intrinsic code is scaled toward 0 by ψ; 1 = none): a finite number."""
    try:
        t = float(truncation)
    except (TypeError, ValueError):
        t = math.nan
    if not math.isfinite(t):
        raise WeightError(f"the truncation must be a finite number (e.g. 0.75), got {truncation!r}")
    return t


__all__ = ["N_WEIGHTS", "WeightError", "check_truncation", "check_weights", "interp_weights"]
