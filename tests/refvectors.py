"""Access to the reference folder (layouts/, vectors/) made by running the paper's code (see reference/MADE.md).

The folder is ``tests/reference`` (vendored: a fresh clone tests itself); ``DUALSTYLEGAN_REFERENCE`` overrides it
with another reference set made the same way. A missing or empty folder is a failure, never a skip. Nothing here
knows a number from any particular vector file: cases, layouts and fill rules are read from disk.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

VENDORED = Path(__file__).resolve().parent / "reference"
_ENV = os.environ.get("DUALSTYLEGAN_REFERENCE")
REFERENCE = Path(_ENV).expanduser().resolve() if _ENV else VENDORED

# The README's tolerance for float32 on CPU.
MAX_ABS = 1e-4
MAX_REL_L2 = 1e-5


def missing_reference() -> str | None:
    """Why the reference folder cannot be used (None when it has vectors and layouts)."""
    where = f"DUALSTYLEGAN_REFERENCE={_ENV}" if _ENV else f"the vendored reference folder {REFERENCE}"
    for sub, pattern in (("vectors", "*.safetensors"), ("layouts", "*.txt")):
        folder = REFERENCE / sub
        if not folder.is_dir():
            return f"{where} has no {sub}/ folder"
        if not any(folder.glob(pattern)):
            return f"{where} has no {pattern} in {sub}/"
    return None


def require_reference() -> Path:
    """The reference folder; a failure (never a skip) when it is missing or empty."""
    why = missing_reference()
    if why is not None:
        pytest.fail(why, pytrace=False)
    return REFERENCE


def case_names(prefix: str = "") -> list[str]:
    folder = REFERENCE / "vectors"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors") if p.stem.startswith(prefix))


def layout_names(prefix: str = "") -> list[str]:
    folder = REFERENCE / "layouts"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.txt") if p.stem.startswith(prefix))


def load_case(name: str) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = require_reference() / "vectors" / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def case_meta(name: str) -> dict:
    """The call metadata of a case without reading its tensors (for choosing cases at collection time)."""
    from safetensors import safe_open

    with safe_open(str(require_reference() / "vectors" / f"{name}.safetensors"), "pt") as f:
        return json.loads(f.metadata()["meta"])


_ROW = re.compile(r"^(\S+)\t\(([\d, ]*)\)\t(\S+)$")


def load_layout(name: str) -> tuple[str, list[tuple[str, tuple[int, ...], str]]]:
    """(header line, [(key, shape, dtype), ...]) of layouts/NAME.txt, in file order."""
    lines = (require_reference() / "layouts" / f"{name}.txt").read_text().splitlines()
    header = lines[0].lstrip("# ").strip()
    rows = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        m = _ROW.match(line)
        if not m:
            raise ValueError(f"layouts/{name}.txt: cannot parse line {line!r}")
        shape = tuple(int(s) for s in m.group(2).replace(" ", "").split(",") if s)
        rows.append((m.group(1), shape, m.group(3)))
    return header, rows


def assert_layout(model: torch.nn.Module, layout: str) -> None:
    """The module's state dict has exactly the keys, shapes and dtypes of layouts/LAYOUT.txt, in file order."""
    _, rows = load_layout(layout)
    ours = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    assert ours == rows, f"state dict differs from layouts/{layout}.txt"


def fill_(module: torch.nn.Module, name: str) -> torch.nn.Module:
    """Overwrite every tensor of ``module`` by the fill rule of layouts/NAME.fill.json (README.md)."""
    spec = json.loads((require_reference() / "layouts" / f"{name}.fill.json").read_text())
    state = module.state_dict()
    g = torch.Generator().manual_seed(spec["seed"])
    seen = set()
    for key, m, s in spec["rows"]:
        if key not in state:
            raise KeyError(f"{name}.fill.json names {key!r}, which the model does not have")
        seen.add(key)
        if m is None:
            continue
        t = torch.randn(state[key].shape, generator=g, dtype=torch.float32) * s + m
        state[key].copy_(t)
    missing = set(state) - seen
    if missing:
        raise KeyError(f"the model has tensors the fill rule does not cover: {sorted(missing)[:5]}")
    return module


def assert_matches(ours: torch.Tensor, ref: torch.Tensor, what: str = "", reduction: bool = False) -> None:
    """The README's tolerance: max |diff| <= 1e-4 and relative L2 <= 1e-5.

    ``reduction``: the values are sums over many elements (a fingerprint such as ``image_sum``); float32
    summation order alone moves them by more than 1e-4, so only the relative criterion applies.
    """
    ours = ours.detach().to(torch.float64).cpu()
    ref = ref.detach().to(torch.float64).cpu()
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    diff = (ours - ref).abs().max().item()
    rel = ((ours - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    assert (reduction or diff <= MAX_ABS) and rel <= MAX_REL_L2, f"{what}: max|diff| {diff:.3g}, rel L2 {rel:.3g}"
