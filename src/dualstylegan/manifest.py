"""The record of a folder run, so that a run stopped at any moment (Ctrl-C, SIGKILL, a lost node) can be rerun and
only redo what is not done.

A manifest is a JSON-lines file in the output folder, one line appended per event, flushed and fsynced, so that a
kill loses at most the line being written (a torn last line is ignored when read back)::

    {"input": "/abs/photo.jpg", "status": "started", "outputs": ["photo_cartoon_000.png"], "settings": "…"}
    {"input": "/abs/photo.jpg", "status": "ok", "outputs": [...], "sha256": {"photo_cartoon_000.png": "…"}, …}
    {"input": "/abs/bad.jpg", "status": "failed", "error": "bad.jpg is not an image …", …}

A photo is *done* when its last record (for the same ``settings``) says ``ok`` and every output it lists is
present with the recorded checksum; anything else is redone, and the outputs of a photo recorded ``started`` but
never finished may be replaced (they are this run's own files in flight, written whole by
:func:`dualstylegan.images.save_image`, just not yet recorded). Every process of a ``torchrun`` job writes its own
part (``manifest.rank-K.jsonl``); all parts in the folder are read back, so a rerun may use another number of
processes. Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: The file name of a single process's manifest; ranks of a distributed run write ``manifest.rank-K.jsonl``.
MANIFEST_NAME = "manifest.jsonl"


def manifest_path(folder: str | os.PathLike, rank: int = 0, world_size: int = 1) -> Path:
    """Where process ``rank`` of ``world_size`` records its part of a run into ``folder``."""
    name = MANIFEST_NAME if world_size == 1 else f"manifest.rank-{rank}.jsonl"
    return Path(folder) / name


def manifest_parts(folder: str | os.PathLike) -> list[Path]:
    """Every manifest part in ``folder`` (any number of ranks, earlier runs included), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name == MANIFEST_NAME or (p.name.startswith("manifest.rank-") and p.suffix == ".jsonl"))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def settings_key(settings: dict) -> str:
    """A short digest of everything that decides a run's pixels (style, exemplar, weights, options): a rerun with
    other settings does not take the old outputs as its own."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def input_key(path: str | os.PathLike) -> str:
    """A photo's name in the manifest: its absolute path (a rerun from another working folder finds it)."""
    return os.path.abspath(os.fspath(path))


def read_records(paths: Iterable[Path]) -> list[dict]:
    """The records of manifest parts, in file order; a torn or unreadable line (a kill mid-write) is skipped."""
    records = []
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "input" in rec and "status" in rec:
                records.append(rec)
    return records


@dataclass
class Manifest:
    """The manifest parts of an output folder as they were when the run began, and this process's part to append
    to. ``settings`` is :func:`settings_key` of the run."""

    folder: Path
    settings: str
    rank: int = 0
    world_size: int = 1
    _last: dict[str, dict] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _file: object = field(default=None, repr=False)

    @classmethod
    def open(cls, folder: str | os.PathLike, settings: str, rank: int = 0, world_size: int = 1) -> Manifest:
        m = cls(Path(folder), settings, rank, world_size)
        for rec in read_records(manifest_parts(m.folder)):
            if rec.get("settings") == settings:
                m._last[rec["input"]] = rec  # the later record of a photo wins
        return m

    @property
    def path(self) -> Path:
        return manifest_path(self.folder, self.rank, self.world_size)

    def last(self, photo: str | os.PathLike) -> dict | None:
        return self._last.get(input_key(photo))

    def is_done(self, photo: str | os.PathLike) -> bool:
        """The photo's last record says ``ok`` and each of its outputs is there with the recorded checksum."""
        rec = self.last(photo)
        if rec is None or rec.get("status") != "ok":
            return False
        sums = rec.get("sha256") or {}
        for name in rec.get("outputs", []):
            target = self.folder / name
            try:
                if not target.is_file() or file_sha256(target) != sums.get(name):
                    return False
            except OSError:
                return False
        return True

    def in_flight(self, photo: str | os.PathLike) -> set[str]:
        """The output names a previous run started writing for ``photo`` and never recorded finished (or recorded
        with checksums that no longer match): they are the run's own and may be replaced."""
        rec = self.last(photo)
        if rec is None:
            return set()
        return set(rec.get("outputs", [])) | set(rec.get("planned", []))

    # ------------------------------------------------------------------------------------ appending
    def _append(self, record: dict, sync: bool) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())

    def started(self, photo: str | os.PathLike, planned: Iterable[str]) -> None:
        """Before a photo's first file is written: its outputs are this run's (flushed; not fsynced — a lost line
        only means the rerun refuses to replace a file it could have)."""
        self._append({"input": input_key(photo), "status": "started", "planned": list(planned),
                      "settings": self.settings, "rank": self.rank, "time": time.time()}, sync=False)

    def finished(self, photo: str | os.PathLike, outputs: Iterable[Path], error: str | None = None) -> None:
        """A photo's outcome (fsynced): ``ok`` with the checksum of each output, or ``failed`` with ``error``."""
        outputs = [Path(o) for o in outputs]
        record = {"input": input_key(photo), "status": "failed" if error else "ok",
                  "outputs": [o.name for o in outputs], "error": error, "settings": self.settings,
                  "rank": self.rank, "time": time.time()}
        if not error:
            record["sha256"] = {o.name: file_sha256(o) for o in outputs}
        self._append(record, sync=True)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


__all__ = ["MANIFEST_NAME", "Manifest", "file_sha256", "input_key", "manifest_parts", "manifest_path",
           "read_records", "settings_key"]
