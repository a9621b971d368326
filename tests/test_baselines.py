"""labkit.baselines on one real tile of the default test set."""
import numpy as np
import pytest

from labkit import baselines as B
from labkit.data import default_dataset
from labkit.metrics import psnr


@pytest.fixture(scope="module")
def tile():
    return default_dataset("test")[3]


@pytest.mark.parametrize("codec", sorted(B.CODECS))
def test_roundtrip_size_trend_determinism(tile, codec):
    c = B.CODECS[codec]
    lo, hi = c.sweep_qualities[1], c.sweep_qualities[-2]
    r_lo, r_hi = B.compress(tile, codec, lo), B.compress(tile, codec, hi)
    assert r_hi["recon"].shape == tile.shape and r_hi["recon"].dtype == np.uint8
    assert len(r_lo["bytes"]) < len(r_hi["bytes"]) and psnr(tile, r_lo["recon"]) < psnr(tile, r_hi["recon"])
    assert r_hi["bpp"] == len(r_hi["bytes"]) * 8 / 128**2
    assert B.encode(tile, codec, hi) == r_hi["bytes"]           # deterministic bytes
    assert np.array_equal(B.decode(r_hi["bytes"]), r_hi["recon"])


def test_match_bpp_is_nearest_among_all_qualities(tile):
    for codec, target in (("jpeg", 1.0), ("webp", 0.5)):
        got = B.match_bpp(tile, target, codec)
        all_bpp = {q: B.compress(tile, codec, q)["bpp"] for q in B.CODECS[codec].qualities}
        best = min(all_bpp.values(), key=lambda b: (abs(b - target), b))
        assert got["bpp"] == best and got["target_bpp"] == target


def test_sweep_records_and_errors(tile):
    recs = B.sweep(tile, "jpeg", [20, 80])
    assert [r["quality"] for r in recs] == [20, 80]
    assert set(recs[0]) == {"codec", "quality", "bytes", "bpp", "psnr", "ssim"}
    assert isinstance(recs[0]["bytes"], int)
    assert recs[0]["ssim"] < recs[1]["ssim"]
    with pytest.raises(ValueError, match="unknown codec"):
        B.encode(tile, "bpg", 50)
    with pytest.raises(ValueError, match="quality must be in"):
        B.encode(tile, "jpeg", 0)


def test_one_sweep_list_from_each_codecs_lowest_setting():
    from labkit import profiles

    assert profiles.SWEEP_DEFAULT is B.SWEEPS
    for name, c in B.CODECS.items():
        qs = B.SWEEPS[name]
        assert qs == list(c.sweep_qualities) == sorted(set(qs))
        assert qs[0] == c.qualities.start, f"{name} sweep must start at its lowest setting"
        assert all(q in c.qualities for q in qs)
    for name, qs in profiles.SWEEP_SMOKE.items():
        assert qs[0] == B.SWEEPS[name][0] and set(qs) <= set(B.SWEEPS[name])


def test_sweep_reaches_past_the_learned_models_range(tile):
    # the learned models stay below ~1.2 bpp on 128x128 tiles; every sweep's top must exceed that
    for name, c in B.CODECS.items():
        assert B.compress(tile, name, c.sweep_qualities[-1])["bpp"] > 1.2, name
