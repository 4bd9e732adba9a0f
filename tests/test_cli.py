"""The inference CLI (transfer / generate / blend / styles / download): the image it writes is the library's, and
every bad input is one sentence on stderr with a non-zero exit — no traceback, no output for that file."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from conftest import needs_dlib

from dualstylegan import cli
from dualstylegan.codes import CodeBank
from dualstylegan.faces import prepare_face
from dualstylegan.images import center_square, load_image, make_grid, to_image, to_tensor

STYLE = "tiny"  # the tiny pack's style name (conftest.build_tiny_pack)
W18 = [round(i / 17, 4) for i in range(18)]  # a full per-layer weight vector: always 18 long, like the paper's


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch) -> list:
    """An empty models_home() and a Hub that records any download attempt; none may happen unless a test says so."""
    monkeypatch.setenv("DUALSTYLEGAN_HOME", str(tmp_path / "home"))
    calls: list = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("no network in the tests")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", record)
    yield calls
    assert calls == [], f"unexpected Hub downloads: {calls}"


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err


def transfer(capsys, pack, *photos_and_options, out, align=False):
    extra = [] if align else ["--no-align"]
    return run(capsys, "transfer", *photos_and_options, *extra, "--style", pack, "--device", "cpu", "-o", out)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def face(img: Image.Image | Path):
    """The face the pipeline gets from a photo that is already a face crop (--no-align): faces.prepare_face."""
    return to_tensor(prepare_face(img, align=False)[0].image)


def library(pipe, img: Image.Image | Path, exemplar=1, **kw) -> np.ndarray:
    """What the library makes of a photo (already aligned): the CLI must write exactly this."""
    return pixels(to_image(pipe.transfer(face(img), exemplar, **kw).image))


def smooth_photo(path: Path, size=(64, 64), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    low.resize(size, Image.BICUBIC).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width×height (a decompression bomb that costs nothing to make)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return smooth_photo(tmp_path_factory.mktemp("photos") / "face.png")


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
    return tiny_pipeline  # StyleTransferPipeline.from_pretrained(tiny_pack, wplus=True, sampler=True)


def copy_pack(tiny_pack: Path, root: Path) -> Path:
    """A copy of the tiny style folder (files may be replaced) whose parent holds the same encoders."""
    style = root / "models" / "copied"
    style.mkdir(parents=True)
    for f in tiny_pack.iterdir():
        shutil.copy(f, style / f.name)
    for name in ("encoder.pt", "encoder_wplus.pt"):
        os.symlink(tiny_pack.parent / name, root / "models" / name)
    return style


# ------------------------------------------------------------------------------------------------ CLI image = library image
@pytest.mark.parametrize("options, kwargs", [
    ([], {}),
    (["--structure", "0.3", "--color", "0.6"], {"structure": 0.3, "color": 0.6}),
    (["--weights", *map(str, W18)], {"weights": W18}),
    (["--preserve-color"], {"preserve_color": True}),
    (["--wplus"], {"wplus": True}),
    (["--seed", "5"], {"seed": 5}),
    (["--truncation", "1.0"], {"truncation": 1.0}),
], ids=["preset", "structure-color", "weights", "preserve-color", "wplus", "seed", "truncation"])
def test_transfer_writes_the_library_image(capsys, tiny_pack, pipe, photo, tmp_path, options, kwargs):
    rc, out, err = transfer(capsys, tiny_pack, photo, "--style-id", "1", *options, out=tmp_path / "out")
    assert rc == 0 and err == ""
    assert out.strip() == f"1 file(s) written to {tmp_path / 'out'} (1 portrait)"
    assert files_in(tmp_path / "out") == [f"face_{STYLE}_001.png"]
    written = pixels(Image.open(tmp_path / "out" / f"face_{STYLE}_001.png"))
    assert written.shape == (64, 64, 3)
    np.testing.assert_array_equal(written, library(pipe, photo, 1, **kwargs))
    if options:  # the option did something: not the preset's image
        assert not np.array_equal(written, library(pipe, photo, 1))


def test_style_id_and_exemplar_image(capsys, tiny_pack, pipe, photo, tmp_path):
    rc, _, _ = transfer(capsys, tiny_pack, photo, "--style-id", "2", out=tmp_path / "a")
    assert rc == 0
    np.testing.assert_array_equal(pixels(Image.open(tmp_path / "a" / f"face_{STYLE}_002.png")),
                                  library(pipe, photo, 2))
    exemplar = smooth_photo(tmp_path / "painting.png", seed=9)
    rc, _, err = transfer(capsys, tiny_pack, photo, "--exemplar", exemplar, out=tmp_path / "b")
    # an exemplar without a face is centre-cropped, and the CLI says so in one line
    assert rc == 0 and err.startswith(f"note: {exemplar}: no face was found") and err.count("\n") == 1
    expect = library(pipe, photo, face(exemplar))
    np.testing.assert_array_equal(pixels(Image.open(tmp_path / "b" / f"face_{STYLE}_painting.png")), expect)


# ------------------------------------------------------------------------------------------------ bad files: one line each
def _missing(d: Path) -> Path:
    return d / "nobody.jpg"


def _empty(d: Path) -> Path:
    (d / "empty.jpg").write_bytes(b"")
    return d / "empty.jpg"


def _text(d: Path) -> Path:
    (d / "notes.jpg").write_text("this is not a photo\n" * 20)
    return d / "notes.jpg"


def _truncated(d: Path) -> Path:
    whole = d / "whole.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(whole, quality=95)
    (d / "half.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return d / "half.jpg"


def _bomb(d: Path) -> Path:
    return png_header_only(d / "bomb.png", 20000, 20000)


@pytest.mark.parametrize("make, words", [
    (_empty, "empty"), (_text, "not an image"), (_truncated, "truncated"),
    (_bomb, "too large"),
], ids=["0-byte", "text-renamed-jpg", "truncated-jpeg", "decompression-bomb"])
def test_bad_file_is_one_sentence(capsys, tiny_pack, tmp_path, make, words):
    bad = make(tmp_path)
    rc, out, err = transfer(capsys, tiny_pack, bad, out=tmp_path / "out")
    assert rc == 1
    line = one_line(err)
    assert line.startswith(f"skipped {bad}: ") and words in line
    assert line.count(". ") == 0  # one sentence
    assert "0 file(s) written" in out and "1 of 1 photo(s) failed" in out
    assert files_in(tmp_path / "out") == []


# ------------------------------------------------------------------------------------------------ odd but good files
def _deep(d: Path):
    a = np.asarray(Image.open(smooth_photo(d / "src.png")).convert("L"))
    Image.fromarray(a.astype(np.uint16) * 257).save(d / "deep.png")  # 16-bit, exactly a · 257
    assert Image.open(d / "deep.png").mode.startswith("I")
    return d / "deep.png", Image.fromarray(a, "L").convert("RGB")


def _cmyk(d: Path):
    rgb = Image.open(smooth_photo(d / "src.png"))
    rgb.convert("CMYK").save(d / "print.jpg", quality=95)
    with Image.open(d / "print.jpg") as im:
        assert im.mode == "CMYK"
        return d / "print.jpg", im.convert("RGB")


def _rgba(d: Path):
    rgb = np.asarray(Image.open(smooth_photo(d / "src.png")))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :20] = 0  # the left third transparent: white once composited
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(d / "alpha.png")
    expect = rgb.copy()
    expect[:, :20] = 255
    return d / "alpha.png", Image.fromarray(expect)


def _grey(d: Path):
    a = np.asarray(Image.open(smooth_photo(d / "src.png")).convert("L"))
    Image.fromarray(a, "L").save(d / "grey.png")
    return d / "grey.png", Image.fromarray(np.dstack([a] * 3))


def _exif_rotated(d: Path):
    smooth_photo(d / "src.png", size=(64, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    Image.open(d / "src.png").save(d / "phone.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(d / "phone.jpg") as im:  # as stored: 64 × 40
        stored = im.convert("RGB")
    upright = stored.transpose(Image.Transpose.ROTATE_270)  # 40 × 64, as it is meant to be seen
    return d / "phone.jpg", Image.fromarray(np.asarray(upright))  # without the file's orientation tag


def _animated(d: Path):
    frames = [Image.open(smooth_photo(d / f"f{i}.png", seed=i)).convert("RGB") for i in range(3)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(d / "anim.gif") as im:
        assert im.n_frames == 3
        return d / "anim.gif", im.convert("RGB")  # frame 0, as the GIF stores it


@pytest.mark.parametrize("make", [_deep, _cmyk, _rgba, _grey, _exif_rotated, _animated],
                         ids=["16-bit-png", "cmyk", "rgba", "greyscale", "exif-rotated", "animated-gif"])
def test_readable_odd_files_are_stylised(capsys, tiny_pack, pipe, tmp_path, make):
    path, seen = make(tmp_path)
    rc, out, err = transfer(capsys, tiny_pack, path, out=tmp_path / "out")
    assert rc == 0 and err == "" and "1 file(s) written" in out
    written = pixels(Image.open(tmp_path / "out" / f"{path.stem}_{STYLE}_000.png"))
    np.testing.assert_array_equal(written, library(pipe, seen, 0))


def test_exif_rotation_and_first_frame_matter(capsys, tiny_pack, pipe, tmp_path):
    """The two checks above can fail: the unrotated photo and the GIF's second frame give other images."""
    path, upright = _exif_rotated(tmp_path)
    assert upright.size == (40, 64) and load_image(path).size == (40, 64)
    with Image.open(path) as im:
        as_stored = Image.fromarray(np.asarray(im.convert("RGB")))  # without its orientation tag
        assert not np.array_equal(library(pipe, upright, 0), library(pipe, as_stored, 0))
    gif, first = _animated(tmp_path)
    with Image.open(gif) as im:
        im.seek(1)
        second = im.convert("RGB")
    assert not np.array_equal(library(pipe, first, 0), library(pipe, second, 0))


def test_no_face_is_one_sentence(capsys, tiny_pack, tmp_path):
    needs_dlib()
    flat = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(flat)
    rc, out, err = transfer(capsys, tiny_pack, flat, out=tmp_path / "out", align=True)
    assert rc == 1 and "1 of 1 photo(s) failed" in out
    line = one_line(err)
    assert line.startswith(f"skipped {flat}: ") and f"no face was found in {flat}" in line and "--no-align" in line
    assert files_in(tmp_path / "out") == []
    rc, out, err = transfer(capsys, tiny_pack, flat, "--exemplar", flat, out=tmp_path / "out", align=True)
    assert rc == 1 and "1 of 1 photo(s) failed" in out  # the photo needs a face; the exemplar does not
    assert err.splitlines()[0] == f"note: {flat}: no face was found in it; using its centred square as it is."
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ fatal problems
@pytest.mark.parametrize("options, words", [
    (["--style-id", "3"], "style id 3 is out of range"),
    (["--style-id", "-1"], "out of range"),
    (["--weights", *["0.5"] * 10], "needs 18 values"),  # n_latent (10) values are not enough: w is 18 long
    (["--weights", *["0.5"] * 17, "2"], "between 0 and 1"),
    (["--structure", "1.5"], "between 0 and 1"),
    (["--color", "-0.1"], "between 0 and 1"),
    (["--weights", *["0.5"] * 18, "--structure", "0.5"], "either"),
    (["--dtype", "float16"], "float16"),
    (["--exemplar", "nowhere.png"], "no such file"),
    (["--exemplar", "nowhere.png", "--style-id", "1"], "either --style-id or --exemplar"),
    (["--truncation", "nan"], "truncation must be a finite number"),
], ids=["style-id", "negative-style-id", "weights-length", "weight-value", "structure-value", "color-value",
        "weights-and-structure", "float16-on-cpu", "missing-exemplar",
        "style-id-and-exemplar", "nan-truncation"])
def test_fatal_problem_is_one_sentence(capsys, tiny_pack, photo, tmp_path, options, words):
    rc, out, err = transfer(capsys, tiny_pack, photo, *options, out=tmp_path / "out")
    assert rc == 1 and out == ""
    line = one_line(err)
    assert line.startswith("error: ") and words in line
    assert not (tmp_path / "out").exists()  # nothing written, not even an empty folder


def test_device_cuda_without_a_gpu(capsys, tiny_pack, photo, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    rc, _, err = run(capsys, "transfer", photo, "--no-align", "--style", tiny_pack, "--device", "cuda",
                     "-o", tmp_path / "out")
    assert rc == 1 and "no CUDA GPU" in one_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("offline", [True, False])
def test_unknown_style_never_touches_the_network(capsys, photo, tmp_path, offline, no_network):
    rc, _, err = run(capsys, "transfer", photo, "--no-align", "--style", "nosuchstyle", "--device", "cpu",
                     "-o", tmp_path / "out", *(["--offline"] if offline else []))
    line = one_line(err)
    assert rc == 1 and line.startswith("error: Unknown style 'nosuchstyle'") and "cartoon" in line
    assert no_network == []


def _stylegan2_file(path: Path) -> None:
    from conftest import NARROW_CHANNELS

    from dualstylegan import official
    from dualstylegan.nets.stylegan2 import Generator, GeneratorConfig

    official.save_stylegan2(path, Generator(GeneratorConfig(size=64, channels=NARROW_CHANNELS)))


@pytest.mark.parametrize("damage, words", [
    (lambda style: _stylegan2_file(style / "generator.pt"), "plain StyleGAN2 generator, not a DualStyleGAN"),
    (lambda style: shutil.copy(style.parent / "encoder.pt", style / "generator.pt"), "not a DualStyleGAN"),
    (lambda style: (style / "generator.pt").write_bytes((style / "generator.pt").read_bytes()[:100_000]),
     "truncated"),
    (lambda style: (style / "exstyle_code.npy").unlink(), "exstyle_code.npy"),
    (lambda style: CodeBank({"a.jpg": np.zeros((1, 18, 512), np.float32)}).save(style / "exstyle_code.npy"),
     "come from different models"),
], ids=["stylegan2-as-dualstylegan", "encoder-as-generator", "truncated-generator", "no-codes", "foreign-codes"])
def test_wrong_checkpoint_is_one_sentence(capsys, tiny_pack, photo, tmp_path, damage, words):
    style = copy_pack(tiny_pack, tmp_path / "pack")
    damage(style)
    rc, _, err = transfer(capsys, style, photo, out=tmp_path / "out")
    line = one_line(err)
    assert rc == 1 and line.startswith("error: ") and words in line
    assert not (tmp_path / "out").exists()


def test_unwritable_output(capsys, tiny_pack, photo, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a folder")
    rc, _, err = transfer(capsys, tiny_pack, photo, out=blocker / "out")  # its parent is a file: fails even for root
    assert rc == 1 and "cannot create the output folder" in one_line(err)
    rc, _, err = transfer(capsys, tiny_pack, photo, out=blocker)  # the output is an existing file
    assert rc == 1 and "is not a folder" in one_line(err)
    assert blocker.read_text() == "a file, not a folder"
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = transfer(capsys, tiny_pack, photo, out=locked)
        assert rc == 1 and "cannot be written" in one_line(err)
        assert files_in(locked) == []
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------------------------------------ folders, overwrite, overview
def test_folder_with_a_bad_file(capsys, tiny_pack, pipe, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    smooth_photo(photos / "a.png", seed=1)
    smooth_photo(photos / "b.png", seed=2)
    (photos / "c.jpg").write_text("not a photo")
    (photos / "readme.txt").write_text("not an image name: ignored")
    rc, out, err = transfer(capsys, tiny_pack, photos, out=tmp_path / "out")
    assert rc == 1
    assert files_in(tmp_path / "out") == [f"a_{STYLE}_000.png", f"b_{STYLE}_000.png"]
    for name in "ab":
        np.testing.assert_array_equal(pixels(Image.open(tmp_path / "out" / f"{name}_{STYLE}_000.png")),
                                      library(pipe, photos / f"{name}.png", 0))
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].startswith(f"skipped {photos / 'c.jpg'}: ")
    assert "stylising" in err and "3/3" in err  # the progress bar
    assert out.strip() == f"2 file(s) written to {tmp_path / 'out'} (2 portraits); 1 of 3 photo(s) failed"


def test_quiet_hides_the_progress_bar(capsys, tiny_pack, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    smooth_photo(photos / "a.png", seed=1)
    smooth_photo(photos / "b.png", seed=2)
    rc, out, err = transfer(capsys, tiny_pack, photos, "--quiet", out=tmp_path / "out")
    assert rc == 0 and err == "" and out.startswith("2 file(s)")


def test_same_stem_photos_do_not_collide(capsys, tiny_pack, pipe, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    smooth_photo(photos / "me.png", seed=1)
    Image.open(smooth_photo(tmp_path / "x.png", seed=2)).save(photos / "me.bmp")
    rc, _, _ = transfer(capsys, tiny_pack, photos, out=tmp_path / "out")
    assert rc == 0
    assert files_in(tmp_path / "out") == [f"me_bmp_{STYLE}_000.png", f"me_png_{STYLE}_000.png"]
    np.testing.assert_array_equal(pixels(Image.open(tmp_path / "out" / f"me_bmp_{STYLE}_000.png")),
                                  library(pipe, photos / "me.bmp", 0))


def test_a_photo_given_twice_is_stylised_once(capsys, tiny_pack, photo, tmp_path):
    rc, out, err = transfer(capsys, tiny_pack, photo, photo, out=tmp_path / "out")
    assert rc == 0 and err == "" and out.startswith("1 file(s)")
    assert files_in(tmp_path / "out") == [f"face_{STYLE}_000.png"]


def test_outputs_are_never_overwritten_without_overwrite(capsys, tiny_pack, pipe, photo, tmp_path):
    out = tmp_path / "out"
    target = out / f"face_{STYLE}_000.png"
    assert transfer(capsys, tiny_pack, photo, out=out)[0] == 0
    first = target.read_bytes()
    rc, stdout, err = transfer(capsys, tiny_pack, photo, "--seed", "7", out=out)  # another image, same name
    assert rc == 1
    line = one_line(err)
    assert line.startswith(f"skipped {photo}: ") and "already exists" in line and "--overwrite" in line
    assert target.read_bytes() == first
    assert "0 file(s) written" in stdout
    rc, _, err = transfer(capsys, tiny_pack, photo, "--seed", "7", "--overwrite", out=out)
    assert rc == 0 and err == ""
    assert target.read_bytes() != first
    np.testing.assert_array_equal(pixels(Image.open(target)), library(pipe, photo, 0, seed=7))
    assert files_in(out) == [target.name]  # no temporary files left


def test_overview(capsys, tiny_pack, pipe, photo, tmp_path):
    rc, _, err = transfer(capsys, tiny_pack, photo, "--style-id", "2", "--overview", out=tmp_path / "out")
    assert rc == 0 and err == ""
    assert files_in(tmp_path / "out") == [f"face_{STYLE}_002.png", f"face_{STYLE}_002_overview.png"]
    grid = Image.open(tmp_path / "out" / f"face_{STYLE}_002_overview.png")
    assert grid.size == (4 * 258 + 2, 258 + 2)  # content | reconstruction | exemplar | result, 256² cells
    r = pipe.transfer(face(photo), 2, reconstruct=True)
    expect = make_grid([r.content, r.reconstruction, pipe.render_exemplar(2), r.image], nrow=4, size=256)
    np.testing.assert_array_equal(pixels(grid), pixels(expect))
    result_cell = grid.crop((2 + 3 * 258, 2, 2 + 3 * 258 + 256, 258))
    np.testing.assert_array_equal(pixels(result_cell),
                                  pixels(ImageOps.contain(to_image(r.image), (256, 256), Image.LANCZOS)))


def test_paste_back_on_a_photo(capsys, tiny_pack, tmp_path):
    needs_dlib()
    data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
    original = Image.fromarray(data.astronaut())
    path = tmp_path / "astronaut.png"
    original.save(path)
    rc, _, err = transfer(capsys, tiny_pack, path, "--paste-back", out=tmp_path / "out", align=True)
    assert rc == 0 and err == ""
    assert files_in(tmp_path / "out") == [f"astronaut_{STYLE}_000.png", f"astronaut_{STYLE}_000_pasted.png"]
    assert Image.open(tmp_path / "out" / f"astronaut_{STYLE}_000.png").size == (64, 64)
    pasted = Image.open(tmp_path / "out" / f"astronaut_{STYLE}_000_pasted.png")
    assert pasted.size == original.size
    a, b = pixels(pasted).astype(int), pixels(original).astype(int)
    assert np.array_equal(a[:40, :40], b[:40, :40]) and np.array_equal(a[-40:, -40:], b[-40:, -40:])
    assert np.abs(a[100:180, 180:260] - b[100:180, 180:260]).mean() > 5  # the face is replaced


def test_no_align_takes_the_centred_square(capsys, tiny_pack, pipe, tmp_path):
    """--no-align: a non-square photo's largest centred square (faces.prepare_face), as the web app takes it."""
    wide = Image.open(smooth_photo(tmp_path / "wide.png", size=(96, 64), seed=4))
    rc, _, err = transfer(capsys, tiny_pack, tmp_path / "wide.png", out=tmp_path / "out")
    assert rc == 0 and err == ""
    written = pixels(Image.open(tmp_path / "out" / f"wide_{STYLE}_000.png"))
    square = wide.crop((16, 0, 80, 64))
    np.testing.assert_array_equal(written, library(pipe, square, 0))
    np.testing.assert_array_equal(np.asarray(prepare_face(wide, align=False)[0].image),
                                  np.asarray(center_square(square, 256)))
    assert not np.array_equal(written, library(pipe, wide.resize((64, 64)), 0))  # not squashed


def test_paste_back_without_alignment(capsys, tiny_pack, pipe, tmp_path):
    """--paste-back --no-align: the stylised centred square goes back where it was; the sides are untouched."""
    path = smooth_photo(tmp_path / "wide.png", size=(96, 64), seed=4)
    rc, _, err = transfer(capsys, tiny_pack, path, "--paste-back", out=tmp_path / "out")
    assert rc == 0 and err == ""
    assert files_in(tmp_path / "out") == [f"wide_{STYLE}_000.png", f"wide_{STYLE}_000_pasted.png"]
    pasted = pixels(Image.open(tmp_path / "out" / f"wide_{STYLE}_000_pasted.png")).astype(int)
    original = pixels(Image.open(path)).astype(int)
    assert pasted.shape == original.shape
    assert np.array_equal(pasted[:, :16], original[:, :16]) and np.array_equal(pasted[:, 80:], original[:, 80:])
    portrait = pixels(Image.open(tmp_path / "out" / f"wide_{STYLE}_000.png")).astype(int)
    assert np.abs(pasted[16:48, 32:64] - portrait[16:48, 16:48]).mean() < 3  # the middle is the portrait


def test_a_bug_is_one_line_that_points_to_debug(capsys, tiny_pack, photo, tmp_path, monkeypatch):
    """Not the user's error: the sentence and how to see the traceback, exit 1; --debug raises it."""
    from dualstylegan.pipeline import StyleTransferPipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(StyleTransferPipeline, "transfer", broken)
    rc, out, err = transfer(capsys, tiny_pack, photo, out=tmp_path / "out")
    assert rc == 1 and out == ""
    assert one_line(err) == ("error: division by zero (an unexpected ZeroDivisionError: rerun with --debug for the "
                             "traceback)")
    with pytest.raises(ZeroDivisionError):
        cli.main(["transfer", str(photo), "--no-align", "--style", str(tiny_pack), "--device", "cpu",
                  "-o", str(tmp_path / "out"), "--debug"])


# ------------------------------------------------------------------------------------------------ other verbs
def test_generate(capsys, tiny_pack, pipe, tmp_path):
    names = [f"{STYLE}_seed3_000.png", f"{STYLE}_seed3_001.png"]
    for run_dir in ("a", "b"):
        rc, out, err = run(capsys, "generate", "-n", "2", "--seed", "3", "--style", tiny_pack, "--device", "cpu",
                           "-o", tmp_path / run_dir)
        assert rc == 0 and err == "" and out.startswith("2 file(s)")
        assert files_in(tmp_path / run_dir) == names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    expect = pipe.generate(2, seed=3)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(pixels(Image.open(tmp_path / "a" / name)), pixels(to_image(expect[i])))
    assert not np.array_equal(pixels(Image.open(tmp_path / "a" / names[0])),
                              pixels(Image.open(tmp_path / "a" / names[1])))
    rc, _, err = run(capsys, "generate", "-n", "0", "--style", tiny_pack, "--device", "cpu", "-o", tmp_path / "c")
    assert rc == 1 and "at least 1" in one_line(err)
    assert not (tmp_path / "c").exists()
    before = {name: (tmp_path / "a" / name).read_bytes() for name in names}
    rc, _, err = run(capsys, "generate", "-n", "3", "--seed", "3", "--style", tiny_pack, "--device", "cpu",
                     "-o", tmp_path / "a")  # _000 and _001 exist: all or nothing, so _002 is not written either
    assert rc == 1 and "already exists" in one_line(err) and "--overwrite" in one_line(err)
    assert files_in(tmp_path / "a") == names and all((tmp_path / "a" / n).read_bytes() == b for n, b in before.items())


def test_generate_needs_a_sampler(capsys, tiny_pack, tmp_path):
    style = copy_pack(tiny_pack, tmp_path / "pack")
    (style / "sampler.pt").unlink()
    rc, _, err = run(capsys, "generate", "--style", style, "--device", "cpu", "-o", tmp_path / "out")
    assert rc == 1 and "sampler.pt" in one_line(err)
    assert not (tmp_path / "out").exists()


def test_blend(capsys, tiny_pack, pipe, photo, tmp_path):
    rc, out, err = run(capsys, "blend", photo, "--no-align", "--style-id", "0", "--style-id-b", "2", "--steps", "3",
                       "--style", tiny_pack, "--device", "cpu", "-o", tmp_path / "out")
    assert rc == 0 and err == "" and out.startswith("4 file(s) written") and "3 frames" in out
    stem = f"face_{STYLE}_000-002_blend"  # named by the exemplars: a blend of others does not collide
    assert files_in(tmp_path / "out") == [f"{stem}.gif"] + [f"{stem}_{i:03d}.png" for i in range(3)]
    expect = pipe.blend(face(photo), 0, 2, steps=3)
    for i, frame in enumerate(expect):
        np.testing.assert_array_equal(pixels(Image.open(tmp_path / "out" / f"{stem}_{i:03d}.png")),
                                      pixels(to_image(frame)))
    np.testing.assert_array_equal(pixels(Image.open(tmp_path / "out" / f"{stem}_000.png")), library(pipe, photo, 0))
    with Image.open(tmp_path / "out" / f"{stem}.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (64, 64)
    rc, _, err = run(capsys, "blend", photo, "--no-align", "--style-id-b", "5", "--style", tiny_pack,
                     "--device", "cpu", "-o", tmp_path / "bad")
    assert rc == 1 and "out of range" in one_line(err)
    rc, _, err = run(capsys, "blend", photo, "--no-align", "--steps", "1", "--style", tiny_pack,
                     "--device", "cpu", "-o", tmp_path / "bad")
    assert rc == 1 and "at least 2 steps" in one_line(err)
    assert not (tmp_path / "bad").exists()  # a failed run leaves no empty folder


def test_styles_lists_known_and_local_packs(capsys, tiny_pack, tmp_path, monkeypatch):
    from dualstylegan.styles import style_names

    probes = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: probes.append(a) and None)
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    os.symlink(tiny_pack, models / STYLE)
    os.symlink(tiny_pack.parent / "encoder.pt", models / "encoder.pt")  # the shared encoder: the pack is ready
    rc, out, err = run(capsys, "styles")
    assert rc == 0 and err == ""
    header, *lines = out.splitlines()
    assert header.split() == ["STYLE", "WHERE", "READY", "FILES", "HERE"]
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in lines}
    assert list(rows) == [*style_names(), STYLE]
    assert rows["cartoon"] == ["hub", "-", "encoder.pt"] and rows["fantasy"] == ["drive", "-", "encoder.pt"]
    assert rows[STYLE][:2] == ["local", "ready"] and "generator.pt" in rows[STYLE][2] and "sampler.pt" in rows[STYLE][2]
    assert probes  # the Hub cache was looked at (no download: the autouse fixture checks)


def test_download_unknown_style(capsys, no_network):
    start = time.monotonic()
    rc, out, err = run(capsys, "download", "nosuchstyle")
    assert rc == 1 and out == ""
    assert one_line(err).startswith("error: Unknown style 'nosuchstyle'")
    assert no_network == [] and time.monotonic() - start < 5


def test_download_without_network_fails_fast(capsys, monkeypatch):
    from huggingface_hub.utils import LocalEntryNotFoundError

    attempts = []

    def unreachable(repo_id, filename, *, local_files_only=False, **kw):
        attempts.append((filename, local_files_only))
        raise LocalEntryNotFoundError(f"cannot reach the Hub for {filename} and it is not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    from dualstylegan import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.REACH_TIMEOUT: True)  # it answers, then fails
    rc, out, err = run(capsys, "download", "cartoon")
    announced, line = err.splitlines()
    assert announced == "downloading models/cartoon/generator.pt from CVPR/DualStyleGAN"  # what it is waiting for
    assert rc == 1 and out == "" and line.startswith("error: ") and "could not be reached" in line
    assert "--offline" in line and "HF_HUB_OFFLINE" in line
    assert [f for f, local in attempts if not local] == ["models/cartoon/generator.pt"]  # one try, then cache only


def test_unreachable_hub_answers_in_seconds(capsys, monkeypatch):
    """No reachability: no download is tried at all (huggingface_hub would retry for ~30 s), one sentence."""
    import time

    from dualstylegan import hub

    attempts = []

    def cache_only(repo_id, filename, *, local_files_only=False, **kw):
        attempts.append(local_files_only)
        raise huggingface_hub.utils.LocalEntryNotFoundError(f"{filename} is not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.REACH_TIMEOUT: False)
    start = time.monotonic()
    rc, out, err = run(capsys, "download", "cartoon")
    assert rc == 1 and all(attempts) and time.monotonic() - start < 10
    line = one_line(err)
    assert "could not be reached" in line and "--offline" in line


def test_help_does_not_load_torch():
    """`import dualstylegan` and the parser are light: torch is imported by the verbs that need it."""
    code = ("import sys, dualstylegan; from dualstylegan import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'huggingface_hub') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
    import dualstylegan

    assert sorted(dualstylegan.__all__) == sorted(dualstylegan._EXPORTS)
    assert all(getattr(dualstylegan, name) is not None for name in dualstylegan.__all__)  # imported on first use


def test_console_script(tiny_pack, photo, tmp_path):
    """The installed entry point: a real process, exit code 1, one line on stderr."""
    exe = Path(sys.executable).with_name("dualstylegan")
    if not exe.exists():
        exe = shutil.which("dualstylegan")
        if exe is None:
            pytest.skip("the dualstylegan console script is not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DUALSTYLEGAN_HOME": str(tmp_path / "home")}
    proc = subprocess.run([str(exe), "transfer", str(photo), "--no-align", "--style", str(tiny_pack),
                           "--style-id", "9", "--device", "cpu", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: style id 9 is out of range: exstyle_code.npy has ids 0 to 2"
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_console_script_success_exits_fast_with_everything_written(tiny_pack, photo, tmp_path):
    """``cli.run`` (the console command) skips Python's teardown after a verb: the portrait is complete, the
    summary printed, the exit code 0; with a thread still running it exits normally."""
    from PIL import Image

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DUALSTYLEGAN_HOME": str(tmp_path / "home")}
    code = "import sys; from dualstylegan import cli; cli.run()"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", code, "transfer", str(photo), "--no-align", "--style",
                           str(tiny_pack), "--style-id", "1", "--device", "cpu", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("(1 portrait)")
    [png] = out.glob("*.png")
    Image.open(png).load()  # complete
    assert not list(out.glob(".*"))  # no temporary left
    import threading

    t = threading.Thread(target=threading.Event().wait, args=(5,))
    t.start()
    try:
        assert not cli._nothing_left_to_finish()
    finally:
        t.join()


# ------------------------------------------------------------------------------------------------ issue 15 / issue 10
def test_version_and_help(capsys):
    from dualstylegan import __version__

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dualstylegan {__version__}"
    with pytest.raises(SystemExit):
        cli.main(["transfer", "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:"):]
    assert options.index("--style ") < options.index("--style-id") < options.index("--weights")  # --style first
    assert "examples:" in text and "dualstylegan transfer me.jpg --style anime" in text
    assert "cartoon 0.75/1" in " ".join(text.split())  # the presets
    for verb in ("transfer", "generate", "blend", "download", "web"):
        parser = cli.build_parser()._subparsers._group_actions[0].choices[verb]
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{verb} {action.option_strings} has no help"
                assert "default" in action.help, f"{verb} {action.option_strings} does not say its default"


def test_one_photo_to_a_named_file(capsys, tiny_pack, pipe, photo, tmp_path):
    target = tmp_path / "portrait.png"
    rc, out, err = transfer(capsys, tiny_pack, photo, "--style-id", "1", out=target)
    assert rc == 0 and err == "" and target.is_file()  # the file, not a folder of that name
    assert out.strip() == f"1 file(s) written to {target} (1 portrait)"
    np.testing.assert_array_equal(pixels(Image.open(target)), library(pipe, photo, 1))
    rc, out, _ = transfer(capsys, tiny_pack, photo, "--overview", out=tmp_path / "several.png")
    assert rc == 0 and (tmp_path / "several.png").is_dir() and out.startswith("2 file(s)")  # several: a folder


def test_summary_counts_every_file(capsys, tiny_pack, photo, tmp_path):
    rc, out, _ = transfer(capsys, tiny_pack, photo, "--overview", "--paste-back", out=tmp_path / "out")
    assert rc == 0 and len(files_in(tmp_path / "out")) == 3
    assert out.strip() == f"3 file(s) written to {tmp_path / 'out'} (1 portrait, 1 overview, 1 pasted photo)"


def test_missing_photo_is_reported_before_any_model_loads(capsys, photo, tmp_path, monkeypatch):
    from dualstylegan.pipeline import StyleTransferPipeline

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(StyleTransferPipeline, "from_pretrained", no_loading)
    rc, out, err = transfer(capsys, "cartoon", photo, tmp_path / "nobody.jpg", out=tmp_path / "out")
    assert rc == 1 and out == "" and one_line(err) == f"error: no such file: {tmp_path / 'nobody.jpg'}"
    rc, _, err = run(capsys, "blend", tmp_path / "nobody.jpg", "-o", tmp_path / "out")
    assert rc == 1 and "no such file" in one_line(err)


def test_path_like_style_says_no_such_folder(capsys, photo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    rc, _, err = transfer(capsys, "models/tinyy", photo, out=tmp_path / "out")
    assert rc == 1 and "no such folder" in one_line(err)


@pytest.mark.parametrize("argv, words", [
    (["transfer", "x.png", "--seed", str(2**64)], "--seed: must be a whole number from 0 to 2**64 - 1"),
    (["generate", "--seed", "-1"], "--seed: must be a whole number"),
    (["web", "--max-upload-mb", "-1"], "--max-upload-mb: must be a positive number"),
    (["web", "--max-upload-mb", "0"], "--max-upload-mb: must be a positive number"),
    (["web", "--max-concurrency", "0"], "--max-concurrency: must be a whole number of at least 1"),
    (["web", "--port", "70000"], "--port: must be a port number"),
])
def test_impossible_flags_are_refused_up_front(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err.splitlines()[-1] and "Traceback" not in err


def test_long_photo_name_is_shortened(capsys, tiny_pack, photo, tmp_path):
    long = tmp_path / ("a" * 240 + ".png")
    shutil.copy(photo, long)
    rc, out, err = transfer(capsys, tiny_pack, long, out=tmp_path / "out")
    assert rc == 0 and err == "" and len(files_in(tmp_path / "out")) == 1
    assert len(files_in(tmp_path / "out")[0]) < 120


def test_web_checks_its_port_first(capsys, tmp_path, monkeypatch):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setitem(sys.modules, "dualstylegan.web", None)  # nothing may be imported or loaded before
        rc, out, err = run(capsys, "web", "--port", port, "--style", tmp_path / "nowhere")
    assert rc == 1 and out == "" and "serving" not in err
    line = one_line(err)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "--port" in line


def test_generate_streams_bounded_batches(capsys, tiny_pack, tmp_path, monkeypatch):
    """generate -n N holds one batch of images at a time, whatever N (issue 10: 2.65 GB at n = 200 before):
    the portraits alive while each is written are counted, for two values of N."""
    import gc

    import torch

    from dualstylegan import images
    from dualstylegan.defaults import GENERATE_BATCH

    real_save = images.save_image

    def portraits_alive() -> int:
        import warnings

        gc.collect()
        with warnings.catch_warnings():  # isinstance over every object touches deprecated torch attributes
            warnings.simplefilter("ignore")
            return sum(int(t.shape[0]) for t in gc.get_objects() if isinstance(t, torch.Tensor) and t.ndim == 4
                       and tuple(t.shape[1:]) == (3, 64, 64))

    peaks = {}
    for n in (GENERATE_BATCH + 1, 6 * GENERATE_BATCH + 3):
        peak = [0]

        def save(img, path, peak=peak, **kw):
            peak[0] = max(peak[0], portraits_alive())
            return real_save(img, path, **kw)

        monkeypatch.setattr(images, "save_image", save)
        out_dir = tmp_path / f"n{n}"
        rc, out, _ = run(capsys, "generate", "-n", n, "--style", tiny_pack, "--device", "cpu", "-o", out_dir)
        assert rc == 0 and len(files_in(out_dir)) == n and out.startswith(f"{n} file(s)")
        peaks[n] = peak[0]
    assert max(peaks.values()) <= 2 * GENERATE_BATCH and len(set(peaks.values())) == 1, peaks  # flat in n
