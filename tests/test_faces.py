"""dualstylegan.faces: dlib landmarks, the FFHQ alignment recipe (``align_all_parallel.py``), the face the pipeline
sees (prepare_face) and pasting a face back."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from conftest import needs_dlib

from dualstylegan import faces


def needs_scipy():
    pytest.importorskip("scipy", reason="alignment needs the 'faces' extra")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def aligned(astronaut):
    needs_dlib()
    return {size: faces.align(astronaut, output_size=size)[0] for size in (256, 1024)}


def crop_coords(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Where points of the original land in the aligned crop (the quad is a square: the map is affine)."""
    a = np.stack([(quad[3] - quad[0]) / size, (quad[1] - quad[0]) / size], 1)
    return np.linalg.solve(a, (points - quad[0]).T).T


def eyes_and_mouth(lm: np.ndarray):
    return lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2


def textured(w: int, h: int, seed: int = 0, cells: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (max(2, h * cells // w), cells, 3), dtype=np.uint8))
    return low.resize((w, h), Image.BICUBIC)


def synthetic_landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54] = eye_left, eye_right, mouth_left, mouth_right
    return lm


# ------------------------------------------------------------------------------------------------ geometry (no dlib)
def test_ffhq_quad_geometry():
    lm = synthetic_landmarks((100, 100), (160, 100), (105, 170), (155, 170))
    q = faces.ffhq_quad(lm)
    # eye_to_eye = (60, 0), eye_to_mouth = (0, 70): |x| = max(120, 126) = 126, c = (130, 107)
    np.testing.assert_allclose(q, [[4, -19], [4, 233], [256, 233], [256, -19]])
    with pytest.raises(ValueError):
        faces.ffhq_quad(np.zeros((5, 2)))


@pytest.mark.parametrize("output_size, transform_size, image_size", [
    (256, None, (400, 300)),  # no shrink, the quad leaves the photo: reflect padding
    (128, None, (2000, 1400)),  # shrink by 6 first
    (128, 512, (600, 500)),  # transform larger than the output, then reduced
])
def test_align_face_quad_is_exact(output_size, transform_size, image_size):
    """Warping the crop back through the returned quad reproduces the photo (any half-pixel slip would not)."""
    needs_scipy()
    w, h = image_size
    photo = textured(w, h, cells=80)
    s = w / 400
    lm = synthetic_landmarks(np.array((160, 120)) * s, np.array((240, 120)) * s,
                             np.array((165, 200)) * s, np.array((235, 200)) * s)
    crop, quad = faces.align_face(photo, lm, output_size=output_size, transform_size=transform_size)
    assert crop.size == (output_size, output_size) and crop.mode == "RGB"
    assert quad.shape == (4, 2)

    # the canonical FFHQ position of the eyes: centred, level, a quarter of the crop apart here (|x| = 2|e2e|)
    el, er, mouth = (crop_coords(p[None], quad, output_size)[0] / output_size for p in eyes_and_mouth(lm))
    np.testing.assert_allclose((el + er) / 2, [0.5, 0.5 - 0.1 * 80 / (2 * 180)], atol=0.01)
    assert abs(el[1] - er[1]) < 1e-6 and mouth[1] > el[1]

    inner = tuple(int(v) for v in (lm[36:48].mean(0) - 60 * s)) + tuple(int(v) for v in (lm[36:48].mean(0) + 60 * s))
    original = np.asarray(photo, dtype=float)[inner[1]:inner[3], inner[0]:inner[2]]

    def error(q):
        back = faces.paste_back(photo, crop, q, feather=1e-6)
        return np.abs(np.asarray(back, dtype=float)[inner[1]:inner[3], inner[0]:inner[2]] - original).mean()

    exact = error(quad)
    for shift in ([1, 0], [-1, 0], [0, 1], [0, -1]):  # one photo pixel off in any direction is worse
        assert exact < 0.97 * error(quad + shift)


def test_paste_back_touches_only_the_quad():
    photo = textured(300, 200, seed=3)
    quad = np.array([[100.0, 50.0], [90.0, 150.0], [190.0, 160.0], [200.0, 60.0]])
    face = Image.new("RGB", (512, 512), (255, 0, 255))
    out = faces.paste_back(photo, face, quad)
    assert out.size == photo.size and out.mode == "RGB"
    changed = np.any(np.asarray(out) != np.asarray(photo), -1)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 90 and xs.max() <= 201 and ys.min() >= 50 and ys.max() <= 161
    assert tuple(np.asarray(out)[105, 145]) == (255, 0, 255)  # the middle is the face, unblended
    assert np.asarray(photo).shape == (200, 300, 3)  # the original is not modified
    off = faces.paste_back(photo, face, quad + 1000)  # entirely outside: nothing changes
    assert np.array_equal(np.asarray(off), np.asarray(photo))


def test_face_mask():
    m = np.asarray(faces.face_mask((100, 100), feather=0.1))
    assert m[50, 50] == 255 and m[0, 0] < 10 and m[50, 0] < 20 and m[50, 12] == 255


# ------------------------------------------------------------------------------------------------ with dlib
def test_detect_landmarks(astronaut):
    needs_dlib()
    found = faces.detect_landmarks(astronaut)
    assert len(found) == 1  # her face; not the mission patch on her suit (HOG score 0.12, under the threshold)
    assert all(lm.shape == (68, 2) for lm in found)
    el, er, mouth = eyes_and_mouth(found[0])
    assert 150 < el[0] < er[0] < 300 and 80 < el[1] < 150 and mouth[1] > el[1]  # the astronaut's face


def test_large_photo_is_searched_reduced(astronaut, monkeypatch):
    needs_dlib()
    full = faces.detect_landmarks(astronaut)[0]
    monkeypatch.setattr(faces, "DETECT_MAX_SIDE", 320)  # as if the photo were larger than the limit
    reduced = faces.detect_landmarks(astronaut)
    assert len(reduced) == 1
    assert np.median(np.abs(reduced[0] - full)) < 3  # the landmarks are still found at full resolution


def test_most_confident_face_first(astronaut):
    """Faces are ranked by the detector's score, not by box size (the patch's box is as large as her face's)."""
    needs_dlib()
    small = astronaut.resize((320, 320), Image.LANCZOS)
    canvas = Image.new("RGB", (320 + 512, 512), (128, 128, 128))
    canvas.paste(small, (0, 0))
    canvas.paste(astronaut, (320, 0))
    found = faces.detect_faces(canvas)
    assert len(found) == 2  # both copies of her face, never a patch
    assert found[0].score >= found[1].score
    centres = sorted(d.landmarks[36:48].mean(0)[0] for d in found)
    assert centres[0] < 320 < centres[1]


def test_align_sizes_and_quad(aligned, astronaut):
    for size, face in aligned.items():
        assert face.image.size == (size, size) and face.image.mode == "RGB"
        assert face.landmarks.shape == (68, 2)
        assert face.quad.shape == (4, 2)
        # the quad encloses the face's landmarks in the original photo
        inside = crop_coords(face.landmarks, face.quad, size) / size
        assert inside.min() > 0 and inside.max() < 1
    np.testing.assert_allclose(aligned[256].quad, aligned[1024].quad)  # no shrink at this size


def test_eyes_land_where_ffhq_puts_them(aligned):
    face = aligned[1024]
    size = 1024
    again = faces.detect_landmarks(face.image)
    assert len(again) == 1
    el, er, mouth = (p / size for p in eyes_and_mouth(again[0]))
    mid = (el + er) / 2
    assert abs(mid[0] - 0.5) < 0.03
    assert abs(el[1] - er[1]) < 0.03
    assert 0.2 < er[0] - el[0] < 0.3  # FFHQ: about 0.25 of the width
    assert 0.43 < mid[1] < 0.5 and mouth[1] > mid[1] + 0.15
    # and where the recipe predicts from the original landmarks, mapped through the quad
    predicted = crop_coords(face.landmarks, face.quad, size)
    assert np.median(np.abs(again[0] - predicted)) < 0.01 * size


def test_align_all_faces_and_paths(astronaut, tmp_path):
    needs_dlib()
    p = tmp_path / "astronaut.png"
    astronaut.save(p)
    first = faces.align(p, output_size=64)
    every = faces.align(astronaut, output_size=64, all_faces=True)
    assert len(first) == 1 and len(every) == 1
    np.testing.assert_allclose(first[0].quad, every[0].quad)


def test_paste_back_roundtrip(aligned, astronaut):
    face = aligned[1024]
    out = faces.paste_back(astronaut, face.image, face.quad)
    assert out.size == astronaut.size
    a, b = np.asarray(out, dtype=float), np.asarray(astronaut, dtype=float)
    x0, y0 = np.floor(face.quad.min(0)).astype(int)
    x1, y1 = np.ceil(face.quad.max(0)).astype(int) + 2
    outside = np.ones(a.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.array_equal(a[outside], b[outside])
    el, er, _ = eyes_and_mouth(face.landmarks)
    cx, cy = ((el + er) / 2).astype(int)
    assert np.abs(a[cy - 40:cy + 40, cx - 40:cx + 40] - b[cy - 40:cy + 40, cx - 40:cx + 40]).mean() < 6
    inverted = Image.fromarray(255 - np.asarray(face.image))
    changed = np.abs(np.asarray(faces.paste_back(astronaut, inverted, face.quad), dtype=float) - b).mean(-1)
    assert changed[cy, cx] > 100 and not changed[outside].any()


def test_missing_dlib_says_what_to_install(monkeypatch):
    monkeypatch.setattr(faces, "_models", {})
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'dualstylegan\[faces\]'"):
        faces.detect_landmarks(Image.new("RGB", (32, 32)))


def test_blank_image_has_no_face():
    needs_dlib()
    with pytest.raises(faces.NoFaceError, match="no face"):
        faces.align(Image.new("RGB", (200, 200), (128, 128, 128)))
    assert faces.detect_landmarks(Image.new("L", (64, 64))) == []


# ------------------------------------------------------------------------------------------------ prepare_face
def test_face_size_is_the_encoders_input():
    from dualstylegan.nets.encoder import ENCODER_INPUT_SIZE

    assert faces.FACE_SIZE == ENCODER_INPUT_SIZE == 256


@pytest.mark.parametrize("size, box", [((90, 60), (15, 0, 75, 60)), ((40, 70), (0, 15, 40, 55)),
                                       ((256, 256), (0, 0, 256, 256))])
def test_unaligned_photo_is_its_centred_square(size, box):
    """align=False: the largest centred square, resized to FACE_SIZE², never squashed; its quad is that square."""
    photo = textured(*size)
    [face] = faces.prepare_face(photo, align=False)
    expect = photo.crop(box)
    expect = expect if expect.size == (256, 256) else expect.resize((256, 256), Image.LANCZOS)
    assert face.image.size == (256, 256) and np.array_equal(np.asarray(face.image), np.asarray(expect))
    left, top, right, bottom = box
    np.testing.assert_allclose(face.quad, np.array([[left, top], [left, bottom], [right, bottom], [right, top]]) - 0.5)
    # paste_back through that quad puts the (same-size) square back exactly, and nothing else changes
    square = photo.crop(box)
    back = faces.paste_back(Image.new("RGB", size), square, faces.center_quad(size), feather=0)
    assert np.array_equal(np.asarray(back)[top:bottom, left:right], np.asarray(square))
    assert not np.asarray(back)[:, :left].any() and not np.asarray(back)[:top].any()


def test_prepare_face_reads_files_and_uprights_pil_images(tmp_path):
    photo = textured(90, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    photo.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    from_file = faces.prepare_face(tmp_path / "phone.jpg", align=False)[0].image
    with Image.open(tmp_path / "phone.jpg") as im:
        from_pil = faces.prepare_face(im, align=False)[0].image  # the tag applies to a PIL image too
    assert np.array_equal(np.asarray(from_file), np.asarray(from_pil))


def test_aligned_faces_are_aligns(astronaut):
    needs_dlib()
    prepared = faces.prepare_face(astronaut, align=True, all_faces=True)
    aligned = faces.align(astronaut, all_faces=True)
    assert len(prepared) == len(aligned) == 1
    for p, a in zip(prepared, aligned):
        assert p.image.size == (256, 256) and np.array_equal(np.asarray(p.image), np.asarray(a.image))
        np.testing.assert_array_equal(p.quad, a.quad)
    assert len(faces.prepare_face(astronaut, align=True)) == 1


def test_no_face_names_the_file(tmp_path):
    needs_dlib()
    wall = tmp_path / "wall.png"
    Image.new("RGB", (120, 120), (128, 128, 128)).save(wall)
    with pytest.raises(faces.NoFaceError, match=f"no face was found in {wall}; .*{faces.SKIP_ALIGNMENT}"):
        faces.prepare_face(wall)
    with pytest.raises(faces.NoFaceError, match="no face was found in the photo"):
        faces.prepare_face(Image.open(wall))


def test_missing_extra_is_the_users_error():
    from dualstylegan.errors import is_user_error

    e = faces.MissingExtraError("x")
    assert isinstance(e, ImportError) and is_user_error(e)


# ------------------------------------------------------------------------------------------------ real photographs
DATA = __import__("pathlib").Path(__file__).parent / "data"
PORTRAITS = ["obama.jpg", "biden.jpg", "32bit.png", "astronaut"]


def photo(name: str) -> Image.Image:
    if name in ("astronaut", "coffee", "rocket"):
        data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
        return Image.fromarray(getattr(data, name)())
    with Image.open(DATA / name) as im:
        return im.convert("RGB")


def scaled(img: Image.Image, side: int) -> Image.Image:
    s = side / max(img.size)
    return img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)


def head_region(name: str) -> tuple[float, float]:
    """(top, bottom) of where the face's eyes lie, as fractions of the photo's height (read off the photographs)."""
    return {"astronaut": (0.15, 0.35), "obama.jpg": (0.1, 0.3), "biden.jpg": (0.05, 0.25),
            "32bit.png": (0.2, 0.4)}[name]


@pytest.mark.parametrize("side", [256, 512, 1024, 2000])
@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_per_portrait_at_every_scale(name, side):
    """Exactly one face on each single portrait, at 256–2000 px; on the astronaut never the mission patch
    (dlib's HOG scored it 0.12–0.175 beside her face's 1.0–1.5, and ranking by box size chose it)."""
    needs_dlib()
    img = scaled(photo(name), side)
    found = faces.detect_faces(img)
    assert len(found) == 1, [(d.score, d.box) for d in found]
    eyes_y = found[0].landmarks[36:48, 1].mean() / img.height
    top, bottom = head_region(name)
    assert top < eyes_y < bottom
    assert found[0].score >= faces.DEFAULT_THRESHOLDS["hog"]


def test_the_patch_is_below_the_threshold():
    """The threshold is exposed: lowered below the patch's score, the patch is found too."""
    needs_dlib()
    img = photo("astronaut")
    assert len(faces.detect_faces(img)) == 1
    found = faces.detect_faces(img, threshold=0.0)
    assert len(found) == 2 and found[1].score < faces.DEFAULT_THRESHOLDS["hog"] <= found[0].score
    assert found[1].landmarks[36:48, 1].mean() > 0.5 * img.height  # on her shoulder
    with pytest.raises(faces.NoFaceError):
        faces.align(img, threshold=5.0)


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_no_face_in_photos_without_people(name):
    needs_dlib()
    for side in (512, 1024):
        with pytest.raises(faces.NoFaceError, match="no face was found"):
            faces.prepare_face(scaled(photo(name), side))


@pytest.mark.parametrize("angle", [-25, 20, 35])
def test_tilted_heads_come_out_level(angle):
    """A tilted head is rotated upright: in the aligned crop the eyes are level and where FFHQ puts them."""
    needs_dlib()
    img = scaled(photo("obama.jpg"), 700).rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(90, 90, 90))
    [face] = faces.align(img, output_size=512)
    [again] = faces.detect_landmarks(face.image)
    el, er, mouth = (p / 512 for p in eyes_and_mouth(again))
    assert abs(el[1] - er[1]) < 0.02  # level
    assert abs((el[0] + er[0]) / 2 - 0.5) < 0.03 and 0.4 < (el[1] + er[1]) / 2 < 0.52
    assert mouth[1] > el[1] + 0.1


def test_partial_face_is_aligned_sensibly():
    """A face cut by the photo's edge (its jaw outside) is aligned: the FFHQ recipe reflect-pads the missing part."""
    needs_dlib()
    img = photo("obama_partial_face.jpg")
    [d] = faces.detect_faces(img)
    assert d.box[0] < 0 and not faces.cut_off(d.landmarks, img.size)
    [face] = faces.align(img, output_size=512)
    [again] = faces.detect_landmarks(face.image)
    el, er, _ = (p / 512 for p in eyes_and_mouth(again))
    assert abs(el[1] - er[1]) < 0.03 and abs((el[0] + er[0]) / 2 - 0.5) < 0.04


def test_face_whose_eyes_are_outside_is_refused_in_one_sentence(monkeypatch):
    """A detection whose eye lies beyond the photo's edge cannot be aligned sensibly: refused in one sentence."""
    img = textured(200, 200)
    lm = synthetic_landmarks((-12, 80), (40, 80), (-5, 140), (35, 140))  # the left eye outside the photo
    assert faces.cut_off(lm, img.size) and not faces.cut_off(lm + [30, 0], img.size)
    monkeypatch.setattr(faces, "detect_faces", lambda *a, **k: [faces.Detection((-40, 40, 60, 160), 1.0, lm)])
    with pytest.raises(faces.NoFaceError) as e:
        faces.align(img, name="half.jpg")
    msg = str(e.value)
    assert "cut off" in msg and "half.jpg" in msg and msg.count(". ") == 0 and msg.endswith(".")


def test_group_photo_every_face_once():
    """Three people side by side (and one of them twice as large): every face once, none doubled."""
    needs_dlib()
    people = [scaled(photo(n), 600) for n in ("obama.jpg", "biden.jpg", "astronaut")]
    canvas = Image.new("RGB", (sum(p.width for p in people) + 40, 600), (200, 200, 200))
    x = 0
    for p in people:
        canvas.paste(p, (x, 0))
        x += p.width + 20
    aligned = faces.align(canvas, all_faces=True)
    centres = sorted(f.landmarks[36:48].mean(0)[0] for f in aligned)
    assert len(aligned) == 3
    edges = np.cumsum([0] + [p.width + 20 for p in people])
    assert all(edges[i] < centres[i] < edges[i + 1] for i in range(3))


def test_cnn_detector_finds_the_same_face():
    """dlib's CNN detector (the option; 15–30× slower on the CPU) agrees with HOG on a portrait."""
    needs_dlib()
    try:
        faces.cnn_detector_path()
    except ImportError as e:
        pytest.skip(str(e))
    img = scaled(photo("astronaut"), 400)
    [cnn] = faces.detect_faces(img, detector="cnn", upsample=0)
    [hog] = faces.detect_faces(img)
    assert cnn.score >= faces.DEFAULT_THRESHOLDS["cnn"]
    assert np.median(np.abs(cnn.landmarks - hog.landmarks)) < 4
    from dualstylegan.errors import UsageError

    with pytest.raises(UsageError, match="unknown face detector"):
        faces.detect_faces(img, detector="mtcnn")


def test_implausible_landmarks():
    ok = synthetic_landmarks((100, 100), (160, 100), (105, 170), (155, 170))
    assert faces.implausible(ok) is None and faces.implausible(ok, (60, 40, 200, 200)) is None
    assert "below" in faces.implausible(synthetic_landmarks((100, 100), (160, 100), (40, 100), (40, 110)))
    flipped = synthetic_landmarks((160, 100), (100, 100), (105, 170), (155, 170))  # mirrored: mouth "above"
    assert faces.implausible(flipped) is not None
    assert "small" in faces.implausible(synthetic_landmarks((100, 100), (102, 100), (100, 103), (102, 103)))
    assert "box" in faces.implausible(ok, (400, 400, 500, 500))
    assert faces.implausible(np.full((68, 2), np.nan)) is not None


def test_exemplar_without_a_face_is_centre_cropped_with_a_notice():
    """Any exemplar: aligned when it has a face, else its centred square (never squashed), with one line saying so."""
    needs_dlib()
    coffee = photo("coffee")
    ex = faces.prepare_exemplar(coffee, name="coffee.png")
    assert not ex.aligned and ex.notice.startswith("coffee.png: no face was found") and "\n" not in ex.notice
    assert np.array_equal(np.asarray(ex.face.image), np.asarray(faces.prepare_face(coffee, align=False)[0].image))
    face = faces.prepare_exemplar(photo("astronaut"))
    assert face.aligned and face.notice is None
    assert np.array_equal(np.asarray(face.face.image), np.asarray(faces.prepare_face(photo("astronaut"))[0].image))


def test_exemplar_without_dlib_is_centre_cropped(monkeypatch):
    monkeypatch.setattr(faces, "_models", {})
    monkeypatch.setitem(sys.modules, "dlib", None)
    ex = faces.prepare_exemplar(textured(90, 60))
    assert not ex.aligned and "pip install" in ex.notice and ex.face.image.size == (256, 256)
