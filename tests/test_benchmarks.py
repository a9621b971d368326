"""The benchmark scripts keep up with the API they time (their speeds are measured in benchmarks/, not here)."""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from labkit import coder
from labkit.codec import CodecError

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    """Import ``benchmarks/<name>.py`` without leaving its thread settings in this process's environment."""
    saved = dict(os.environ)
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def bench_coder():
    return _load("bench_coder")


@pytest.mark.parametrize("mode", coder.CONTEXT_MODES)
def test_bench_coder_codes_every_context_as_the_codec_does(bench_coder, mode):
    """Each context mode round-trips in bench_ours; a mode that needs a table gets one fitted on other latents."""
    latents = list(bench_coder.make_latents(3, 8, seed=0))
    options = bench_coder.prior_options(mode, 8, 3, seed=0)
    assert ("prior" in options) == (mode in coder.PRIOR_MODES)
    r = bench_coder.bench_ours(latents, 8, mode, repeats=1, n_ideal=1, **options)
    assert r["enc_msym_s"] > 0 and r["dec_msym_s"] > 0 and 0 < r["bits_per_symbol"] < 3
    assert 0 <= r["over_ideal_bytes_per_latent"] < 4   # the flush and finite precision, a few bytes at most


def test_reference_coder_round_trips_and_codes_the_same_model(bench_coder):
    """benchmarks/ref_coder.c decodes what it writes, in about labkit's "none" bytes (same model, other flush)."""
    ref_coder = sys.modules.get("ref_coder") or _load("ref_coder")
    if ref_coder.compiler() is None:
        pytest.skip("no C compiler on PATH (set CC): the reference coder cannot be built")
    stream = bench_coder.make_latents(20, 16, seed=3).reshape(-1)
    payload = ref_coder.encode(stream, 16, coder.DEFAULT_INCREMENT, coder.DEFAULT_LIMIT)
    np.testing.assert_array_equal(ref_coder.decode(payload, stream.size, 16, coder.DEFAULT_INCREMENT,
                                                   coder.DEFAULT_LIMIT), stream)
    ours = coder.encode(stream, 16, "none")
    assert abs(len(payload) - len(ours)) <= 8, (len(payload), len(ours))


def test_bench_codec_times_the_weights_it_is_given(tmp_path):
    """``--weights-dir`` times W/<model>/, not the shipped weights: a missing folder and a folder
    without the model are refused by name, a folder holding the model is timed; the JSON goes into W."""
    bench_codec = _load("bench_codec")
    with pytest.raises(CodecError, match=re.escape(str(tmp_path / "missing"))):
        bench_codec.speed_ratios("resae", 1, weights_dir=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match=re.escape(str(tmp_path / "empty"))):
        bench_codec.speed_ratios("resae", 1, weights_dir=str(tmp_path / "empty"))
    assert bench_codec.default_out(str(tmp_path)) == tmp_path / "bench_codec.json"
    assert bench_codec.default_out(None) == BENCH / "results" / "bench_codec.json"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "resae").symlink_to(Path(__file__).resolve().parent.parent / "labkit" / "weights" / "resae")
    out = bench_codec.speed_ratios("resae", 1, weights_dir=str(mine))
    assert [size for size, _ in bench_codec.sizes(out)] == ["128x128", "768x512"]
    assert all(row["codec"]["bpp"] > 0 for _, row in bench_codec.sizes(out))
