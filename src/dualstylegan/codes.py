"""A style pack's bank of extrinsic (or intrinsic) codes: exemplar file name ↔ style id ↔ Z+ code."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .errors import DualStyleGANError


class StyleIdError(DualStyleGANError, KeyError):
    """A style id or exemplar name that the code bank does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; we want the sentence
        return str(self.args[0])


class CodeBank(Mapping):
    """Ordered mapping exemplar name → Z+ code (18, 512). Style id i is the i-th name (the reference's order).

    Codes must be finite in float32 (a NaN code renders a uniform grey portrait): else a ValueError naming it."""

    def __init__(self, codes: Mapping[str, np.ndarray | torch.Tensor], source: str = "code bank"):
        self.source = source
        self._codes: dict[str, torch.Tensor] = {}
        from .checkpoints import finite_code

        for name, code in codes.items():
            arr = np.asarray(code.detach().cpu() if isinstance(code, torch.Tensor) else code)
            t = torch.from_numpy(finite_code(arr if arr.dtype.kind == "f" else arr.astype(np.float32), str(name), source))
            if t.ndim == 3 and t.shape[0] == 1:
                t = t[0]
            if t.ndim != 2:
                raise ValueError(f"{source}: the code of {name!r} has shape {tuple(t.shape)}; expected (1, L, 512)")
            self._codes[str(name)] = t
        self._names = list(self._codes)

    @classmethod
    def load(cls, path: str | Path) -> "CodeBank":
        """Read an official ``*_code.npy`` without executing its pickle (see :mod:`dualstylegan.checkpoints`)."""
        from .checkpoints import load_code_bank

        return cls(load_code_bank(path), source=Path(path).name)

    def save(self, path: str | Path) -> None:
        """Write the official layout (a pickled dict name → float32 (1, L, 512))."""
        from .checkpoints import save_code_bank

        save_code_bank(path, {k: v[None].numpy() for k, v in self._codes.items()})

    # Mapping protocol ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._codes[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def name_of(self, style_id: int) -> str:
        if isinstance(style_id, bool) or not isinstance(style_id, int) or not 0 <= style_id < len(self):
            raise StyleIdError(f"style id {style_id!r} is out of range: {self.source} has ids 0 to {len(self) - 1}")
        return self._names[style_id]

    def resolve_name(self, exemplar: int | str) -> str:
        """A style id (int or digit string) or an exemplar file name (with or without extension) → its name."""
        if isinstance(exemplar, int):  # name_of refuses bools and out-of-range ids
            return self.name_of(exemplar)
        if isinstance(exemplar, str) and exemplar.isdigit():
            return self.name_of(int(exemplar))
        if exemplar in self._codes:
            return exemplar
        stem = Path(exemplar).stem
        matches = [n for n in self._names if Path(n).stem == stem]
        if len(matches) == 1:
            return matches[0]
        raise StyleIdError(f"{self.source} has no exemplar named {exemplar!r} (it has {len(self)}, e.g. "
                           f"{', '.join(self._names[:3])})")

    def code(self, exemplar: int | str) -> torch.Tensor:
        """The Z+ code (1, L, 512) of a style id or exemplar name."""
        return self._codes[self.resolve_name(exemplar)][None].clone()
