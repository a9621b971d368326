"""Third adversarial review (2026-11-28): each defect it found, reproduced and now refused cleanly.

- a damaged image that makes a Pillow plugin raise something other than OSError/ValueError;
- an output that appears while encoding is never replaced without --overwrite (race);
- output names as long as the file system allows work, longer ones are said to be too long;
- output formats labkit cannot write (no writer, icon formats, too large) are refused before decoding;
- --refine has a ceiling; a symlinked output is refused as a link; --weights naming a file says so;
- a garbage model.pt does not relay torch's advice to load it with weights_only=False.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

from labkit import atomic, imageio, spec
from labkit.cli import main
from labkit.codec import Codec, CodecError, decode_file


@pytest.fixture
def png(tmp_path):
    p = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(p)
    return p


@pytest.fixture
def lkc(tmp_path, png):
    out = tmp_path / "in.lkc"
    assert main(["encode", str(png), str(out)]) == 0
    return out


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("labkit: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_a_plugin_raising_type_error_is_a_clean_data_error(tmp_path, monkeypatch, capsys):
    """A TIFF whose next-page pointer is damaged made Pillow raise TypeError through load()."""
    p = tmp_path / "bad.tif"
    Image.new("CMYK", (20, 24)).save(p)
    data = bytearray(p.read_bytes())
    data[132] = 16
    p.write_bytes(bytes(data))
    assert main(["encode", str(p), str(tmp_path / "o.lkc")]) == 1
    _one_error_line(capsys, "bad.tif", "not a readable image")
    # whatever a plugin raises, load() names the file
    from PIL import Image as PILImage

    def boom(*a, **k):
        raise KeyError("plugin bug")

    monkeypatch.setattr(PILImage, "open", boom)
    with pytest.raises(imageio.DataError, match="bad.tif: not a readable image \\(KeyError"):
        imageio.load(p)
    assert not (tmp_path / "o.lkc").exists()


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(atomic.WriteError, match="appeared while the output was being made"):
        with atomic.atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"result")
            target.write_bytes(b"precious")  # someone else's file, created during the work
    assert target.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]  # no temp file left
    atomic.write_bytes(target, b"result", overwrite=True)
    assert target.read_bytes() == b"result"


def test_codec_encode_file_without_overwrite_refuses_an_existing_file(tmp_path, png):
    dst = tmp_path / "o.lkc"
    dst.write_bytes(b"keep")
    codec = Codec.from_pretrained("resae", b=2)
    with pytest.raises(atomic.WriteError, match="already exists"):
        codec.encode_file(png, dst, overwrite=False)
    assert dst.read_bytes() == b"keep"


def _name_max(folder) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        pytest.skip("the file system does not report its name limit")


def test_long_output_names(tmp_path, png, capsys):
    limit = _name_max(tmp_path)
    longest = tmp_path / ("a" * (limit - 4) + ".lkc")  # exactly the limit: accepted by the file system
    assert main(["encode", str(png), str(longest)]) == 0
    assert longest.is_file()
    capsys.readouterr()
    too_long = tmp_path / ("b" * (limit + 40) + ".lkc")
    assert main(["encode", str(png), str(too_long)]) == 1
    _one_error_line(capsys, "file name is too long", f"allows {limit}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.png", longest.name])


@pytest.mark.parametrize("suffix, needle", [(".ico", "icons hold square resized copies"),
                                             (".bufr", "Pillow cannot save an RGB image as BUFR"),
                                             (".msp", "Pillow cannot save an RGB image as MSP")])
def test_unwritable_formats_are_refused_before_decoding(tmp_path, lkc, monkeypatch, capsys, suffix, needle):
    import labkit.codec as codec_mod

    def no_decode(*a, **k):
        raise AssertionError("decoded before the output format was checked")

    monkeypatch.setattr(codec_mod, "decode", no_decode)
    out = tmp_path / ("o" + suffix)
    assert main(["decode", str(lkc), str(out)]) == 1
    _one_error_line(capsys, needle, "use .png")
    assert not out.exists()


def test_format_size_limits_are_checked_from_the_header(tmp_path):
    with pytest.raises(imageio.DataError, match="WEBP holds at most 16383x16383 pixels and the image is 17000x8"):
        imageio.check_writable(tmp_path / "w.webp", 17000, 8)
    assert imageio.check_writable(tmp_path / "w.webp", 16383, 8) == "WEBP"
    assert imageio.check_writable(tmp_path / "w.png", 100000, 8) == "PNG"


def test_refine_has_a_ceiling(tmp_path, png, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(png), str(tmp_path / "o.lkc"), "--refine", str(spec.REFINE_MAX_STEPS + 1)])
    assert exc.value.code == 2
    assert f"at most {spec.REFINE_MAX_STEPS} refinement steps" in capsys.readouterr().err
    with pytest.raises(CodecError, match=f"at most {spec.REFINE_MAX_STEPS}"):
        Codec.from_pretrained("resae", b=2, refine=10 ** 20)
    Codec.from_pretrained("resae", b=2, refine=spec.REFINE_MAX_STEPS)  # the ceiling itself is allowed


def test_symlinked_output_is_refused_as_a_link_not_as_existing(tmp_path, png, capsys):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    link = tmp_path / "sl.lkc"
    link.symlink_to(keep)
    for extra in ([], ["--overwrite"]):
        assert main(["encode", str(png), str(link), *extra]) == 1
        line = _one_error_line(capsys, "symbolic link")
        assert "--overwrite" not in line
    assert keep.read_text() == "precious" and link.is_symlink()


def test_weights_option_naming_a_file(tmp_path, png, capsys):
    assert main(["encode", str(png), str(tmp_path / "o.lkc"), "--weights", str(png)]) == 1
    _one_error_line(capsys, "is a file, not a folder")


def test_garbage_weights_file_gives_no_weights_only_false_advice(tmp_path, png, capsys):
    run = tmp_path / "w" / "resae"
    run.mkdir(parents=True)
    from labkit.codec import WEIGHTS_DIR

    (run / "config.json").write_text((WEIGHTS_DIR / "resae" / "config.json").read_text())
    (run / "model.pt").write_bytes(b"not a torch file at all" * 10)
    assert main(["encode", str(png), str(tmp_path / "o.lkc"), "--model", "resae", "--weights", str(tmp_path / "w")]) == 1
    line = _one_error_line(capsys, "not a labkit weights file")
    assert "weights_only" not in line


def test_os_errors_read_as_file_and_reason(tmp_path, monkeypatch, capsys):
    import labkit.codec as codec_mod

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", "/some/where.lkc")

    monkeypatch.setattr(codec_mod, "encode_file", denied)
    png = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(png)
    assert main(["encode", str(png), str(tmp_path / "o.lkc")]) == 1
    line = _one_error_line(capsys, "/some/where.lkc: Permission denied")
    assert "Errno" not in line


def test_decode_file_api_refuses_an_existing_output_when_asked(tmp_path, lkc):
    dst = tmp_path / "o.png"
    dst.write_bytes(b"keep")
    with pytest.raises(atomic.WriteError, match="already exists"):
        decode_file(lkc, dst, overwrite=False)
    assert dst.read_bytes() == b"keep"
    decode_file(lkc, dst)  # the API's default replaces, as before
    assert Image.open(dst).size == (48, 40)


def test_reviewed_again(tmp_path, monkeypatch):
    """The review of the fixes above: libjpeg's real limit, warnings kept, folder names, no-link file systems."""
    with pytest.raises(imageio.DataError, match="JPEG holds at most 65500x65500"):
        imageio.check_writable(tmp_path / "w.jpg", 65520, 8)
    with pytest.raises(imageio.DataError, match="PDF holds at most 65500"):
        imageio.check_writable(tmp_path / "w.pdf", 65501, 8)
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(imageio.LabkitDataWarning, match="2 frames"):  # not "not a readable image"
            imageio.load(gif)
    msg = atomic.name_too_long(tmp_path / ("a" * 300) / "out.png")
    assert "the folder name aaaa" in msg and "(300 bytes" in msg
    real_link = os.link

    def no_links(*a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "link", no_links)
    atomic.write_bytes(tmp_path / "x.bin", b"data", overwrite=False)  # falls back to a checked rename
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    with pytest.raises(atomic.WriteError, match="it already exists"):  # refused before any work
        atomic.write_bytes(tmp_path / "x.bin", b"other", overwrite=False)
    with pytest.raises(atomic.WriteError, match="appeared while"):  # the fallback's own check
        with atomic.atomic_path(tmp_path / "y.bin", overwrite=False) as tmp:
            tmp.write_bytes(b"result")
            (tmp_path / "y.bin").write_bytes(b"precious")
    assert (tmp_path / "y.bin").read_bytes() == b"precious" and (tmp_path / "x.bin").read_bytes() == b"data"
    monkeypatch.setattr(os, "link", real_link)


def test_demo_figure_is_not_replaced_unasked(tmp_path):
    import matplotlib.pyplot as plt

    from labkit import plots

    out = tmp_path / "d.png"
    out.write_bytes(b"precious")
    with pytest.raises(atomic.WriteError):
        plots.save_figure(plt.figure(), out, overwrite=False)
    assert out.read_bytes() == b"precious"
