"""labkit.imageio: one conversion path to 8-bit RGB from files, PIL images and arrays, and atomic save."""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit import imageio as IO
from labkit.imageio import DataError, LabkitDataWarning

RNG = np.random.default_rng(0)


def _rgb(h=16, w=16):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png16_rgb(path: Path, a: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- files (load)

def test_rgb_png_loads_without_warning(tmp_path, recwarn):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "0.png")
    out = IO.load(tmp_path / "0.png")
    assert out.dtype == np.uint8 and np.array_equal(out, a)
    assert not [w for w in recwarn if issubclass(w.category, LabkitDataWarning)]


def test_grey_becomes_rgb_with_warning(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    with pytest.warns(LabkitDataWarning, match=r"g\.png.*mode L"):
        out = IO.load(tmp_path / "g.png")
    assert out.shape == (16, 16, 3) and np.array_equal(out[..., 1], g)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[0, 0, 3] = 255                      # one opaque red pixel, the rest transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(LabkitDataWarning, match="RGBA"):
        out = IO.load(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


def test_grey_alpha_and_palette(tmp_path):
    Image.fromarray(np.dstack([np.full((4, 4), 100, np.uint8)] + [np.full((4, 4), 255, np.uint8)]), "LA").save(tmp_path / "la.png")
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    with pytest.warns(LabkitDataWarning, match="LA"):
        assert IO.load(tmp_path / "la.png")[0, 0].tolist() == [100] * 3
    with pytest.warns(LabkitDataWarning, match="mode P"):
        assert IO.load(tmp_path / "p.png").shape == (16, 16, 3)


def test_16bit_grey_and_rgb_scaled_not_clipped(tmp_path):
    g = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)   # 0..65535
    Image.fromarray(g).save(tmp_path / "g16.png")
    with pytest.warns(LabkitDataWarning, match="I;16"):
        out = IO.load(tmp_path / "g16.png")
    assert np.array_equal(out[..., 2], (g >> 8).astype(np.uint8))
    c = RNG.integers(0, 65536, (8, 8, 3)).astype(np.uint16)
    _write_png16_rgb(tmp_path / "c16.png", c)
    with pytest.warns(LabkitDataWarning, match="16-bit RGB"):
        out = IO.load(tmp_path / "c16.png")
    assert np.array_equal(out, (c >> 8).astype(np.uint8))


def test_cmyk_jpeg_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "k.jpg", quality=95)
    with pytest.warns(LabkitDataWarning, match="CMYK"):
        out = IO.load(tmp_path / "k.jpg")
    assert out.shape == (8, 8, 3) and out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_unreadable_file_is_data_error_naming_it(tmp_path):
    (tmp_path / "0.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"0\.png.*not a readable image") as e:
        IO.load(tmp_path / "0.png")
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------- one path: files, PIL images, arrays agree

def _three_ways(tmp_path: Path, im: Image.Image) -> list[np.ndarray]:
    """The same image converted from a PNG file, from the PIL image and (where numpy can hold it) an array."""
    im.save(tmp_path / "x.png")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = [IO.as_rgb8(tmp_path / "x.png"), IO.as_rgb8(str(tmp_path / "x.png")), IO.as_rgb8(im)]
    assert all(issubclass(w.category, LabkitDataWarning) for w in rec)
    return out


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "I;16", "P"])
def test_file_pil_and_array_give_the_same_pixels_and_warning(tmp_path, mode):
    base = _rgb(12, 10)
    if mode == "L":
        im, arr = Image.fromarray(base[..., 0], "L"), base[..., 0]
    elif mode == "LA":
        la = np.dstack([base[..., 0], base[..., 1]])
        im, arr = Image.fromarray(la, "LA"), la
    elif mode == "RGBA":
        rgba = np.dstack([base, base[..., 2]])
        im, arr = Image.fromarray(rgba, "RGBA"), rgba
    elif mode == "I;16":
        g16 = base[..., 0].astype(np.uint16) * 257 + 3
        im, arr = Image.fromarray(g16), g16
    else:
        im, arr = Image.fromarray(base).convert("P"), None
    from_file, from_str, from_pil = _three_ways(tmp_path, im)
    assert from_file.dtype == np.uint8 and from_file.shape == (12, 10, 3)
    assert np.array_equal(from_file, from_str) and np.array_equal(from_file, from_pil)
    if arr is not None:
        with pytest.warns(LabkitDataWarning):
            from_array = IO.as_rgb8(arr)
        assert np.array_equal(from_array, from_file)


def test_16bit_keeps_the_top_8_bits_not_clipped_to_white():
    g16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    with pytest.warns(LabkitDataWarning, match="16-bit"):
        out = IO.as_rgb8(Image.fromarray(g16))
    assert np.array_equal(out[..., 0], (g16 >> 8).astype(np.uint8))
    assert abs(out.mean() - (g16 >> 8).mean()) < 1e-9  # Pillow's convert("RGB") would give ~255
    c16 = RNG.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    with pytest.warns(LabkitDataWarning, match="uint16 pixels taken as 16-bit"):
        assert np.array_equal(IO.as_rgb8(c16), (c16 >> 8).astype(np.uint8))


@pytest.mark.parametrize("make", [lambda a: a.astype(np.int64), lambda a: a.astype(np.int32), lambda a: a.tolist()],
                         ids=["int64", "int32", "list"])
def test_8bit_values_in_a_wider_integer_type_are_taken_as_they_are(make):
    """img.astype(int) or a nested list of 0..255 values came out black: taken as 16-bit and shifted by 8."""
    rgb = RNG.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    with pytest.warns(LabkitDataWarning, match="all in 0..255, taken as 8-bit"):
        assert np.array_equal(IO.as_rgb8(make(rgb)), rgb)
    wide = rgb.astype(np.int64) * 256                                   # values above 255: 16-bit, as before
    with pytest.warns(LabkitDataWarning, match="int64 pixels taken as 16-bit"):
        assert np.array_equal(IO.as_rgb8(wide), rgb)
    dark16 = rgb.astype(np.uint16)                                      # uint16 says 16-bit, even if dark
    with pytest.warns(LabkitDataWarning, match="uint16 pixels taken as 16-bit"):
        assert np.array_equal(IO.as_rgb8(dark16), (dark16 >> 8).astype(np.uint8))


def test_alpha_is_composited_on_white_never_dropped():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255
    rgba[0, 1, 3] = 128
    with pytest.warns(LabkitDataWarning, match="alpha"):
        out = IO.as_rgb8(rgba)
    assert out[0, 0].tolist() == [200, 0, 0]      # opaque: the colour
    assert out[1, 1].tolist() == [255, 255, 255]  # transparent: white, not the hidden colour
    assert out[0, 1, 1] in (127, 128)             # half: between


def test_rgb8_arrays_pass_through_without_warning(recwarn):
    a = _rgb()
    assert IO.as_rgb8(a) is a
    assert np.array_equal(IO.as_rgb8(a[:, ::-1]), a[:, ::-1]) and IO.as_rgb8(a[:, ::-1]).flags.c_contiguous
    assert not [w for w in recwarn if issubclass(w.category, LabkitDataWarning)]


@pytest.mark.parametrize("bad,pattern", [
    (np.zeros((4, 4, 3), np.float32), "expected uint8 pixels, got float32; convert with labkit.data.to_uint8"),
    (np.zeros((4, 4, 3), bool), "expected uint8 pixels, got bool"),
    (np.full((4, 4, 3), -1, np.int16), r"values outside 0\.\.65535"),
    (np.zeros((4, 4, 5), np.uint8), r"shape \(4, 4, 5\)"),
    (np.zeros(7, np.uint8), r"shape \(7,\)"),
], ids=["float", "bool", "negative", "5ch", "1d"])
def test_bad_arrays_are_data_errors(bad, pattern):
    with pytest.raises(DataError, match=pattern):
        IO.as_rgb8(bad)


def test_unsupported_pil_mode():
    with pytest.raises(DataError, match="unsupported image mode F"):
        IO.as_rgb8(Image.new("F", (2, 2)))


def test_batch():
    x = RNG.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    assert IO.as_rgb8_batch(x) is x
    with pytest.warns(LabkitDataWarning, match=r"images\[0\]: grey"):
        b = IO.as_rgb8_batch([x[0, ..., 0], x[1]])
    assert b.shape == (2, 4, 4, 3)
    with pytest.raises(DataError, match="differ in size"):
        IO.as_rgb8_batch([x[0], x[1, :2]])


# ---------------------------------------------------------------- save

def test_save_round_trip_and_atomic(tmp_path):
    a = _rgb(9, 7)
    IO.save(a, tmp_path / "a.png")
    assert np.array_equal(IO.load(tmp_path / "a.png"), a)
    with pytest.raises(DataError, match="suffix such as .png"):
        IO.save(a, tmp_path / "a.nosuchformat")
    with pytest.raises(DataError):
        IO.save(np.zeros((2, 2), np.float32), tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_exif_orientation_is_applied_with_a_warning(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)  # stored 32 wide, 16 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    stored = np.asarray(Image.open(path).convert("RGB"))
    with pytest.warns(LabkitDataWarning, match="EXIF orientation 6"):
        upright = IO.load(path)
    assert upright.shape == (32, 16, 3)
    assert np.array_equal(upright, np.rot90(stored, k=-1))  # clockwise, as a viewer shows it


def test_a_non_srgb_colour_profile_is_noted(tmp_path):
    from PIL import ImageCms

    path = tmp_path / "lab.png"
    lab_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, icc_profile=lab_profile.tobytes())
    with pytest.warns(LabkitDataWarning, match="colour profile"):
        IO.load(path)
    srgb = tmp_path / "srgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        srgb, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IO.load(srgb)  # sRGB: nothing to say


def test_max_pixels_refuses_from_the_header_and_replaces_pillows_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("1", (300, 200)).save(path)
    with pytest.raises(DataError, match=r"300x200 = 60000 pixels exceeds the limit of 59999"):
        IO.load(path, max_pixels=59_999)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's guard alone: 60000 > 2 x 1000 is an error
    with pytest.raises(DataError, match="decompression-bomb"):
        IO.load(path)
    with pytest.warns(LabkitDataWarning, match="mode 1"):
        assert IO.load(path, max_pixels=60_000).shape == (200, 300, 3)  # the caller's cap is the one that counts
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


def test_saving_a_gif_warns_that_it_keeps_256_colours(tmp_path):
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)   # about 1,000 colours
    with pytest.warns(LabkitDataWarning, match="GIF holds at most 256 colours.*save as .png"):
        IO.save(rgb, tmp_path / "x.gif")
    assert (tmp_path / "x.gif").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IO.save(rgb, tmp_path / "x.png")                                          # lossless: no warning
        IO.save(np.zeros((16, 16, 3), np.uint8), tmp_path / "black.gif")          # one colour: GIF keeps it


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, LabkitDataWarning)]


def test_mode_i_with_8_bit_values_is_not_made_black(tmp_path):
    """A 32-bit integer TIFF holding 0..255 (an int array saved by PIL) is 8-bit, as the same array is."""
    g = (np.arange(48 * 64) % 256).reshape(48, 64).astype(np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(g).save(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = IO.load(path)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        same_array = IO.as_rgb8(g.astype(np.int64))
    assert np.array_equal(out[..., 0], g.astype(np.uint8)) and np.array_equal(out, same_array)
    assert any("32-bit integer" in m and "taken as 8-bit" in m and "16-bit" not in m for m in _messages(record))
    wide = g * 256                                       # values past 255: 16-bit content, kept >> 8
    Image.fromarray(wide).save(path)
    with pytest.warns(LabkitDataWarning, match="taken as 16-bit"):
        assert np.array_equal(IO.load(path)[..., 0], g.astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_transparent_colour_is_composited_like_alpha(tmp_path, mode):
    a = np.zeros((8, 8, 3), np.uint8)
    a[:4] = 200
    im = Image.fromarray(a if mode == "RGB" else a[..., 0])
    path = tmp_path / "key.png"
    im.save(path, transparency=(0, 0, 0) if mode == "RGB" else 0)
    with pytest.warns(LabkitDataWarning, match="transparent colour; composited onto white"):
        out = IO.load(path)
    assert (out[6, 6] == 255).all() and (out[0, 0] == 200).all()


def _phone_jpeg(tmp_path: Path, orientation: int) -> Path:
    """A 40x30 JPEG whose EXIF orientation tag is ``orientation`` (6: turn 90 degrees to stand upright)."""
    im = Image.fromarray(_rgb(30, 40))
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes())
    return path


def test_a_pil_image_reads_as_its_file_does(tmp_path):
    """EXIF orientation, frames and warnings: as_rgb8(Image.open(f)) equals load(f), whichever way in."""
    path = _phone_jpeg(tmp_path, orientation=6)
    with warnings.catch_warnings(record=True) as by_path:
        warnings.simplefilter("always")
        from_path = IO.load(path)
    with warnings.catch_warnings(record=True) as by_pil, Image.open(path) as opened:
        warnings.simplefilter("always")
        from_pil = IO.as_rgb8(opened)
    assert from_pil.shape == (40, 30, 3) and np.array_equal(from_pil, from_path)
    assert [m.split(": ", 1)[1] for m in _messages(by_pil)] == [m.split(": ", 1)[1] for m in _messages(by_path)]
    gif = tmp_path / "two.gif"
    Image.fromarray(_rgb()).save(gif, save_all=True, append_images=[Image.fromarray(255 - _rgb())])
    with Image.open(gif) as opened, warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        IO.as_rgb8(opened)
    assert any("2 frames; using the first" in m for m in _messages(record))


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_an_invalid_exif_orientation_turns_nothing_and_says_nothing(tmp_path, orientation):
    path = _phone_jpeg(tmp_path, orientation)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert IO.load(path).shape == (30, 40, 3)
    assert not any("orientation" in m for m in _messages(record))


def test_an_unreadable_file_says_so_not_to_resave_it(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    Image.fromarray(_rgb()).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(DataError, match=r"secret.png: cannot be read \(Permission denied\); check its permissions"):
        IO.load(path)


def test_a_pil_image_the_caller_turned_is_not_turned_again(tmp_path):
    """transpose/rotate keep the EXIF tag; only an image straight from Image.open has its orientation applied."""
    path = _phone_jpeg(tmp_path, orientation=6)
    with Image.open(path) as opened, warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        upright = opened.transpose(Image.Transpose.ROTATE_270)
        assert IO.as_rgb8(upright).shape == (40, 30, 3)
    assert not any("orientation" in m for m in _messages(record))


def test_a_seeked_animation_says_which_frame_it_gives(tmp_path):
    gif = tmp_path / "two.gif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(gif, save_all=True,
                                                        append_images=[Image.fromarray(np.full((8, 8, 3), 255, np.uint8))])
    with Image.open(gif) as opened, warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        opened.seek(1)
        assert IO.as_rgb8(opened).mean() == 255
    assert any("2 frames; using frame 1, the one it is at" in m for m in _messages(record))
