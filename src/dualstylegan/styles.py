"""One registry of styles: every fact about a named style in one record (in the manner of timm's model registry).

A :class:`Style` says where the authors publish the style's pack (the Hugging Face Hub repo of the paper, or only
Google Drive), its transfer preset — the (structure, color) weights of the paper's §4 / Fig. 6–7 and the reference
README's ``style_transfer.py`` commands — and its training preset (λ_ID, λ_reg of ``finetune_dualstylegan.py``'s
README commands). Names not in the registry (a user's own style) get :data:`DEFAULT`, the reference's argparse
defaults. :func:`register_style` adds a record, e.g. for a style a user trains and publishes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence



@dataclass(frozen=True)
class Style:
    """Facts about one style. ``structure``: one weight for the structure layers (1–7) or one per layer; ``color``:
    the weight of the color layers (8–18); ``lambda_id`` / ``lambda_reg``: the identity-loss and ModRes-L2 weights
    of progressive fine-tuning (paper §3.3, Eq. 5); ``published``: ``"hub"`` (the paper's Hugging Face repo),
    ``"drive"`` (Google Drive only) or None (not published)."""

    name: str
    published: str | None = None
    structure: float | tuple[float, ...] = 0.75
    color: float = 1.0
    lambda_id: float = 1.0
    lambda_reg: float = 0.01

    @property
    def preset(self) -> tuple[float | tuple[float, ...], float]:
        """(structure, color) transfer weights."""
        return self.structure, self.color

    @property
    def training(self) -> tuple[float, float]:
        """(λ_ID, λ_reg) of fine-tuning."""
        return self.lambda_id, self.lambda_reg


#: The settings of a style the registry does not know: structure 0.75, color 1 (``style_transfer.py``'s default
#: ``--weight``), λ_ID 1 and λ_reg 0.01 (``finetune_dualstylegan.py``'s argparse defaults).
DEFAULT = Style(name="")

_REGISTRY: dict[str, Style] = {}


def register_style(style: Style) -> Style:
    """Add (or replace) a style record; names are case-insensitive."""
    _REGISTRY[style.name.lower()] = style
    return style


def get_style(name: str | None) -> Style:
    """The record of ``name`` (case-insensitive); :data:`DEFAULT` (named ``name``) for a name not registered."""
    if name is None:
        return DEFAULT
    found = _REGISTRY.get(str(name).lower())
    return found if found is not None else replace(DEFAULT, name=str(name))


def is_registered(name: str | None) -> bool:
    return name is not None and str(name).lower() in _REGISTRY


def list_styles(published: str | None = None) -> list[Style]:
    """Every registered style, in registration order (only those published on ``published`` when given)."""
    return [s for s in _REGISTRY.values() if published is None or s.published == published]


def style_names(published: str | None = None) -> Sequence[str]:
    return [s.name for s in list_styles(published)]


for _style in (
    # The three styles of the paper (§4): transfer presets from Fig. 6/7 and the README. Training presets: cartoon's
    # (1, 0.015) is the reference README's one finetune_dualstylegan.py command; caricature's (4, 0.005) and anime's
    # (1, 0.02) come from the paper, not the reference code (whose finetune_dualstylegan.py defaults are (1, 0.01)).
    Style("cartoon", "hub", 0.75, 1.0, lambda_id=1.0, lambda_reg=0.015),
    Style("caricature", "hub", 1.0, 1.0, lambda_id=4.0, lambda_reg=0.005),
    Style("anime", "hub", (0.0, 0.0, 0.0, 0.0, 0.75, 0.75, 0.75), 1.0, lambda_id=1.0, lambda_reg=0.02),
    # The styles the authors released later (README "Pretrained Models"): default settings.
    Style("arcane", "hub"),
    Style("comic", "hub"),
    Style("pixar", "hub"),
    Style("slamdunk", "hub"),
    Style("fantasy", "drive"),
    Style("illustration", "drive"),
    Style("impasto", "drive"),
):
    register_style(_style)
del _style

__all__ = ["DEFAULT", "Style", "get_style", "is_registered", "list_styles", "register_style", "style_names"]
