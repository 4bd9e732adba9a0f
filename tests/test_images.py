"""dualstylegan.images: every odd or broken input gives a correct RGB image or one ImageError naming the file."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualstylegan.images import (
    MAX_PIXELS, ImageError, center_square, is_image_file, iter_image_files, load_image, load_square, make_grid,
    save_animation, save_image, to_image, to_rgb, to_tensor,
)


def noise_image(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def png_header_only(path: Path, width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> Path:
    """A PNG whose header claims ``width``×``height`` (with one tiny IDAT): costs nothing to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def assert_error_names(excinfo, path: Path):
    message = str(excinfo.value)
    assert path.name in message
    assert "\n" not in message
    assert excinfo.value.path == path


# ------------------------------------------------------------------------------------------------ bad files
def test_missing_file(tmp_path):
    p = tmp_path / "nobody.jpg"
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert_error_names(e, p)
    assert "does not exist" in str(e.value)


def test_folder_is_not_an_image(tmp_path):
    p = tmp_path / "photos.jpg"
    p.mkdir()
    with pytest.raises(ImageError, match="folder") as e:
        load_image(p)
    assert_error_names(e, p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as e:
        load_image(p)
    assert_error_names(e, p)


def test_text_renamed_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n" * 20)
    with pytest.raises(ImageError, match="not an image") as e:
        load_image(p)
    assert_error_names(e, p)


def test_truncated_jpeg(tmp_path):
    whole = tmp_path / "whole.jpg"
    noise_image(256, 256).save(whole, quality=95)
    data = whole.read_bytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    assert load_image(whole).size == (256, 256)
    with pytest.raises(ImageError, match="truncated") as e:
        load_image(p)
    assert_error_names(e, p)


@pytest.mark.parametrize("side", [9000, 10000, 20000])  # our limit, PIL's warning, PIL's error
def test_decompression_bomb(tmp_path, side):
    p = png_header_only(tmp_path / f"bomb{side}.png", side, side)
    assert side * side > MAX_PIXELS
    with pytest.raises(ImageError, match="too large") as e:
        load_image(p)
    assert_error_names(e, p)


def test_corrupt_png_data(tmp_path):
    p = png_header_only(tmp_path / "garbled.png", 64, 64, bit_depth=8, color_type=2)  # IDAT far too short
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert_error_names(e, p)


def test_truncated_png(tmp_path):
    whole = tmp_path / "whole.png"
    noise_image(128, 128).save(whole)
    p = tmp_path / "cut.png"
    p.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert_error_names(e, p)


# ------------------------------------------------------------------------------------------------ odd but good files
def test_16bit_png_scales_to_full_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)
    assert Image.open(p).mode.startswith("I")
    img = load_image(p)
    a = np.asarray(img)
    assert img.mode == "RGB" and img.size == (256, 8)
    assert a.min() == 0 and a.max() == 255
    row = a[0, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0)
    assert np.abs(row - np.arange(256)).max() <= 1  # scaled, not clipped at 255
    assert np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2])


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "print.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    img = load_image(p)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert img.mode == "RGB"
    assert r > 200 and g < 60 and b < 60


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((20, 40, 4), np.uint8)
    a[:, :20] = (0, 0, 255, 255)  # opaque blue
    a[:, 20:] = (255, 0, 0, 0)  # transparent red
    p = tmp_path / "alpha.png"
    Image.fromarray(a, "RGBA").save(p)
    out = np.asarray(load_image(p))
    assert tuple(out[5, 5]) == (0, 0, 255)
    assert tuple(out[5, 30]) == (255, 255, 255)


def test_la_and_palette_transparency(tmp_path):
    la = Image.new("LA", (8, 8), (0, 0))
    p1 = tmp_path / "la.png"
    la.save(p1)
    assert tuple(np.asarray(load_image(p1))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    pal.paste(0, (0, 0, 4, 8))
    p2 = tmp_path / "pal.png"
    pal.save(p2, transparency=1)  # index 1 (red) is transparent
    out = np.asarray(load_image(p2))
    assert tuple(out[0, 0]) == (0, 255, 0)
    assert tuple(out[0, 6]) == (255, 255, 255)


def test_greyscale(tmp_path):
    p = tmp_path / "grey.png"
    Image.fromarray(np.full((10, 12), 77, np.uint8), "L").save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (12, 10)
    assert np.all(np.asarray(img) == 77)


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; the left quarter red
    a[:, :10] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    p = tmp_path / "phone.jpg"
    img.save(p, exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.size == (20, 40)
    o = np.asarray(out).astype(int)
    assert o[:8, :, 0].mean() > 200 and o[:8, :, 1].mean() < 50  # the left edge is now the top
    assert o[-8:, :, 0].mean() < 50


def test_broken_exif_is_ignored(tmp_path):
    p = tmp_path / "odd.jpg"
    noise_image(16, 16).save(p, exif=b"Exif\x00\x00garbage-not-tiff")
    assert load_image(p).size == (16, 16)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = np.asarray(load_image(p))
    assert tuple(out[8, 8]) == (255, 0, 0)


def test_load_returns_independent_rgb(tmp_path):
    p = tmp_path / "a.png"
    noise_image().save(p)
    img = load_image(p)
    p.unlink()  # the image does not depend on the file any more
    assert img.mode == "RGB" and img.size == (64, 48)
    assert np.asarray(img).shape == (48, 64, 3)


def test_to_rgb_of_open_images():
    assert to_rgb(Image.new("1", (4, 4), 1)).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("RGBA", (4, 4), (10, 20, 30, 255))).getpixel((0, 0)) == (10, 20, 30)


# ------------------------------------------------------------------------------------------------ tensors
def test_tensor_roundtrip_exact_for_every_uint8():
    rng = np.random.default_rng(0)
    a = np.stack([rng.permutation(256).reshape(16, 16) for _ in range(3)], -1).astype(np.uint8)
    img = Image.fromarray(a, "RGB")
    t = to_tensor(img)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert float(t.min()) == -1.0 and float(t.max()) == 1.0
    assert torch.allclose(t[0, :, 0, 0], torch.tensor(a[0, 0], dtype=torch.float32) / 127.5 - 1)
    assert np.array_equal(np.asarray(to_image(t)), a)
    assert np.array_equal(np.asarray(to_image(t[0])), a)


def test_to_image_rounds_down_and_clamps():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0, float("nan")]).view(1, 1, 7).expand(3, 1, 7)
    v = np.asarray(to_image(x))[0, :, 0]
    assert v.tolist() == [0, 0, 127, 254, 255, 255, 127]
    one = to_image(torch.zeros(1, 1, 2, 2))
    assert one.mode == "RGB" and one.getpixel((0, 0)) == (127, 127, 127)
    with pytest.raises(ValueError, match="batch"):
        to_image(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError):
        to_image(torch.zeros(4, 4))


def test_to_tensor_resizes_and_converts():
    t = to_tensor(noise_image(64, 48), size=32)
    assert t.shape == (1, 3, 32, 32)
    assert to_tensor(noise_image(64, 48), size=(20, 10)).shape == (1, 3, 10, 20)
    assert to_tensor(Image.new("L", (5, 7), 255)).shape == (1, 3, 7, 5)
    with pytest.raises(TypeError):
        to_tensor(np.zeros((4, 4, 3)))


def test_center_square():
    wide = noise_image(64, 48)
    square = center_square(wide, 48)
    assert square.size == (48, 48) and np.array_equal(np.asarray(square), np.asarray(wide)[:, 8:56])
    assert center_square(noise_image(30, 50), 20).size == (20, 20)
    same = noise_image(32, 32)
    assert center_square(same, 32) is same


def test_load_square_is_center_square_as_a_tensor(tmp_path):
    wide = noise_image(64, 48, seed=3)
    wide.save(tmp_path / "wide.png")
    t = load_square(tmp_path / "wide.png", 48)
    assert t.shape == (1, 3, 48, 48) and t.dtype == torch.float32
    assert torch.equal(t, to_tensor(center_square(wide, 48)))
    raw = load_square(tmp_path / "wide.png", 48, uint8=True)
    assert raw.dtype == torch.uint8 and raw.shape == (1, 3, 48, 48)
    assert torch.equal(raw.float() / 127.5 - 1, t)
    with pytest.raises(ImageError, match="does not exist"):
        load_square(tmp_path / "missing.png", 48)


# ------------------------------------------------------------------------------------------------ saving
def test_save_refuses_overwrite_then_replaces(tmp_path):
    p = tmp_path / "out.png"
    save_image(noise_image(seed=1), p)
    first = p.read_bytes()
    with pytest.raises(ImageError, match="already exists") as e:
        save_image(noise_image(seed=2), p)
    assert_error_names(e, p)
    assert p.read_bytes() == first
    save_image(noise_image(seed=2), p, overwrite=True)
    assert np.array_equal(np.asarray(load_image(p)), np.asarray(noise_image(seed=2)))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_save_tensor_and_formats(tmp_path):
    t = to_tensor(noise_image())
    save_image(t, tmp_path / "t.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "t.png")), np.asarray(noise_image()))
    save_image(Image.new("RGBA", (8, 8), (1, 2, 3, 128)), tmp_path / "a.jpg")
    assert load_image(tmp_path / "a.jpg").size == (8, 8)
    save_image(t, tmp_path / "new" / "deeper" / "x.png")  # missing folders are made
    with pytest.raises(ImageError, match="extension") as e:
        save_image(t, tmp_path / "x.txt")
    assert "x.txt" in str(e.value)


def test_save_to_unwritable_folder(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a folder")
    p = blocker / "out.png"  # a parent that is a file: fails even for root
    with pytest.raises(ImageError, match="cannot write") as e:
        save_image(noise_image(), p)
    assert_error_names(e, p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["afile"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    p = tmp_path / "out.png"

    def full_disk(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(ImageError, match="No space left") as e:
        save_image(noise_image(), p)
    assert_error_names(e, p)
    assert list(tmp_path.iterdir()) == []


def test_save_animation(tmp_path):
    frames = [to_tensor(Image.new("RGB", (16, 16), c)) for c in ((255, 0, 0), (0, 0, 255))]
    p = save_animation(frames, tmp_path / "blend.gif")
    with Image.open(p) as im:
        assert im.n_frames == 2
    with pytest.raises(ImageError, match="already exists"):
        save_animation(frames, p)


# ------------------------------------------------------------------------------------------------ grids and folders
def test_make_grid():
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    batch = torch.full((2, 3, 10, 10), -1.0)  # two black cells
    grid = make_grid([red, batch, None], nrow=2, padding=2)
    assert grid.size == (2 * 12 + 2, 2 * 12 + 2)
    assert grid.getpixel((5, 5)) == (255, 0, 0)
    assert grid.getpixel((17, 5)) == (0, 0, 0)
    assert grid.getpixel((5, 17)) == (0, 0, 0)
    assert grid.getpixel((17, 17)) == (255, 255, 255)  # the empty cell
    g = make_grid([red, Image.new("RGB", (40, 20))], nrow=4, size=8, padding=0)
    assert g.size == (16, 8)


def test_image_files(tmp_path):
    for name in ("b.JPG", "a.png", "c.txt", ".hidden.png", "._a.jpg", "d.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.png").write_bytes(b"x")
    assert [p.name for p in iter_image_files(tmp_path)] == ["a.png", "b.JPG", "d.webp"]
    assert [p.name for p in iter_image_files(tmp_path, recursive=True)] == ["a.png", "b.JPG", "d.webp", "e.png"]
    assert is_image_file("x.TIFF") and not is_image_file("x.npy")


def test_every_format_that_loads_is_found_in_a_folder(tmp_path):
    """Issue 10 item 11: a folder of .avif files is not 'has no images' when one .avif loads."""
    from PIL import features

    from dualstylegan.images import IMAGE_EXTENSIONS, image_extensions

    registered = Image.registered_extensions()
    assert all(registered.get(e) in Image.OPEN for e in image_extensions())
    assert {".jpg", ".png", ".webp"} <= IMAGE_EXTENSIONS <= image_extensions() | IMAGE_EXTENSIONS
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    assert ".avif" in IMAGE_EXTENSIONS
    noise_image().save(tmp_path / "a.avif")
    noise_image(seed=1).save(tmp_path / "b.AVIF")
    assert load_image(tmp_path / "a.avif").size == (64, 48)
    assert [p.name for p in iter_image_files(tmp_path)] == ["a.avif", "b.AVIF"]


def test_symlink_loop_is_not_reported_as_missing(tmp_path):
    """Issue 10 item 11: a symlink loop says so instead of 'does not exist'."""
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "other.png")
    (tmp_path / "other.png").symlink_to(loop)
    with pytest.raises(ImageError, match=r"loop\.png is a symbolic link loop"):
        load_image(loop)
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match=r"broken\.png is a broken symbolic link \(to .*gone\.png"):
        load_image(broken)
    folder = tmp_path / "photos"
    folder.symlink_to(folder)
    with pytest.raises(NotADirectoryError, match="symbolic link loop"):
        iter_image_files(folder)


def _png_zlib_level(path) -> int:
    """FLEVEL of the first IDAT chunk's zlib header: 0 fastest … 3 maximum compression."""
    data = path.read_bytes()
    i = data.index(b"IDAT")
    return data[i + 5] >> 6


def test_png_is_written_at_the_references_fast_level(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    fast = save_image(img, tmp_path / "fast.png")
    assert _png_zlib_level(fast) == 0  # zlib level 1 (cv2.imwrite's default)
    assert _png_zlib_level(save_image(img, tmp_path / "small.png", compress_level=9)) == 3
    assert np.array_equal(np.asarray(Image.open(fast)), np.asarray(img))
