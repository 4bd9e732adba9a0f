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
