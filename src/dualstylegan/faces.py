"""Face detection (dlib, 68 landmarks), FFHQ alignment, the face a front end hands the pipeline, and paste-back.

The networks see faces cropped and rotated exactly like FFHQ: :func:`align_face` is the FFHQ
``recreate_aligned_images`` recipe that the reference's ``model/encoder/align_all_parallel.py`` runs at 256²
(FFHQ itself used 1024² through a 4096² transform). :func:`prepare_face` is the one way a photo becomes the
:data:`FACE_SIZE`² face the pipeline encodes, for the CLI, the web app and :func:`dualstylegan.batch.stylize_files`.
dlib and its landmark model come from the optional extra ``dualstylegan[faces]`` (``dlib-bin``,
``face_recognition_models``, ``scipy``) and are imported on first use.

Coordinates are pixel coordinates as dlib gives them (pixel centres at integers, x right, y down).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import SKIP_ALIGNMENT, DualStyleGANError
from .defaults import ENCODER_INPUT_SIZE

#: The side of the face crops the pipeline encodes: the pSp encoder's input (``style_transfer.py`` aligns at 256²).
FACE_SIZE = ENCODER_INPUT_SIZE
#: Images are searched for faces at most this large (longest side); a larger photo is detected on a reduced copy
#: and its landmarks are then found at full resolution. Up to this size detection is the reference's.
DETECT_MAX_SIDE = 1024
#: The words of :class:`NoFaceError` / :class:`MissingExtraError` that say how to do without alignment; a front end
#: replaces them with its own control ("pass --no-align", "untick 'Align the face'").
_INSTALL_HINT = ("face alignment needs dlib and its landmark model: pip install 'dualstylegan[faces]' "
                 f"(or {SKIP_ALIGNMENT} for photos that are already aligned face crops)")

# dlib's 68-point layout (iBUG 300-W)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


class NoFaceError(DualStyleGANError, ValueError):
    """No face was found where one was needed; the message is one sentence."""


class MissingExtraError(DualStyleGANError, ImportError):
    """dlib, its landmark model or scipy is not installed: the user's to fix (``pip install 'dualstylegan[faces]'``)."""


@dataclass(frozen=True)
class AlignedFace:
    """One FFHQ-aligned face: the square crop, its quad in the original photo and dlib's landmarks there.

    ``quad`` (4, 2) is where the crop's corners — top-left, bottom-left, bottom-right, top-right — lie in the
    original photo; :func:`paste_back` uses it to put a (stylised) crop back.
    """

    image: Image.Image
    quad: np.ndarray
    landmarks: np.ndarray


# ------------------------------------------------------------------------------------------------ models
_lock = threading.Lock()
_models: dict[str, object] = {}

#: The face detectors: dlib's HOG + linear SVM frontal face detector (the reference's ``align_all_parallel.py``) and
#: dlib's CNN ``mmod_human_face_detector.dat`` (max-margin object detection), shipped by ``face_recognition_models``.
DETECTORS = ("hog", "cnn")
#: HOG is the default: on the test photographs (tests/data, the astronaut at 256–2000 px, coffee, rocket) both find
#: exactly the faces once a score threshold is applied, and HOG takes 40–80 ms at 512 px and 0.15–0.7 s at
#: 1024 px on 2 CPU cores where the CNN takes 0.6–1.6 s and 3–14 s (measured for issue 15).
DEFAULT_DETECTOR = "hog"
#: The score a detection needs, per detector. HOG's SVM margin is 0.87–2.3 for every face of the test photographs
#: and at most 0.175 for the astronaut's mission patch at any scale (issue 15); the CNN's confidence is ≥ 0.99 for
#: faces and found nothing else. 0.4 and 0.5 sit between.
DEFAULT_THRESHOLDS = {"hog": 0.4, "cnn": 0.5}
#: The image upsampling of each detector: HOG once (the reference's), the CNN not at all (each doubling is 4× the
#: time; it finds faces from about 80 px without).
DEFAULT_UPSAMPLE = {"hog": 1, "cnn": 0}
#: Faces whose eyes are closer than this (pixels) are too small to align into a useful crop.
MIN_EYE_DISTANCE = 6.0


def _model_file(name: str) -> Path:
    """A model file of ``face_recognition_models``, found without importing the package (its ``__init__`` needs
    pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(_INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise MissingExtraError(f"face_recognition_models has no {name}; {_INSTALL_HINT}")


def predictor_path() -> Path:
    """The path of dlib's ``shape_predictor_68_face_landmarks.dat`` shipped by ``face_recognition_models``."""
    return _model_file("shape_predictor_68_face_landmarks.dat")


def cnn_detector_path() -> Path:
    """The path of dlib's CNN face detector ``mmod_human_face_detector.dat`` shipped by ``face_recognition_models``."""
    return _model_file("mmod_human_face_detector.dat")


def _check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        from .errors import UsageError

        raise UsageError(f"unknown face detector {detector!r}: choose {' or '.join(DETECTORS)}")
    return detector


def _load_models(detector: str = DEFAULT_DETECTOR):
    """(dlib, the face detector, the 68-landmark shape predictor, lock), each loaded once per process."""
    with _lock:
        if detector not in _models:
            try:
                import dlib
            except ImportError:
                raise MissingExtraError(_INSTALL_HINT) from None
            _models.setdefault("dlib", dlib)
            if "predictor" not in _models:
                _models["predictor"] = (dlib.shape_predictor(os.fspath(predictor_path())), threading.Lock())
            _models[detector] = (dlib.get_frontal_face_detector() if detector == "hog"
                                 else dlib.cnn_face_detection_model_v1(os.fspath(cnn_detector_path())))
        predictor, lock = _models["predictor"]
        return _models["dlib"], _models[detector], predictor, lock


# ------------------------------------------------------------------------------------------------ detection
@dataclass(frozen=True)
class Detection:
    """One face found in a photo: ``box`` (left, top, right, bottom) in the photo's pixels, the detector's ``score``
    (HOG: the SVM margin; CNN: its confidence) and dlib's 68 ``landmarks`` (68, 2) there."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray


def implausible(landmarks: np.ndarray, box: tuple[int, int, int, int] | None = None) -> str | None:
    """Why 68 landmarks are not a face that can be aligned, in a few words; None when they are plausible.

    dlib's shape predictor always returns 68 points, also for a box around something that is not a face. A face's
    eyes are apart (:data:`MIN_EYE_DISTANCE`), the left eye left of the right one seen from the mouth, the mouth
    about one eye distance below the eyes (0.5–2×) and roughly at right angles to the eye line (±40°), and the
    landmarks sit in the detector's box (their centre inside it, enlarged by a quarter).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        return "the landmarks are not 68 finite points"
    eye_left, eye_right = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    mouth = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) * 0.5
    eye_to_eye, eye_to_mouth = eye_right - eye_left, mouth - (eye_left + eye_right) * 0.5
    d, m = np.hypot(*eye_to_eye), np.hypot(*eye_to_mouth)
    if d < MIN_EYE_DISTANCE:
        return f"the eyes are {d:.0f} px apart (too small to align)"
    if not 0.5 <= m / d <= 2.0:
        return "the mouth is not about one eye distance below the eyes"
    sine = (eye_to_eye[0] * eye_to_mouth[1] - eye_to_eye[1] * eye_to_mouth[0]) / (d * m)  # y points down
    if sine < np.cos(np.radians(40)):
        return "the mouth is not below the eye line"
    if box is not None:
        left, top, right, bottom = box
        grow_x, grow_y = (right - left) / 4, (bottom - top) / 4
        cx, cy = lm.mean(0)
        if not (left - grow_x <= cx <= right + grow_x and top - grow_y <= cy <= bottom + grow_y):
            return "the landmarks lie outside the face's box"
    return None


def cut_off(landmarks: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether the eyes or the mouth of a face lie outside a photo of ``size`` (a jaw cut by the edge is fine: the
    FFHQ recipe reflect-pads it)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    key = np.concatenate([lm[LEFT_EYE], lm[RIGHT_EYE], lm[MOUTH_LEFT:MOUTH_RIGHT + 1]])
    w, h = size
    return bool((key[:, 0] < -0.5).any() or (key[:, 1] < -0.5).any() or (key[:, 0] > w - 0.5).any()
                or (key[:, 1] > h - 0.5).any())


def detect_faces(img: Image.Image, *, detector: str = DEFAULT_DETECTOR, threshold: float | None = None,
                 upsample: int | None = None) -> list[Detection]:
    """Every plausible face in ``img``, the most confident first; [] when none.

    ``detector`` is ``"hog"`` (dlib's frontal face detector, the reference's) or ``"cnn"`` (dlib's
    ``mmod_human_face_detector.dat``); a detection counts when its score reaches ``threshold`` (default
    :data:`DEFAULT_THRESHOLDS`) and its landmarks are a plausible face (:func:`implausible`). The image is upsampled
    ``upsample`` times (default :data:`DEFAULT_UPSAMPLE`); a photo larger than :data:`DETECT_MAX_SIDE` is searched
    on a reduced copy, the landmarks always found on the full one.
    """
    dlib, find, predictor, lock = _load_models(_check_detector(detector))
    threshold = DEFAULT_THRESHOLDS[detector] if threshold is None else float(threshold)
    upsample = DEFAULT_UPSAMPLE[detector] if upsample is None else int(upsample)
    rgb = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    h, w = rgb.shape[:2]
    small = rgb
    if max(w, h) > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.ascontiguousarray(np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS)))
    sx, sy = w / small.shape[1], h / small.shape[0]
    with lock:  # one dlib call at a time (the web app serves several requests)
        if detector == "hog":
            boxes, scores, _ = find.run(small, upsample, min(threshold, 0.0))
            found = list(zip(boxes, scores))
        else:
            found = [(d.rect, d.confidence) for d in find(small, upsample)]
        found.sort(key=lambda bs: bs[1], reverse=True)
        detections = []
        for b, score in found:
            if score < threshold:
                continue
            box = (round(b.left() * sx), round(b.top() * sy), round(b.right() * sx), round(b.bottom() * sy))
            shape = predictor(rgb, dlib.rectangle(*box))
            lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            if implausible(lm, box) is None:
                detections.append(Detection(box, float(score), lm))
    return detections


def detect_landmarks(img: Image.Image, upsample: int | None = None, *, detector: str = DEFAULT_DETECTOR,
                     threshold: float | None = None) -> list[np.ndarray]:
    """dlib's 68 landmarks (68, 2) of every plausible face in ``img``, the most confident first (:func:`detect_faces`)."""
    return [d.landmarks for d in detect_faces(img, detector=detector, threshold=threshold, upsample=upsample)]


# ------------------------------------------------------------------------------------------------ alignment
def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad (4, 2) — top-left, bottom-left, bottom-right, top-right — from 68 landmarks (``align_all_parallel.py``)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got shape {lm.shape}")
    eye_left = lm[LEFT_EYE].mean(0)
    eye_right = lm[RIGHT_EYE].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # the oriented crop rectangle
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def align_face(img: Image.Image, landmarks: np.ndarray, output_size: int = FACE_SIZE,
               transform_size: int | None = None, enable_padding: bool = True) -> tuple[Image.Image, np.ndarray]:
    """Crop, rotate and scale one face like FFHQ: ``(output_size² RGB crop, quad in img's coordinates)``.

    The FFHQ recipe step by step: shrink a large photo, crop around the quad with a border, reflect-pad where the
    quad leaves the photo (blurred and faded to the median colour toward the padded edge), warp the quad to
    ``transform_size``² (bilinear), then reduce to ``output_size``² (Lanczos). ``transform_size`` defaults to
    ``output_size`` (the reference); FFHQ used 1024 with 4096. The returned quad maps the crop's corners
    (top-left, bottom-left, bottom-right, top-right) to ``img``'s pixel coordinates exactly, shrinking included.
    """
    try:
        import scipy.ndimage
    except ImportError:
        raise MissingExtraError(_INSTALL_HINT) from None

    transform_size = output_size if transform_size is None else int(transform_size)
    img = img if img.mode == "RGB" else img.convert("RGB")
    quad = ffhq_quad(landmarks)
    qsize = np.hypot(*(quad[3] - quad[0]))  # = 2·|x|
    original_quad = quad.copy()
    width, height = img.size

    # Shrink.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
        # the warp below reads the reduced image at quad + 0.5 (pixel edges); in the original that is:
        original_quad = (quad + 0.5) * [width / rsize[0], height / rsize[1]] - 0.5

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    # Pad.
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]))
        blur = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    # Transform.
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()),
                        Image.BILINEAR)
    if output_size != transform_size:  # the recipe has transform ≥ output; a smaller transform is upsampled alike
        img = img.resize((output_size, output_size), Image.LANCZOS)
    return img, original_quad


def align(img: Image.Image | str | os.PathLike, output_size: int = FACE_SIZE, all_faces: bool = False,
          transform_size: int | None = None, *, name: str | os.PathLike | None = None,
          detector: str = DEFAULT_DETECTOR, threshold: float | None = None) -> list[AlignedFace]:
    """Detect faces (:func:`detect_faces`) and FFHQ-align them: the most confident face (or, with ``all_faces``,
    every face, most confident first).

    ``img`` is a PIL image or an image file (read with :func:`dualstylegan.images.load_image`). Raises
    :class:`NoFaceError`, naming ``name`` (default: the file, or "the photo"), when no face is found, or when the
    eyes or the mouth of every face found are outside the photo (:func:`cut_off`); with ``all_faces`` such
    partial faces are left out.
    """
    if not isinstance(img, Image.Image):
        from .images import load_image

        name = img if name is None else name
        img = load_image(img)
    img = img if img.mode == "RGB" else img.convert("RGB")
    where = "the photo" if name is None else os.fspath(name)
    found = detect_faces(img, detector=detector, threshold=threshold)
    whole = [d for d in found if not cut_off(d.landmarks, img.size)]
    if not found:
        raise NoFaceError(f"no face was found in {where}; use a photo with a clearly visible, roughly frontal face, "
                          f"or {SKIP_ALIGNMENT} if it is already an aligned face crop.")
    if not whole:
        raise NoFaceError(f"the face in {where} is cut off by the photo's edge (its eyes or mouth are outside); use "
                          f"a photo that shows the whole face, or {SKIP_ALIGNMENT} if it is already an aligned "
                          "face crop.")
    faces = []
    for d in whole if all_faces else whole[:1]:
        crop, quad = align_face(img, d.landmarks, output_size=output_size, transform_size=transform_size)
        faces.append(AlignedFace(crop, quad, d.landmarks))
    return faces


_align = align  # prepare_face's argument ``align`` hides the function


# ------------------------------------------------------------------------------------------------ the pipeline's face
@dataclass(frozen=True)
class Face:
    """A face as the pipeline sees it: ``image``, a :data:`FACE_SIZE`² RGB crop, and ``quad`` (4, 2), where the crop's
    corners (top-left, bottom-left, bottom-right, top-right) lie in the photo, for :func:`paste_back`."""

    image: Image.Image
    quad: np.ndarray


def center_quad(size: tuple[int, int]) -> np.ndarray:
    """The quad of the largest centred square of an image of ``size`` (:func:`dualstylegan.images.center_square`)."""
    w, h = size
    side = min(w, h)
    left, top = (w - side) // 2 - 0.5, (h - side) // 2 - 0.5  # pixel centres at integers: edges at ±0.5
    return np.array([[left, top], [left, top + side], [left + side, top + side], [left + side, top]], np.float64)


def prepare_face(image: Image.Image | str | os.PathLike, align: bool = True, all_faces: bool = False, *,
                 name: str | os.PathLike | None = None, detector: str = DEFAULT_DETECTOR,
                 threshold: float | None = None) -> list[Face]:
    """A photo (PIL image or file) → the face(s) the pipeline encodes, each :data:`FACE_SIZE`² with its quad.

    ``align``: the most confident face (every face, most confident first, with ``all_faces``) found by
    :func:`detect_faces` (``detector``, ``threshold``) and FFHQ-aligned like the reference's
    ``align_all_parallel.py`` (:func:`align`); :class:`NoFaceError` naming ``name`` (default: the file) when there is
    none. Without ``align`` the photo is taken as an aligned face crop: its largest centred square, resized with
    Lanczos (a square photo is only resized; ``style_transfer.py`` without ``--align_face`` would squash a
    non-square one). A PIL image is first made upright 8-bit RGB like a file (:func:`dualstylegan.images.to_rgb`).
    Both front ends and :func:`dualstylegan.batch.stylize_files` call this.
    """
    image, name = _read(image, name)
    if not align:
        return [_centre_face(image)]
    return [Face(f.image, f.quad) for f in _align(image, FACE_SIZE, all_faces, name=name, detector=detector,
                                                   threshold=threshold)]


def _read(image, name):
    from .images import load_image, to_rgb

    if isinstance(image, Image.Image):
        return to_rgb(image), name  # as load_image reads a file: upright, 8-bit RGB
    return load_image(image), (image if name is None else name)


def _centre_face(image: Image.Image) -> Face:
    from .images import center_square

    return Face(center_square(image, FACE_SIZE), center_quad(image.size))


@dataclass(frozen=True)
class Exemplar:
    """An exemplar image as the pipeline uses it: ``face`` (:data:`FACE_SIZE`² crop and its quad) and whether it was
    ``aligned`` (a face was found) or centre-cropped; ``notice`` is the one line that says so, or None."""

    face: Face
    aligned: bool
    notice: str | None = None


def prepare_exemplar(image: Image.Image | str | os.PathLike, *, name: str | os.PathLike | None = None,
                     detector: str = DEFAULT_DETECTOR, threshold: float | None = None) -> Exemplar:
    """Any exemplar image → the square the pipeline encodes: FFHQ-aligned when a face is found (as the reference
    aligns its style images, ``destylize.py``), otherwise — a painting, a cartoon dlib does not recognise — the
    largest centred square, never squashed, with a :attr:`Exemplar.notice` saying so. Independent of whether the
    photos are aligned. Without dlib installed it is centre-cropped too (with a notice)."""
    image, name = _read(image, name)
    where = "the exemplar" if name is None else os.fspath(name)
    try:
        face = _align(image, FACE_SIZE, name=name, detector=detector, threshold=threshold)[0]
    except NoFaceError:
        reason = "no face was found in it"
    except MissingExtraError:
        reason = "face alignment is not installed (pip install 'dualstylegan[faces]')"
    else:
        return Exemplar(Face(face.image, face.quad), True)
    return Exemplar(_centre_face(image), False, f"{where}: {reason}; using its centred square as it is.")


# ------------------------------------------------------------------------------------------------ paste back
def paste_back(original: Image.Image, face: Image.Image, quad: np.ndarray, feather: float = 0.08) -> Image.Image:
    """Put an aligned (e.g. stylised) face crop back where it came from: the inverse of :func:`align_face`.

    ``quad`` is :attr:`AlignedFace.quad`. The crop (any size) is warped onto its quad in ``original`` and blended
    through a mask that fades linearly to nothing over the outer ``feather`` fraction of the crop's side. Returns a
    new RGB image of ``original``'s size; pixels outside the quad are unchanged.
    """
    quad = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    base = original.convert("RGB") if original.mode != "RGB" else original.copy()
    face = face.convert("RGB") if face.mode != "RGB" else face
    side = max(np.hypot(*(quad[3] - quad[0])), np.hypot(*(quad[1] - quad[0])))
    if max(face.size) > 1.5 * side:  # reduce first (Lanczos) so the bilinear warp does not alias
        n = max(8, int(np.ceil(side)))
        face = face.resize((n, n), Image.LANCZOS)
    fw, fh = face.size

    # the region of the original the quad covers, in pixel-edge coordinates (pixel i spans [i, i+1])
    edges = quad + 0.5
    left, top = (max(0, int(np.floor(v))) for v in edges.min(0))
    right = min(base.width, int(np.ceil(edges[:, 0].max())))
    bottom = min(base.height, int(np.ceil(edges[:, 1].max())))
    if right <= left or bottom <= top:
        return base

    # homography: region coordinates → crop coordinates (for a parallelogram, the exact inverse of PIL's QUAD warp)
    corners = np.array([[0, 0], [0, fh], [fw, fh], [fw, 0]], dtype=np.float64)
    coeffs = _perspective_coeffs(edges - [left, top], corners)
    box = (right - left, bottom - top)
    warped = face.transform(box, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
    mask = face_mask((fw, fh), feather).transform(box, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
    base.paste(warped, (left, top), mask)
    return base


def face_mask(size: tuple[int, int], feather: float = 0.08) -> Image.Image:
    """An 'L' mask of ``size``: 255 inside, fading linearly to 0 over the outer ``feather`` fraction of each side."""
    w, h = size
    fx, fy = max(feather * w, 1e-6), max(feather * h, 1e-6)
    x = (np.arange(w) + 0.5)
    y = (np.arange(h) + 0.5)
    mx = np.clip(np.minimum(x, w - x) / fx, 0, 1)
    my = np.clip(np.minimum(y, h - y) / fy, 0, 1)
    return Image.fromarray(np.uint8(np.rint(np.outer(my, mx) * 255)), "L")


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients (a…h) taking points ``src`` (output image) to ``dst`` (input image)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64)).tolist())


__all__ = ["DEFAULT_DETECTOR", "DEFAULT_THRESHOLDS", "DETECTORS", "FACE_SIZE", "SKIP_ALIGNMENT", "AlignedFace",
           "Detection", "Exemplar", "Face", "MissingExtraError", "NoFaceError", "align", "align_face", "center_quad",
           "cnn_detector_path", "cut_off", "detect_faces", "detect_landmarks", "face_mask", "ffhq_quad",
           "implausible", "paste_back", "predictor_path", "prepare_exemplar", "prepare_face"]
