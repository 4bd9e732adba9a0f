"""Atomic file writes: a file is either its old self or completely the new one — never half-written.

One implementation for checkpoints, code banks, images, training records and style packs (the reference writes
with plain ``torch.save``, so an interrupted save loses the checkpoint). Callers turn an ``OSError`` into their own
one-sentence error; :func:`why` words the common causes.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


#: A temp file untouched this long whose writer is gone (or unknown) is a leftover of a killed writer.
STALE_AFTER_S = 60.0


def _temp_beside(path: Path) -> Path:
    """``.NAME.XXXXXXXX-PID.tmp``: random, and naming its writer so that leftovers can be told from live writes."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}-{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a number we cannot ask about): assume it is writing
    return True


def remove_stale_temps(path: Path, now: float | None = None) -> list[Path]:
    """Delete the temp files of earlier writes to ``path`` that a SIGKILL or power loss left behind: named
    ``.NAME.XXXXXXXX[-PID].tmp``, unmodified for :data:`STALE_AFTER_S`, and whose writer (when named) has exited.
    A concurrent writer's temp file is recent or has a live pid, so it is kept. Returns what was removed."""
    rx = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}(?:-(\d+))?\.tmp")
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if rx.fullmatch(p.name)]
    except OSError:
        return removed
    for tmp in candidates:
        pid = rx.fullmatch(tmp.name).group(1)
        try:
            old = now - tmp.lstat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        if old and (pid is None or (int(pid) != os.getpid() and not _alive(int(pid)))):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _sync_folder(folder: Path) -> None:
    """Make a rename durable; not possible everywhere (e.g. Windows), where it is skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (a hard link is atomic and never replaces)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (a tiny race, no partial file)
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", os.fspath(path)) from None
        os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, overwrite: bool = True) -> Path:
    """Run ``write`` on a temp file beside ``path``, fsync it, then publish it as ``path`` (replacing an old file,
    or — with ``overwrite=False`` — only if there is none, else ``FileExistsError``). The folder is created. On any
    failure the temp file is removed and an existing ``path`` is untouched; the ``OSError`` propagates. After a
    successful write, temp files that killed writers left beside ``path`` are removed (:func:`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # already renamed, or the folder is gone: nothing of ours is left
            tmp.unlink()
    remove_stale_temps(path)
    _sync_folder(path.parent)
    return path


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``dst`` becomes a copy of ``src`` (a hard link when possible), never half-written."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(dst)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return dst


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    return atomic_write(path, lambda f: f.write(data))


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def why(exc: OSError) -> str:
    """The operating system's reason in words (``No space left on device``, ``Permission denied``, …)."""
    return exc.strerror or type(exc).__name__


__all__ = ["atomic_copy", "atomic_write", "disk_full", "read_json", "remove_stale_temps", "why", "write_json"]
