"""Inference defaults, once for the library and both front ends (no torch import: the CLI's ``--help`` reads them).

The values are the reference scripts': ``style_transfer.py`` and ``generate.py`` scale the intrinsic code toward 0
(``truncation_latent=0``) by 0.75 and 0.5 (their ``--truncation`` defaults). Per-style weights are facts of the
style: :func:`dualstylegan.styles.get_style`.
"""
from __future__ import annotations

#: ψ of a transfer or a blend (``style_transfer.py --truncation``): the intrinsic code scaled toward 0.
TRANSFER_TRUNCATION = 0.75
#: ψ of random portraits (``generate.py --truncation``).
GENERATE_TRUNCATION = 0.5
#: Frames of a blend (our choice: the reference has no blend script; Fig. 13 shows 6–8 steps).
BLEND_STEPS = 8
#: Random portraits (and blend frames) computed at once when many are streamed to disk: memory stays flat in n.
GENERATE_BATCH = 8
#: Random portraits per call (``generate.py --batch`` draws 8; 4 fit one row of a page).
GENERATE_COUNT = 4
#: The side of the pSp encoder's input (``style_transfer.py`` resizes the aligned face to 256²), and so of a prepared
#: face (:mod:`dualstylegan.faces`, which does not import torch).
ENCODER_INPUT_SIZE = 256

__all__ = ["BLEND_STEPS", "ENCODER_INPUT_SIZE", "GENERATE_BATCH", "GENERATE_COUNT", "GENERATE_TRUNCATION",
           "TRANSFER_TRUNCATION"]
