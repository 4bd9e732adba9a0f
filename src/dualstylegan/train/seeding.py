"""Every random draw of training from a generator seeded by the run's seed and what is drawing (paper-independent
plumbing): a step of the recipe, one style image of destylization or refinement, a network's initial weights.

:func:`derive_seed` turns ``(seed, *parts)`` into a 63-bit seed (SHA-256, so it is the same in every process and on
every machine, unlike Python's ``hash``). :func:`seeded` runs a block with torch's (CPU and CUDA), Python's and
NumPy's global generators seeded from it and puts them back afterwards, so whatever a block draws — also from code
that uses the global generators, like module initialisation — depends on the seed and its name only, not on what
the process did before (a fresh process, a resumed one, a test run).
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and the names / numbers in ``parts`` (the same in every process)."""
    text = "\0".join([str(int(seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded(seed: int, *parts: object) -> Iterator[int]:
    """Run the block with the global generators (torch CPU + every CUDA device, Python ``random``, NumPy) seeded from
    :func:`derive_seed` ``(seed, *parts)``; their earlier states are restored on exit. Yields the derived seed."""
    import numpy as np
    import torch

    derived = derive_seed(seed, *parts)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derived)  # seeds the CUDA generators too
        random.seed(derived)
        np.random.seed(derived % (1 << 32))
        try:
            yield derived
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


__all__ = ["derive_seed", "seeded"]
