"""labkit.colour: the per-image colour map the encoder fits and the decoder applies."""
from __future__ import annotations

import numpy as np
import pytest

from labkit import colour

#: md5 of colour.apply on the seeded case of test_apply_is_exact_on_any_cpu (exact: elementwise float32).
GOLDEN_APPLY_MD5 = "86e7de6d7f75e564ff36a6bb5a63e942"


def _pair(seed: int = 0, shape=(48, 40, 3)) -> tuple[np.ndarray, np.ndarray]:
    """An 'original' and a colour-distorted 'reconstruction' of it (known affine + noise)."""
    rng = np.random.default_rng(seed)
    orig = rng.integers(0, 256, size=shape).astype(np.float64) / 255.0
    gain = np.array([[0.8, 0.1, 0.0], [0.05, 0.9, 0.0], [0.0, 0.1, 0.7]])
    recon = orig.reshape(-1, 3) @ gain + np.array([0.1, 0.02, 0.05])
    recon = recon.reshape(shape) + rng.normal(0, 0.01, size=shape)
    to8 = lambda a: (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    return to8(orig), to8(recon)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_fit_undoes_a_known_colour_distortion():
    orig, recon = _pair()
    code = colour.fit(recon, orig)
    assert len(code) == colour.MAP_BYTES == 12
    mapped = colour.apply(recon, code)
    assert _mse(mapped, orig) < 0.1 * _mse(recon, orig)
    assert mapped.dtype == np.uint8 and mapped.shape == recon.shape


def test_identity_code_changes_nothing():
    _, recon = _pair(1)
    np.testing.assert_array_equal(colour.apply(recon, bytes(12)), recon)
    gain, d = colour.parameters(bytes(12))
    np.testing.assert_array_equal(gain, np.eye(3))
    np.testing.assert_array_equal(d, np.zeros(3))


def test_code_layout_and_reach():
    code = np.array([64, 0, 0, 0, -64, 0, 0, 0, 127, 1, -1, -128], dtype=np.int8).tobytes()
    gain, d = colour.parameters(code)
    np.testing.assert_allclose(np.diag(gain), [2.0, 0.0, 1.0 + 127 / 64])
    np.testing.assert_allclose(d, [1 / 512, -1 / 512, -128 / 512])


def test_chunked_equals_whole(monkeypatch):
    orig, recon = _pair(2, shape=(37, 29, 3))
    whole_code, whole = colour.fit(recon, orig), None
    whole = colour.apply(recon, whole_code)
    sse = colour.squared_errors(recon, orig, whole_code)
    monkeypatch.setattr(colour, "CHUNK_PIXELS", 29 * 3)  # 3 rows per chunk, a ragged last chunk
    assert colour.fit(recon, orig) == whole_code
    np.testing.assert_array_equal(colour.apply(recon, whole_code), whole)
    np.testing.assert_allclose(colour.squared_errors(recon, orig, whole_code), sse, rtol=1e-12)


def test_squared_errors_match_the_applied_map():
    orig, recon = _pair(3)
    code = colour.fit(recon, orig)
    without, with_map = colour.squared_errors(recon, orig, code)
    mapped = colour.apply(recon, code)
    assert without == pytest.approx(np.sum((recon / 255.0 - orig / 255.0) ** 2), rel=1e-9)
    assert with_map == pytest.approx(np.sum((mapped / 255.0 - orig / 255.0) ** 2), rel=1e-9)


def test_pays_weighs_error_against_the_maps_bits():
    pixels = 128 * 128
    bits_cost = 0.015 * 8 * colour.MAP_BYTES / pixels  # MSE the map must save
    just_below = 3 * pixels * bits_cost * 0.99
    assert not colour.pays(1.0 + just_below, 1.0, pixels, 0.015)
    assert colour.pays(1.0 + 3 * pixels * bits_cost * 1.01, 1.0, pixels, 0.015)
    assert not colour.pays(1.0, 1.0, pixels, 0.015)  # no gain never pays


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), [[1, 2, 3]]])
def test_bad_images_are_refused(bad):
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        colour.apply(bad, bytes(12))


def test_bad_codes_and_shapes_are_refused():
    orig, recon = _pair(4)
    with pytest.raises(ValueError, match="12 bytes"):
        colour.apply(recon, bytes(11))
    with pytest.raises(ValueError, match="differ in shape"):
        colour.fit(recon, orig[:-1])


def test_apply_is_exact_on_any_cpu():
    """Pinned bytes: what the decoder computes is elementwise float32 (no BLAS), so it is exact."""
    import hashlib

    rng = np.random.default_rng(20261126)
    recon = rng.integers(0, 256, size=(61, 47, 3)).astype(np.uint8)
    code = np.array([5, -3, 1, 2, 9, -4, 0, 7, -6, 11, -20, 3], dtype=np.int8).tobytes()
    out = colour.apply(recon, code)
    assert hashlib.md5(out.tobytes()).hexdigest() == GOLDEN_APPLY_MD5
