"""The Video tab's handler: :class:`VideoHandler`, a mixin of :class:`~dualstylegan.web.app.StyleApp`.

A short clip is stylised by :func:`dualstylegan.video.stylize_video` with a code-bank exemplar (its style id), every
face of every frame, the sound kept. Everything the app limits is checked before any work: the upload's size
(``max_upload_mb``), its length (``max_video_seconds``) and frame size (``max_video_pixels``); the result goes to the
app's :class:`~dualstylegan.web.files.ResultFiles`, removed like every other result.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import WebError

#: The clip limits of the web app, by default: 10 seconds, 1920×1080 (Full HD).
MAX_VIDEO_SECONDS = 10.0
MAX_VIDEO_PIXELS = 1920 * 1080
#: The "portrait size" choices: the generator stops at 256² or 512² (faster), or runs to its full size.
PORTRAIT_SIZES = ("256", "512", "full")
DEFAULT_PORTRAIT_SIZE = "256"


def _quiet(*args, **kwargs) -> None:
    """The progress callback of a handler called without one."""


def video_unavailable() -> str:
    """Why this server cannot stylise videos (PyAV is missing), or '' when it can."""
    try:
        import av  # noqa: F401
    except ImportError:
        return "Videos need PyAV, which this server does not have: pip install 'dualstylegan[video]'."
    return ""


def portrait_size(choice, generator_size: int) -> int | None:
    """The generator's output size for a "portrait size" choice ('256', '512', 'full'); None: its full size."""
    choice = str(choice or "full").strip().lower()
    if choice not in PORTRAIT_SIZES:
        raise WebError(f"the portrait size must be one of {', '.join(PORTRAIT_SIZES)}, got {choice!r}")
    if choice == "full" or int(choice) >= generator_size:
        return None
    return int(choice)


def clip_seconds(info) -> float | None:
    """The clip's length in seconds as its container says, else from its frame count and rate; None if unknown."""
    if info.duration:
        return float(info.duration)
    if info.frames and info.average_rate:
        return float(info.frames / info.average_rate)
    return None


class VideoHandler:
    """The Video tab (a mixin: ``self`` is a :class:`~dualstylegan.web.app.StyleApp`, which has ``pipelines``,
    ``outputs``, ``max_upload_mb``, ``max_video_seconds`` and ``max_video_pixels``)."""

    def check_clip(self, clip: str | None):
        """The upload's :class:`~dualstylegan.video.VideoInfo` when it is within the limits; else one sentence why
        not (the upload named by its file name, never by where the server keeps it)."""
        from ..errors import is_user_error
        from ..video import probe
        from .messages import say

        if not clip:
            raise WebError("upload a video clip first")
        try:
            size = os.stat(clip).st_size
        except OSError:
            raise WebError("the video upload is gone; upload it again") from None
        if size > self.max_upload_mb * 2**20:
            raise WebError(f"the video is {size / 2**20:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        name = Path(clip).name
        try:
            info = probe(clip)
        except Exception as e:  # a user error names the upload; a bug goes on up
            if not is_user_error(e):
                raise
            text = say(e).replace(str(clip), name)
            raise WebError(f"the video: {text[:1].lower()}{text[1:]}") from e
        if info.width * info.height > self.max_video_pixels:
            raise WebError(f"the video {name} is {info.width}×{info.height} pixels, more than the limit of "
                           f"{int(self.max_video_pixels):,} pixels a frame; scale it down first")
        seconds = clip_seconds(info)
        if seconds is None:
            raise WebError(f"the video {name} does not say how long it is; re-encode it, e.g. ffmpeg -i IN OUT.mp4")
        if seconds > self.max_video_seconds + 0.05:  # a container's rounding, not a longer clip
            raise WebError(f"the video {name} is {seconds:.1f} s long; the limit is {self.max_video_seconds:g} s "
                           "(cut it first)")
        return info

    def video(self, name: str, clip: str | None, style_id, size_choice=DEFAULT_PORTRAIT_SIZE,
              progress: Callable[..., Any] = _quiet, **options) -> tuple[str, str]:
        """The Video tab: every face of the clip stylised with code-bank exemplar ``style_id`` (portraits of
        ``size_choice``: '256', '512' or 'full'). Returns (the MP4's path, an info sentence). ``options`` go to
        :func:`dualstylegan.video.stylize_video` (e.g. ``faces``, ``tracker``)."""
        from ..outputs import exemplar_tag
        from ..video import stylize_video

        t0 = time.perf_counter()
        progress(0.0, desc="checking the video")
        info = self.check_clip(clip)
        pipe = self.pipelines.get(name)
        if pipe.codes is None:
            raise WebError("this style pack has no code bank; the Video tab takes an exemplar by its style id")
        if style_id is None or style_id == "":
            raise WebError("choose an exemplar in the gallery or type its style id")
        style_id = int(style_id)
        tag = exemplar_tag(style_id, pipe.codes)  # an id out of range: the code bank's sentence
        size = portrait_size(size_choice, pipe.generator.size)
        total = info.frames or max(1, round(clip_seconds(info) * float(info.average_rate or 25)))
        dst = self.outputs.path(f"{Path(str(clip)).stem}_{pipe.style or 'style'}_{tag}.mp4")

        def report(stats, _info):
            progress((min(stats.frames, total), total), desc="stylising the frames", unit="frames")

        progress((0, total), desc="stylising the frames", unit="frames")
        result = stylize_video(pipe, clip, dst, style_id, overwrite=False, progress=report,
                               max_pixels=int(self.max_video_pixels), portrait_size=size, **options)
        if result.interrupted or result.path is None:
            raise WebError("the video was interrupted; run it again")
        s = result.stats
        info_text = (f"{name}, exemplar {style_id} ({pipe.codes.name_of(style_id)}); {s.frames} frames of "
                     f"{info.width}×{info.height}, {s.faces} faces in {s.tracks} track{'' if s.tracks == 1 else 's'}; portraits "
                     f"{size or pipe.generator.size}²{', with its sound' if info.has_audio else ''}; "
                     f"{time.perf_counter() - t0:.1f} s")
        return str(result.path), info_text


__all__ = ["DEFAULT_PORTRAIT_SIZE", "MAX_VIDEO_PIXELS", "MAX_VIDEO_SECONDS", "PORTRAIT_SIZES", "VideoHandler",
           "clip_seconds", "portrait_size", "video_unavailable"]
