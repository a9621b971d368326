"""``python -m labkit``: a few true subprocess runs, the rest in-process through ``labkit.cli.main``.

Contract under test: exit 0 on success; on failure a non-zero exit, exactly one
``labkit: error: ...`` line on stderr (argparse usage errors: exit 2 and its usage
text) and no output file, half-written or temporary, left behind.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit import bitstream
from labkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="agg")
    return subprocess.run([sys.executable, "-m", "labkit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("labkit: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def source_image(eval_tiles) -> np.ndarray:
    return eval_tiles[7][:41, :57].copy()  # 57x41 (W x H) real content, padded to 64x48 inside


@pytest.fixture
def workdir(tmp_path, source_image) -> Path:
    Image.fromarray(source_image).save(tmp_path / "img.png")
    (tmp_path / "notes.txt").write_text("this is not an image\n")
    return tmp_path


@pytest.fixture(scope="module")
def lkc_bytes(tmp_path_factory, source_image) -> bytes:
    """A valid .lkc of the source image (ae1, b=2), made through the CLI once."""
    d = tmp_path_factory.mktemp("lkc")
    Image.fromarray(source_image).save(d / "img.png")
    assert main(["encode", str(d / "img.png"), str(d / "img.lkc"), "--model", "ae1"]) == 0
    return (d / "img.lkc").read_bytes()


# ----------------------------------------------------------------------------- true end to end

def test_subprocess_encode_info_decode(workdir):
    r = run_cli("encode", "img.png", "img.lkc", "--b", "3", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    size = (workdir / "img.lkc").stat().st_size
    assert f"img.lkc: {size} bytes" in r.stdout
    assert f"{size * 8 / (57 * 41):.4f} bpp" in r.stdout and "model=resae" in r.stdout and "b=3" in r.stdout

    r = run_cli("info", "img.lkc", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^model\s+resae\b", r.stdout, re.M)
    assert re.search(r"^quantizer\s+b=3 ", r.stdout, re.M)
    assert f"57x41 RGB, {size * 8 / (57 * 41):.4f} bpp" in r.stdout
    assert f"({size} bytes = {bitstream.HEADER_SIZE} header + {size - bitstream.HEADER_SIZE} payload)" in r.stdout
    assert "context=neighbor" in r.stdout

    r = run_cli("decode", "img.lkc", "out.png", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "out.png: 57x41 RGB" in r.stdout
    with Image.open(workdir / "out.png") as im:
        assert im.size == (57, 41) and im.mode == "RGB"
    assert listing(workdir) == {"img.png", "notes.txt", "img.lkc", "out.png"}


def test_subprocess_corrupt_file(workdir, lkc_bytes):
    bad = bytearray(lkc_bytes)
    bad[-2] ^= 0x04
    (workdir / "bad.lkc").write_bytes(bytes(bad))
    r = run_cli("decode", "bad.lkc", "out.png", cwd=workdir)
    assert r.returncode == 1
    assert_one_error_line(r.stderr, "CRC mismatch")
    assert r.stdout == ""
    assert not (workdir / "out.png").exists()


def test_subprocess_usage_error(workdir):
    r = run_cli("encode", "img.png", "x.lkc", "--b", "0", cwd=workdir)
    assert r.returncode == 2
    assert "usage: labkit encode" in r.stderr and "invalid choice: 0" in r.stderr
    assert not (workdir / "x.lkc").exists()


# ----------------------------------------------------------------------------- in process

def test_encode_decode_in_process(workdir, capsys, source_image):
    assert main(["encode", str(workdir / "img.png"), str(workdir / "a.lkc"), "--model", "ae2",
                 "--b", "4", "--context", "channel"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    header, _ = bitstream.unpack((workdir / "a.lkc").read_bytes())
    assert (header.model, header.b, header.context, header.width, header.height) == ("ae2", 4, "channel", 57, 41)
    assert "model=ae2, b=4, context=channel" in out.out

    assert main(["decode", str(workdir / "a.lkc"), str(workdir / "a.png")]) == 0  # model from the header
    assert capsys.readouterr().err == ""
    with Image.open(workdir / "a.png") as im:
        assert im.size == (57, 41)


def test_force_suffix(workdir, capsys):
    assert main(["encode", str(workdir / "img.png"), str(workdir / "a.bin"), "--model", "ae1", "--force-suffix"]) == 0
    assert bitstream.unpack((workdir / "a.bin").read_bytes())[0].model == "ae1"


def test_rgba_input_warns_once_and_succeeds(workdir, capsys, source_image):
    rgba = np.dstack([source_image, np.full(source_image.shape[:2], 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(workdir / "rgba.png")
    assert main(["encode", str(workdir / "rgba.png"), str(workdir / "rgba.lkc"), "--model", "ae1"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("labkit: warning: ") and "alpha" in err[0]
    assert (workdir / "rgba.lkc").is_file()


@pytest.mark.parametrize("argv,fragments", [
    (["encode", "missing.png", "out.lkc"], ["missing.png", "does not exist"]),
    (["encode", "notes.txt", "out.lkc"], ["notes.txt", "not a readable image"]),
    (["encode", "img.png", "out.png"], ["should end in .lkc", "--force-suffix"]),
    (["encode", "img.png", "out.lkc", "--model", "nosuchmodel"], ["'nosuchmodel'", "available: ae1, ae2, resae"]),
    (["decode", "missing.lkc", "out.png"], ["missing.lkc", "does not exist"]),
    (["decode", "notes.txt", "out.png"], ["not a labkit .lkc file"]),
    (["decode", "corrupt.lkc", "out.png"], ["CRC mismatch"]),
    (["decode", "truncated.lkc", "out.png"], ["CRC mismatch"]),
    (["decode", "short.lkc", "out.png"], ["truncated"]),
    (["decode", "good.lkc", "out.unknownfmt"], ["cannot tell the image format", ".png"]),
    (["info", "corrupt.lkc"], ["CRC mismatch"]),
    (["info", "truncated.lkc"], ["CRC mismatch"]),
    (["info", "missing.lkc"], ["missing.lkc", "does not exist"]),
    (["encode", ".", "out.lkc"], ["is a directory"]),
    (["decode", ".", "out.png"], ["is a directory"]),
    (["encode", "img.png", "nofolder/out.lkc"], ["nofolder", "does not exist", "create it first"]),
    (["decode", "good.lkc", "nofolder/out.png"], ["nofolder", "does not exist"]),
    (["decode", "good.lkc", "."], ["is a directory"]),
    (["encode", "img.png", "out.lkc", "--weights", "nowhere"], ["weights folder", "does not exist"]),
], ids=["enc-missing", "enc-txt", "enc-suffix", "enc-model", "dec-missing", "dec-txt", "dec-corrupt",
        "dec-truncated", "dec-short", "dec-format", "info-corrupt", "info-truncated", "info-missing",
        "enc-dir", "dec-dir", "enc-nofolder", "dec-nofolder", "dec-out-dir", "enc-weights"])
def test_errors_one_line_no_output(workdir, lkc_bytes, capsys, monkeypatch, argv, fragments):
    bad = bytearray(lkc_bytes)
    bad[bitstream.HEADER_SIZE + 3] ^= 0x80
    (workdir / "corrupt.lkc").write_bytes(bytes(bad))
    (workdir / "truncated.lkc").write_bytes(lkc_bytes[:-3])
    (workdir / "short.lkc").write_bytes(lkc_bytes[:10])
    (workdir / "good.lkc").write_bytes(lkc_bytes)
    before = listing(workdir)
    monkeypatch.chdir(workdir)
    assert main(argv) == 1
    out = capsys.readouterr()
    assert_one_error_line(out.err, *fragments)
    assert out.out == ""
    assert listing(workdir) == before, "no output and no temp files"


@pytest.mark.parametrize("argv", [
    ["encode", "img.png", "out.lkc", "--b", "9"],
    ["encode", "img.png", "out.lkc", "--b", "two"],
    ["encode", "img.png", "out.lkc", "--context", "diagonal"],
    ["decode", "img.lkc"],
    ["frobnicate"],
    [],
])
def test_usage_errors_exit_2(workdir, capsys, monkeypatch, argv):
    monkeypatch.chdir(workdir)
    before = listing(workdir)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: labkit" in capsys.readouterr().err
    assert listing(workdir) == before


def test_existing_output_kept_on_failure(workdir, capsys, lkc_bytes):
    (workdir / "out.lkc").write_bytes(b"old lkc")
    (workdir / "out.png").write_bytes(b"old png")
    (workdir / "corrupt.lkc").write_bytes(lkc_bytes[:-1])
    assert main(["encode", str(workdir / "notes.txt"), str(workdir / "out.lkc")]) == 1
    assert main(["decode", str(workdir / "corrupt.lkc"), str(workdir / "out.png")]) == 1
    assert (workdir / "out.lkc").read_bytes() == b"old lkc"
    assert (workdir / "out.png").read_bytes() == b"old png"
    assert listing(workdir) == {"img.png", "notes.txt", "out.lkc", "out.png", "corrupt.lkc"}


# ----------------------------------------------------------------------------- demo / bench

def test_demo_writes_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--images", "1", "--bits", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert listing(tmp_path) == {"demo.png"}


@pytest.mark.parametrize("argv", [["demo", "--images", "0"], ["bench", "--repeats", "0"]])
def test_counts_must_be_positive(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert listing(tmp_path) == set()


def test_unwritable_folder_names_the_target(workdir, capsys, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["encode", "img.png", "out.lkc"]) == 1
    assert_one_error_line(capsys.readouterr().err, "cannot write out.lkc", "Permission denied", "choose a folder")


def test_main_restores_global_warning_state(workdir, capsys, monkeypatch):
    import warnings

    monkeypatch.chdir(workdir)
    before = (warnings.showwarning, list(warnings.filters))
    main(["info", "missing.lkc"])
    assert (warnings.showwarning, list(warnings.filters)) == before


def test_bench_prints_two_sizes(capsys):
    assert main(["bench", "--repeats", "1"]) == 0
    out = capsys.readouterr()
    assert out.err == "", "no warnings (e.g. torch's about read-only arrays) on stderr"
    header, *lines = out.out.splitlines()
    assert header.startswith("model=resae b=2 context=neighbor")
    assert len(lines) == 2
    for line, size in zip(lines, ("128x128", "768x512")):
        assert line.split()[0] == size
        m = re.search(r"encode\s+([\d.]+) ms\s+decode\s+([\d.]+) ms\s+total\s+([\d.]+) ms\s+\(([\d.]+) bpp", line)
        assert m, line
        enc, dec, total, bpp = map(float, m.groups())
        assert enc > 0 and dec > 0 and abs(total - enc - dec) < 0.02 and 0 < bpp < 8
