"""``labkit`` / ``python -m labkit``: a few true subprocess runs, the rest in-process through ``labkit.cli.main``.

Contract under test: exit 0 on success; on failure a non-zero exit, exactly one
``labkit: error: ...`` line on stderr (argparse usage errors: exit 2 and its usage
text) and no output file, half-written or temporary, left behind; Ctrl-C at any moment
exits 130 with one line; ``--help``, ``info`` and argument errors never import torch
(their speed is measured in ``benchmarks/bench_cli.py``, not timed here).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit import bitstream, cli, coder_prior, spec
from labkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="agg",
                **extra)


def run_cli(*args: str | os.PathLike[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *map(str, args)], cwd=cwd, env=cli_env(**env),
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
    assert f"{size * 8 / (57 * 41):.4f} bpp" in r.stdout and f"model={spec.DEFAULT_MODEL}," in r.stdout
    assert "b=3" in r.stdout
    header, payload = bitstream.unpack((workdir / "img.lkc").read_bytes())
    cmap = bitstream.stored_colour_map_bytes(header)  # as stored (compact: version 5)

    r = run_cli("info", "img.lkc", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^model\s+{spec.DEFAULT_MODEL} ", r.stdout, re.M)
    assert re.search(r"^quantizer\s+b=3 ", r.stdout, re.M)
    assert f"57x41 RGB, {size * 8 / (57 * 41):.4f} bpp" in r.stdout
    side = (f"{bitstream.HEADER_SIZE + cmap} header ({bitstream.HEADER_SIZE} fixed + {cmap} colour map)" if cmap
            else f"{bitstream.HEADER_SIZE} header")  # "header" as --json's header_bytes counts it
    assert f"({size} bytes = {side} + {len(payload)} payload)" in r.stdout
    assert size == bitstream.HEADER_SIZE + cmap + len(payload)
    assert f"context={spec.PRIOR_CONTEXT}, increment={coder_prior.INCREMENT}, limit={coder_prior.LIMIT}" in r.stdout  # the default model ships a coder prior

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


def test_encode_scale_option(workdir, capsys):
    """``--scale search`` writes a file the plain decoder reads; a rule sets the stored scale; a
    bad value is a usage error naming the choices (the search's choice: test_codec)."""
    src = str(workdir / "img.png")
    assert main(["encode", src, str(workdir / "auto.lkc"), "--b", "3"]) == 0
    assert main(["encode", src, str(workdir / "search.lkc"), "--b", "3", "--scale", "search"]) == 0
    assert main(["encode", src, str(workdir / "max.lkc"), "--b", "3", "--scale", "max"]) == 0
    capsys.readouterr()
    assert main(["decode", str(workdir / "search.lkc"), str(workdir / "search.png")]) == 0
    h_auto, h_max = (bitstream.unpack((workdir / f"{n}.lkc").read_bytes())[0] for n in ("auto", "max"))
    assert h_max.ymax > h_auto.ymax  # the trained rule is a percentile, below the maximum
    with pytest.raises(SystemExit) as exc:
        main(["encode", src, str(workdir / "x.lkc"), "--scale", "median"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown scale rule 'median'" in err and "search" in err
    assert not (workdir / "x.lkc").exists()


def test_encode_refine_option(workdir, capsys):
    """``--refine [STEPS]`` writes a file the plain decoder reads, in the same format; bare
    ``--refine`` means the usual steps; a bad count is a usage error and writes nothing
    (the refinement itself: test_refine)."""
    src = str(workdir / "img.png")
    assert main(["encode", src, str(workdir / "plain.lkc"), "--b", "3"]) == 0
    assert main(["encode", src, str(workdir / "r2.lkc"), "--b", "3", "--refine", "2"]) == 0
    assert main(["encode", src, str(workdir / "r.lkc"), "--b", "3", "--refine"]) == 0
    capsys.readouterr()
    plain, r2, r = ((workdir / f"{n}.lkc").read_bytes() for n in ("plain", "r2", "r"))
    assert len({plain, r2, r}) == 3
    hp, hr = bitstream.unpack(plain)[0], bitstream.unpack(r)[0]
    assert (hr.model, hr.b, hr.ymax, hr.width, hr.height) == (hp.model, hp.b, hp.ymax, hp.width, hp.height)
    assert main(["decode", str(workdir / "r.lkc"), str(workdir / "r.png")]) == 0
    for bad in ("-1", "many", "2.5"):
        with pytest.raises(SystemExit) as exc:
            main(["encode", src, str(workdir / "x.lkc"), "--refine", bad])
        assert exc.value.code == 2
        assert "refinement steps must be a whole number >= 0" in capsys.readouterr().err
    assert not (workdir / "x.lkc").exists()
    with pytest.raises(SystemExit):  # a bare --refine before the names would swallow the input's name
        main(["encode", "--refine", src, str(workdir / "x.lkc")])
    assert "a bare --refine goes after the input and output names" in capsys.readouterr().err
    assert not (workdir / "x.lkc").exists()


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
    (["encode", "img.png", "out.lkc", "--weights", ".", "--model", "ae2"], ["no weights of model 'ae2'"]),
    (["encode", "img.png", "img.png", "--force-suffix"], ["img.png is the input file"]),
    (["decode", "good.lkc", "good.lkc"], ["good.lkc is the input file"]),
    (["decode", "missing.lkc", "out.png"], ["missing.lkc", "does not exist"]),
    (["decode", "notes.txt", "out.png"], ["not a labkit .lkc file"]),
    (["decode", "corrupt.lkc", "out.png"], ["CRC mismatch"]),
    (["decode", "truncated.lkc", "out.png"], ["truncated or extended", "carries"]),
    (["decode", "short.lkc", "out.png"], ["truncated"]),
    (["decode", "good.lkc", "out.unknownfmt"], ["cannot tell the image format", ".png"]),
    (["info", "short.lkc"], ["truncated", "needs 22"]),
    (["info", "empty.lkc"], ["empty file"]),
    (["info", "missing.lkc"], ["missing.lkc", "does not exist"]),
    (["encode", ".", "out.lkc"], ["is a directory"]),
    (["decode", ".", "out.png"], ["is a directory"]),
    (["encode", "img.png", "nofolder/out.lkc"], ["nofolder", "does not exist", "create it first"]),
    (["decode", "good.lkc", "nofolder/out.png"], ["nofolder", "does not exist"]),
    (["decode", "good.lkc", "img.png/out.png"], ["output folder img.png is a file, not a folder"]),
    (["decode", "good.lkc", "img.png/sub/out.png"], ["output folder img.png is a file, not a folder"]),
    (["decode", "good.lkc", "."], ["is a directory", "out.png"]),
    (["encode", "img.png", "."], ["is a directory", "out.lkc"]),
    (["encode", "img.png", "out.lkc", "--weights", "nowhere"], ["weights folder", "does not exist"]),
    (["info", "/dev/null"], ["/dev/null", "not a regular file"]),
    (["encode", "img.png", "good.lkc"], ["good.lkc already exists", "--overwrite"]),
    (["decode", "good.lkc", "img.png"], ["img.png already exists", "--overwrite"]),
], ids=["enc-missing", "enc-txt", "enc-suffix", "enc-no-weights", "enc-same", "dec-same", "dec-missing", "dec-txt",
        "dec-corrupt", "dec-truncated", "dec-short", "dec-format", "info-short", "info-empty", "info-missing",
        "enc-dir", "dec-dir", "enc-nofolder", "dec-nofolder", "dec-file-folder", "dec-file-folder-deep", "dec-out-dir", "enc-out-dir", "enc-weights",
        "info-device", "enc-exists", "dec-exists"])
def test_errors_one_line_no_output(workdir, lkc_bytes, capsys, monkeypatch, argv, fragments):
    bad = bytearray(lkc_bytes)
    bad[bitstream.HEADER_SIZE + 3] ^= 0x80
    (workdir / "corrupt.lkc").write_bytes(bytes(bad))
    (workdir / "truncated.lkc").write_bytes(lkc_bytes[:-3])
    (workdir / "short.lkc").write_bytes(lkc_bytes[:10])
    (workdir / "empty.lkc").write_bytes(b"")
    (workdir / "good.lkc").write_bytes(lkc_bytes)
    before = listing(workdir)
    contents = {f.name: f.read_bytes() for f in workdir.iterdir() if f.is_file()}
    monkeypatch.chdir(workdir)
    assert main(argv) == 1
    out = capsys.readouterr()
    assert_one_error_line(out.err, *fragments)
    assert out.out == ""
    assert listing(workdir) == before, "no output and no temp files"
    assert {f.name: f.read_bytes() for f in workdir.iterdir() if f.is_file()} == contents, "no file replaced"


@pytest.mark.parametrize("argv", [
    ["encode", "img.png", "out.lkc", "--b", "9"],
    ["encode", "img.png", "out.lkc", "--b", "two"],
    ["encode", "img.png", "out.lkc", "--context", "diagonal"],
    ["encode", "img.png", "out.lkc", "--model", "nosuchmodel"],
    ["decode", "img.lkc"],
    ["info"],
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
    first = out.read_bytes()
    out.write_bytes(b"someone else's picture")
    assert main(["demo", "--out", str(out), "--images", "1", "--bits", "2"]) == 1       # not replaced unasked
    assert_one_error_line(capsys.readouterr().err, "demo.png already exists", "--overwrite")
    assert out.read_bytes() == b"someone else's picture"
    assert main(["demo", "--out", str(out), "--images", "1", "--bits", "2", "--overwrite"]) == 0
    assert out.read_bytes() == first                                                      # and the same figure again


@pytest.mark.parametrize("out,fragments", [("d.lkc", ["should end in .png"]),
                                            ("nodir/d.png", ["nodir", "does not exist", "create it first"]),
                                            (".", ["is a directory", "out.png"]),
                                            ("d.png --images 100", ["--images 100 is more than the 31 embedded test "
                                                                    "tiles", "at most 31"])])
def test_demo_refuses_an_output_it_cannot_write_as_named(tmp_path, capsys, monkeypatch, out, fragments):
    monkeypatch.chdir(tmp_path)
    out, *more = out.split()
    assert main(["demo", "--out", out, "--images", "1", "--bits", "2", *more]) == 1
    assert_one_error_line(capsys.readouterr().err, *fragments)
    assert listing(tmp_path) == set()  # nothing made, not even the folder


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
    assert header.startswith(f"model={spec.DEFAULT_MODEL} b=2 context={spec.PRIOR_CONTEXT}")  # it ships a prior
    assert len(lines) == 2
    for line, size in zip(lines, ("128x128", "768x512")):
        assert line.split()[0] == size
        m = re.search(r"encode\s+([\d.]+) ms\s+decode\s+([\d.]+) ms\s+total\s+([\d.]+) ms\s+\(([\d.]+) bpp", line)
        assert m, line
        enc, dec, total, bpp = map(float, m.groups())
        assert enc > 0 and dec > 0 and abs(total - enc - dec) < 0.02 and 0 < bpp < 8


def test_bench_json(capsys):
    from labkit.speed import cpu_name

    assert main(["bench", "--repeats", "1", "--model", "ReSAE", "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    record = json.loads(out.out)
    assert {k: record[k] for k in ("model", "b", "context", "repeats", "threads")} == \
        {"model": "resae", "b": 2, "context": spec.DEFAULT_CONTEXT, "repeats": 1, "threads": 1}  # no prior
    assert record["cpu"] == cpu_name() and record["cpu"]
    assert [r["size"] for r in record["rows"]] == ["128x128", "768x512"]
    for r in record["rows"]:
        assert r["encode_ms"] > 0 and r["decode_ms"] > 0 and 0 < r["bpp"] < 8


# ----------------------------------------------------------------------------- one command line

def test_every_command_is_described_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    top = capsys.readouterr().out
    assert list(cli.COMMANDS) == ["train", "reproduce", "grade", "encode", "decode", "info", "demo", "bench"]
    for name, command in cli.COMMANDS.items():
        assert re.search(rf"^\s+{name}\b", top, re.M), name
        assert command.summary.split()[0] in top
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"usage: labkit {name}" in text
        assert " ".join(command.description.split()) in text, f"{name} --help shows its description"


def test_console_script_and_module_entry_point(workdir):
    """pyproject's [project.scripts] installs `labkit` -> labkit.cli:main; `python -m labkit` runs the same."""
    scripts = (REPO / "pyproject.toml").read_text().split("\n[project.scripts]\n")[1].split("\n[")[0]
    assert scripts.strip() == 'labkit = "labkit.cli:main"'  # (tomllib would need Python 3.11; we support 3.10)
    r = run_cli("--version", cwd=workdir)
    assert r.returncode == 0 and r.stdout.startswith("labkit ")


def test_installed_console_script_runs():
    """The `labkit` script that `make setup`'s editable install put beside the interpreter."""
    installed = Path(sys.executable).parent / "labkit"
    if not installed.exists():
        pytest.skip(f"no console script at {installed}: labkit is not installed in this interpreter's environment "
                    "(`make setup` installs it)")
    r = subprocess.run([str(installed), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"labkit {__import__('labkit').__version__}"


def test_model_names_are_case_insensitive_and_from_one_list(workdir, capsys):
    import labkit.models

    assert set(spec.MODEL_NAMES) == set(labkit.models.MODEL_NAMES), "spec.MODEL_NAMES mirrors the registry"
    assert main(["encode", str(workdir / "img.png"), str(workdir / "a.lkc"), "--model", "AE1"]) == 0
    assert bitstream.unpack((workdir / "a.lkc").read_bytes())[0].model == "ae1"
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(workdir / "img.png"), str(workdir / "b.lkc"), "--model", "ae9"])
    assert exc.value.code == 2
    assert f"registered models: {', '.join(spec.MODEL_NAMES)}" in capsys.readouterr().err


def test_choices_come_from_their_one_home():
    import labkit.codec
    import labkit.coder

    parser = cli.build_parser(["encode"])
    encode = parser._subparsers._group_actions[0].choices["encode"]  # noqa: SLF001 - argparse has no public accessor
    options = {a.dest: a for a in encode._actions}
    assert tuple(options["context"].choices) == labkit.coder.CONTEXT_MODES
    assert options["context"].default is None  # the model's own: the Codec resolves it
    assert spec.DEFAULT_CONTEXT == labkit.codec.DEFAULT_CONTEXT and spec.DEFAULT_CONTEXT in options["context"].help
    assert spec.PRIOR_CONTEXT in options["context"].help
    assert options["b"].choices == spec.BITS


def test_info_json(workdir, lkc_bytes, capsys):
    (workdir / "good.lkc").write_bytes(lkc_bytes)
    assert main(["info", str(workdir / "good.lkc"), "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    record = json.loads(out.out)
    header, payload = bitstream.unpack(lkc_bytes)
    assert record["model"] == header.model == "ae1" and record["b"] == header.b == 2
    assert (record["width"], record["height"]) == (57, 41)
    assert record["latent_shape"] == list(header.latent_shape)
    assert record["bytes"] == len(lkc_bytes) and record["payload_bytes"] == len(payload)
    assert record["header_bytes"] + record["payload_bytes"] == record["bytes"]
    assert record["bpp"] == pytest.approx(len(lkc_bytes) * 8 / (57 * 41))
    assert record["context"] == header.context and record["crc_ok"] is True


LIGHT_IMPORTS = """
import json, sys
from labkit.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
heavy = sorted(m for m in ("torch", "numpy", "PIL", "labkit.codec", "labkit._arith") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize("argv,status", [
    (["--help"], 0),
    (["info", "good.lkc"], 0),
    (["info", "good.lkc", "--json"], 0),
    (["info", "missing.lkc"], 1),
    (["reproduce", "--help"], 0),
    (["grade", "--help"], 0),
    (["encode", "img.png", "out.lkc", "--b", "9"], 2),
    (["encode", "img.png", "out.lkc", "--model", "AE7"], 2),
    (["encode", "--help"], 0),
    (["decode", "missing.lkc", "out.png"], 1),
    (["bench", "--context", "diagonal"], 2),
], ids=["help", "info", "info-json", "info-missing", "reproduce-help", "grade-help", "enc-bad-b", "enc-bad-model",
        "enc-help", "dec-missing", "bench-bad-context"])
def test_fast_paths_do_not_import_torch(workdir, lkc_bytes, argv, status):
    """`labkit --help`, `info` and argument errors answer without torch (timed in benchmarks/bench_cli.py)."""
    (workdir / "good.lkc").write_bytes(lkc_bytes)
    r = subprocess.run([sys.executable, "-c", LIGHT_IMPORTS, *argv], cwd=workdir, env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    report = json.loads(r.stderr.splitlines()[-1])
    assert report["status"] == status, r.stderr
    assert report["heavy"] == [], report["heavy"]   # no torch, numpy, Pillow, codec or compiled coder


# ----------------------------------------------------------------------------- process hygiene

INTERRUPT_DURING_IMPORT = """
import builtins, os, signal, sys
real_import = builtins.__import__
def interrupting_import(name, *args, **kwargs):
    if name == "torch":  # Ctrl-C while the codec's dependencies load
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupting_import
from labkit.cli import main
mode, sys.argv[1:] = sys.argv[1], sys.argv[2:]
sys.exit(main() if mode == "program" else main(sys.argv[1:]))
"""

#: Killed by SIGINT after the one line, as Python ends on Ctrl-C: a shell reports 128 + 2 = 130
#: and a script that runs labkit in a loop stops too.
PROGRAM_INTERRUPTED = -signal.SIGINT


def _sigint_as_at_a_terminal() -> None:
    """``preexec_fn`` for the Ctrl-C tests: the child gets SIGINT's default disposition.

    A test run started in the background by a non-interactive shell (``make test &``, some CI
    runners) inherits SIGINT *ignored* (POSIX), and the child would inherit that too; Python then
    installs no KeyboardInterrupt handler and the signal does nothing.  These tests are about what a
    user at a terminal sees, so they restore the default, whatever the runner did.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("mode,status", [("program", PROGRAM_INTERRUPTED), ("function", 130)])
def test_ctrl_c_during_startup_imports_is_one_line(workdir, mode, status):
    r = subprocess.run([sys.executable, "-c", INTERRUPT_DURING_IMPORT, mode, "encode", "img.png", "out.lkc"],
                       cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=120,
                       preexec_fn=_sigint_as_at_a_terminal)
    assert (r.returncode, r.stderr, r.stdout) == (status, "labkit: interrupted\n", "")
    assert listing(workdir) == {"img.png", "notes.txt"}


@pytest.mark.parametrize("entry", ["module", "script"])
def test_ctrl_c_while_running_is_one_line(workdir, entry):
    """A real SIGINT a moment after start (importing or timing; either way one line, ended by SIGINT)."""
    script = Path(sys.executable).parent / "labkit"
    if entry == "script" and not script.exists():
        pytest.skip("the labkit console script is not installed next to this Python (make setup installs it)")
    cmd = [sys.executable, "-m", "labkit"] if entry == "module" else [str(script)]
    proc = subprocess.Popen([*cmd, "bench", "--repeats", "100000"], cwd=workdir, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_at_a_terminal)
    try:
        time.sleep(2.0)  # past the interpreter's own start-up, whose Ctrl-C no package can catch
        assert proc.poll() is None, "the benchmark cannot have finished"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a 100000-repeat benchmark running behind a failed test
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (PROGRAM_INTERRUPTED, "labkit: interrupted\n"), err


def test_ctrl_c_in_process(workdir, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.COMMANDS["info"], "run", interrupted)
    assert main(["info", str(workdir / "img.png")]) == 130
    assert capsys.readouterr().err == "labkit: interrupted\n"


def test_bad_environment_variable_is_one_line(workdir):
    r = run_cli("encode", "img.png", "out.lkc", "--model", "ae1", cwd=workdir, LABKIT_MAX_PIXELS="abc")
    assert r.returncode == 1
    assert_one_error_line(r.stderr, "LABKIT_MAX_PIXELS")
    assert not (workdir / "out.lkc").exists()
    r = run_cli("info", "missing.lkc", cwd=workdir, LABKIT_MAX_PIXELS="1e6")  # info does not need it: no traceback
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert_one_error_line(r.stderr, "does not exist")


def test_settings_error_is_one_line(workdir, capsys, monkeypatch):
    from labkit.settings import SettingsError

    def bad_setting(args):
        raise SettingsError("environment variable LABKIT_MAX_PIXELS='abc' is not a positive whole number")

    monkeypatch.setattr(cli.COMMANDS["info"], "run", bad_setting)
    assert main(["info", "x.lkc"]) == 1
    assert_one_error_line(capsys.readouterr().err, "LABKIT_MAX_PIXELS='abc'")


def test_missing_dependency_is_one_line(capsys, monkeypatch):
    def missing(args):
        raise ModuleNotFoundError("No module named 'papermill'", name="papermill")

    monkeypatch.setattr(cli.COMMANDS["reproduce"], "run", missing)
    assert main(["reproduce"]) == 1
    assert_one_error_line(capsys.readouterr().err, "No module named 'papermill'", "make setup")


# ----------------------------------------------------------------------------- reproduce / grade

def test_papermill_value_reads_like_papermill():
    from papermill.cli import _resolve_type

    for text in ["True", "False", "None", "0", "-3", "2.5", "1e-3", "nan", "default", "/path/to/repo", "", "true"]:
        ours, theirs = cli.papermill_value(text), _resolve_type(text)
        assert type(ours) is type(theirs) and (ours == theirs or ours != ours), text


def test_reproduce_runs_the_make_figures_notebook(tmp_path, capsys, monkeypatch):
    import labkit.pipeline

    calls = []
    monkeypatch.setattr(labkit.pipeline, "run_notebook",
                        lambda name, executed, params, log_output: calls.append((name, executed, params)) or
                        executed / name)
    assert main(["reproduce", "-p", "profile", "smoke", "-p", "seed", "3", "-p", "retrain", "False",
                 "-p", "data_dir", "None"]) == 0
    [(name, executed, params)] = calls
    # the executed 00_reproduce lands beside the three notebooks it runs
    assert name == cli.REPRODUCE_NOTEBOOK and executed == labkit.pipeline.NOTEBOOK_DIR / "executed" / "smoke"
    assert params == {"profile": "smoke", "seed": 3, "retrain": False, "data_dir": None}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("labkit reproduce: done; ") and "figures/smoke" in last and "notebooks/executed/smoke" in last
    assert " s;" not in last and " in 0 s" not in last          # one time only: the run's own summary line has it
    calls.clear()
    with pytest.raises(ValueError, match="unknown profile 'Default'; choose one of smoke, default"):
        cli._cmd_reproduce(cli.build_parser().parse_args(["reproduce", "-p", "profile", "Default"]))
    assert not calls  # refused before any notebook ran
    (tmp_path / "course" / "train").mkdir(parents=True)  # train/ alone: the course folder's own layout
    assert main(["reproduce", "-p", "data_dir", str(tmp_path / "course")]) == 0  # notebook default profile
    assert calls[0][1] == labkit.pipeline.NOTEBOOK_DIR / "executed" / "default-course"
    recipe = (REPO / "Makefile").read_text().split("\nfigures:")[1].split("\n\n")[0]
    assert cli.REPRODUCE_NOTEBOOK in recipe or "labkit reproduce" in recipe, "`make figures` runs the same notebook"


def test_reproduce_parameter_errors(capsys, monkeypatch):
    import labkit.pipeline

    monkeypatch.setattr(labkit.pipeline, "run_notebook", lambda *a, **k: pytest.fail("must not run"))
    assert main(["reproduce", "-p", "profil", "smoke"]) == 1
    assert_one_error_line(capsys.readouterr().err, "unknown parameter 'profil'", "profile, data_dir")
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "-p", "profile"])
    assert exc.value.code == 2


def test_reproduce_checks_data_dir_before_any_notebook(tmp_path, capsys, monkeypatch):
    """It used to run 01_train first and fail inside a nested notebook error."""
    import labkit.pipeline

    monkeypatch.setattr(labkit.pipeline, "run_notebook", lambda *a, **k: pytest.fail("must not run"))
    assert main(["reproduce", "-p", "data_dir", str(tmp_path / "nowhere")]) == 1
    assert_one_error_line(capsys.readouterr().err, "nowhere does not exist", "course layout: train/ (and test/")
    (tmp_path / "course" / "test").mkdir(parents=True)
    assert main(["reproduce", "-p", "data_dir", str(tmp_path / "course")]) == 1
    assert_one_error_line(capsys.readouterr().err, "course has no train/ folder")
    assert not (tmp_path / "course" / "train").exists()


def test_reproduce_failure_is_one_line(capsys, monkeypatch):
    import labkit.pipeline

    def failing(name, *a, **k):
        raise labkit.pipeline.PipelineError(f"{name} failed in cell 3 (ValueError: bad); open x.ipynb")

    monkeypatch.setattr(labkit.pipeline, "run_notebook", failing)
    assert main(["reproduce"]) == 1
    assert_one_error_line(capsys.readouterr().err, "00_reproduce.ipynb failed in cell 3")


def test_grade_without_reference(tmp_path, capsys):
    assert main(["grade", "--reference", str(tmp_path / "none.json")]) == 1
    assert_one_error_line(capsys.readouterr().err, "no reference", "none.json")


# ----------------------------------------------------------------------------- train

def test_train_help_and_bad_args(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0 and "--time-budget" in out and "--out DIR" in out
    from labkit.train import TrainConfig

    assert f"--epochs EPOCHS (default {TrainConfig().epochs})" in out
    for argv in (["--model", "nope", "--out", "x"], ["--out", "x", "--epochs", "0"],
                 ["--out", "x", "--schedule", "step"],
                 ["--out", "x", "--b", "9"], ["--out", "x", "--bits", "2", "0"], ["--out", "x", "--scale", "p10"],
                 ["--model", "ae1"]):
        with pytest.raises(SystemExit) as exc:
            main(["train", *argv])
        assert exc.value.code == 2, argv
        assert "usage: labkit train" in capsys.readouterr().err


@pytest.mark.parametrize("cfg,fragment", [("{bad", "--model-cfg is not valid JSON"), ("[1]", "must be a JSON object"),
                                          ('{"upsample": "nearest"}', "unknown upsample mode")])
def test_train_bad_model_cfg_is_one_line(tmp_path, capsys, cfg, fragment):
    assert main(["train", "--out", str(tmp_path / "run"), "--model-cfg", cfg, "--max-steps", "1"]) == 1
    assert_one_error_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "run").exists()


def test_train_options_reach_the_config(tmp_path, monkeypatch):
    import labkit.train

    seen = {}

    def fake_fit(model, train, val, cfg, out_dir, progress, resume):
        seen.update(cfg=cfg, out_dir=out_dir, progress=progress, resume=resume, n_train=len(train))
        return {}

    monkeypatch.setattr(labkit.train, "fit", fake_fit)
    argv = ["train", "--model", "AE2", "--model-cfg", '{"upsample": "resize"}', "--b", "4", "--no-noise",
            "--epochs", "7", "--batch-size", "5", "--lr", "0.01", "--schedule", "constant", "--weight-decay", "0.5",
            "--loss", "l1", "--seed", "9", "--crop", "64", "--num-workers", "0", "--val-every", "2",
            "--max-val-images", "3", "--max-steps", "11", "--checkpoint-every", "0", "--time-budget", "60",
            "--device", "cpu", "--tf32", "--out", str(tmp_path / "run"), "--resume", "--no-progress",
            "--rate-weight", "0.25", "--bits", "1", "3", "--scale", "p99.5"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.model, cfg.model_cfg, cfg.b_train, cfg.noise) == ("ae2", {"upsample": "resize"}, 4, False)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.schedule, cfg.weight_decay, cfg.loss) == \
        (7, 5, 0.01, "constant", 0.5, "l1")
    assert (cfg.seed, cfg.crop, cfg.num_workers, cfg.val_every, cfg.max_val_images, cfg.max_steps) == \
        (9, 64, 0, 2, 3, 11)
    assert (cfg.checkpoint_every_s, cfg.time_budget_s, cfg.device, cfg.tf32) == (0.0, 60.0, "cpu", True)
    assert (cfg.rate_weight, cfg.bits, cfg.scale) == (0.25, [1, 3], "p99.5")
    assert (seen["out_dir"], seen["progress"], seen["resume"]) == (str(tmp_path / "run"), False, True)
    assert seen["n_train"] > 0


def test_train_tiny_run_on_a_course_folder(tmp_path, eval_tiles, capsys):
    """A real run of `labkit train` on six 128x128 PNGs in the course layout: two optimizer steps."""
    for split, first in (("train", 0), ("test", 6)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(first, first + (6 if split == "train" else 2)):
            Image.fromarray(eval_tiles[i]).save(tmp_path / "data" / split / f"{i - first}.png")
    out = tmp_path / "run"
    assert main(["train", "--model", "ResAE", "--model-cfg", '{"widths": [8, 8, 8]}', "--data-dir",
                 str(tmp_path / "data"), "--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--crop", "32",
                 "--max-val-images", "1", "--device", "cpu", "--checkpoint-every", "0", "--no-progress",
                 "--out", str(out)]) == 0
    assert f"labkit train: model.pt, config.json and history.json in {out}" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "resae" and config["model_cfg"]["widths"] == [8, 8, 8]
    assert config["train"]["batch_size"] == 2 and config["train"]["max_steps"] == 2
    assert len(json.loads((out / "history.json").read_text())["epoch"]) == 1
    assert (out / "model.pt").is_file()

    # the same --out again: refused before any work unless --resume or --overwrite (it replaced the run before)
    saved = {f.name: f.read_bytes() for f in out.iterdir()}
    again = ["train", "--model", "ResAE", "--model-cfg", '{"widths": [8, 8, 8]}', "--data-dir", str(tmp_path / "data"),
             "--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--crop", "32", "--max-val-images", "1",
             "--device", "cpu", "--checkpoint-every", "0", "--no-progress", "--out", str(out)]
    assert main(again) == 1
    assert_one_error_line(capsys.readouterr().err, f"--out {out} already holds a training run (model.pt, config.json, "
                          "history.json, last.pt); pass --resume to continue it, --overwrite")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == saved
    assert main([*again, "--overwrite", "--resume"]) == 1                                # contradictory: refused
    assert_one_error_line(capsys.readouterr().err, "pass --resume", "or --overwrite", "not both")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == saved
    assert main([*again, "--overwrite", "--seed", "3"]) == 0
    assert (out / "model.pt").read_bytes() != saved["model.pt"]
    config = json.loads((out / "config.json").read_text())                          # a fresh run, not a resumed one
    assert config["train"]["seed"] == 3 and len(json.loads((out / "history.json").read_text())["epoch"]) == 1


def test_train_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "tile.png").write_bytes(b"not a folder")
    for out, fragment in ((tmp_path / "tile.png", "is a file; pass a folder"),
                          (tmp_path / "tile.png" / "run", "tile.png is a file, not a folder")):
        assert main(["train", "--out", str(out), "--max-steps", "1"]) == 1
        assert_one_error_line(capsys.readouterr().err, fragment)
    assert (tmp_path / "tile.png").read_bytes() == b"not a folder"


@pytest.mark.parametrize("cmap, line", [
    (None, "colour map  none"),
    (bytes(12), "colour map  gains 1.000 0.000 0.000 0.000 1.000 0.000 0.000 0.000 1.000, offsets +0.0000 +0.0000 +0.0000"),
    (bytes([0x12]) + bytes([2] * 72), "colour map  2x3 grid of maps (28 bytes in the file), blended; gains "
                                      "0.031..1.031, offsets +0.0039..+0.0039"),
], ids=["none", "one-map", "grid"])
def test_info_says_what_colour_map_a_file_carries(workdir, capsys, cmap, line):
    header = bitstream.Header(model="resae-rd", b=2, height=64, width=96, latent_channels=32, downsample=8,
                              ymax=1.5, context="neighbor", colour_map=cmap)
    (workdir / "m.lkc").write_bytes(bitstream.pack(header, b"\x01\x02\x03"))
    assert main(["info", str(workdir / "m.lkc")]) == 0
    out = capsys.readouterr().out
    stored = bitstream.stored_colour_map_bytes(header)  # compact (version 5) when the code allows it
    assert (f"= {22 + stored} header (22 fixed + {stored} colour map) + 3 payload" in out if cmap
            else "= 22 header + 3 payload" in out)
    assert line in out and f"format      version {bitstream.written_version(header)}" in out
    assert main(["info", str(workdir / "m.lkc"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["colour_grid"] == (None if cmap is None else [1, 1] if len(cmap) == 12 else [2, 3])


def test_overwrite_replaces_an_existing_output(workdir, lkc_bytes, monkeypatch, capsys):
    """--overwrite is the one way to replace a file, for encode and decode alike."""
    monkeypatch.chdir(workdir)
    (workdir / "good.lkc").write_bytes(lkc_bytes)
    (workdir / "out.lkc").write_bytes(b"old")
    (workdir / "out.png").write_bytes(b"old")
    assert main(["encode", "img.png", "out.lkc", "--model", "ae1", "--overwrite"]) == 0
    assert (workdir / "out.lkc").read_bytes()[:2] == b"LK"
    assert main(["decode", "good.lkc", "out.png", "--overwrite"]) == 0
    assert (workdir / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("damage,error", [
    (lambda d: d[:-3], "truncated or extended .lkc file: the header records a payload of"),
    (lambda d: d + b"\0", "truncated or extended .lkc file"),
    (lambda d: d[:bitstream.HEADER_SIZE + 3] + bytes([d[bitstream.HEADER_SIZE + 3] ^ 0x80]) + d[bitstream.HEADER_SIZE + 4:],
     "CRC mismatch: bytes of the .lkc file were changed"),
], ids=["cut", "extended", "flipped"])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_info_shows_what_a_damaged_file_claims_and_fails(workdir, lkc_bytes, capsys, damage, error, as_json):
    """`info` on a file whose CRC fails prints its header, marked, then the one error line, and exits 1."""
    (workdir / "bad.lkc").write_bytes(damage(lkc_bytes))
    before = (workdir / "bad.lkc").read_bytes()
    assert main(["info", str(workdir / "bad.lkc"), *(["--json"] if as_json else [])]) == 1
    out = capsys.readouterr()
    assert_one_error_line(out.err, error)
    good = bitstream.unpack(lkc_bytes)[0]
    if as_json:
        r = json.loads(out.out)
        assert r["crc_ok"] is False and r["crc_error"] in out.err
        assert (r["model"], r["b"], r["width"], r["height"]) == (good.model, good.b, good.width, good.height)
    else:
        assert f"{good.width}x{good.height} RGB" in out.out and f"model       {good.model} " in out.out
        assert out.out.splitlines()[-1].endswith("CRC over the bytes and the decoder's weights: MISMATCH: the fields "
                                                 "above are what the file says; the error below says why")
    assert (workdir / "bad.lkc").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["encode", "-", "x.lkc"], "'-' (standard input) is not supported; pass the input image as a file"),
    (["encode", "IMG", "-"], "'-' (standard output) is not supported; name an output file, such as out.lkc"),
    (["encode", "IMG", ".lkc"], "output .lkc is a suffix without a name; name the file, such as photo.lkc"),
    (["encode", "IMG", "out.lkc/"], "output out.lkc/ ends in '/', so it names a folder"),
    (["decode", "x.lkc", ".png"], "output .png is a suffix without a name"),
    (["demo", "--out", "figs/"], "output figs/ ends in '/', so it names a folder"),
    (["decode", "x.lkc", "y.png", "--weights", ""], "argument --weights: expected a folder name, got an empty one"),
    (["train", "--model", "ae1", "--out", "r", "--seed", "-1"], "argument --seed: must be from 0 to 4294967295"),
    (["train", "--model", "ae1", "--out", "r", "--seed", "99999999999999999999"], "argument --seed: must be from 0"),
    (["train", "--model", "ae1", "--out", "r", "--time-budget", "nan"],
     "argument --time-budget: expected a finite number of seconds > 0, got 'nan'"),
    (["train", "--model", "ae1", "--out", "r", "--checkpoint-every", "-5"],
     "argument --checkpoint-every: expected a finite number of seconds >= 0"),
])
def test_names_and_numbers_that_cannot_mean_what_was_meant_are_refused(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "img.png")
    argv = [str(tmp_path / "img.png") if a == "IMG" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:            # argparse's usage errors
        code = exit_.code
    assert code != 0 and message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]   # nothing written


@pytest.mark.parametrize("steps", ["2.5", "1e9", "nan"])
def test_a_refine_count_of_the_wrong_kind_gets_no_file_name_hint(steps):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError) as err:
        cli._refine_steps(steps)
    assert "bare --refine" not in str(err.value)
    with pytest.raises(argparse.ArgumentTypeError, match="a bare --refine goes after the input and output names"):
        cli._refine_steps("photo.png")


def test_a_bit_depth_past_the_measured_range_gets_a_note(tmp_path, capsys):
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(tmp_path / "img.png")
    assert main(["encode", str(tmp_path / "img.png"), str(tmp_path / "b6.lkc"), "--b", "6"]) == 0
    err = capsys.readouterr().err
    assert "labkit: note: b=6 is past b = 1..5, where the models were trained and the report measures them" in err
    assert main(["encode", str(tmp_path / "img.png"), str(tmp_path / "b5.lkc"), "--b", "5"]) == 0
    assert "note:" not in capsys.readouterr().err
