"""Stylising files: photos (or folders) → portraits in a folder, one :class:`FileResult` per photo, and the names
of every file the front ends write.

``style_transfer.py`` stylises one photo per call and names its output ``{content}_{style}_{exemplar}``;
:func:`stylize_files` runs the same transfer (:meth:`~dualstylegan.pipeline.StyleTransferPipeline.transfer`) over
many photos, reports each photo's outcome as it goes, and never overwrites a file unless asked. The CLI prints its
report from these results; a Python user iterates them. It is an iterator so that a streamed version (decode →
detect → align → batch → network → paste → write, with bounded queues) can replace its inside without changing
callers: results come in input order, one per photo.

Nothing here imports torch at import time.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .defaults import TRANSFER_TRUNCATION
from .errors import UsageError, is_user_error, sentence
from .outputs import (  # the names and checks of a run: used here, and part of this module's API (__all__)
    Exemplar,
    IMAGE_EXTENSIONS,
    blend_names,
    check_free,
    check_inputs,
    check_output_folder,
    collect_inputs,
    exemplar_tag,
    generate_names,
    output_name,
    output_names,
    short_stem,
    split_output,
    unique_stems,
)
from .sharding import Shard

if TYPE_CHECKING:
    from PIL import Image

    from .pipeline import StyleTransferPipeline, TransferResult



@dataclass(frozen=True)
class FileResult:
    """What became of one input photo: the ``portraits`` written (one per face), the ``extras`` (overview grids,
    the pasted-back photo), or ``error``, one sentence saying why it was skipped (``exception`` is the error)."""

    input: Path
    portraits: tuple[Path, ...] = ()
    extras: tuple[Path, ...] = ()
    error: str | None = None
    exception: BaseException | None = None
    skipped: bool = False  #: done by an earlier run (``resume``): nothing was written now

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outputs(self) -> tuple[Path, ...]:
        return self.portraits + self.extras


# ----------------------------------------------------------------------------------------- the run
#: Photos prepared ahead of the networks per worker (decoded, detected, aligned), and finished photos waiting for the
#: writer: the queues between the stages, so memory stays flat whatever the folder size.
PREFETCH_PER_WORKER = 4


def stylize_files(pipe: StyleTransferPipeline, inputs: Iterable[str | os.PathLike | Image.Image],
                  out_dir: str | os.PathLike, *, exemplar: Exemplar = 0, align: bool = True, all_faces: bool = False,
                  paste_back: bool = False, overview: bool = False, overwrite: bool = False,
                  weights: Sequence[float] | None = None, structure=None, color=None, preserve_color: bool = False,
                  truncation: float = TRANSFER_TRUNCATION, wplus: bool = False, seed: int | None = None,
                  portrait_name: str | None = None, detector: str | None = None, face_threshold: float | None = None,
                  resume: bool = False, shard: Shard | None = None, batch_size: int = 1, workers: int = 0,
                  head_start: HeadStart | None = None,
                  **transfer_options: Any) -> StylizeRun:  # ~80 lines, most of them the docstring
    """Stylise photos (files or folders) with one exemplar into ``out_dir``: one :class:`FileResult` per photo.

    Per photo: :func:`faces.prepare_face` (the largest face, every face with ``all_faces``, or the centred square
    without ``align``), :meth:`StyleTransferPipeline.transfer` per face with the weight / color / truncation /
    encoder / noise options (and ``transfer_options`` such as ``refine``), then the portrait
    (:func:`output_name`), with ``overview`` a content | reconstruction | exemplar | result grid, with
    ``paste_back`` the photo with its stylised faces put back (:func:`faces.paste_back`). A photo whose files
    exist is skipped unless ``overwrite`` (all of its outputs, or none). ``portrait_name`` names the portrait of a
    run of one photo and one face (``-o portrait.png``, :func:`split_output`).

    At scale (issue 14):

    * ``resume``: a manifest (:mod:`dualstylegan.manifest`) in ``out_dir`` records each photo as it finishes; a
      rerun with the same settings skips the photos done (result ``skipped``, outputs present with their
      checksums), retries those that failed, and redoes those a kill left in flight.
    * ``shard`` (:func:`dualstylegan.sharding.shard_from_env` under torchrun): this process stylises every
      ``world_size``-th photo from ``rank`` on; output names are those of the whole list.
    * ``workers`` K > 0: decoding, detection and alignment in K processes, up to :data:`PREFETCH_PER_WORKER`·K
      photos ahead; files are written by a background thread. The outputs are those of the one-by-one run, bit
      for bit (the networks see one face at a time).
    * ``head_start``: a :class:`HeadStart` begun before the networks loaded; its photo is taken from it when it was
      prepared with this call's settings (the same result as preparing it here).
    * ``batch_size`` N > 1: N faces (of consecutive photos) through the encoder and the generator at once. Batched
      convolutions sum in another order, so the pixels may differ from the one-by-one run's by a rounding step
      (measured: at most 1/255 on a few pixels); N = 1, the default, is bit for bit.

    An image exemplar (file, PIL image, NumPy array) is aligned when it has a face and otherwise centre-cropped
    (:func:`faces.prepare_exemplar`), whatever ``align`` says about the photos; the returned :class:`StylizeRun`
    iterates the results and holds ``notices`` (e.g. "painting.png: no face was found in it; using its centred
    square as it is.") and ``exemplar_image``, the exemplar as the pipeline saw it (the overview's third column).

    Everything that concerns the whole run — the inputs, the output folder, the exemplar (prepared like the photos
    when it is an image), the weights and the truncation — is checked when this is called, raising one
    :class:`~dualstylegan.errors.DualStyleGANError`; a problem with one photo (unreadable, no face, an existing
    output) is its result's ``error`` and the run goes on. Any other exception is a bug and propagates.
    """
    from .pipeline import check_truncation

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"the batch size must be a whole number of at least 1, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"the number of workers must be a whole number of at least 0, got {workers!r}")
    files = collect_inputs(inputs)
    out = check_output_folder(out_dir)
    options = dict(weights=weights, structure=structure, color=color, preserve_color=preserve_color,
                   truncation=check_truncation(truncation), wplus=wplus, seed=seed, **transfer_options)
    pipe.weights_for(weights, structure, color)  # an impossible weight vector: one error, not one per photo
    if seed is not None:
        from .pipeline import check_seed

        check_seed(seed)
    tag = exemplar_tag(exemplar, pipe.codes)
    notices: list[str] = []
    ex = pipe.exemplar_input(exemplar, notices)
    if isinstance(ex, (int, str)):
        pipe.codes.resolve_name(ex)  # an unknown id or name: now, before any photo
    ex_image = (ex if not isinstance(ex, (int, str)) else pipe.render_exemplar(ex)) if overview else None
    faces_options = {"detector": detector or "hog", "threshold": face_threshold}
    shard = shard or Shard()
    manifest = None
    if resume:
        from .manifest import Manifest, file_sha256, settings_key

        exemplar_id = file_sha256(exemplar) if isinstance(exemplar, os.PathLike) else (
            repr(exemplar) if isinstance(exemplar, (int, str)) else None)
        if exemplar_id is None:
            raise UsageError("a resumable run needs its exemplar as a style id, a name or an image file")
        settings = dict(style=pipe.style, exemplar=exemplar_id, tag=tag, align=align, all_faces=all_faces,
                        paste_back=paste_back, overview=overview, portrait_name=portrait_name, faces=faces_options,
                        batch_size=batch_size, **options)
        manifest = Manifest.open(out, settings_key(settings), shard.rank, shard.world_size)
    run = _Run(pipe, out, ex, ex_image, tag, align, all_faces, paste_back, overwrite, options, portrait_name,
               faces_options, manifest, batch_size, workers, head_start)
    stems = unique_stems(files)  # names from the whole list: every rank names a photo alike
    mine = shard.take(files)
    return StylizeRun(_results(run, mine, stems), notices, ex_image, total=len(mine))


def stylize_images(pipe: StyleTransferPipeline, images: Iterable[Image.Image], exemplar: Exemplar = 0, *,
                   align: bool = True, all_faces: bool = False, batch_size: int = 1,
                   **transfer_options: Any) -> Iterator[list[TransferResult]]:
    """PIL images (any iterable, read lazily) → for each image, the :class:`~dualstylegan.pipeline.TransferResult`
    of each face, in order; a service's form of :func:`stylize_files` (nothing is written). ``batch_size`` as
    there. A user's problem with one image raises its error (:class:`~dualstylegan.faces.NoFaceError`, …) when
    that image's results are reached."""
    from .faces import prepare_face
    from .images import to_tensor

    ex = pipe.exemplar_input(exemplar)
    pending: list[tuple[int, list]] = []
    queued = 0

    def flush():
        contents = [to_tensor(f.image) for _, faces in pending for f in faces]
        results = iter(_transfer_faces(pipe, contents, ex, transfer_options, False, batch_size))
        for _, faces in pending:
            yield [next(results) for _ in faces]
        pending.clear()

    for i, image in enumerate(images):
        faces = prepare_face(image, align, all_faces)
        pending.append((i, faces))
        queued += len(faces)
        if queued >= batch_size:
            yield from flush()
            queued = 0
    yield from flush()


class StylizeRun(Iterator[FileResult]):
    """The results of :func:`stylize_files`, one :class:`FileResult` per photo as each is done, plus ``notices``
    (one line each, known when the call returns), ``exemplar_image`` (None without ``overview``) and ``total``,
    the number of results to come (this rank's share)."""

    def __init__(self, results: Iterator[FileResult], notices: list[str], exemplar_image=None, total: int = 0):
        self._results, self.notices, self.exemplar_image, self.total = results, notices, exemplar_image, total

    def __iter__(self) -> StylizeRun:
        return self

    def __next__(self) -> FileResult:
        return next(self._results)

    def __len__(self) -> int:
        return self.total

    def close(self) -> None:
        """Stop early: the photos already handed to the writer are finished, the workers stopped."""
        close = getattr(self._results, "close", None)
        if close is not None:
            close()


@dataclass
class _Run:
    """The settings of one :func:`stylize_files` call, checked."""

    pipe: Any
    out: Path
    exemplar: Any
    exemplar_image: Any
    tag: str
    align: bool
    all_faces: bool
    paste_back: bool
    overwrite: bool
    options: dict
    portrait_name: str | None = None
    faces: dict = None
    manifest: Any = None
    batch_size: int = 1
    workers: int = 0
    head_start: HeadStart | None = None


@dataclass
class _Prepared:
    """A photo after the CPU stages (a worker's answer): its faces, the photo itself for paste-back, or the error."""

    faces: list | None = None
    photo: Any = None
    error: BaseException | None = None


def _portable(e: BaseException) -> BaseException:
    """``e`` as it can cross a process boundary: itself when it survives pickling, else a UsageError with its
    sentence."""
    try:
        return pickle.loads(pickle.dumps(e))
    except Exception:
        return UsageError(sentence(e))


class HeadStart:
    """The first photo of a run decoded, detected and aligned in a forked process, begun before this process imports
    torch and loads the networks, for :func:`stylize_files` to take instead of preparing it after them.

    Preparing a face is torch-free (:mod:`dualstylegan.faces`, :mod:`dualstylegan.images`) and mostly dlib's: its
    detector and 100 MB landmark model load on first use (~0.7 s) and hold the GIL, so a thread would not overlap;
    a forked process does, on a second core. On the 2-core EPYC a first aligned portrait (``bench/bench_cli.py
    --align``) spent 1.2 s there after import and load. :meth:`worthwhile` says when to begin one.
    """

    def __init__(self, path: str | os.PathLike, *, align: bool = True, all_faces: bool = False,
                 paste_back: bool = False, detector: str | None = None, face_threshold: float | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.path = Path(path)
        self.args = (align, all_faces, paste_back, {"detector": detector or "hog", "threshold": face_threshold})
        self._threads: int | None = None  # torch's threads before share_cores
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        self._future = self._pool.submit(_prepare, self.path, *self.args)

    @staticmethod
    def worthwhile(align: bool, workers: int = 0) -> bool:
        """Faces to find, no worker processes of the run's own, a second core, Linux (where fork is the
        multiprocessing default; macOS system libraries are not fork-safe) and torch not imported yet (a fork before
        torch's thread pools exist; after its import there is little left to overlap)."""
        import sys

        return (align and workers == 0 and (os.cpu_count() or 1) >= 2 and sys.platform.startswith("linux")
                and "torch" not in sys.modules)

    def share_cores(self) -> None:
        """Until the photo is taken, torch computes with one thread fewer (call it from the thread that loads the
        networks): the process has the other core, and torch's threads waiting on a busy core made loading 1.5–6×
        slower."""
        import torch

        self._threads = torch.get_num_threads()
        if self._threads > 1:
            torch.set_num_threads(self._threads - 1)

    def release_cores(self) -> None:
        """Torch's threads as they were before :meth:`share_cores` (the networks are loaded: the next torch work
        waits for a prepared photo anyway)."""
        threads, self._threads = self._threads, None
        if threads is not None:
            import torch

            torch.set_num_threads(threads)

    def take(self, path: Path, args: tuple) -> Any:
        """The future of ``path`` when it was prepared with ``args``, once; else None."""
        if self._future is None or Path(path) != self.path or args != self.args:
            return None
        future, self._future = self._future, None
        return future

    def close(self) -> None:
        """Stop the process (waiting for a photo in progress); torch's threads restored."""
        self.release_cores()
        self._future = None
        self._pool.shutdown(wait=True, cancel_futures=True)


def _prepare(path: Path, align: bool, all_faces: bool, keep_photo: bool, faces_options: dict) -> _Prepared:
    """Decode, detect, align (a worker's part; any process)."""
    from .faces import prepare_face
    from .images import load_image

    try:
        photo = load_image(path)
        found = prepare_face(photo, align, all_faces, name=path, **(faces_options or {}))
    except Exception as e:
        if not is_user_error(e):
            raise
        return _Prepared(error=_portable(e))
    return _Prepared(found, photo if keep_photo else None)


@dataclass
class _Job:
    """One photo going through the stages, in input order."""

    path: Path
    skipped: tuple[Path, ...] | None = None
    prepared: _Prepared | None = None
    names: list = field(default_factory=list)
    grids: list = field(default_factory=list)
    pasted: list = field(default_factory=list)
    replace: set = field(default_factory=set)
    error: BaseException | None = None
    results: list = field(default_factory=list)  # TransferResult per face


_END = object()


def _results(run: _Run, files: Sequence[Path], stems: dict[Path, str]) -> Iterator[FileResult]:
    """The stages: prepare (K worker processes, or here) → plan names → networks (here, in batches) → write (a
    thread), joined by bounded queues; results in input order."""
    import queue
    import threading

    window = max(1, PREFETCH_PER_WORKER * run.workers)
    pool = None
    if run.workers:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(run.workers, mp_context=multiprocessing.get_context("spawn"))
    to_write: queue.Queue = queue.Queue(maxsize=max(2, run.batch_size + window))
    written: queue.Queue = queue.Queue()
    writer = threading.Thread(target=_writer, args=(run, to_write, written), name="dualstylegan-writer", daemon=True)
    writer.start()
    held: list[_Job] = []  # planned jobs waiting for their batch, in order
    n_faces = 0

    def finished() -> Iterator[FileResult]:
        while True:
            try:
                item = written.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def flush() -> None:
        nonlocal n_faces
        faces = [(job, f) for job in held if job.prepared is not None and job.error is None
                 for f in job.prepared.faces]
        if faces:
            from .images import to_tensor

            contents = [to_tensor(f.image) for _, f in faces]
            results = _transfer_faces(run.pipe, contents, run.exemplar, run.options, bool(run.exemplar_image is not None),
                                      run.batch_size)
            for (job, _), r in zip(faces, results):
                job.results.append(r)
        for job in held:
            to_write.put(job)
        held.clear()
        n_faces = 0

    try:
        for job in _prepared_jobs(run, files, pool, window):
            if job.prepared is not None and job.error is None:
                _plan(run, job, stems[job.path])
            held.append(job)
            if job.prepared is not None and job.error is None:
                n_faces += len(job.prepared.faces)
            if n_faces >= run.batch_size or (job.error is not None or job.skipped) and len(held) == 1:
                flush()
            yield from finished()
        flush()
        to_write.put(_END)
        while True:
            item = written.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if writer.is_alive():
            to_write.put(_END)  # the writer finishes what it was given (those photos are recorded) and stops
            writer.join()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if run.head_start is not None:
            run.head_start.close()
        if run.manifest is not None:
            run.manifest.close()


def _prepared_jobs(run: _Run, files: Sequence[Path], pool, window: int) -> Iterator[_Job]:
    """Each photo as a job, in order: done earlier (``skipped``), or prepared — here, or by the worker pool up to
    ``window`` photos ahead."""
    from collections import deque

    args = (run.align, run.all_faces, run.paste_back, run.faces)
    if run.head_start is not None:
        run.head_start.release_cores()  # the networks are loaded (also when its photo was done in an earlier run)
    ahead: deque = deque()
    files = iter(files)

    def submit() -> bool:
        for path in files:
            if run.manifest is not None and run.manifest.is_done(path):
                ahead.append((path, run.manifest.last(path)))
            else:
                early = run.head_start.take(path, args) if run.head_start is not None else None
                ahead.append((path, early or (pool.submit(_prepare, path, *args) if pool is not None else None)))
            return True
        return False

    while len(ahead) < window and submit():
        pass
    while ahead:
        path, work = ahead.popleft()
        submit()
        if isinstance(work, dict):
            yield _Job(path, skipped=tuple(run.out / n for n in work.get("outputs", [])))
            continue
        prepared = work.result() if work is not None else _prepare(path, *args)
        yield _Job(path, prepared=prepared, error=prepared.error)


def _plan(run: _Run, job: _Job, stem: str) -> None:
    """The photo's output names, checked free (all of them, or none: an earlier run's files in flight may go)."""
    n = len(job.prepared.faces)
    style = run.pipe.style
    names = [output_name(stem, style, run.tag, face=i if n > 1 else None) for i in range(n)]
    if run.portrait_name and len(names) == 1:
        names = [run.portrait_name]
    job.names = names
    job.grids = [n[:-4] + "_overview.png" for n in names] if run.exemplar_image is not None else []
    job.pasted = [output_name(stem, style, run.tag, kind="pasted")] if run.paste_back else []
    job.replace = run.manifest.in_flight(job.path) if run.manifest is not None else set()
    try:
        check_free([run.out / n for n in (*names, *job.grids, *job.pasted) if n not in job.replace], run.overwrite)
    except Exception as e:
        if not is_user_error(e):
            raise
        job.error = e


def _writer(run: _Run, jobs, written) -> None:
    """The writing stage (a thread): each job's files, its manifest record, its :class:`FileResult`. A bug is
    handed to the reader; the jobs after it are drained unwritten."""
    broken = False
    while True:
        job = jobs.get()
        if job is _END:
            written.put(_END)
            return
        if broken:
            continue
        try:
            written.put(_write(run, job))
        except BaseException as e:  # a bug: raised by the reader
            broken = True
            written.put(e)


def _write(run: _Run, job: _Job) -> FileResult:
    from .faces import paste_back
    from .images import make_grid, save_image, to_image

    if job.skipped is not None:
        return FileResult(job.path, job.skipped, skipped=True)
    portraits: list[Path] = []
    extras: list[Path] = []
    manifest = run.manifest
    try:
        if job.error is not None:
            raise job.error
        if manifest is not None:
            manifest.started(job.path, [*job.names, *job.grids, *job.pasted])

        def save(img, name):
            return save_image(img, run.out / name, overwrite=run.overwrite or name in job.replace)

        stylised = []
        for i, (face, r) in enumerate(zip(job.prepared.faces, job.results)):
            portraits.append(save(r.image, job.names[i]))
            if job.grids:
                grid = make_grid([r.content, r.reconstruction, run.exemplar_image, r.image], nrow=4, size=256)
                extras.append(save(grid, job.grids[i]))
            stylised.append((to_image(r.image), face.quad))
        if job.pasted:
            photo = job.prepared.photo
            for image, quad in stylised:
                photo = paste_back(photo, image, quad)
            extras.append(save(photo, job.pasted[0]))
    except Exception as e:
        if not is_user_error(e):
            raise
        if manifest is not None:
            manifest.finished(job.path, portraits + extras, error=sentence(e))
        return FileResult(job.path, tuple(portraits), tuple(extras), error=sentence(e), exception=e)
    if manifest is not None:
        manifest.finished(job.path, portraits + extras)
    return FileResult(job.path, tuple(portraits), tuple(extras))


def _transfer_faces(pipe, contents: list, exemplar, options: dict, reconstruct: bool,
                    batch_size: int) -> list[TransferResult]:
    """:meth:`StyleTransferPipeline.transfer` of each face: one call per face with ``batch_size`` 1 (or options
    that work per face: ``refine``, ``fit_content``), else ``batch_size`` faces per network call."""
    if batch_size <= 1 or options.get("refine") or options.get("fit_content") or not contents:
        return [pipe.transfer(c, exemplar, reconstruct=reconstruct, **options) for c in contents]
    out: list = []
    for i in range(0, len(contents), batch_size):
        out += _transfer_batch(pipe, contents[i:i + batch_size], exemplar, options, reconstruct)
    return out


def _transfer_batch(pipe, contents: list, exemplar, options: dict, reconstruct: bool) -> list[TransferResult]:
    """:meth:`StyleTransferPipeline.transfer` of several faces in one encoder call and one generator call (the
    same steps, paper §3.2, on a batch)."""
    import torch
    import torch.nn.functional as F

    from .nets.encoder import ENCODER_INPUT_SIZE
    from .pipeline import TransferResult, check_seed

    o = dict(options)
    wplus, seed = o.get("wplus", False), o.get("seed")
    with torch.no_grad():
        w = pipe.weights_for(o.get("weights"), o.get("structure"), o.get("color"))
        ex = pipe.exemplar_input(exemplar)
        content = torch.cat([pipe.content_tensor(c, True).to(pipe.device, pipe.dtype).reshape(1, *c.shape[-3:])
                             for c in contents])
        content = F.adaptive_avg_pool2d(content, ENCODER_INPUT_SIZE)
        intrinsic = pipe.encode(content, wplus=wplus)
        ex_z = pipe.exemplar_code(ex).clone().expand(len(contents), -1, -1).clone()
        rows = pipe.color_rows
        if o.get("preserve_color") and not wplus:
            ex_z[:, rows] = intrinsic[:, rows]
        ex_w = pipe.generator.map_extrinsic(ex_z)
        if o.get("preserve_color") and wplus:
            ex_w[:, rows] = intrinsic[:, rows]
        noise = None
        if seed is not None:
            noise = pipe.generator.generator.make_noise(torch.Generator().manual_seed(check_seed(seed)))
        image = pipe.synthesize(intrinsic, ex_w, noise=noise, z_plus_latent=not wplus, input_is_latent=wplus,
                                truncation=o.get("truncation", TRANSFER_TRUNCATION), truncation_latent=0,
                                use_res=True, interp_weights=w).clamp(-1, 1)
        rec = pipe.reconstruct(intrinsic, wplus) if reconstruct else None
    return [TransferResult(image[i:i + 1], content[i:i + 1], intrinsic[i:i + 1], ex_z[i:i + 1], w,
                           rec[i:i + 1] if rec is not None else None, None) for i in range(len(contents))]


__all__ = ["IMAGE_EXTENSIONS", "Exemplar", "FileResult", "HeadStart", "StylizeRun", "blend_names", "check_free", "check_inputs",
           "check_output_folder", "collect_inputs", "exemplar_tag", "generate_names", "output_name", "output_names",
           "short_stem", "split_output", "stylize_files", "stylize_images", "unique_stems"]
