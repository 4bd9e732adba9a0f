"""dualstylegan.video and dualstylegan.tracking: clips written here by PyAV from real photos, the tiny pack."""
from __future__ import annotations

import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import needs_dlib

av = pytest.importorskip("av")

from dualstylegan import video as V  # noqa: E402
from dualstylegan.tracking import FaceTracker, OneEuroFilter, face_box, iou  # noqa: E402

FPS = 25
SAMPLE_RATE = 16000


# ------------------------------------------------------------------------------------------------ clips
def astronaut(size: int = 160) -> np.ndarray:
    """The astronaut photo's face region (the face at about a third of the frame), ``size``²."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).crop((120, 20, 330, 230))
    return np.asarray(img.resize((size, size), Image.LANCZOS))


def shifted(img: np.ndarray, dx: float, dy: float, zoom: float = 1.0) -> np.ndarray:
    """``img`` moved by a sub-pixel (dx, dy) and scaled about its centre (bilinear)."""
    from PIL import Image

    h, w = img.shape[:2]
    cx, cy = w / 2, h / 2
    a = 1 / zoom
    coeffs = (a, 0, cx - a * cx - dx * a, 0, a, cy - a * cy - dy * a)
    return np.asarray(Image.fromarray(img).transform((w, h), Image.AFFINE, coeffs, Image.BILINEAR))


def still_frames(n: int, size: int = 160, noise: float = 3.0, jitter: float = 0.5, seed: int = 0):
    """A still photo with per-frame sensor noise and sub-pixel jitter: the ideal output is still."""
    rng = np.random.default_rng(seed)
    base = astronaut(size)
    for _ in range(n):
        img = shifted(base, *rng.uniform(-jitter, jitter, 2)).astype(np.float32)
        yield np.uint8(np.clip(img + rng.normal(0, noise, img.shape), 0, 255))


def write_clip(path: Path, frames, fps: int = FPS, audio: bool = True, rotation: int | None = None,
               durations: list[int] | None = None, codec: str = "libx264") -> Path:
    """Encode RGB frames (H.264, time base 1/1000 s) and a 440 Hz sine as AAC; ``durations`` (ms) give a
    variable frame rate."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if a is not None:
            a.layout = "mono"
        t = 0
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += durations[i] if durations else 1000 // fps
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            n = SAMPLE_RATE * t // 1000
            x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, k:k + 1024]), format="flt", layout="mono")
                af.sample_rate, af.pts = SAMPLE_RATE, k
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[int], object]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.pts) for f in c.decode(s)]
        return [f for f, _ in frames], [p for _, p in frames], (s.average_rate, s.time_base, c.duration)


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


# ------------------------------------------------------------------------------------------------ a fake face
def fake_landmarks(cx: float, cy: float, size: float) -> np.ndarray:
    """68 landmarks of a frontal face of ``size`` px centred at (cx, cy): what FFHQ alignment reads (eyes, mouth)
    placed like dlib's, the rest on the jaw line."""
    lm = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    lm[:17] = np.stack([t * 0.5, 0.1 + 0.4 * np.sqrt(1 - t ** 2)], 1)  # jaw
    lm[17:36] = np.stack([np.linspace(-0.4, 0.4, 19), np.full(19, -0.2)], 1)  # brows and nose (flat)
    for i, ex in ((36, -0.2), (42, 0.2)):  # eyes
        ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        lm[i:i + 6] = np.stack([ex + 0.06 * np.cos(ang), -0.1 + 0.03 * np.sin(ang)], 1)
    lm[48:68] = np.stack([np.linspace(-0.15, 0.15, 20), np.full(20, 0.25)], 1)  # mouth, 48 and 54 its corners
    lm[54] = (0.15, 0.25)
    return lm * size + (cx, cy)


class FakeFaces:
    """Detector and refitter over faces whose true landmarks a test sets per frame (``truth``)."""

    def __init__(self, visible=lambda frame: True):
        self.truth: list[np.ndarray] = []
        self.visible = visible

    def detect(self, frame):
        return sorted(self.truth, key=lambda lm: -np.ptp(lm, 0).max()) if self.visible(frame) else []

    def refit(self, frame, box):
        truth = self.truth if self.visible(frame) else []
        best = max(truth, key=lambda lm: iou(face_box(lm), np.array(box, float)), default=None)
        return best if best is not None else np.zeros((68, 2))


# ------------------------------------------------------------------------------------------------ generator
def test_early_exit_equals_the_full_synthesis_skip(tiny_pipeline):
    g = tiny_pipeline.generator
    torch.manual_seed(0)
    z = torch.randn(2, g.n_latent, 512)
    ex_w = g.map_extrinsic(torch.randn(2, g.n_latent, 512))
    opts = dict(z_plus_latent=True, randomize_noise=False, use_res=True, interp_weights=[0.7] * 18)
    skips = {}
    hooks = [rgb.register_forward_hook(lambda m, i, o, r=2 ** (k + 3): skips.__setitem__(r, o.clone()))
             for k, rgb in enumerate(g.generator.to_rgbs)]
    hooks.append(g.generator.to_rgb1.register_forward_hook(lambda m, i, o: skips.__setitem__(4, o.clone())))
    with torch.no_grad():
        full, _ = g([z], ex_w, **opts)
        for h in hooks:
            h.remove()
        for size in (4, 8, 16, 32):
            early, _ = g([z], ex_w, output_size=size, **opts)
            assert early.shape[-1] == size
            assert torch.equal(early, skips[size]), size
        assert torch.equal(g([z], ex_w, output_size=64, **opts)[0], full)
        plain = g.generator([z], z_plus_latent=True, randomize_noise=False)[0]
        assert plain.shape[-1] == 64 and g.generator([z], z_plus_latent=True, randomize_noise=False,
                                                     output_size=16)[0].shape[-1] == 16
        out = tiny_pipeline.synthesize(z, ex_w, z_plus_latent=True, use_res=True, interp_weights=[0.7] * 18,
                                       output_size=32)
        assert torch.equal(out, skips[32])
    for bad in (3, 48, 128):
        with pytest.raises(ValueError, match="power of two"):
            g([z], ex_w, output_size=bad, **opts)


# ------------------------------------------------------------------------------------------------ tracking
def test_one_euro_is_steady_when_still_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    still = [f(np.array([[100.0, 100.0]]) + rng.normal(0, 1, (1, 2)), i / 25, scale=100) for i in range(50)]
    assert np.std(np.array(still)[25:], axis=0).max() < 0.45  # raw noise: 1 px
    f = OneEuroFilter()
    moving = [f(np.array([[100.0 + 10 * i, 100.0]]), i / 25, scale=100)[0, 0] for i in range(50)]
    assert 100 + 10 * 49 - moving[-1] < 15  # under 1.5 frames behind at 2.5 face sizes per second
    raw = OneEuroFilter(min_cutoff=1e9)  # no smoothing at all
    assert raw(np.ones(2), 0.0) == pytest.approx(np.ones(2)) and raw(np.zeros(2), 0.04) == pytest.approx(np.zeros(2), abs=1e-6)


def test_tracks_keep_their_identity_when_two_faces_cross():
    faces = FakeFaces()
    tracker = FaceTracker(detect=faces.detect, refit=faces.refit, detect_every=3, smoothing=None)
    frame = np.zeros((240, 400, 3), np.uint8)
    ids_a, ids_b = set(), set()
    for i in range(40):  # A goes right, B goes left; their boxes overlap in the middle frames
        a = fake_landmarks(60 + 7 * i, 100, 60)
        b = fake_landmarks(340 - 7 * i, 140, 56)
        faces.truth = [a, b]
        out = tracker.update(frame, i / 25)
        assert len(out) == 2
        for f in out:
            (ids_a if np.allclose(f.landmarks, a) else ids_b).add(f.track_id)
    assert ids_a == {0} and ids_b == {1}


def test_a_face_entering_later_is_picked_up_and_largest_follows_one():
    faces = FakeFaces()
    tracker = FaceTracker(detect=faces.detect, refit=faces.refit, detect_every=4, smoothing=None)
    largest = FaceTracker("largest", detect=faces.detect, refit=faces.refit, detect_every=4, smoothing=None)
    frame = np.zeros((240, 400, 3), np.uint8)
    seen, seen_largest = [], []
    for i in range(12):
        faces.truth = [fake_landmarks(100, 120, 50)] + ([fake_landmarks(300, 120, 80)] if i >= 5 else [])
        seen.append([f.track_id for f in tracker.update(frame, i / 25)])
        seen_largest.append([f.track_id for f in largest.update(frame, i / 25)])
    assert seen[:5] == [[0]] * 5 and seen[-1] == [0, 1] and seen.index([0, 1]) <= 8
    assert all(s == [0] for s in seen_largest)
    faces.truth = []  # everybody leaves: the tracks go once detection has missed them max_missed times
    for i in range(12, 12 + 4 * 5):
        out = tracker.update(frame, i / 25)
    assert out == []


# ------------------------------------------------------------------------------------------------ the stages
def frames_of(images, fps: int = FPS):
    return [V.Frame(i, i * 40, i / fps, img) for i, img in enumerate(images)]


@pytest.mark.parametrize("kw", [{"preserve_color": True, "structure": 0.3},
                                pytest.param({"wplus": True, "preserve_color": True}, marks=pytest.mark.slow)])
def test_batches_equal_the_pipeline_transfer(tiny_pipeline, kw):
    from PIL import Image

    from dualstylegan.images import to_image, to_tensor

    crops = [Image.fromarray(shifted(astronaut(256), 3 * k, 0)) for k in range(2)]
    styler = V.VideoStyler(tiny_pipeline, 1, tracker=object(), **kw)
    one = styler._stylise(crops[:1], [0])[0]
    ref = tiny_pipeline.transfer(to_tensor(crops[0]), 1, **kw).image
    assert np.array_equal(np.asarray(one), np.asarray(to_image(ref)))
    batch = styler._stylise(crops, [0, 1])  # a batch: the same to float rounding
    ref = np.asarray(to_image(tiny_pipeline.transfer(to_tensor(crops[1]), 1, **kw).image), np.int16)
    assert np.abs(np.asarray(batch[1], np.int16) - ref).max() <= 1
    small = V.VideoStyler(tiny_pipeline, 1, tracker=object(), portrait_size=32)._stylise(crops[:1], [0])[0]
    assert small.size == (32, 32)


def test_frames_without_faces_pass_through_unchanged():
    faces = FakeFaces(visible=lambda frame: frame[0, 0, 0] != 7)  # a frame marked 7 has no face
    faces.truth = [fake_landmarks(64, 60, 50)]
    tracker = FaceTracker(detect=faces.detect, refit=faces.refit, detect_every=1, smoothing=None)
    images = [astronaut(128).copy() for _ in range(7)]
    for i in (0, 1, 4, 6):
        images[i][0, 0, 0] = 7
    styler = V.VideoStyler(StubPipeline(), 0, tracker=tracker, batch_size=2)
    out = list(styler.frames(frames_of(images)))  # the frames handed to the encoder
    assert [f.index for f in out] == list(range(7)) and [f.pts for f in out] == [i * 40 for i in range(7)]
    for i, (frame, img) in enumerate(zip(out, images)):
        assert np.array_equal(frame.image, img) == (i in (0, 1, 4, 6)), i
    assert styler.stats.faces == 3 and styler.stats.tracks == 2  # the face that came back is a new track


class StubPipeline:
    """The pipeline calls VideoStyler makes, at no cost (the memory test runs hundreds of frames)."""

    n_latent, color_rows = 10, slice(7, 10)

    def __init__(self):
        self.generator = self

    size = 64

    def weights_for(self, weights=None, structure=None, color=None):
        return [0.75] * 18

    def exemplar_code(self, exemplar):
        return torch.zeros(1, self.n_latent, 512)

    def map_extrinsic(self, z):
        return z

    def encode(self, image, wplus=False):
        return torch.zeros(image.shape[0], self.n_latent, 512)

    def synthesize(self, intrinsic, extrinsic_w, output_size=None, **options):
        """A fixed portrait: a face drawn in the crop's frame, as a generated one is."""
        n = output_size or self.size
        low = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
        img = torch.nn.functional.interpolate(low, size=n, mode="bilinear", align_corners=False)
        return img.expand(intrinsic.shape[0], -1, -1, -1)


def test_memory_is_flat_in_the_clip_length():
    faces = FakeFaces()
    faces.truth = [fake_landmarks(64, 64, 24)]  # its FFHQ crop lies inside the frame
    base = astronaut(128)

    def run(n):
        tracker = FaceTracker(detect=faces.detect, refit=faces.refit, smoothing=V.DEFAULT_SMOOTHING)
        styler = V.VideoStyler(StubPipeline(), 0, tracker=tracker, batch_size=4, portrait_size=16)
        frames = (V.Frame(i, i * 40, i / FPS, base.copy()) for i in range(n))
        tracemalloc.start()
        count = sum(1 for _ in styler.frames(frames))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return count, peak, styler.stats

    n20, peak20, stats20 = run(20)
    n200, peak200, stats200 = run(200)
    assert (n20, n200) == (20, 200)
    assert stats20.max_in_flight == stats200.max_in_flight == 4
    assert peak200 < 1.25 * peak20 + 256 * 1024, (peak20, peak200)


# ------------------------------------------------------------------------------------------------ files
def test_timing_rotation_and_audio_are_preserved(tmp_path):
    """Variable frame rate, a 90° display rotation, an AAC track: the same stamps, upright frames, the same audio."""
    durations = [40, 80, 40, 120, 40, 40, 80, 40]
    images = [np.uint8(np.full((48, 64, 3), 30 * i)) for i in range(8)]
    for img in images:
        img[:8, :8] = (255, 0, 0)  # a red corner shows which way is up
    src = write_clip(tmp_path / "in.mp4", images, rotation=90, durations=durations)
    info = V.probe(src)
    assert (info.width, info.height, info.rotation, info.has_audio) == (48, 64, 90, True)
    faces = FakeFaces(visible=lambda frame: False)
    tracker = FaceTracker(detect=faces.detect, refit=faces.refit)
    res = V.stylize_video(StubPipeline(), src, tmp_path / "out.mp4", tracker=tracker, crf=10)
    assert res.path == tmp_path / "out.mp4" and not res.interrupted and res.stats.frames == 8
    frames_in, pts_in, (rate_in, tb_in, dur_in) = decode(src)
    frames_out, pts_out, (rate_out, tb_out, dur_out) = decode(res.path)
    assert len(frames_out) == 8
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]
    assert rate_out == rate_in and dur_out == pytest.approx(dur_in, abs=0.05e6)
    upright = np.rot90(frames_in[0], 1)
    assert frames_out[0].shape == upright.shape == (64, 48, 3)
    assert np.abs(frames_out[0].astype(int) - upright).mean() < 3
    with av.open(str(res.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and not list(c.decode(video=0))[0].rotation
    assert audio_packets(res.path) == audio_packets(src)


def test_ctrl_c_leaves_a_playable_partial_file(tmp_path):
    src = write_clip(tmp_path / "in.mp4", [astronaut(64)] * 12, audio=False)
    faces = FakeFaces()
    faces.truth = [fake_landmarks(32, 30, 14)]

    def stop(stats, info):
        if stats.frames == 5:
            raise KeyboardInterrupt

    res = V.stylize_video(StubPipeline(), src, tmp_path / "out.mp4", progress=stop, batch_size=2,
                          tracker=FaceTracker(detect=faces.detect, refit=faces.refit))
    assert res.interrupted and res.path == tmp_path / "out.partial.mp4"
    assert not (tmp_path / "out.mp4").exists() and len(decode(res.path)[0]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.partial.mp4"]  # no temporary file left
    with pytest.raises(V.VideoError, match="already exists"):  # a rerun does not replace it silently
        V.stylize_video(StubPipeline(), src, tmp_path / "out.mp4")


def one_sentence(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.endswith("."), text
    return text


def test_bad_input_is_one_sentence_and_nothing_is_overwritten(tmp_path):
    good = write_clip(tmp_path / "good.mp4", [astronaut(64)] * 3, audio=False)
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as c:
        a = c.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts = SAMPLE_RATE, 0
        for p in [*a.encode(f), *a.encode()]:
            c.mux(p)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    pipe = StubPipeline()
    cases = {
        audio_only: "no video stream",
        tmp_path / "noise.mp4": "cannot be read as a video",
        tmp_path / "cut.mp4": "cannot be read|no frames|could not be decoded",
        tmp_path / "empty.mp4": "empty",
        tmp_path / "missing.mp4": "does not exist",
    }
    for src, message in cases.items():
        with pytest.raises(V.VideoError, match=message) as e:
            V.stylize_video(pipe, src, tmp_path / "out.mp4")
        one_sentence(e.value)
    with pytest.raises(V.VideoError, match="above the limit") as e:
        V.stylize_video(pipe, good, tmp_path / "out.mp4", max_pixels=32 * 32)
    one_sentence(e.value)
    with pytest.raises(V.VideoError, match="is the input") as e:
        V.stylize_video(pipe, good, good, overwrite=True)
    one_sentence(e.value)
    with pytest.raises(V.VideoError, match="cannot be written") as e:
        V.stylize_video(pipe, good, tmp_path / "blocker" / "out.mp4")
    one_sentence(e.value)
    with pytest.raises(V.VideoError, match="format") as e:
        V.stylize_video(pipe, good, tmp_path / "out.xyz")
    one_sentence(e.value)
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep me")
    with pytest.raises(V.VideoError, match="already exists") as e:
        V.stylize_video(pipe, good, taken)
    one_sentence(e.value)
    assert taken.read_bytes() == b"keep me"
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------------------------------------ real faces
def run_cli(argv, monkeypatch):
    """``dualstylegan video …`` through cli.main (the verb added to the parser as cli.build_parser will)."""
    from dualstylegan import cli, video_cli

    build = cli.build_parser

    def with_video():
        parser = build()
        sub = next(a for a in parser._actions if a.dest == "verb")
        if "video" not in sub.choices:
            video_cli.add_parser(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_video)
    return cli.main(argv)


def test_cli_stylises_a_clip_with_its_sound(tiny_pack, tmp_path, monkeypatch, capsys):
    needs_dlib()
    src = write_clip(tmp_path / "still.mp4", still_frames(5))
    out = tmp_path / "styled.mp4"
    assert run_cli(["video", str(src), "--style", str(tiny_pack), "--style-id", "1", "-o", str(out), "--quiet",
                    "--device", "cpu", "--offline"], monkeypatch) == 0
    assert "5 frame(s), 5 face(s) in 1 track(s)" in capsys.readouterr().out
    frames_in, pts_in, timing_in = decode(src)
    frames_out, pts_out, timing_out = decode(out)
    assert pts_out == pts_in and timing_out[0] == timing_in[0] and len(frames_out) == 5
    assert audio_packets(out) == audio_packets(src)
    from dualstylegan.faces import detect_landmarks, ffhq_quad
    from PIL import Image

    inside = V.quad_mask((160, 160), [ffhq_quad(detect_landmarks(Image.fromarray(frames_in[2]))[0])])
    diff = np.abs(frames_out[2].astype(int) - frames_in[2]).mean(2)
    assert diff[inside].mean() > 20 and diff[~inside].mean() < 4  # the face changed, the rest did not
    # bad input: one line, exit 1, the output untouched
    assert run_cli(["video", str(src), "--style", str(tiny_pack), "-o", str(out)], monkeypatch) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "already exists" in err and len(err.splitlines()) == 1


def test_smoothing_lowers_flicker(tmp_path):
    """A still photo with sensor noise and sub-pixel jitter: the stylised face flickers less with landmark smoothing
    (the portrait is fixed in the crop's frame, as a generated face is, so what moves it is the alignment)."""
    needs_dlib()
    from dualstylegan.faces import detect_landmarks, ffhq_quad
    from PIL import Image

    frames = frames_of(list(still_frames(12, noise=4.0, jitter=0.7, seed=1)))
    mask = V.quad_mask(frames[0].image.shape[:2], [ffhq_quad(detect_landmarks(Image.fromarray(frames[0].image))[0])])
    ratios = {}
    for name, smoothing in (("raw", None), ("smoothed", V.DEFAULT_SMOOTHING)):
        styler = V.VideoStyler(StubPipeline(), 0, smoothing=smoothing, detect_every=100)
        meter = V.FlickerMeter()
        for f_in, f_out in zip(frames, styler.frames(frames)):
            meter.add(f_in.image, f_out.image, mask)
        ratios[name] = meter.ratio
    assert ratios["smoothed"] < 0.8 * ratios["raw"], ratios
