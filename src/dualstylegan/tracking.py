"""Face tracks across video frames: detect, follow, smooth (beyond the paper: its code handles still photos).

Each face in a clip becomes a :class:`Track` with a fixed id. dlib's detector
(:func:`dualstylegan.faces.detect_landmarks`) runs on the first frame, every ``detect_every`` frames (to pick up
faces entering later) and whenever a track is lost; in between, each track's 68 landmarks are re-fitted by dlib's
shape predictor inside a box placed from the track's own (smoothed) landmarks — cheap, and anchored to the image.
Detections are matched to tracks by the overlap (IoU) of their landmark boxes, each track predicted forward by its
velocity, so two faces that cross keep their ids. The landmarks that the FFHQ crop is computed from are smoothed
over time by a :class:`OneEuroFilter` (Casiez et al., CHI 2012): a low cut-off when the face is still (no jitter),
rising with its speed (no lag when it moves).

Landmarks are (68, 2) float arrays in pixel coordinates, as :func:`~dualstylegan.faces.detect_landmarks` gives them.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Landmarks = np.ndarray
#: ``detect(frame) -> [landmarks, …]``: every face in an RGB uint8 frame (H, W, 3), the largest first.
Detector = Callable[[np.ndarray], Sequence[Landmarks]]
#: ``refit(frame, box) -> landmarks``: the 68 landmarks inside ``box`` = (left, top, right, bottom).
Refitter = Callable[[np.ndarray, tuple[int, int, int, int]], Landmarks]

#: How the search box of a re-fit relates to the landmarks: a square this many times their larger extent,
#: centred on them. Measured on dlib's own detections: the re-fitted landmarks are then within ~0.2 px of the
#: detector's.
REFIT_BOX_SCALE = 1.1


# ------------------------------------------------------------------------------------------------ smoothing
@dataclass
class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) on an array that moves as one (a face's landmarks).

    The cut-off frequency is ``min_cutoff + beta · speed`` Hz, the speed being the mean landmark speed in face sizes
    per second (``scale`` is the face's size in pixels), so the same settings serve small and large faces. Times
    are in seconds; frames may come at any (variable) rate.
    """

    min_cutoff: float = 0.5
    beta: float = 4.0
    d_cutoff: float = 1.0
    _x: np.ndarray | None = field(default=None, init=False, repr=False)
    _dx: np.ndarray | None = field(default=None, init=False, repr=False)
    _t: float | None = field(default=None, init=False, repr=False)

    @staticmethod
    def alpha(dt: float, cutoff: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self.alpha(dt, self.d_cutoff) * (dx - self._dx)
        speed = float(np.linalg.norm(self._dx.reshape(-1, self._dx.shape[-1]), axis=-1).mean()) / max(scale, 1e-6)
        self._x = self._x + self.alpha(dt, self.min_cutoff + self.beta * speed) * (x - self._x)
        self._t = t
        return self._x.copy()


# ------------------------------------------------------------------------------------------------ geometry
def face_box(lm: Landmarks) -> np.ndarray:
    """The landmarks' bounding box (left, top, right, bottom)."""
    lm = np.asarray(lm, dtype=np.float64)
    return np.concatenate([lm.min(0), lm.max(0)])


def face_scale(lm: Landmarks) -> float:
    """A face's size in pixels: the larger extent of its landmarks."""
    return float(np.ptp(np.asarray(lm, dtype=np.float64), axis=0).max())


def refit_box(lm: Landmarks, frame_shape: tuple[int, ...] | None = None) -> tuple[int, int, int, int]:
    """The square box a re-fit searches in: :data:`REFIT_BOX_SCALE` × the landmarks' extent, on their centre."""
    box = face_box(lm)
    c, half = (box[:2] + box[2:]) / 2, face_scale(lm) * REFIT_BOX_SCALE / 2
    return tuple(int(round(v)) for v in (c[0] - half, c[1] - half, c[0] + half, c[1] + half))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


# ------------------------------------------------------------------------------------------------ dlib
class DlibRefitter:
    """dlib's 68-landmark shape predictor (the file :func:`dualstylegan.faces.predictor_path` names) on a box."""

    def __init__(self):
        from .faces import MissingExtraError, predictor_path

        try:
            import dlib
        except ImportError:
            raise MissingExtraError("face tracking needs dlib: pip install 'dualstylegan[faces]'") from None
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(os.fspath(predictor_path()))
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray, box: tuple[int, int, int, int]) -> Landmarks:
        with self._lock:
            shape = self._predictor(np.ascontiguousarray(frame), self._dlib.rectangle(*box))
            return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def dlib_detector(upsample: int = 1) -> Detector:
    """:func:`dualstylegan.faces.detect_landmarks` on an RGB array."""
    from PIL import Image

    from .faces import detect_landmarks

    return lambda frame: detect_landmarks(Image.fromarray(frame), upsample=upsample)


# ------------------------------------------------------------------------------------------------ tracks
@dataclass
class Track:
    """One face followed through the clip: ``id`` never changes; ``landmarks`` are the latest fitted ones,
    ``smoothed`` the filtered ones the crop is computed from."""

    id: int
    landmarks: Landmarks
    smoothed: Landmarks
    filter: OneEuroFilter | None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    misses: int = 0  # detection rounds in a row that did not find it
    age: int = 0  # frames followed
    jump: float = 0.0  # last re-fit's distance from the prediction, in face sizes

    def predicted(self) -> Landmarks:
        """Where the landmarks should be in the next frame (constant velocity)."""
        return self.landmarks + self.velocity


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame: its track's id, its fitted landmarks and the smoothed ones to align with."""

    track_id: int
    landmarks: Landmarks
    smoothed: Landmarks


class FaceTracker:
    """Follows every face (or, with ``faces="largest"``, the largest face found first) through a clip.

    ``update(frame, t)`` takes the frames in order (RGB uint8 arrays, ``t`` in seconds) and returns the faces in
    that frame, ordered by track id. ``smoothing`` makes one :class:`OneEuroFilter` per track from these settings
    (``None``: the raw landmarks). ``detect``/``refit`` default to dlib; tests pass their own.
    """

    def __init__(self, faces: str = "all", *, detect: Detector | None = None, refit: Refitter | None = None,
                 detect_every: int = 10, max_missed: int = 3, smoothing: dict | None = None,
                 match_iou: float = 0.3):
        if faces not in ("all", "largest"):
            raise ValueError(f"faces must be 'all' or 'largest', got {faces!r}")
        self.faces = faces
        self.detect = detect if detect is not None else dlib_detector()
        self.refit = refit if refit is not None else DlibRefitter()
        self.detect_every = max(1, int(detect_every))
        self.max_missed = int(max_missed)
        self.smoothing = smoothing
        self.match_iou = match_iou
        self.tracks: list[Track] = []
        self._next_id = 0
        self._frame = 0
        self.detections = 0  # how many frames were searched for faces (for the benchmark)

    # -------------------------------------------------------------------------------- one frame
    def update(self, frame: np.ndarray, t: float) -> list[TrackedFace]:
        h, w = frame.shape[:2]
        lost = self._follow(frame, w, h)
        if lost or not self.tracks or self._frame % self.detect_every == 0:
            self._detect(frame)
        self._frame += 1
        out = []
        for tr in sorted(self.tracks, key=lambda tr: tr.id):
            scale = face_scale(tr.landmarks)
            tr.smoothed = tr.filter(tr.landmarks, t, scale) if tr.filter is not None else tr.landmarks.copy()
            out.append(TrackedFace(tr.id, tr.landmarks.copy(), tr.smoothed.copy()))
        return out

    def _follow(self, frame: np.ndarray, w: int, h: int) -> bool:
        """Re-fit every track in its predicted box; drop those that left the frame or jumped. True if any was."""
        kept, lost = [], False
        for tr in self.tracks:
            guide = tr.smoothed + tr.velocity
            new = np.asarray(self.refit(frame, refit_box(guide)), dtype=np.float64)
            old_scale, new_scale = face_scale(tr.landmarks), face_scale(new)
            centre = new.mean(0)
            jump = np.hypot(*(centre - tr.predicted().mean(0))) / max(old_scale, 1e-6)
            inside = 0 <= centre[0] < w and 0 <= centre[1] < h
            if not inside or not 0.67 < new_scale / max(old_scale, 1e-6) < 1.5 or jump > 0.5:
                lost = True
                continue
            tr.velocity = 0.5 * tr.velocity + 0.5 * (centre - tr.landmarks.mean(0))
            tr.landmarks, tr.jump = new, jump
            tr.age += 1
            kept.append(tr)
        # two tracks on one face (one face passed in front of the other): keep the one that moved as predicted
        drop = set()
        for i, a in enumerate(kept):
            for b in kept[i + 1:]:
                if iou(face_box(a.landmarks), face_box(b.landmarks)) > 0.5:
                    drop.add(max((a, b), key=lambda tr: tr.jump).id)
        if drop:
            lost = True
        self.tracks = [tr for tr in kept if tr.id not in drop]
        return lost

    def _detect(self, frame: np.ndarray) -> None:
        """Search the whole frame; confirm the tracks found again, start tracks for new faces, drop the missing."""
        self.detections += 1
        found = [np.asarray(lm, dtype=np.float64) for lm in self.detect(frame)]
        boxes = [face_box(lm) for lm in found]
        pairs = sorted(((iou(face_box(tr.landmarks), b), i, j) for i, tr in enumerate(self.tracks)
                        for j, b in enumerate(boxes)), reverse=True)
        used_t, used_d = set(), set()
        for overlap, i, j in pairs:
            if overlap < self.match_iou or i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            self.tracks[i].misses = 0
        for i, tr in enumerate(self.tracks):
            if i not in used_t:
                tr.misses += 1
        self.tracks = [tr for tr in self.tracks if tr.misses <= self.max_missed]
        for j, lm in enumerate(found):
            if j in used_d or any(iou(face_box(tr.landmarks), boxes[j]) > 0.1 for tr in self.tracks):
                continue
            if self.faces == "largest" and self.tracks:
                break
            self.tracks.append(Track(self._next_id, lm, lm.copy(),
                                     OneEuroFilter(**self.smoothing) if self.smoothing is not None else None))
            self._next_id += 1


__all__ = ["REFIT_BOX_SCALE", "DlibRefitter", "FaceTracker", "OneEuroFilter", "Track", "TrackedFace", "dlib_detector",
           "face_box", "face_scale", "iou", "refit_box"]
