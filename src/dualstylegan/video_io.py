"""Reading and writing video files for :mod:`dualstylegan.video` (PyAV, whose wheel ships FFmpeg): probing a clip,
decoding upright frames with their timestamps, and writing frames plus the copied audio to a file that appears only
when complete (``<name>.partial<ext>`` after Ctrl+C or SIGTERM, nothing after any other failure).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import DualStyleGANError, UsageError

#: The largest frame accepted (3840×2160, 4K UHD, 8.3 megapixels): larger clips are refused with a sentence.
MAX_FRAME_PIXELS = 3840 * 2160
DEFAULT_CODEC = "libx264"
#: x264's constant rate factor (0 lossless … 51): 18 is visually lossless for most clips.
DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
#: Codecs that take a ``crf`` option.
CRF_CODECS = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})


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
