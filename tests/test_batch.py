"""dualstylegan.batch: stylize_files (the library's folder run, one FileResult per photo) and the output names."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dualstylegan
from conftest import needs_dlib
from dualstylegan.batch import (FileResult, blend_names, check_inputs, collect_inputs, exemplar_tag, generate_names,
                                output_name, output_names, short_stem, split_output, stylize_files, unique_stems)
from dualstylegan.errors import UsageError
from dualstylegan.faces import prepare_face
from dualstylegan.images import ImageError, to_image, to_tensor
from dualstylegan.pipeline import WeightError


def smooth(path: Path, size=(64, 64), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(size, Image.BICUBIC).save(path)
    return path


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def expected(pipe, path, exemplar=0, align=False, index=0, **kw) -> np.ndarray:
    face = prepare_face(path, align=align, all_faces=True)[index].image
    return pixels(to_image(pipe.transfer(to_tensor(face), exemplar, **kw).image))


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    smooth(folder / "a.png", seed=1)
    smooth(folder / "b.png", size=(80, 64), seed=2)
    (folder / "c.jpg").write_text("not a photo")
    return folder


def test_exported_from_the_package():
    assert dualstylegan.stylize_files is stylize_files and dualstylegan.FileResult is FileResult
    assert dualstylegan.prepare_face is prepare_face and dualstylegan.output_names is output_names


def test_one_result_per_photo_in_order(tiny_pipeline, photos, tmp_path):
    out = tmp_path / "out"
    results = stylize_files(tiny_pipeline, [photos], out, exemplar=2, align=False, structure=0.5)
    assert isinstance(results, Iterator) and not out.exists()  # nothing is done before the results are read
    results = list(results)
    assert [r.input.name for r in results] == ["a.png", "b.png", "c.jpg"]
    a, b, c = results
    assert a.ok and a.portraits == (out / "a_tiny_002.png",) and a.extras == () and a.outputs == a.portraits
    assert b.ok and b.portraits == (out / "b_tiny_002.png",)
    assert not c.ok and c.portraits == () and "not an image" in c.error and isinstance(c.exception, ImageError)
    assert sorted(p.name for p in out.iterdir()) == ["a_tiny_002.png", "b_tiny_002.png"]
    for r in (a, b):
        np.testing.assert_array_equal(pixels(Image.open(r.portraits[0])),
                                      expected(tiny_pipeline, r.input, 2, structure=0.5))


def test_exemplar_image_overview_and_paste_back(tiny_pipeline, photos, tmp_path):
    painting = smooth(tmp_path / "painting.png", seed=9)
    out = tmp_path / "out"
    [r] = stylize_files(tiny_pipeline, [photos / "b.png"], out, exemplar=painting, align=False, overview=True,
                        paste_back=True)
    assert r.ok and r.portraits == (out / "b_tiny_painting.png",)
    assert r.extras == (out / "b_tiny_painting_overview.png", out / "b_tiny_painting_pasted.png")
    exemplar = to_tensor(prepare_face(painting, align=False)[0].image)
    np.testing.assert_array_equal(pixels(Image.open(r.portraits[0])),
                                  expected(tiny_pipeline, photos / "b.png", exemplar))
    pasted = pixels(Image.open(r.extras[1]))
    assert pasted.shape == (64, 80, 3)
    np.testing.assert_array_equal(pasted[:, :8], pixels(Image.open(photos / "b.png"))[:, :8])  # outside the square


def test_run_wide_problems_are_raised_at_the_call(tiny_pipeline, photos, tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="has no images"):
        stylize_files(tiny_pipeline, [empty], out)
    with pytest.raises(ImageError, match="does not exist"):
        stylize_files(tiny_pipeline, [photos], out, exemplar=tmp_path / "nowhere.png", align=False)
    with pytest.raises(KeyError, match="out of range"):
        stylize_files(tiny_pipeline, [photos], out, exemplar=5)
    with pytest.raises(WeightError, match="between 0 and 1"):
        stylize_files(tiny_pipeline, [photos], out, color=2)
    with pytest.raises(WeightError, match="truncation"):
        stylize_files(tiny_pipeline, [photos], out, truncation=float("nan"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        stylize_files(tiny_pipeline, [photos], tmp_path / "file")
    assert not out.exists()


def test_existing_outputs_are_kept_unless_overwrite(tiny_pipeline, photos, tmp_path):
    out = tmp_path / "out"
    [first] = stylize_files(tiny_pipeline, [photos / "a.png"], out, align=False)
    before = first.portraits[0].read_bytes()
    [again] = stylize_files(tiny_pipeline, [photos / "a.png"], out, align=False, seed=3)
    assert not again.ok and "already exists" in again.error and first.portraits[0].read_bytes() == before
    [replaced] = stylize_files(tiny_pipeline, [photos / "a.png"], out, align=False, seed=3, overwrite=True)
    assert replaced.ok and first.portraits[0].read_bytes() != before


def test_a_bug_is_not_a_files_result(tiny_pipeline, photos, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(type(tiny_pipeline), "transfer", broken)
    results = stylize_files(tiny_pipeline, [photos / "a.png"], tmp_path / "out", align=False)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_every_face_of_a_photo(tiny_pipeline, tmp_path):
    needs_dlib()
    data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
    path = tmp_path / "group.png"  # two people side by side (the astronaut's mission patch is no face)
    group = Image.new("RGB", (1024, 512))
    group.paste(Image.fromarray(data.astronaut()), (0, 0))
    with Image.open(Path(__file__).parent / "data" / "obama.jpg") as im:
        group.paste(im.convert("RGB").resize((410, 512), Image.LANCZOS), (560, 0))
    group.save(path)
    out = tmp_path / "out"
    [r] = stylize_files(tiny_pipeline, [path], out, all_faces=True, paste_back=True)
    assert r.portraits == (out / "group_face0_tiny_000.png", out / "group_face1_tiny_000.png")
    assert r.extras == (out / "group_tiny_000_pasted.png",)
    for i, portrait in enumerate(r.portraits):
        np.testing.assert_array_equal(pixels(Image.open(portrait)), expected(tiny_pipeline, path, align=True, index=i))


# ----------------------------------------------------------------------------------------- names
def test_output_names():
    files = [Path("x/me.jpg"), Path("y/me.png"), Path("z/me.png"), Path("you.png")]
    assert unique_stems(files) == {files[0]: "me_jpg", files[1]: "me_png", files[2]: "me_png_2", files[3]: "you"}
    assert output_names(files, "cartoon", "007") == {files[0]: "me_jpg_cartoon_007.png",
                                                      files[1]: "me_png_cartoon_007.png",
                                                      files[2]: "me_png_2_cartoon_007.png",
                                                      files[3]: "you_cartoon_007.png"}
    assert output_name("me", "anime", "Cartoons_00038_07", face=1, kind="overview") == \
        "me_face1_anime_Cartoons_00038_07_overview.png"
    assert generate_names("cartoon", 3, 2) == ["cartoon_seed3_000.png", "cartoon_seed3_001.png"]
    assert blend_names("me", "cartoon", 2) == (["me_cartoon_blend_000.png", "me_cartoon_blend_001.png"],
                                               "me_cartoon_blend.gif")


def test_exemplar_tag(tiny_pipeline):
    assert exemplar_tag(1, tiny_pipeline.codes) == "001" and exemplar_tag("002.jpg", tiny_pipeline.codes) == "002"
    assert exemplar_tag(Path("art/painting.jpg")) == "painting" and exemplar_tag(Image.new("RGB", (4, 4))) == "exemplar"
    with pytest.raises(UsageError, match="no code bank"):
        exemplar_tag(0, None)


def test_collect_inputs(photos, tmp_path):
    assert collect_inputs([photos, photos / "a.png"]) == [photos / "a.png", photos / "b.png", photos / "c.jpg"]
    assert collect_inputs([tmp_path / "missing.png"]) == [tmp_path / "missing.png"]  # reported per file


# ----------------------------------------------------------------------------------------- issue 15 / issue 10
def test_exemplar_is_aligned_independently_of_the_photos(tiny_pipeline, photos, tmp_path):
    """An exemplar with a face is aligned even when the photos are not (--no-align); one without a face is
    centre-cropped with a one-line notice; the overview's exemplar column is what was used."""
    needs_dlib()
    data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
    face_ex = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(face_ex)
    run = stylize_files(tiny_pipeline, [photos / "a.png"], tmp_path / "o1", exemplar=face_ex, align=False,
                        overview=True)
    [r] = list(run)
    assert r.ok and run.notices == []
    from dualstylegan.faces import prepare_exemplar

    aligned = to_tensor(prepare_exemplar(face_ex).face.image)
    assert prepare_exemplar(face_ex).aligned
    np.testing.assert_array_equal(pixels(to_image(run.exemplar_image)), pixels(to_image(aligned)))
    np.testing.assert_array_equal(pixels(Image.open(r.portraits[0])), expected(tiny_pipeline, photos / "a.png", aligned))

    wide = tmp_path / "wide_painting.png"
    smooth(wide, size=(120, 60), seed=4)
    run = stylize_files(tiny_pipeline, [photos / "a.png"], tmp_path / "o2", exemplar=wide, align=True)
    assert len(run.notices) == 1 and "no face" in run.notices[0] and "centred square" in run.notices[0]


def test_long_photo_names_are_shortened(tiny_pipeline, tmp_path):
    name = "p" * 240 + ".png"
    photo = smooth(tmp_path / name)
    [r] = stylize_files(tiny_pipeline, [photo], tmp_path / "out", align=False, overview=True)
    assert r.ok and all(len(p.name.encode()) < 200 for p in r.outputs)
    assert short_stem("x" * 300) != short_stem("x" * 299 + "y") and short_stem("me") == "me"


def test_one_portrait_to_a_named_file(tiny_pipeline, photos, tmp_path):
    folder, name = split_output(tmp_path / "portrait.png", several=False)
    assert folder == tmp_path and name == "portrait.png"
    assert split_output(tmp_path / "portrait.png", several=True) == (tmp_path / "portrait.png", None)
    assert split_output(tmp_path / "portraits", several=False) == (tmp_path / "portraits", None)
    [r] = stylize_files(tiny_pipeline, [photos / "a.png"], folder, align=False, portrait_name=name)
    assert r.portraits == (tmp_path / "portrait.png",) and (tmp_path / "portrait.png").is_file()


def test_inputs_checked_up_front(photos, tmp_path):
    assert check_inputs([photos / "a.png"]) == [photos / "a.png"]
    with pytest.raises(UsageError, match="no such file"):
        check_inputs([photos / "a.png", tmp_path / "missing.png"])


def test_blend_names_carry_the_exemplars():
    frames, gif = blend_names("me", "cartoon", 2, "001", "007")
    assert frames == ["me_cartoon_001-007_blend_000.png", "me_cartoon_001-007_blend_001.png"]
    assert gif == "me_cartoon_001-007_blend.gif"
    assert blend_names("me", "cartoon", 1, "001", "001")[1] == "me_cartoon_001_blend.gif"


def test_seed_is_checked_at_the_call(tiny_pipeline, photos, tmp_path):
    from dualstylegan.pipeline import OptionError

    with pytest.raises(OptionError, match="2\\*\\*64"):
        stylize_files(tiny_pipeline, [photos], tmp_path / "out", seed=2**64)


# ------------------------------------------------------------------------------------------------ head start
def test_head_start_prepares_the_first_photo_in_a_forked_process(tmp_path):
    """HeadStart: the photo prepared in another process equals the photo prepared here; taken once, only with the
    same settings; torch computes with one thread fewer until it is taken."""
    needs_dlib()
    import torch

    from dualstylegan.batch import HeadStart, _prepare

    photo = Path(__file__).parent / "data" / "obama.jpg"
    head = HeadStart(photo, detector="hog")
    threads = torch.get_num_threads()
    head.share_cores()
    assert torch.get_num_threads() == max(1, threads - 1)
    try:
        assert head.take(photo, (True, True, False, head.args[3])) is None  # other settings: not this one's
        head.release_cores()
        assert torch.get_num_threads() == threads
        future = head.take(photo, head.args)
        assert future is not None and head.take(photo, head.args) is None
        early, here = future.result(timeout=120), _prepare(photo, *head.args)
        assert early.error is None and len(early.faces) == len(here.faces) == 1
        assert np.array_equal(np.asarray(early.faces[0].image), np.asarray(here.faces[0].image))
    finally:
        head.close()
    assert not HeadStart.worthwhile(True)  # torch is imported in this process: no fork after it from the CLI


def test_console_transfer_with_a_head_start_writes_what_in_process_writes(tiny_pack, tmp_path):
    """The dualstylegan command finds the first face in a forked process while it loads the networks (a fresh
    process has not imported torch); the portrait is the one an in-process run writes, byte for byte."""
    needs_dlib()
    import os
    import subprocess
    import sys

    from dualstylegan import cli

    photo = Path(__file__).parent / "data" / "obama.jpg"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DUALSTYLEGAN_HOME": str(tmp_path / "home")}
    code = ("import sys; from dualstylegan import cli, batch; "
            "assert batch.HeadStart.worthwhile(True) or (os.cpu_count() or 1) < 2; cli.run()")
    proc = subprocess.run([sys.executable, "-c", "import os; " + code, "transfer", str(photo), "--style",
                           str(tiny_pack), "--style-id", "1", "--device", "cpu", "-o", str(tmp_path / "forked")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert cli.main(["transfer", str(photo), "--style", str(tiny_pack), "--style-id", "1", "--device", "cpu",
                     "-o", str(tmp_path / "here"), "--quiet"]) == 0
    [forked], [here] = sorted((tmp_path / "forked").glob("*.png")), sorted((tmp_path / "here").glob("*.png"))
    assert forked.name == here.name and forked.read_bytes() == here.read_bytes()


def test_stylize_files_takes_the_head_start_and_gives_the_cores_back(tiny_pipeline, tmp_path, monkeypatch):
    needs_dlib()
    import torch

    from dualstylegan import faces
    from dualstylegan.batch import HeadStart

    photo = Path(__file__).parent / "data" / "obama.jpg"
    threads = torch.get_num_threads()
    head = HeadStart(photo, detector="hog")  # forked now: the counting below is this process's only
    head.share_cores()
    calls = []
    prepare_face = faces.prepare_face
    monkeypatch.setattr(faces, "prepare_face", lambda img, *a, **k: calls.append(k.get("name")) or
                        prepare_face(img, *a, **k))
    early = [r for r in stylize_files(tiny_pipeline, [photo], tmp_path / "early", exemplar=1, head_start=head)]
    assert calls == [] and torch.get_num_threads() == threads  # prepared by the head start; cores given back
    here = [r for r in stylize_files(tiny_pipeline, [photo], tmp_path / "here", exemplar=1)]
    assert calls == [photo]
    assert [p.name for p in early[0].portraits] == [p.name for p in here[0].portraits]
    assert early[0].portraits[0].read_bytes() == here[0].portraits[0].read_bytes()
