"""The web app's handlers (:class:`dualstylegan.web.StyleApp`) called as plain methods: no Gradio, no browser.

Each handler's image is the library's for the same face (faces.prepare_face) and options, and each refusal is one
sentence; a bug is "something went wrong" in the page and a traceback in the log."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualstylegan import web
from dualstylegan.errors import sentence
from dualstylegan.faces import prepare_face
from dualstylegan.images import to_image, to_tensor
from dualstylegan.pipeline import WeightError


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def app(tiny_pipeline):
    return web.StyleApp({"tiny": tiny_pipeline}, align=False)


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "me.png"
    Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).resize((90, 60), Image.BICUBIC).save(path)
    return path


def library(pipe, path: Path, exemplar, **kw) -> np.ndarray:
    return pixels(to_image(pipe.transfer(to_tensor(prepare_face(path, align=False)[0].image), exemplar, **kw).image))


def test_the_app_needs_no_gradio():
    code = ("import sys; from dualstylegan.web import StyleApp; app = StyleApp({'x': None}); "
            "app.exemplar_label('x', 0); print('gradio' in sys.modules, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split() == ["False", "False"]


def test_style_view_is_the_packs_preset_and_gallery(app, tiny_pipeline):
    v = app.style_view("tiny")
    assert v.gallery.ids == [0, 1, 2] and v.gallery.page == 0
    assert v.gallery.label == "Exemplars 0–2 of 3 (page 1 of 1)"
    assert [caption for _, caption in v.gallery.items] == ["0: 000", "1: 001", "2: 002"]
    thumb = v.gallery.items[1][0]
    assert np.array_equal(pixels(thumb), pixels(to_image(tiny_pipeline.render_exemplar(1, size=web.THUMBNAIL_SIZE))))
    # "tiny" is not a registered style: the registry's default preset, structure 0.75 and color 1 (§4)
    assert (v.structure, v.color, v.per_layer) == (0.75, 1.0, False)
    assert v.weights_text == ", ".join(["0.75"] * 7 + ["1"] * 11)
    assert v.wplus and v.has_sampler and v.sampler_message == ""
    assert v.exemplar_names == tiny_pipeline.codes.names and v.chosen == "Exemplar **0**: 000.jpg"
    assert app.gallery_page("tiny", 7).page == 0  # clamped to the pages there are
    assert app.selected([0, 1, 2], 2) == 2 and app.selected([0, 1, 2], 5) == 0


def test_transfer_is_the_librarys_image(app, tiny_pipeline, photo):
    v = app.transfer("tiny", str(photo), False, web.GALLERY, 2, None, 0.5, 1.0, False, "", False, 0.75, "Z+")
    expect = library(tiny_pipeline, photo, 2, structure=0.5, color=1.0, truncation=0.75)
    assert np.array_equal(pixels(v.portrait), expect)
    assert np.array_equal(pixels(Image.open(v.png)), expect) and Path(v.png).name == "me_tiny_002.png"
    assert np.array_equal(pixels(v.face), pixels(prepare_face(photo, align=False)[0].image))
    assert v.face.size == (256, 256)  # the centred 60² square of the 90×60 photo, as the CLI takes it
    assert v.info.startswith("tiny, exemplar 2 (002.jpg); structure 0.5, color 1; Z+; truncation 0.75; 64×64")


def test_uploaded_exemplar_wplus_and_per_layer_weights(app, tiny_pipeline, photo, tmp_path):
    painting = tmp_path / "painting.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(painting)
    text = ", ".join(["0.25"] * 18)
    v = app.transfer("tiny", str(photo), False, web.UPLOADED, 0, str(painting), 0.5, 1.0, True, text, True, 1.0,
                     "W+")
    exemplar = to_tensor(prepare_face(painting, align=False)[0].image)
    expect = library(tiny_pipeline, photo, exemplar, weights=[0.25] * 18, preserve_color=True, truncation=1.0,
                     wplus=True)
    assert np.array_equal(pixels(v.portrait), expect) and Path(v.png).name == "me_tiny_painting.png"
    assert "your exemplar image; per-layer weights 0.25" in v.info and "W+, colors preserved" in v.info


@pytest.mark.parametrize("call, error, words", [
    (lambda a, p: a.transfer("tiny", None, False, web.GALLERY, 0, None, 0.5, 1, False, "", False, 0.75, "Z+"),
     web.WebError, "upload a photo first"),
    (lambda a, p: a.transfer("tiny", p, False, web.UPLOADED, 0, None, 0.5, 1, False, "", False, 0.75, "Z+"),
     web.WebError, "upload an exemplar first"),
    (lambda a, p: a.transfer("tiny", p, False, web.GALLERY, None, None, 0.5, 1, False, "", False, 0.75, "Z+"),
     web.WebError, "choose an exemplar"),
    (lambda a, p: a.transfer("tiny", p, False, web.GALLERY, 0, None, 0.5, 1, True, "0.5, 0.5", False, 0.75, "Z+"),
     WeightError, "18 values"),
    (lambda a, p: a.transfer("tiny", p, False, web.GALLERY, 7, None, 0.5, 1, False, "", False, 0.75, "Z+"),
     KeyError, "out of range"),
    (lambda a, p: a.transfer("nope", p, False, web.GALLERY, 0, None, 0.5, 1, False, "", False, 0.75, "Z+"),
     web.WebError, "does not serve the style pack 'nope'"),
    (lambda a, p: a.blend("tiny", p, False, "000.jpg", None, 4, 100, True), web.WebError, "choose two exemplars"),
], ids=["no-photo", "no-exemplar", "no-style-id", "weights", "style-id", "unknown-pack", "one-exemplar"])
def test_refusals_are_one_sentence(app, photo, call, error, words, caplog):
    with pytest.raises(error) as info:
        call(app, str(photo))
    message = app.message(info.value)
    assert words in str(info.value) and message == message[:1].upper() + sentence(info.value)[1:]
    assert message[0].isupper() and "\n" not in message
    assert not any(r.exc_info for r in caplog.records)  # the user's error: no traceback in the log


def test_a_bug_is_logged_with_its_traceback_not_blamed_on_the_user(app, caplog):
    try:
        {}["missing"]  # a programming error, not one of ours
    except KeyError as e:
        bug = e
    with caplog.at_level(logging.ERROR, logger="dualstylegan.web"):
        assert app.message(bug) == web.BUG_MESSAGE
    assert caplog.records and caplog.records[-1].exc_info[1] is bug


def test_an_unreadable_upload_names_the_upload_not_the_server_path(app, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(web.WebError) as info:
        app.face(str(bad), False)
    text = app.message(info.value)
    assert text.startswith("The photo: ") and "notes.png" in text and str(tmp_path) not in text


def test_random_is_the_librarys_generate(app, tiny_pipeline):
    items = app.random("tiny", 3, 5, False, True, False, 0.5)
    expect = tiny_pipeline.generate(3, seed=5, fix_structure=True, truncation=0.5)
    assert [caption for _, caption in items] == ["seed 5, #0", "seed 5, #1", "seed 5, #2"]
    for (image, _), e in zip(items, expect):
        assert np.array_equal(pixels(image), pixels(to_image(e)))


def test_blend_is_the_librarys_blend(app, tiny_pipeline, photo):
    gif = Path(app.blend("tiny", str(photo), False, "000.jpg", "002.jpg", 4, 100, True))
    assert gif.name == "me_tiny_blend.gif"
    frames = tiny_pipeline.blend(to_tensor(prepare_face(photo, align=False)[0].image), "000.jpg", "002.jpg", steps=4)
    with Image.open(gif) as im:
        assert im.n_frames == 6 and im.size == (64, 64)  # a → b → a: 4 + 2 frames
        im.seek(3)
        last = np.asarray(im.convert("RGB"), dtype=int)
    # GIF frames are palette images: close to the library's last frame, not equal
    assert np.abs(last - pixels(to_image(frames[-1])).astype(int)).mean() < 8


def test_progress_is_reported(app, photo):
    seen = []
    app.transfer("tiny", str(photo), False, web.GALLERY, 0, None, 0.5, 1.0, False, "", False, 0.75, "Z+",
                 progress=lambda *a, **k: seen.append(k.get("desc")))
    assert seen == ["loading the style pack", "reading the photo", "stylising", "saving"]


def test_a_pack_without_sampler_or_wplus(tiny_pipeline, photo):
    from dualstylegan.pipeline import StyleTransferPipeline

    p = tiny_pipeline
    bare = StyleTransferPipeline(p.generator, p.encoder, p.codes, decoder=p.decoder, style="bare")
    app = web.StyleApp({"bare": bare}, align=False)
    v = app.style_view("bare")
    assert not v.wplus and not v.has_sampler and "no sampler" in v.sampler_message
    with pytest.raises(web.WebError, match="no sampler"):
        app.random("bare", 1, 0, False, False, False, 0.5)
    with pytest.raises(web.WebError, match="no W\\+ encoder"):
        app.transfer("bare", str(photo), False, web.GALLERY, 0, None, 0.5, 1, False, "", False, 0.75, "W+")
    assert torch.equal(bare.transfer(to_tensor(prepare_face(photo, align=False)[0].image), 0).image,
                       p.transfer(to_tensor(prepare_face(photo, align=False)[0].image), 0).image)


def test_the_page_and_the_cli_write_the_same_portrait(app, tiny_pack, photo, tmp_path):
    """One face preparation and one naming for both front ends: a non-square photo, unaligned, gives the same file."""
    from dualstylegan import cli

    v = app.transfer("tiny", str(photo), False, web.GALLERY, 2, None, 0.5, 1.0, False, "", False, 0.75, "Z+")
    assert cli.main(["transfer", str(photo), "--no-align", "--style", str(tiny_pack), "--style-id", "2",
                     "--structure", "0.5", "--device", "cpu", "--quiet", "-o", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / Path(v.png).name
    assert np.array_equal(pixels(Image.open(written)), pixels(Image.open(v.png)))


# ----------------------------------------------------------------------------------------- issue 15: the page's behaviour
def test_a_failed_request_keeps_the_last_good_result(app, photo):
    """attempt() never raises: a good run is the result; a failed one is no result and one sentence, so the page
    leaves the last good portrait where it is and says why beside it."""
    good = app.attempt(app.transfer, "tiny", str(photo), False, web.GALLERY, 1, None, 0.5, 1.0, False, "", False,
                       0.75, "Z+")
    assert good.ok and good.error == "" and isinstance(good.result, web.TransferView)
    bad = app.attempt(app.transfer, "tiny", str(photo), False, web.GALLERY, 1, None, 0.5, 1.0, True, "0.5, 0.5",
                      False, 0.75, "Z+")
    assert not bad.ok and bad.result is None and "18" in bad.error and bad.error[0].isupper()
    bug = app.attempt(lambda: {}["missing"])
    assert bug.error == web.BUG_MESSAGE and bug.result is None


def test_the_18_weights_disable_the_two_sliders():
    on, off = web.weight_controls(True), web.weight_controls(False)
    assert (on.sliders, on.weights) == (False, True) and "18 per-layer weights" in on.note
    assert (off.sliders, off.weights, off.note) == (True, False, "")


def test_refine_steps_apply_to_an_uploaded_exemplar_only(app, tiny_pipeline, photo, tmp_path):
    assert web.refine_control(web.UPLOADED) and not web.refine_control(web.GALLERY)
    assert web.check_refine(20, web.GALLERY) == 0 and web.check_refine(None, web.UPLOADED) == 0
    assert web.check_refine(20.0, web.UPLOADED) == 20
    with pytest.raises(web.WebError, match=f"between 0 and {web.REFINE_MAX}"):
        web.check_refine(web.REFINE_MAX + 1, web.UPLOADED)
    painting = tmp_path / "painting.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(painting)
    v = app.transfer("tiny", str(photo), False, web.UPLOADED, 0, str(painting), 0.5, 1.0, False, "", False, 0.75,
                     "Z+", refine=2)
    exemplar = to_tensor(prepare_face(painting, align=False)[0].image)
    expect = library(tiny_pipeline, photo, exemplar, structure=0.5, color=1.0, truncation=0.75, refine=2)
    assert np.array_equal(pixels(v.portrait), expect) and "your exemplar image refined in 2 steps" in v.info
    plain = app.transfer("tiny", str(photo), False, web.GALLERY, 0, str(painting), 0.5, 1.0, False, "", False, 0.75,
                         "Z+", refine=2)  # a gallery exemplar: the control does not apply
    assert "refined" not in plain.info


def test_blend_takes_the_style_ids_the_thumbnails_pick(app, photo):
    by_id = Path(app.blend("tiny", str(photo), False, 0, 2, 3, 100, False))
    by_name = Path(app.blend("tiny", str(photo), False, "000.jpg", "002.jpg", 3, 100, False))
    with Image.open(by_id) as a, Image.open(by_name) as b:
        assert a.n_frames == b.n_frames == 3
        a.seek(2)
        b.seek(2)
        assert np.array_equal(pixels(a), pixels(b))
    with pytest.raises(web.WebError, match="choose two exemplars"):
        app.blend("tiny", str(photo), False, 0, None, 3, 100, False)


# ----------------------------------------------------------------------------------------- issue 10: files
@pytest.mark.parametrize("name", ["../outside/secret.png", "{outside}/secret.png", "link.png", "sub/../../outside/secret.png"])
def test_gallery_images_come_only_from_inside_the_folder(tmp_path, name):
    """A code bank's key is data from elsewhere: '../x/secret.png', an absolute path or a link out of the folder
    finds no image (the thumbnail is rendered from its code instead)."""
    from types import SimpleNamespace

    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    dataset.mkdir()
    outside.mkdir()
    secret = Image.fromarray(np.full((40, 40, 3), 200, np.uint8))
    secret.save(outside / "secret.png")
    (dataset / "link.png").symlink_to(outside / "secret.png")
    Image.fromarray(np.full((40, 40, 3), 50, np.uint8)).save(dataset / "ok.png")
    key = name.format(outside=outside)
    rendered = Image.new("RGB", (web.THUMBNAIL_SIZE,) * 2, (1, 2, 3))
    pipe = SimpleNamespace(codes=SimpleNamespace(name_of=lambda i: [key, "ok.png"][i]),
                           render_exemplar=lambda i, size: to_tensor(rendered))
    pipes = web.Pipelines({"p": pipe}, exemplar_images=[dataset])
    assert pipes.exemplar_file(key) is None
    assert pipes.exemplar_file("ok.png") == (dataset / "ok.png").resolve()
    thumbs = pipes.thumbnails("p", [0, 1])
    assert np.array_equal(pixels(thumbs[0]), pixels(to_image(to_tensor(rendered))))  # not the secret
    assert pixels(thumbs[1]).mean() == 50
    assert web.inside(dataset, str(outside / "secret.png")) is None and web.inside(dataset, "") is None


def test_shown_images_are_written_once_and_removed_with_the_app(tiny_pipeline):
    """An image the page shows is a complete file that is never rewritten (another request may be streaming it);
    closing the app removes its folder."""
    app = web.StyleApp({"tiny": tiny_pipeline}, align=False)
    folder = app.outputs.folder
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    first = Path(app.outputs.shown(image))
    before = first.stat()
    second = Path(app.outputs.shown(image.copy()))
    assert second == first and first.stat().st_ino == before.st_ino  # the same file, not written again
    assert np.array_equal(pixels(Image.open(first)), pixels(image))
    assert not list(first.parent.glob(".*.tmp"))
    other = Path(app.outputs.shown(Image.new("RGB", (32, 32))))
    assert other != first and other.parent.parent == first.parent.parent
    app.close()
    assert not folder.exists()


MEMORY = """
import sys, threading
import numpy as np
from PIL import Image
from dualstylegan import web

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

big = sys.argv[1]
if sys.argv[2] == "off":
    web.files.release_memory = lambda: None
web.FaceCache(max_upload_mb=500).get(big, "photo", align=False)  # warm up: imports, allocator pools
baseline, faces = rss_mb(), []
for _ in range(2):
    threads = [threading.Thread(target=lambda: faces.append(web.FaceCache(max_upload_mb=500).get(big, "photo", False)))
               for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print(len(faces), round(baseline), round(rss_mb()))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the memory in use from /proc")
def test_memory_returns_to_its_baseline_after_large_photos(tmp_path):
    """8 concurrent previews of a large PNG, twice, in a fresh process: every one succeeds and the memory in use
    goes back to where it was (each decode is ~50 MB of pixels)."""
    yy, xx = np.mgrid[0:4000, 0:4000]
    big = tmp_path / "big.png"
    Image.fromarray(np.stack([xx % 251, yy % 241, (xx ^ yy) % 256], -1).astype(np.uint8)).save(big, compress_level=1)
    del yy, xx
    proc = subprocess.run([sys.executable, "-c", MEMORY, str(big), "on"], capture_output=True, text=True,
                          timeout=300, check=True)
    n, baseline, after = map(int, proc.stdout.split())
    assert n == 16 and after - baseline < 150, f"{baseline} MB → {after} MB"


# ------------------------------------------------------------------------------------------------ the Video tab
def video_helpers():
    """tests/test_video.py's clip writer and fake faces (PyAV needed: the test is skipped without it)."""
    pytest.importorskip("av")
    import test_video

    return test_video


def no_stylising(monkeypatch):
    """Any call of stylize_video fails the test: a refusal must come before any work."""
    from dualstylegan import video

    def stylize_video(*args, **kwargs):
        raise AssertionError("stylize_video ran")
    monkeypatch.setattr(video, "stylize_video", stylize_video)


def test_video_tab_stylises_a_short_clip(app, tmp_path):
    """4 frames of 64² with a face and a sine: an MP4 in the app's result folder, 4 frames of 64², the same
    sound, the face changed, the progress reported in frames."""
    from dualstylegan.tracking import FaceTracker

    tv = video_helpers()
    clip = tv.write_clip(tmp_path / "clip.mp4", [tv.astronaut(64)] * 4)
    faces = tv.FakeFaces()
    faces.truth = [tv.fake_landmarks(32, 30, 14)]
    calls = []
    path, info = app.video("tiny", str(clip), 1, "full", progress=lambda *a, **k: calls.append((a, k)),
                           tracker=FaceTracker(detect=faces.detect, refit=faces.refit))
    assert Path(path).suffix == ".mp4" and Path(path).is_relative_to(app.outputs.folder / "results")
    assert Path(path).name == "clip_tiny_001.mp4"
    out, _, _ = tv.decode(Path(path))
    src, _, _ = tv.decode(clip)
    assert len(out) == 4 and out[0].shape == (64, 64, 3)
    assert np.abs(out[0].astype(int) - src[0]).mean() > 3  # the face was stylised
    assert tv.audio_packets(Path(path)) == tv.audio_packets(clip)
    assert calls[-1] == (((4, 4),), {"desc": "stylising the frames", "unit": "frames"})
    assert info.startswith("tiny, exemplar 1 (001.jpg); 4 frames of 64×64, 4 faces in 1 track; portraits 64²")
    assert "with its sound" in info


def test_video_portrait_size_choice():
    from dualstylegan.web.video import portrait_size

    assert [portrait_size(c, 1024) for c in ("256", "512", "full")] == [256, 512, None]
    assert portrait_size("256", 256) is None and portrait_size("512", 64) is None
    with pytest.raises(web.WebError, match="one of 256, 512, full"):
        portrait_size("300", 1024)


def test_video_over_the_limits_is_refused_before_any_work(tiny_pipeline, tmp_path, monkeypatch):
    tv = video_helpers()
    no_stylising(monkeypatch)
    clip = tv.write_clip(tmp_path / "clip.mp4", [tv.astronaut(64)] * 4)  # 0.16 s
    short = web.StyleApp({"tiny": tiny_pipeline}, max_video_seconds=0.1)
    small = web.StyleApp({"tiny": tiny_pipeline}, max_video_pixels=32 * 32)
    tiny_upload = web.StyleApp({"tiny": tiny_pipeline}, max_upload_mb=0.001)
    try:
        said = [a.attempt(a.video, "tiny", str(clip), 0).error for a in (short, small, tiny_upload)]
        assert said[0] == "The video clip.mp4 is 0.2 s long; the limit is 0.1 s (cut it first)"
        assert said[1] == "The video clip.mp4 is 64×64 pixels, more than the limit of 1,024 pixels a frame; scale it down first"
        assert said[2].startswith("The video is 0.0 MB; the limit is 0.001 MB")
        for text in said:
            assert str(tmp_path) not in text and text.count(". ") == 0  # one sentence, the upload by its name
        assert not any((a.outputs.folder / "results").exists() for a in (short, small, tiny_upload))
    finally:
        for a in (short, small, tiny_upload):
            a.close()


def test_a_non_video_upload_is_refused_in_one_sentence(app, tmp_path, monkeypatch):
    video_helpers()
    no_stylising(monkeypatch)
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all\n" * 50)
    said = app.attempt(app.video, "tiny", str(notes), 0).error
    assert said.startswith("The video: notes.mp4 cannot be read as a video") and str(tmp_path) not in said
    assert app.attempt(app.video, "tiny", None, 0).error == "Upload a video clip first"
