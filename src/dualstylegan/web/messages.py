"""What the page says of an error: the library's sentence, capitalised, with the page's own way to turn alignment
off (:data:`dualstylegan.errors.SKIP_ALIGNMENT`)."""
from __future__ import annotations

from ..errors import sentence

#: How the page turns face alignment off, in place of the library's words.
NO_ALIGN_HINT = "untick 'Align the face'"


def say(e: BaseException) -> str:
    """The sentence of a user error, capitalised, with the page's own way to skip alignment."""
    text = sentence(e, NO_ALIGN_HINT)
    return text[:1].upper() + text[1:]


__all__ = ["NO_ALIGN_HINT", "say"]
