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
    assert old.is_file() and old.parent.parent == folder / "results" and old.name == "my_photo.png"
    os.utime(old, (time.time() - 120,) * 2)
    frames = [Image.new("RGB", (8, 8), (80 * i, 0, 0)) for i in range(3)]
    gif = Path(outputs.gif(frames, "blend.gif", 100, bounce=True))
    assert not old.parent.exists()  # over an hour (here a minute) old: removed
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4  # a → b → c → b (then loops)
    del outputs
    gc.collect()
    assert not folder.exists()
    closed = web.ResultFiles()
    closed.close()  # what the app's stop calls
    assert not closed.folder.exists()


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
    assert [(error, len(gallery)) for error, gallery in results] == [("", 1)] * 3  # one portrait each
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


#: The laptop sizes the page is laid out for (issue 15): width, height
LAPTOPS = [(1280, 800), (1400, 900)]


@pytest.fixture(params=LAPTOPS[:1], ids=lambda wh: f"{wh[0]}x{wh[1]}")
def page(browser, app_url, tmp_path, request):
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.external = []  # requests that tried to leave localhost
    pg.size = f"{width}x{height}"

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


#: the box of an element in the viewport's coordinates
RECT = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
#: the result image: the after side of the before/after slider, loaded at the tiny generator's size
RESULT_IMG = "#result-view img >> nth=-1"


def _in_viewport(page, selector: str) -> bool:
    left, top, right, bottom = page.locator(selector).evaluate(RECT)
    vw, vh = page.viewport_size["width"], page.viewport_size["height"]
    return left >= 0 and top >= 0 and right <= vw + 0.5 and bottom <= vh + 0.5


def _nothing_clipped(page) -> None:
    """No sideways scrolling, and every exemplar thumbnail wholly inside its gallery (the 4th column was cut off)."""
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "sideways scroll"
    box = page.locator("#gallery").evaluate(RECT)
    for thumb in page.locator("#gallery button.thumbnail-item").all():
        left, _, right, _ = thumb.evaluate(RECT)
        assert box[0] - 0.5 <= left and right <= box[2] + 0.5, (page.size, (left, right), box)


@pytest.mark.parametrize("page", LAPTOPS, indirect=True, ids=lambda wh: f"{wh[0]}x{wh[1]}")
def test_transfer_in_the_browser(page, photos, tmp_path):
    """At laptop sizes: nothing clipped, the result inside the viewport when it arrives (screenshots of what a
    person sees at each size)."""
    good, _ = photos
    assert page.locator("#gallery button.thumbnail-item").count() == 3  # the tiny bank's 3 exemplars
    _nothing_clipped(page)
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.wait_for_function("() => { const im = document.querySelector('#face img');"
                           " return im && im.complete && im.naturalWidth === 256; }")
    page.locator("#gallery button.thumbnail-item").nth(2).click()
    page.wait_for_function("() => document.querySelector('#chosen').innerText.includes('002')")
    page.locator("#structure input[type=range]").fill("0.5")
    assert page.locator("#structure input[type=number]").input_value() == "0.5"
    page.mouse.wheel(0, 400)  # the user scrolled down to the sliders before clicking
    page.locator("#run").click()
    page.wait_for_function(WAIT_RESULT)
    assert [64, 64] in _natural_sizes(page, "#result-view")  # the tiny generator's size
    info = page.locator("#result-info").inner_text()
    assert "exemplar 2" in info and "structure 0.5" in info, info
    assert ".png" in page.locator("#download").inner_text()
    page.wait_for_function("() => { const r = document.querySelector('#before-after').getBoundingClientRect();"
                           " return r.top >= 0 && r.bottom <= window.innerHeight; }")  # scrolled into view
    assert _in_viewport(page, "#before-after") and _in_viewport(page, RESULT_IMG), page.locator(RESULT_IMG).evaluate(RECT)
    _nothing_clipped(page)
    _artifact(page, tmp_path, f"web_transfer_{page.size}.png", full_page=False)
    assert not page.external, f"the page tried to leave localhost: {page.external}"


def test_an_error_keeps_the_last_good_result(page, photos, tmp_path):
    good, _ = photos
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.locator("#run").click()
    page.wait_for_function(WAIT_RESULT)
    src = page.locator(RESULT_IMG).get_attribute("src")
    info = page.locator("#result-info").inner_text()
    page.get_by_text("Advanced").click()
    page.locator("#per-layer input").check()
    page.locator("#weights textarea").fill("0.5, 0.5")  # too few: refused in one sentence
    page.locator("#run").click()
    page.wait_for_function("() => document.querySelector('#result-error').innerText.includes('18')")
    assert page.locator(RESULT_IMG).get_attribute("src") == src  # the last good portrait is still there
    assert page.locator("#result-info").inner_text() == info
    assert page.locator("#result-view").get_by_text("Error", exact=True).count() == 0
    _artifact(page, tmp_path, "web_error_kept.png", full_page=False)


def test_example_photos_and_the_weight_panel(page, tmp_path):
    """An example photo is one click; the 18 per-layer weights disable the two sliders; the refine steps apply to
    an uploaded exemplar only."""
    examples = page.locator("#examples button, #examples .gallery-item, #examples td").filter(has=page.locator("img"))
    assert examples.count() >= 2
    examples.last.click()  # the astronaut's face crop
    page.wait_for_function("() => { const im = document.querySelector('#face img');"
                           " return im && im.complete && im.naturalWidth === 256; }")
    structure = page.locator("#structure input[type=range]")
    assert structure.is_enabled() and page.locator("#color input[type=range]").is_enabled()
    page.get_by_text("Advanced").click()
    assert not page.locator("#weights textarea").is_enabled()
    page.locator("#per-layer input").check()
    page.wait_for_function("() => document.querySelector('#structure input[type=range]').disabled")
    assert not page.locator("#color input[type=range]").is_enabled()
    assert page.locator("#weights textarea").is_enabled()
    assert "18 per-layer weights" in page.locator("#weights-note").inner_text()
    page.locator("#per-layer input").uncheck()
    page.wait_for_function("() => !document.querySelector('#structure input[type=range]').disabled")
    page.get_by_text("…or upload any exemplar image").click()
    refine = page.locator("#refine input[type=range]")
    assert not refine.is_enabled()
    page.locator("#source").get_by_text("Uploaded image").click()
    page.wait_for_function("() => !document.querySelector('#refine input[type=range]').disabled")
    _artifact(page, tmp_path, "web_panels.png", full_page=False)


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


@pytest.mark.parametrize("page", LAPTOPS[1:], indirect=True, ids=lambda wh: f"{wh[0]}x{wh[1]}")
def test_random_portraits_and_blend_in_the_browser(page, photos, tmp_path):
    """Blend takes the Transfer tab's photo (uploaded once, at the left) and two exemplars clicked as thumbnails."""
    good, _ = photos
    page.locator("#photo input[type=file]").set_input_files(str(good))
    page.get_by_role("tab", name="Random portraits").click()
    page.locator("#random-run").click()
    page.wait_for_function("() => document.querySelectorAll('#random-gallery img').length === 4")
    page.wait_for_function("() => [...document.querySelectorAll('#random-gallery img')]"
                           ".every(e => e.complete && e.naturalWidth === 64)")
    page.get_by_role("tab", name="Blend").click()
    page.locator("#blend-a button.thumbnail-item").nth(2).click()
    page.locator("#blend-b button.thumbnail-item").nth(1).click()
    page.wait_for_function("() => document.querySelector('#chosen-a').innerText.includes('002')"
                           " && document.querySelector('#chosen-b').innerText.includes('001')")
    assert page.locator("#blend-id-a input").input_value() == "2"
    page.locator("#blend-run").click()
    page.wait_for_function("() => { const im = document.querySelector('#blend-result img');"
                           " return im && im.complete && im.naturalWidth === 64 && im.src.includes('.gif'); }")
    assert "face_tiny_blend" in page.locator("#blend-file").inner_text()  # the GIF, for download
    assert _in_viewport(page, "#blend-result img")
    _artifact(page, tmp_path, f"web_blend_{page.size}.png", full_page=False)
    assert not page.external, f"the page tried to leave localhost: {page.external}"


def test_video_tab_in_the_browser(page, tmp_path):
    """The Video tab: a clip uploaded, an exemplar clicked, the result played in the page and offered as an MP4."""
    pytest.importorskip("av")
    import test_video

    clip = test_video.write_clip(tmp_path / "clip.mp4", [test_video.astronaut(64)] * 4)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-clip input[type=file]").set_input_files(str(clip))
    page.locator("#video-gallery button.thumbnail-item").nth(1).click()
    page.wait_for_function("() => document.querySelector('#video-chosen').innerText.includes('001')")
    assert page.locator("#video-style-id input").input_value() == "1"
    page.locator("#video-size input[value=full]").check()
    page.locator("#video-run").click()
    page.wait_for_function("() => { const v = document.querySelector('#video-result video');"
                           " return v && (v.currentSrc || v.src).includes('clip_tiny_001'); }", timeout=120_000)
    assert "clip_tiny_001" in page.locator("#video-file").inner_text()  # the MP4, for download
    assert "4 frames of 64×64" in page.locator("#video-info").inner_text()
    assert not page.external, f"the page tried to leave localhost: {page.external}"

# ----------------------------------------------------------------------------------------- stops and load (issue 10)
SERVER = """
import sys
from dualstylegan import web
from dualstylegan.pipeline import StyleTransferPipeline
app = web.StyleApp({"tiny": StyleTransferPipeline.from_pretrained(sys.argv[1])}, align=False)
print("FOLDER", app.outputs.folder, flush=True)
web.launch(app, port=int(sys.argv[2]), quiet=True)
print("STOPPED", flush=True)
"""


def _client(url: str, tmp_path: Path, deadline_s: float = 90):
    from gradio_client import Client

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_any_stop_removes_uploads_and_results(tiny_pack, photos, tmp_path, stop):
    """The server in its own process: an upload and a transfer leave files in the app's folder (Gradio's copies
    of the upload included); SIGTERM, like Ctrl+C, stops it and removes them all."""
    import signal
    import subprocess
    import sys

    from gradio_client import handle_file

    good, _ = photos
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tiny_pack), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.startswith("FOLDER "), first + proc.stdout.read()
        folder = Path(first.split(" ", 1)[1].strip())
        client = _client(f"http://127.0.0.1:{port}/", tmp_path)
        _, face = client.predict(handle_file(str(good)), False, api_name="/preview_photo")
        assert Image.open(face).size == (256, 256)
        error, _, info, _ = client.predict("tiny", handle_file(str(good)), False, "Gallery", 1, None, 0.75, 1, False,
                                           "", False, 0.75, "Z+", 0, api_name="/run_transfer")
        assert error == "" and "exemplar 1" in info
        kept = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.name == "face.png" for p in kept), kept  # the upload, in the app's folder
        assert any(p.name == "face_tiny_001.png" for p in kept), kept  # the result
        proc.send_signal(getattr(signal, stop))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "STOPPED" in out, out  # launch returned: the clean-up ran
    assert not folder.exists(), sorted(map(str, folder.rglob("*")))


def test_concurrent_previews_of_one_large_photo_all_succeed(tiny_pipeline, tmp_path):
    """8 clients preview the same large PNG at once, twice: every request gets its complete face image (the shown
    image is written once, never rewritten while another request streams it)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import handle_file

    from dualstylegan import web

    yy, xx = np.mgrid[0:2000, 0:2000]
    big = tmp_path / "big.png"
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)).save(big)
    port = _free_port()
    app = web.StyleApp({"tiny": tiny_pipeline}, align=False, max_upload_mb=50, max_concurrency=2)
    demo = web.launch(app, port=port, block=False, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"

        def preview(i):
            client = _client(url, tmp_path / str(i))
            _, face = client.predict(handle_file(str(big)), False, api_name="/preview_photo")
            with Image.open(face) as im:
                im.load()  # a truncated file fails here
                return im.size

        with ThreadPoolExecutor(8) as pool:
            for _ in range(2):
                assert list(pool.map(preview, range(8))) == [(256, 256)] * 8
    finally:
        demo.close()
    assert not app.outputs.folder.exists()
