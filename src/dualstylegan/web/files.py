"""The web app's files: the faces of uploads (:class:`FaceCache`), the files it serves (:class:`ResultFiles`), and
what keeps both safe under load — images written once and atomically, memory handed back after a large decode,
everything removed when the app stops.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from pathlib import Path

from ..errors import UsageError, is_user_error

#: Folders this process made for its apps: never the parent of another app's folder (see :class:`ResultFiles`).
_OWN_FOLDERS: set[str] = set()


class WebError(UsageError):
    """A request the app cannot serve (no photo, a file over the size limit, …), said in one sentence."""


def inside(folder: str | os.PathLike, name: str) -> Path | None:
    """``folder / name`` resolved (symbolic links followed) when it is a file inside ``folder``, else None: a
    name such as ``../x/secret.png`` or ``/etc/passwd`` never leaves the folder."""
    root = Path(folder).resolve()
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL in the name
        return None
    return path if path.is_relative_to(root) and path != root and path.is_file() else None


def _libc():
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        return lib if lib is not None and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def release_memory() -> None:
    """Hand freed memory back to the system. Decoding a large photo (an 8000² PNG is ~200 MB of pixels) in a
    worker thread leaves glibc's per-thread heaps holding it after the image is gone; ``malloc_trim`` returns it, so
    the server's memory goes back to its baseline between requests. A no-op where glibc is not the allocator."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class FaceCache:
    """The faces of the last few uploads, by (file, mtime, align): the preview and the run do not align twice."""

    def __init__(self, max_upload_mb: float, size: int = 16):
        self.max_bytes = int(max_upload_mb * 2**20)
        self.max_upload_mb = max_upload_mb
        self._cache: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, path: str | None, what: str, align: bool):
        """The face (PIL, FACE_SIZE²) of the upload at ``path``, ``what`` naming it ('photo', 'exemplar')."""
        if not path:
            raise WebError(f"upload {'an' if what[0] in 'aeiou' else 'a'} {what} first")  # a photo, an exemplar
        try:
            st = os.stat(path)
        except OSError:
            raise WebError(f"the {what} upload is gone; upload it again") from None
        if st.st_size > self.max_bytes:
            raise WebError(f"the {what} is {st.st_size / 2**20:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        key = (str(path), st.st_mtime_ns, bool(align))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            face = self._prepare(path, what, align)
        finally:
            release_memory()  # the decoded photo is gone: give its memory back
        with self._lock:
            self._cache[key] = face
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return face

    @staticmethod
    def _prepare(path: str, what: str, align: bool):
        """A photo as the "align" box says; an exemplar aligned when it has a face, else its centred square
        (:func:`dualstylegan.faces.prepare_exemplar`, as the CLI: never squashed, whatever the box says)."""
        from ..faces import prepare_exemplar, prepare_face
        from .messages import say

        try:
            if what == "exemplar":
                return prepare_exemplar(path).face.image
            return prepare_face(path, align)[0].image
        except Exception as e:  # a user error names the upload; a bug goes on up
            if not is_user_error(e):
                raise
            text = say(e).replace(str(path), Path(path).name)  # the upload's name, not where the server keeps it
            raise WebError(f"the {what}: {text[:1].lower()}{text[1:]}") from e


def _new_folder() -> Path:
    """A new temporary folder in ``GRADIO_TEMP_DIR`` when the user set one (not when it is another app's folder),
    else in the system's temporary folder."""
    base = os.environ.get("GRADIO_TEMP_DIR")
    if base and (base in _OWN_FOLDERS or not Path(base).is_dir()):
        base = None
    folder = Path(tempfile.mkdtemp(prefix="dualstylegan-web-", dir=base))
    _OWN_FOLDERS.add(str(folder))
    return folder


class ResultFiles:
    """The app's one temporary folder: result files (PNG, GIF) for download under ``results/``, the images the page
    shows under ``shown/``, and — once served (:func:`dualstylegan.web.launch`) — Gradio's uploads and cache. Files
    older than ``max_age_s`` go on the next write; the whole folder goes with :meth:`close` (the app's stop, SIGINT
    or SIGTERM) or at the latest when the process exits.

    Every file is complete when it appears (written under a temporary name, then renamed) and never rewritten, so
    a file being streamed to one browser is never changed under it by another request."""

    def __init__(self, max_age_s: float = 3600):
        self.folder = _new_folder()
        self.max_age_s = max_age_s
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)  # at the latest at exit

    def close(self) -> None:
        """Remove the folder and everything in it (uploads and Gradio's cache included)."""
        self._finalizer()
        _OWN_FOLDERS.discard(str(self.folder))

    def _expire(self, where: Path) -> None:
        now = time.time()
        for old in where.glob("*/*"):
            try:
                if now - old.stat().st_mtime > self.max_age_s:
                    old.unlink()
                    old.parent.rmdir()
            except OSError:
                pass

    def path(self, name: str) -> Path:
        """A new path for the result file ``name`` (cleaned of odd characters), in a folder of its own."""
        results = self.folder / "results"
        self._expire(results)
        sub = results / uuid.uuid4().hex[:12]
        sub.mkdir(parents=True)
        return sub / re.sub(r"[^\w.-]+", "_", name)

    def png(self, image, name: str) -> str:
        from ..images import save_image

        return str(save_image(image, self.path(name)))

    def gif(self, frames: list, name: str, duration_ms: int, bounce: bool) -> str:
        """An endless GIF; ``bounce``: played forward, then backward (a → b → a)."""
        from ..images import save_animation

        if bounce and len(frames) > 2:
            frames = frames + frames[-2:0:-1]
        return str(save_animation(frames, self.path(name), duration=int(duration_ms)))

    def shown(self, image) -> str:
        """A PIL image the page shows, as a PNG file named by its content: written once, atomically, and reused
        (Gradio would rewrite its own copy of a PIL image in place on every request — with identical content, the
        same file — while another request may be streaming it)."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        target = self.folder / "shown" / hashlib.sha256(data).hexdigest()[:40] / "image.png"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # complete when it appears; a second writer replaces it with the same bytes
        os.utime(target)  # in use again: not expired by Gradio's delete_cache
        return str(target)


__all__ = ["FaceCache", "ResultFiles", "WebError", "inside", "release_memory"]
