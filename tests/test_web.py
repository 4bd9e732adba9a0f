"""The web app (``dualstylegan web``) in a real browser: Debian's chromium driven by Playwright, the tiny pack's
pipeline injected, the server on a free localhost port. Requests leaving localhost are blocked and reported (the
page must work offline). Screenshots go to the test's tmp dir and to ``$DUALSTYLEGAN_ARTIFACTS`` when set."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("DUALSTYLEGAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
#: a result image of the tiny generator's size (64²) is shown and loaded
WAIT_RESULT = ("() => [...document.querySelectorAll('#result-view img')]"
               ".some(e => e.complete && e.naturalWidth === 64 && e.naturalHeight === 64)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _artifact(page, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=full_page)
    target = os.environ.get("DUALSTYLEGAN_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
    return shot


# ----------------------------------------------------------------------------------------- without a browser
def test_gradio_missing_is_one_sentence(monkeypatch):
    import sys

    from dualstylegan import web

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    app = web.StyleApp({"tiny": None})  # the app object itself needs no Gradio
    with pytest.raises(web.WebError, match=r"pip install 'dualstylegan\[web\]'"):
        web.launch(app)


def test_weights_text_and_upload_limit(tmp_path):
    from dualstylegan import web
    from dualstylegan.pipeline import WeightError

    assert web.parse_weights(", ".join(["0.5"] * 18)) == [0.5] * 18
    assert web.parse_weights(" ".join(["1"] * 18)) == [1.0] * 18
    with pytest.raises(WeightError, match="18"):
        web.parse_weights("0.5, 0.5")
    with pytest.raises(WeightError, match="between 0 and 1"):
        web.parse_weights("a b c")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(web.WebError, match=r"the photo is 2\.0 MB; the limit is 1 MB"):
        web.FaceCache(max_upload_mb=1).get(str(big), "photo", align=False)
    with pytest.raises(web.WebError, match="upload a photo first"):
        web.FaceCache(max_upload_mb=1).get(None, "photo", align=False)
    with pytest.raises(web.WebError, match="upload an exemplar first"):
        web.FaceCache(max_upload_mb=1).get("", "exemplar", align=False)


def test_no_face_is_one_sentence(photos):
    from dualstylegan import web

    good, _ = photos  # gradients: no face for dlib (or no dlib: how to install it)
    with pytest.raises(web.WebError, match=r"^the photo: .*(face|dlib).*untick 'Align the face'"):
        web.FaceCache(max_upload_mb=10).get(str(good), "photo", align=True)
    face = web.FaceCache(max_upload_mb=10).get(str(good), "photo", align=False)
    assert face.size == (256, 256) and np.array_equal(np.asarray(face), np.asarray(Image.open(good)))


def test_photo_is_aligned_like_ffhq(tmp_path):
    """The face the page shows and the pipeline gets: the largest face of the photo, aligned by :mod:`faces`."""
    from dualstylegan import faces, web
    from dualstylegan.images import center_square, load_image

    data = pytest.importorskip("skimage.data", reason="the test photograph comes from scikit-image")
    try:
        faces.predictor_path()
    except ImportError as e:
        pytest.skip(str(e))
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=95)
    face = web.FaceCache(max_upload_mb=10).get(str(photo), "photo", align=True)
    expect = faces.align(load_image(photo), output_size=faces.FACE_SIZE)[0].image
    assert face.size == (faces.FACE_SIZE, faces.FACE_SIZE) == (256, 256)
    assert np.array_equal(np.asarray(face), np.asarray(expect))
    assert not np.array_equal(np.asarray(face), np.asarray(center_square(load_image(photo), faces.FACE_SIZE)))


def test_result_files_are_temporary():
    """Downloads live in one temporary folder: files older than max_age_s go on the next write, all of it with the app."""
    import gc

    from dualstylegan import web

    outputs = web.ResultFiles(max_age_s=60)
    folder = outputs.folder
    old = Path(outputs.png(Image.new("RGB", (8, 8)), "my photo.png"))
    assert old.is_file() and old.parent.parent == folder and old.name == "my_photo.png"
    os.utime(old, (time.time() - 120,) * 2)
    frames = [Image.new("RGB", (8, 8), (80 * i, 0, 0)) for i in range(3)]
    gif = Path(outputs.gif(frames, "blend.gif", 100, bounce=True))
    assert not old.parent.exists()  # over an hour (here a minute) old: removed
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4  # a → b → c → b (then loops)
    del outputs
    gc.collect()
    assert not folder.exists()


@pytest.mark.parametrize("limit", [1, 2])
def test_model_calls_wait_in_the_queue(tiny_pipeline, limit):
    """No more than max_concurrency model calls at once; the others wait with their queue position, and a running
    call reports its progress."""
    from gradio_client import Client

    from dualstylegan import web

    class Slow:
        """The tiny pipeline whose generate() takes a while and counts the calls running at once."""

        def __init__(self, pipe):
            self.pipe, self.running, self.peak, self.lock = pipe, 0, 0, threading.Lock()

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def generate(self, *args, **kwargs):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                time.sleep(0.5)
                return self.pipe.generate(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

    slow = Slow(tiny_pipeline)
    port = _free_port()
    demo = web.launch(web.StyleApp({"tiny": slow}, align=False, max_concurrency=limit), port=port, block=False,
                      quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit("tiny", 1, seed, False, False, False, 0.5, api_name="/run_random") for seed in range(3)]
        ranks, progress = set(), set()
        deadline = time.monotonic() + 60
        while not all(job.done() for job in jobs) and time.monotonic() < deadline:
            for job in jobs:
                status = job.status()
                ranks.add(status.rank if status.code.name == "IN_QUEUE" else None)
                progress.update(unit.desc for unit in status.progress_data or ())
            time.sleep(0.05)
        results = [job.result(timeout=10) for job in jobs]
    finally:
        demo.close()
    assert slow.peak == limit
    assert [len(r) for r in results] == [1, 1, 1]  # one portrait each
    assert "drawing random portraits" in progress
    if limit == 1:
        assert any(r is not None and r >= 1 for r in ranks), ranks  # a job behind another: its place shown


def test_gallery_shows_the_exemplars_own_image_when_the_dataset_is_there(tiny_pipeline, tmp_path):
    from dualstylegan import web
    from dualstylegan.images import center_square, load_image, to_image

    dataset = tmp_path / "images" / "train"
    dataset.mkdir(parents=True)
    own = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    own.save(dataset / tiny_pipeline.codes.name_of(1))            # the code bank's key is the file name
    (dataset / tiny_pipeline.codes.name_of(2)).write_text("damaged")  # unreadable: rendered from its code instead
    pipes = web.Pipelines({"tiny": tiny_pipeline}, exemplar_images=[tmp_path / "elsewhere", dataset])
    thumbs = pipes.thumbnails("tiny", [0, 1, 2])
    rendered = [to_image(tiny_pipeline.render_exemplar(i, size=web.THUMBNAIL_SIZE)) for i in (0, 2)]
    expect = center_square(load_image(dataset / tiny_pipeline.codes.name_of(1)), web.THUMBNAIL_SIZE)
    assert np.array_equal(np.asarray(thumbs[1]), np.asarray(expect))
    assert np.array_equal(np.asarray(thumbs[0]), np.asarray(rendered[0]))
    assert np.array_equal(np.asarray(thumbs[2]), np.asarray(rendered[1]))
    assert not np.array_equal(np.asarray(thumbs[1]), np.asarray(
        to_image(tiny_pipeline.render_exemplar(1, size=web.THUMBNAIL_SIZE))))


def test_cli_web_verb_serves_the_given_pack(tiny_pack, monkeypatch):
    from dualstylegan import cli, web

    launched = {}
    monkeypatch.setattr(web, "launch", lambda app, **kw: launched.update(kw, app=app))
    assert cli.main(["web", "--style", str(tiny_pack), "--port", "7999", "--no-align", "--max-upload-mb", "3",
                     "--device", "cpu"]) == 0
    app = launched["app"]
    assert launched["port"] == 7999 and launched["host"] == "127.0.0.1"
    assert isinstance(app, web.StyleApp) and app.max_upload_mb == 3 and app.align is False
    pipes = app.pipelines
    assert pipes.names == [str(tiny_pack)]
    assert pipes.get(str(tiny_pack)).encoder_wplus is not None  # loaded eagerly, with the W+ encoder


# ----------------------------------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_url(tiny_pipeline):
    from dualstylegan import web

    port = _free_port()
    demo = web.launch(web.StyleApp({"tiny": tiny_pipeline}, align=False, max_upload_mb=1), port=port, block=False,
                      quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture
def page(browser, app_url, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.external = []  # requests that tried to leave localhost

    def route(r):
        if r.request.url.startswith(app_url.rstrip("/")) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            pg.external.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.goto(app_url)
    pg.wait_for_selector("#gallery button.thumbnail-item img")  # the code bank's thumbnails are rendered
    yield pg
    context.close()


@pytest.fixture
def photos(tmp_path):
    """A 256² synthetic 'face' (smooth gradients) and a text file named like a PNG."""
    yy, xx = np.mgrid[0:256, 0:256]
    face = np.stack([xx, yy, 255 - (xx + yy) // 2], -1).astype(np.uint8)
    good = tmp_path / "face.png"
    Image.fromarray(face).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("this is a text file, not an image\n")
    return good, bad


@pytest.fixture
def big_photo(tmp_path):
    """A valid PNG over the app's 1 MB upload limit."""
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 2**20
    return big


def _natural_sizes(page, selector: str) -> list[list[int]]:
    return page.eval_on_selector_all(
        f"{selector} img", "els => els.filter(e => e.complete && e.naturalWidth > 0)"
                           ".map(e => [e.naturalWidth, e.naturalHeight])")


def test_transfer_in_the_browser(page, photos, tmp_path):
    good, _ = photos
    assert page.locator("#gallery button.thumbnail-item").count() == 3  # the tiny bank's 3 exemplars
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.wait_for_function("() => { const im = document.querySelector('#face img');"
                           " return im && im.complete && im.naturalWidth === 256; }")
    page.locator("#gallery button.thumbnail-item").nth(2).click()
    page.wait_for_function("() => document.querySelector('#chosen').innerText.includes('002')")
    page.locator("#structure input[type=range]").fill("0.5")
    assert page.locator("#structure input[type=number]").input_value() == "0.5"
    page.locator("#run").click()
    page.wait_for_function(WAIT_RESULT)
    assert [64, 64] in _natural_sizes(page, "#result-view")  # the tiny generator's size
    info = page.locator("#result-info").inner_text()
    assert "exemplar 2" in info and "structure 0.5" in info, info
    assert ".png" in page.locator("#download").inner_text()
    _artifact(page, tmp_path, "web_transfer.png")
    assert not page.external, f"the page tried to leave localhost: {page.external}"


def test_non_image_upload_is_rejected_in_one_sentence(page, photos, big_photo, tmp_path):
    good, bad = photos
    page.locator("#photo input[type=file]").set_input_files(str(big_photo))  # over the limit: Gradio refuses it
    page.locator(".toast-body").filter(has_text="big.png").wait_for()
    page.locator("#photo input[type=file]").set_input_files(str(bad))
    toast = page.locator(".toast-body").filter(has_text="The photo:").first
    toast.wait_for()
    text = toast.inner_text()
    assert "notes.png" in text and "/notes.png" not in text and "Traceback" not in text, text  # no server path
    _artifact(page, tmp_path, "web_rejected.png", full_page=False)  # with the toast
    page.wait_for_function("() => !document.querySelector('#photo img, #face img')")  # the upload was cleared
    # and the server still serves: a good photo goes through
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.wait_for_function("() => { const im = document.querySelector('#face img');"
                           " return im && im.complete && im.naturalWidth === 256; }")
    page.locator("#run").click()
    page.wait_for_function("() => [...document.querySelectorAll('#result-view img')]"
                           ".some(e => e.complete && e.naturalWidth === 64)")


def test_uploaded_exemplar_wplus_and_per_layer_weights(page, photos, tmp_path):
    good, _ = photos
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.get_by_text("…or upload any exemplar image").click()
    page.locator("#exemplar input[type=file]").set_input_files(str(good))
    page.wait_for_function("() => document.querySelector('#source input[value=\"Uploaded image\"]').checked")
    page.locator("#encoder").get_by_text("W+").click()
    page.locator("#preserve-color input").check()
    page.get_by_text("Advanced").click()
    page.locator("#per-layer input").check()
    page.locator("#weights textarea").fill("0.5, 0.5")  # too few: refused in one sentence
    page.locator("#run").click()
    toast = page.locator(".toast-body").filter(has_text="18")
    toast.wait_for()
    assert "Traceback" not in toast.inner_text()
    page.locator("#weights textarea").fill(", ".join(["0.25"] * 18))
    page.locator("#run").click()
    page.wait_for_function("() => document.querySelector('#result-info').innerText.includes('W+')")
    info = page.locator("#result-info").inner_text()
    assert "your exemplar image" in info and "per-layer weights 0.25" in info and "colors preserved" in info, info
    page.wait_for_function(WAIT_RESULT)


def test_random_portraits_and_blend_in_the_browser(page, photos, tmp_path):
    good, _ = photos
    page.get_by_role("tab", name="Random portraits").click()
    page.locator("#random-run").click()
    page.wait_for_function("() => document.querySelectorAll('#random-gallery img').length === 4")
    page.wait_for_function("() => [...document.querySelectorAll('#random-gallery img')]"
                           ".every(e => e.complete && e.naturalWidth === 64)")
    page.get_by_role("tab", name="Blend").click()
    page.locator("#blend-photo input[type=file]").set_input_files(str(good))
    page.locator("#blend-run").click()
    page.wait_for_function("() => { const im = document.querySelector('#blend-result img');"
                           " return im && im.complete && im.naturalWidth === 64 && im.src.includes('.gif'); }")
    _artifact(page, tmp_path, "web_blend.png")
    assert not page.external, f"the page tried to leave localhost: {page.external}"
