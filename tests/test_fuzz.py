"""A short seeded run of fuzz/fuzz_lkc.py (the long one is `make fuzz`).

Mutated .lkc files, CRC recomputed so they reach the header checks and the decoder:
only BitstreamError/CodecError may come out, every decoded latent/image has the size
its header promises, and no input takes more than a few seconds.
"""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from labkit import bitstream

FUZZ = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_lkc.py"


@pytest.fixture(scope="module")
def fz():
    spec = importlib.util.spec_from_file_location("fuzz_lkc", FUZZ)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def seeds(fz):
    return fz.container_seeds()


def test_seeds_are_valid_files(fz, seeds):
    target = fz.Target("container", 1 << 16)
    for s in seeds:
        target.check_one(s)
    assert target.stats["decoded"] == len(seeds) >= 50


def test_fix_crc_reaches_past_the_checksum(fz, seeds):
    """Mutants with their CRC fixed are never refused for the CRC: they reach the checks behind it."""
    rnd = random.Random(0)
    read, refused = 0, 0
    for _ in range(200):
        data = fz.fix_crc(fz.mutate(rnd.choice(seeds), rnd), fix_size=True)
        try:
            bitstream.unpack(data)
            read += 1
        except bitstream.BitstreamError as err:
            assert not isinstance(err, bitstream.ChecksumError), err
            refused += 1
    assert read > 0 and refused > 0, (read, refused)   # both outcomes occur, so both paths were exercised


def test_container_fuzz_seeded(fz, seeds):
    target = fz.Target("container", 1 << 14)
    assert fz.run_random(target, seeds, seconds=0, runs=4000, seed=1, hang_seconds=5.0) == 0
    st = target.stats
    # the mutations get through the container to the decoder, and some decode cleanly
    assert st["to_decoder"] > 1000 and st["decoded"] > 50 and st["rejected"] > 1000, st


def test_network_fuzz_seeded(fz, monkeypatch):
    monkeypatch.setenv("LABKIT_MAX_PIXELS", str(1 << 16))
    seeds = fz.network_seeds()
    assert len(seeds) >= 2
    target = fz.Target("network", 1 << 14)
    assert fz.run_random(target, seeds, seconds=0, runs=300, seed=2, hang_seconds=10.0) == 0
    assert target.stats["to_decoder"] > 50 and target.stats["decoded"] > 5, target.stats


def test_harness_reports_a_finding(fz, seeds, tmp_path, monkeypatch):
    # the harness itself can fail: an exception other than BitstreamError is a finding
    monkeypatch.setattr(fz, "CRASHES", tmp_path)
    target = fz.Target("container", 1 << 14)

    def broken(data):
        raise TypeError("planted bug")

    target.check_one = broken
    assert fz.run_random(target, seeds[:1], seconds=0, runs=10, seed=0, hang_seconds=5.0) == 1
    assert len(list(tmp_path.glob("crash-*.lkc"))) == 1
