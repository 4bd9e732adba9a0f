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
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .defaults import TRANSFER_TRUNCATION
from .errors import DualStyleGANError, UsageError

#: The largest frame accepted (3840×2160, 4K UHD, 8.3 megapixels): larger clips are refused with a sentence.
MAX_FRAME_PIXELS = 3840 * 2160
DEFAULT_CODEC = "libx264"
#: x264's constant rate factor (0 lossless … 51): 18 is visually lossless for most clips.
DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
#: Faces per network batch (a GPU wants more; the CPU gains little from batching).
DEFAULT_BATCH = 8
#: One-Euro settings of the landmark smoothing (:class:`dualstylegan.tracking.OneEuroFilter`).
DEFAULT_SMOOTHING = {"min_cutoff": 0.5, "beta": 4.0, "d_cutoff": 1.0}
#: Codecs that take a ``crf`` option.
CRF_CODECS = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})
#: Stages of the pipeline, in order, as :attr:`VideoStats.seconds` names them.
STAGES = ("decode", "track", "align", "network", "paste", "encode")


class VideoError(DualStyleGANError, ValueError):
    """A clip that cannot be read or written as asked; the message is one sentence naming the file."""


def _av():
    try:
        import av
    except ImportError:
        raise UsageError("video needs PyAV: pip install 'dualstylegan[video]' (or pip install av)") from None
    return av


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found: the size as displayed (rotation applied), the stream's timing and its audio."""

    path: Path
    width: int
    height: int
    rotation: int  # degrees counter-clockwise applied to the stored frames to show them (PyAV's frame.rotation)
    average_rate: Fraction | None
    time_base: Fraction
    frames: int  # as the container says; 0 when it does not say
    duration: float | None  # seconds
    has_audio: bool
    codec: str


@dataclass
class Frame:
    """One decoded frame, upright: ``image`` (H, W, 3) uint8 RGB, ``pts`` in ``time_base`` units, ``time`` seconds."""

    index: int
    pts: int
    time: float
    image: np.ndarray
    duration: int | None = None  # in time_base units, as decoded (the last frame's sets the clip's length)


def probe(path: str | os.PathLike, max_pixels: int = MAX_FRAME_PIXELS) -> VideoInfo:
    """Open a clip and decode its first frame: :class:`VideoError` for a missing, unreadable, corrupt, audio-only
    or empty file, or one larger than ``max_pixels``."""
    av = _av()
    path = Path(path)
    if not path.exists():
        raise VideoError(f"the video {path} does not exist.")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file.")
    if path.stat().st_size == 0:
        raise VideoError(f"the video {path} is empty (0 bytes).")
    try:
        with av.open(os.fspath(path)) as c:
            if not c.streams.video:
                what = "an audio file" if c.streams.audio else "a file without pictures"
                raise VideoError(f"{path} has no video stream ({what}); give a video clip.")
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            if w * h > max_pixels:
                raise VideoError(f"{path} is {w}×{h} pixels, above the limit of {max_pixels / 1e6:.1f} megapixels; "
                                 f"scale it down first, e.g. ffmpeg -i IN -vf scale=-2:2160 OUT.")
            first = next(c.decode(s), None)
            if first is None:
                raise VideoError(f"{path} has no frames (a zero-length or truncated clip).")
            rotation = int(first.rotation or 0) % 360
            if rotation % 90:
                raise VideoError(f"{path} is rotated by {rotation}°; only multiples of 90° are supported.")
            w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
            duration = float(c.duration / 1e6) if c.duration else (
                float(s.duration * s.time_base) if s.duration else None)
            return VideoInfo(path, w, h, rotation, s.average_rate or s.guessed_rate, s.time_base, int(s.frames or 0),
                             duration, bool(c.streams.audio), s.codec_context.name)
    except VideoError:
        raise
    except av.FFmpegError as e:
        raise VideoError(f"{path} cannot be read as a video (corrupt, truncated or not a video file: "
                         f"{_reason(e)}).") from None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return " ".join(str(text).split()).rstrip(".") or type(e).__name__


def read_frames(path: str | os.PathLike, info: VideoInfo | None = None) -> Iterator[Frame]:
    """Decode a clip's frames upright (rotation metadata applied) with their timestamps, one at a time."""
    av = _av()
    info = info or probe(path)
    k = info.rotation // 90
    last_pts = None
    try:
        with av.open(os.fspath(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            step = _frame_step(s)
            for i, f in enumerate(c.decode(s)):
                pts = f.pts
                if pts is None or (last_pts is not None and pts <= last_pts):  # missing or repeated stamps
                    pts = (last_pts + step) if last_pts is not None else 0
                last_pts = pts
                img = f.to_ndarray(format="rgb24")
                yield Frame(i, pts, float(pts * s.time_base), np.ascontiguousarray(np.rot90(img, k)) if k else img,
                            f.duration or None)
    except av.FFmpegError as e:
        raise VideoError(f"{path} could not be decoded to the end (corrupt or truncated: {_reason(e)}).") from None


def _frame_step(stream) -> int:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return max(1, round(1 / (rate * stream.time_base)))


# ------------------------------------------------------------------------------------------------ writing
def check_output(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output that is the input, exists (without ``overwrite``), has an unknown extension or cannot be
    written — before any work is done."""
    av = _av()
    src, dst = Path(src), Path(dst)
    if dst.exists() and (dst.resolve() == src.resolve() or os.path.samefile(dst, src)):
        raise VideoError(f"the output {dst} is the input video; choose another output file (-o).")
    if dst.is_dir():
        raise VideoError(f"the output {dst} is a folder; give a file name such as {dst / (src.stem + '.mp4')}.")
    for target in (dst, partial_path(dst)):
        if target.exists() and not overwrite:
            raise VideoError(f"{target} already exists; pass --overwrite (overwrite=True) to replace it.")
    try:
        av.format.ContainerFormat(_format_name(dst), "w")
    except (ValueError, av.FFmpegError):
        raise VideoError(f"cannot tell the video format from the name {dst.name}; use .mp4, .mkv or .mov.") from None
    existing = next(p for p in (dst.parent, *dst.parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise VideoError(f"the output {dst} cannot be written: {existing} is not a writable folder; choose "
                         "another output (-o).")
    return dst


def partial_path(dst: str | os.PathLike) -> Path:
    """Where an interrupted run leaves the frames it finished: ``name.partial.ext`` beside the output."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.partial{dst.suffix}")


def _format_name(dst: Path) -> str:
    import av.format  # noqa: F401 - the submodule

    ext = dst.suffix.lower().lstrip(".")
    return {"mkv": "matroska", "m4v": "mp4", "mov": "mov", "mp4": "mp4", "webm": "webm", "avi": "avi"}.get(ext, ext)


class VideoWriter:
    """Encodes upright RGB frames at the input's timestamps and copies the input's audio packets alongside.

    Writes to a hidden file beside ``dst``; :meth:`close` publishes it as ``dst`` (or, ``interrupted``, as
    :func:`partial_path`); :meth:`abort` removes it.
    """

    def __init__(self, dst: Path, info: VideoInfo, *, codec: str = DEFAULT_CODEC, crf: int | None = DEFAULT_CRF,
                 preset: str | None = DEFAULT_PRESET, copy_audio: bool = True, overwrite: bool = False):
        av = _av()
        self.dst, self.info, self.overwrite = Path(dst), info, overwrite
        self.tmp = self.dst.with_name(f".{self.dst.name}.{os.getpid()}.tmp{self.dst.suffix}")
        self.frames = 0
        self._durations: dict[Fraction, Fraction] = {}
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.out = av.open(os.fspath(self.tmp), "w", format=_format_name(self.dst))
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"the output {dst} cannot be written: {_reason(e)}.") from None
        try:
            self._video = self._add_video(codec, crf, preset)
            self._audio_in = self._audio = self._packets = None
            if copy_audio and info.has_audio:
                self._audio_in = av.open(os.fspath(info.path))
                ain = self._audio_in.streams.audio[0]
                self._audio = self.out.add_stream_from_template(ain)
                self._packets = self._audio_in.demux(ain)
                self._pending = None
            self.out.start_encoding()
        except BaseException as e:
            self.abort()
            if isinstance(e, (av.FFmpegError, ValueError)):
                raise VideoError(f"cannot write {self.dst.name} with the codec {codec}: {_reason(e)}.") from None
            raise

    def _add_video(self, codec: str, crf: int | None, preset: str | None):
        av = _av()
        try:
            c = av.Codec(codec, "w")
        except (av.FFmpegError, ValueError):
            raise VideoError(f"the codec {codec} is not available; try libx264, libx265, libvpx-vp9 or ffv1.") \
                from None
        if c.type != "video":
            raise VideoError(f"{codec} is not a video codec; try libx264.")
        info = self.info
        s = self.out.add_stream(codec, rate=info.average_rate or Fraction(25))
        s.width, s.height = info.width, info.height
        formats = [f.name for f in (c.video_formats or ())]
        even = info.width % 2 == 0 and info.height % 2 == 0
        for fmt in (["yuv420p"] if even else []) + ["yuv444p", "gbrp", "bgr0", "rgb24"]:
            if not formats or fmt in formats:
                s.pix_fmt = fmt
                break
        else:
            s.pix_fmt = formats[0]
        s.codec_context.time_base = info.time_base
        options = {}
        if crf is not None and codec in CRF_CODECS:
            options["crf"] = str(crf)
            if codec.startswith("libvpx"):
                options["b"] = "0"
        if preset and codec in ("libx264", "libx264rgb", "libx265"):
            options["preset"] = preset
        s.options = options
        return s

    def write(self, frame: Frame) -> None:
        av = _av()
        vf = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        vf.pts, vf.time_base = frame.pts, self.info.time_base
        tb = self.info.time_base
        if frame.duration:
            vf.duration = frame.duration
            self._durations[frame.pts * tb] = frame.duration * tb  # the encoder may not pass it on
        try:
            for p in self._video.encode(vf):
                self._mux_audio_until(float(p.pts * p.time_base) if p.pts is not None else frame.time)
                self._mux_video(p)
        except av.FFmpegError as e:
            raise VideoError(f"writing {self.dst.name} failed: {_reason(e)}.") from None
        except OSError as e:
            raise VideoError(f"writing {self.dst} failed: {_reason(e)}.") from None
        self.frames += 1

    def _mux_video(self, p) -> None:
        d = self._durations.pop(p.pts * p.time_base, None) if p.pts is not None else None
        if d is not None and not p.duration:
            p.duration = round(d / p.time_base)
        self.out.mux(p)

    def _mux_audio_until(self, t: float | None) -> None:
        """Copy the audio packets up to time ``t`` (all of them with None), unchanged."""
        if self._packets is None:
            return
        while True:
            p = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if p is None:
                self._packets = None
                return
            if p.dts is None or p.size == 0:
                continue
            if t is not None and p.pts is not None and float(p.pts * p.time_base) > t + 0.5:
                self._pending = p
                return
            p.stream = self._audio
            self.out.mux(p)

    def close(self, interrupted: bool = False) -> Path | None:
        """Flush, finish the file and publish it: ``dst``, or the partial file when ``interrupted``."""
        av = _av()
        try:
            for p in self._video.encode():
                self._mux_video(p)
            if not interrupted:
                self._mux_audio_until(None)
            self.out.close()
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise VideoError(f"finishing {self.dst} failed: {_reason(e)}.") from None
        finally:
            if self._audio_in is not None:
                self._audio_in.close()
        if self.frames == 0:
            self.abort()
            return None
        target = partial_path(self.dst) if interrupted else self.dst
        os.replace(self.tmp, target)  # check_output refused an existing target without overwrite
        return target

    def abort(self) -> None:
        for c in (getattr(self, "out", None), getattr(self, "_audio_in", None)):
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001 - closing a broken container; the file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)


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
