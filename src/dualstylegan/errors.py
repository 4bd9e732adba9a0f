"""Errors a user can cause, and the one sentence they read (the paper's code has no such layer).

Every error that bad input can raise — an unreadable photo, no face, a malformed checkpoint, an unknown style id,
an impossible weight vector, a style pack that cannot be found, a training run that cannot go on — derives from
:class:`DualStyleGANError`. Each keeps a standard base too (``ValueError``, ``KeyError``, ``RuntimeError``) so that
callers catching those keep working. Anything else reaching a front end is a bug: :func:`is_user_error` tells them
apart, and front ends log the traceback of a bug instead of presenting it as the user's mistake.
"""
from __future__ import annotations

import errno
import os
import re


class DualStyleGANError(Exception):
    """Base of every error caused by input, files or settings; its message is one sentence saying what to do."""


class UsageError(DualStyleGANError):
    """An option or request that cannot be served as given (a device that is not there, an empty upload, …)."""


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is the user's to fix (its message is for people): one of ours, or the operating system's
    refusal of a file (``OSError``: a missing folder, a full disk, no permission). Anything else is a bug."""
    return isinstance(e, (DualStyleGANError, OSError))


def short(exc: BaseException, limit: int = 120) -> str:
    """The gist of an exception message: its first sentence, shortened (torch's messages are paragraphs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: The words the library's messages use for turning face alignment off; each front end says it its own way
#: (``sentence(e, skip_alignment="pass --no-align")``).
SKIP_ALIGNMENT = "skip alignment"


def sentence(e: BaseException, skip_alignment: str | None = None) -> str:
    """What a person reads of an error: its first line (our messages are one sentence), with the front end's own
    way to turn alignment off in place of :data:`SKIP_ALIGNMENT` when ``skip_alignment`` is given."""
    text = (str(e).strip() or type(e).__name__).splitlines()[0]
    return text.replace(SKIP_ALIGNMENT, skip_alignment) if skip_alignment and isinstance(e, DualStyleGANError) \
        else text


def missing(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened although named, as a predicate: 'does not exist', 'is a symbolic link loop
    (…)', 'is a broken symbolic link (to …)' — a loop is not a missing file."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (following its links leads back to itself, so there is no file behind it)"
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return "does not exist"
    return "is not a regular file"


__all__ = ["SKIP_ALIGNMENT", "DualStyleGANError", "UsageError", "is_user_error", "missing", "sentence", "short"]
