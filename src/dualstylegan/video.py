"""Stylise a video: every face in every frame, steady, at the clip's size and rate, with its sound (beyond the paper).

A bounded stream of stages, one frame (or one batch of faces) at a time, so memory stays flat in the clip length:

    decode (PyAV) → track faces (:mod:`dualstylegan.tracking`) → FFHQ-align each face on its smoothed landmarks
    → batched encode + DualStyleGAN (:class:`~dualstylegan.pipeline.StyleTransferPipeline`) → paste back → encode

Each face is a track with its own alignment and the same exemplar; frames without a face pass through unchanged.
The generator runs with its stored noise (fixed across frames) and can stop at 256² or 512² (``portrait_size``);
the intrinsic codes of a track can be smoothed over time (``code_smoothing``). Frames are decoded upright
(rotation metadata applied), written with their own timestamps (variable frame rates stay as they are) and the
audio stream is copied packet for packet. :func:`stylize_video` writes a file; :class:`VideoStyler` yields frames.

The output appears only when complete (written beside it, then renamed); Ctrl+C or SIGTERM finishes the frames
written so far as a playable ``<name>.partial<ext>``; any other failure leaves nothing.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .defaults import TRANSFER_TRUNCATION
from .video_io import (DEFAULT_CODEC, DEFAULT_CRF, DEFAULT_PRESET, MAX_FRAME_PIXELS, Frame, VideoError,
                       VideoInfo, VideoWriter, check_output, partial_path, probe, read_frames)

#: Faces per network batch (a GPU wants more; the CPU gains little from batching).
DEFAULT_BATCH = 8
#: One-Euro settings of the landmark smoothing (:class:`dualstylegan.tracking.OneEuroFilter`).
DEFAULT_SMOOTHING = {"min_cutoff": 0.5, "beta": 4.0, "d_cutoff": 1.0}
#: Stages of the pipeline, in order, as :attr:`VideoStats.seconds` names them.
STAGES = ("decode", "track", "align", "network", "paste", "encode")


# ------------------------------------------------------------------------------------------------ the stylising
@dataclass
class VideoStats:
    """What a run did: frames, faces, tracks, time per stage (seconds) and the most frames held at once."""

    frames: int = 0
    faces: int = 0
    tracks: int = 0
    detections: int = 0
    max_in_flight: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def fps(self) -> float:
        total = sum(self.seconds.values())
        return self.frames / total if total else 0.0


@dataclass
class _Face:
    track: int
    crop: Any  # PIL image, FACE_SIZE²
    quad: np.ndarray


@dataclass
class _Item:
    frame: Frame
    faces: list[_Face]
    portraits: list = field(default_factory=list)


class VideoStyler:
    """The per-clip state of a stylisation — tracker, exemplar code, per-track intrinsic codes — and its stages.

    ``frames(iterable of Frame)`` yields the stylised :class:`Frame` s in order. Transfer options are those of
    :meth:`StyleTransferPipeline.transfer`: ``exemplar`` (style id, exemplar name or aligned image tensor),
    ``weights`` / ``structure`` / ``color``, ``preserve_color``, ``truncation``, ``wplus``. Video options:
    ``faces`` ("all" or "largest"), ``portrait_size`` (stop the generator at that resolution: 256, 512, …; default
    its full size), ``smoothing`` (One-Euro settings for the landmarks, None for raw landmarks),
    ``code_smoothing`` (0 … <1: weight of a track's previous intrinsic code in an exponential moving average),
    ``batch_size`` faces per network call, ``detect_every`` frames between full face searches, ``feather`` of the
    paste-back mask, ``tracker`` (a ready :class:`~dualstylegan.tracking.FaceTracker`, e.g. with a test detector).
    """

    def __init__(self, pipe, exemplar: int | str | Any = 0, *, weights: Sequence[float] | None = None,
                 structure=None, color=None, preserve_color: bool = False, truncation: float = TRANSFER_TRUNCATION,
                 wplus: bool = False, faces: str = "all", portrait_size: int | None = None,
                 smoothing: dict | None = DEFAULT_SMOOTHING, code_smoothing: float = 0.0,
                 batch_size: int = DEFAULT_BATCH, detect_every: int = 10, feather: float = 0.08, tracker=None):
        from .pipeline import OptionError, check_truncation

        self.pipe = pipe
        self.weights = pipe.weights_for(weights, structure, color)
        self.truncation = check_truncation(truncation)
        self.wplus, self.preserve_color = bool(wplus), bool(preserve_color)
        if faces not in ("all", "largest"):
            raise OptionError(f"faces must be 'all' or 'largest', got {faces!r}")
        size = pipe.generator.size
        if portrait_size is not None and (portrait_size < 4 or portrait_size > size or
                                          portrait_size & (portrait_size - 1)):
            raise OptionError(f"the portrait size must be a power of two up to this model's {size}, "
                              f"got {portrait_size}")
        self.portrait_size = None if portrait_size in (None, size) else int(portrait_size)
        if not 0.0 <= code_smoothing < 1.0:
            raise OptionError(f"code smoothing must be in [0, 1), got {code_smoothing}")
        self.code_smoothing = float(code_smoothing)
        self.batch_size = max(1, int(batch_size))
        self.feather = feather
        if tracker is None:
            from .tracking import FaceTracker

            tracker = FaceTracker(faces, detect_every=detect_every, smoothing=smoothing)
        self.tracker = tracker
        self.ex_z = pipe.exemplar_code(exemplar).clone()  # once per clip: the same exemplar for every track
        self.ex_w = None if (preserve_color and not wplus) else pipe.generator.map_extrinsic(self.ex_z)
        self.codes: dict[int, Any] = {}  # track id → its (smoothed) intrinsic code
        self.stats = VideoStats()
        self._track_ids: set[int] = set()

    @contextmanager
    def _timed(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stats.seconds[stage] += time.perf_counter() - t

    def _timed_iter(self, it: Iterable, stage: str) -> Iterator:
        it = iter(it)
        while True:
            with self._timed(stage):
                item = next(it, None)
            if item is None:
                return
            yield item

    # -------------------------------------------------------------------------------- stages
    def frames(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The stylised frames, in order; at most ``batch_size`` faces (and the frames they belong to) in flight."""
        pending: list[_Item] = []
        n_faces = 0
        for frame in self._timed_iter(frames, "decode"):
            item = self._prepare(frame)
            pending.append(item)
            n_faces += len(item.faces)
            self.stats.max_in_flight = max(self.stats.max_in_flight, len(pending))
            if n_faces >= self.batch_size or len(pending) >= 2 * self.batch_size:
                yield from self._finish(pending)
                pending, n_faces = [], 0
        yield from self._finish(pending)
        self.stats.detections = getattr(self.tracker, "detections", 0)

    def _prepare(self, frame: Frame) -> _Item:
        from PIL import Image

        from .faces import FACE_SIZE, align_face

        with self._timed("track"):
            tracked = self.tracker.update(frame.image, frame.time)
        self._track_ids.update(f.track_id for f in tracked)
        self.stats.tracks = len(self._track_ids)
        faces = []
        if tracked:
            with self._timed("align"):
                pil = Image.fromarray(frame.image)
                for f in tracked:
                    crop, quad = align_face(pil, f.smoothed, output_size=FACE_SIZE)
                    faces.append(_Face(f.track_id, crop, quad))
        return _Item(frame, faces)

    def _finish(self, items: list[_Item]) -> Iterator[Frame]:
        faces = [f for it in items for f in it.faces]
        if faces:
            with self._timed("network"):
                portraits = self._stylise([f.crop for f in faces], [f.track for f in faces])
            k = 0
            for it in items:
                it.portraits, k = portraits[k:k + len(it.faces)], k + len(it.faces)
        for it in items:
            self.stats.frames += 1
            self.stats.faces += len(it.faces)
            if not it.faces:
                yield it.frame  # unchanged
                continue
            with self._timed("paste"):
                image = self._paste(it)
            yield Frame(it.frame.index, it.frame.pts, it.frame.time, image, it.frame.duration)

    def _stylise(self, crops: list, tracks: list[int]) -> list:
        """One network batch: encode every face, smooth each track's code, DualStyleGAN with the exemplar."""
        import torch

        from .images import to_image

        pipe = self.pipe
        # images.to_tensor on the whole batch at once: x = v/127.5 − 1
        pixels = torch.from_numpy(np.stack([np.asarray(c.convert("RGB"), dtype=np.uint8) for c in crops]))
        content = (pixels.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1).contiguous()
        intrinsic = pipe.encode(content, wplus=self.wplus)
        if self.code_smoothing:
            rows = []
            for code, track in zip(intrinsic, tracks):
                prev = self.codes.get(track)
                code = code if prev is None else torch.lerp(code, prev, self.code_smoothing)
                self.codes[track] = code
                rows.append(code)
            intrinsic = torch.stack(rows)
        n = intrinsic.shape[0]
        rows = pipe.color_rows
        if self.ex_w is None:  # preserve color, Z+: the color rows of each exemplar code are the content's
            ex_z = self.ex_z.expand(n, -1, -1).clone()
            ex_z[:, rows] = intrinsic[:, rows]
            ex_w = pipe.generator.map_extrinsic(ex_z)
        else:
            ex_w = self.ex_w.expand(n, -1, -1).clone()
            if self.preserve_color:  # W+: the mapped exemplar's color rows are the content's
                ex_w[:, rows] = intrinsic[:, rows]
        options = dict(z_plus_latent=not self.wplus, input_is_latent=self.wplus, truncation=self.truncation,
                       truncation_latent=0, use_res=True, interp_weights=self.weights)
        if self.portrait_size is not None:
            options["output_size"] = self.portrait_size
        images = pipe.synthesize(intrinsic, ex_w, **options).clamp(-1, 1)
        return [to_image(im) for im in images]

    def _paste(self, item: _Item) -> np.ndarray:
        from PIL import Image

        from .faces import paste_back

        img = Image.fromarray(item.frame.image)
        for face, portrait in zip(item.faces, item.portraits):
            img = paste_back(img, portrait, face.quad, feather=self.feather)
        return np.asarray(img)


# ------------------------------------------------------------------------------------------------ a file
@dataclass
class VideoResult:
    """Where the video went (``interrupted``: the partial file with the frames finished) and what the run did."""

    path: Path | None
    info: VideoInfo
    stats: VideoStats
    interrupted: bool = False


def stylize_video(pipe, src: str | os.PathLike, dst: str | os.PathLike, exemplar: int | str | Any = 0, *,
                  overwrite: bool = False, codec: str = DEFAULT_CODEC, crf: int | None = DEFAULT_CRF,
                  preset: str | None = DEFAULT_PRESET, max_pixels: int = MAX_FRAME_PIXELS,
                  progress: Callable[[VideoStats, VideoInfo], None] | None = None, **options) -> VideoResult:
    """Stylise every face of the clip ``src`` into ``dst`` (same size, timestamps and audio); see
    :class:`VideoStyler` for ``exemplar`` and ``options``.

    Everything is checked before any work (:func:`probe`, :func:`check_output`). ``progress(stats, info)`` is
    called after each frame written. On KeyboardInterrupt the frames written so far are finished as a playable
    :func:`partial_path` file and the result says ``interrupted``; on any error nothing is left.
    """
    info = probe(src, max_pixels)
    dst = check_output(src, dst, overwrite)
    styler = VideoStyler(pipe, exemplar, **options)
    writer = VideoWriter(dst, info, codec=codec, crf=crf, preset=preset, overwrite=overwrite)
    try:
        for frame in styler.frames(read_frames(src, info)):
            with styler._timed("encode"):
                writer.write(frame)
            if progress is not None:
                progress(styler.stats, info)
    except KeyboardInterrupt:
        return VideoResult(writer.close(interrupted=True), info, styler.stats, interrupted=True)
    except BaseException:
        writer.abort()
        raise
    if writer.frames == 0:
        writer.abort()
        raise VideoError(f"{src} has no frames that could be decoded.")
    return VideoResult(writer.close(), info, styler.stats)


# ------------------------------------------------------------------------------------------------ flicker
class FlickerMeter:
    """The flicker ratio: the mean absolute difference between consecutive output frames inside the face region,
    divided by the same for the input frames (1: as steady as the input; a still face should stay ≈ still).

    ``add(input, output, mask)`` per frame, in order; ``mask`` (H, W) bool is the face region of that frame (the
    union with the previous frame's is used).
    """

    def __init__(self):
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.diff_in = self.diff_out = 0.0

    def add(self, frame_in: np.ndarray, frame_out: np.ndarray, mask: np.ndarray) -> None:
        a, b = frame_in.astype(np.float32), frame_out.astype(np.float32)
        if self._prev is not None:
            pa, pb, pm = self._prev
            m = mask | pm
            if m.any():
                self.diff_in += float(np.abs(a - pa)[m].mean())
                self.diff_out += float(np.abs(b - pb)[m].mean())
        self._prev = (a, b, mask)

    @property
    def ratio(self) -> float:
        return self.diff_out / self.diff_in if self.diff_in else float("nan")


def quad_mask(shape: tuple[int, int], quads: Iterable[np.ndarray]) -> np.ndarray:
    """(H, W) bool: the pixels inside any of the quads (face regions, e.g. :func:`dualstylegan.faces.ffhq_quad`)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for q in quads:
        draw.polygon([tuple(p) for p in np.asarray(q, dtype=np.float64)], fill=255)
    return np.asarray(img) > 0


__all__ = ["DEFAULT_CODEC", "DEFAULT_CRF", "DEFAULT_SMOOTHING", "MAX_FRAME_PIXELS", "STAGES", "FlickerMeter",
           "Frame", "VideoError", "VideoInfo", "VideoResult", "VideoStats", "VideoStyler", "VideoWriter",
           "check_output", "partial_path", "probe", "quad_mask", "read_frames", "stylize_video"]
