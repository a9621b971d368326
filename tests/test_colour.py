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
    """apply and squared_errors over row chunks equal the whole image (fit is one compiled pass, unchunked)."""
    orig, recon = _pair(2, shape=(37, 29, 3))
    whole_code = colour.fit(recon, orig)
    whole = colour.apply(recon, whole_code)
    sse = colour.squared_errors(recon, orig, whole_code)
    monkeypatch.setattr(colour, "CHUNK_PIXELS", 29 * 3)  # 3 rows per chunk, a ragged last chunk
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


# ----------------------------------------------------------------------------- grids of maps (version 4)

#: md5 of colour.apply with a 3 x 2 grid on the seeded case of test_grid_apply_is_exact_on_any_cpu.
GOLDEN_GRID_MD5 = "cfa4df3c256c095295d86e266967a6e4"


def _grid_code(gh: int, gw: int, seed: int = 0, spread: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    nodes = rng.integers(-spread, spread + 1, size=(gh * gw, 12)).astype(np.int8)
    return bytes([(gh - 1) << 4 | (gw - 1)]) + nodes.tobytes()


def _reference_grid_apply(recon: np.ndarray, code: bytes) -> np.ndarray:
    """The blended map in float64 with per-pixel parameters: what the float32 decoder approximates."""
    gh, gw = colour.grid_shape(code)
    gains, offsets = colour.grid_parameters(code)
    h, w = recon.shape[:2]
    mu = recon.reshape(-1, 3).sum(axis=0) / (h * w * 255.0)

    def weights(size, nodes):
        pos = np.clip((np.arange(size) + 0.5) * nodes / size - 0.5, 0, nodes - 1)
        i0 = np.minimum(np.floor(pos).astype(int), nodes - 1)
        return i0, np.minimum(i0 + 1, nodes - 1), pos - i0

    i0, i1, wy = weights(h, gh)
    j0, j1, wx = weights(w, gw)
    x = recon / 255.0
    out = np.zeros_like(x)
    for ii, vy in ((i0, 1 - wy), (i1, wy)):
        for jj, vx in ((j0, 1 - wx), (j1, wx)):
            g = gains[ii][:, jj]                                  # [h, w, 3, 3]
            d = offsets[ii][:, jj]                                # [h, w, 3]
            y = mu + d + np.einsum("hwi,hwij->hwj", x - mu, g)
            out += (vy[:, None] * vx[None, :])[..., None] * y
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def test_grid_code_layout():
    code = _grid_code(2, 3)
    assert colour.grid_shape(code) == (2, 3) and len(code) == colour.code_bytes((2, 3)) == 1 + 6 * 12
    gains, offsets = colour.grid_parameters(code)
    assert gains.shape == (2, 3, 3, 3) and offsets.shape == (2, 3, 3)
    g12, d12 = colour.parameters(code[1 + 12 * 5:])       # the last node, row-major
    np.testing.assert_array_equal(gains[1, 2], g12)
    np.testing.assert_array_equal(offsets[1, 2], d12)
    assert colour.grid_shape(bytes(12)) == (1, 1) and colour.code_bytes((1, 1)) == 12
    for bad, needle in ((bytes(13), "grid byte"), (code[:-1], "2x3 grid of colour maps is 73 bytes, got 72"),
                        (b"", "12 bytes")):
        with pytest.raises(ValueError, match=needle):
            colour.grid_shape(bad)


def test_grid_apply_matches_the_float64_blend():
    rng = np.random.default_rng(7)
    recon = rng.integers(0, 256, size=(53, 71, 3)).astype(np.uint8)
    for gh, gw in ((2, 3), (4, 1), (1, 5), (16, 16)):
        code = _grid_code(gh, gw, seed=gh * 17 + gw)
        out = colour.apply(recon, code)
        diff = np.abs(out.astype(int) - _reference_grid_apply(recon, code))
        assert diff.max() <= 1 and diff.mean() < 0.01, (gh, gw, diff.max(), diff.mean())


def test_a_grid_of_equal_nodes_is_the_global_map():
    """Blending equal nodes changes nothing but float rounding: a grid is a strict extension."""
    rng = np.random.default_rng(8)
    recon = rng.integers(0, 256, size=(40, 64, 3)).astype(np.uint8)
    node = np.array([5, -3, 1, 2, 9, -4, 0, 7, -6, 11, -20, 3], dtype=np.int8).tobytes()
    grid = bytes([0x23]) + node * 12                       # 3 x 4 nodes
    diff = np.abs(colour.apply(recon, grid).astype(int) - colour.apply(recon, node))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_grid_chunks_equal_the_whole(monkeypatch):
    rng = np.random.default_rng(9)
    recon = rng.integers(0, 256, size=(45, 33, 3)).astype(np.uint8)
    orig = rng.integers(0, 256, size=(45, 33, 3)).astype(np.uint8)
    code = _grid_code(3, 2, seed=3)
    whole, sse = colour.apply(recon, code), colour.squared_errors(recon, orig, code)
    monkeypatch.setattr(colour, "GRID_CHUNK_PIXELS", 33 * 4)   # 4 rows per chunk, a ragged last one
    np.testing.assert_array_equal(colour.apply(recon, code), whole)
    np.testing.assert_allclose(colour.squared_errors(recon, orig, code), sse, rtol=1e-12)


def _plain_fit(recon: np.ndarray, original: np.ndarray) -> bytes:
    """The global map from the centred normal equations over the pixels, as labkit first fitted it."""
    x = recon.reshape(-1, 3) / 255.0 - recon.reshape(-1, 3).mean(axis=0) / 255.0
    y = original.reshape(-1, 3) / 255.0 - original.reshape(-1, 3).mean(axis=0) / 255.0
    gain = np.linalg.lstsq(x.T @ x, x.T @ y, rcond=None)[0]
    d = (original.reshape(-1, 3).mean(axis=0) - recon.reshape(-1, 3).mean(axis=0)) / 255.0
    return colour._node_code(np.vstack([gain, d]))


def _locally_cast(seed: int = 0, shape=(96, 128, 3)) -> tuple[np.ndarray, np.ndarray]:
    """An 'original' and a reconstruction with a colour cast that drifts across the image."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    orig = rng.integers(30, 226, size=shape).astype(np.float64)
    ramp = np.linspace(-1, 1, w)[None, :, None] * np.array([18.0, -10.0, 6.0])  # left blue-ish, right red
    vert = np.linspace(-1, 1, h)[:, None, None] * np.array([-6.0, 8.0, 0.0])
    recon = orig * 0.95 + ramp + vert + rng.normal(0, 2, size=shape)
    return orig.astype(np.uint8), np.clip(np.rint(recon), 0, 255).astype(np.uint8)


def test_fit_grid_takes_a_drifting_cast_the_global_map_cannot():
    orig, recon = _locally_cast()
    one = colour.apply(recon, colour.fit(recon, orig))
    grid = colour.apply(recon, colour.fit_grid(recon, orig, (3, 4)))
    assert _mse(grid, orig) < 0.5 * _mse(one, orig) < 0.5 * _mse(recon, orig)
    assert colour.fit_grid(recon, orig, (1, 1)) == _plain_fit(recon, orig)   # a 1 x 1 grid is the global map
    with pytest.raises(ValueError, match="does not fit"):
        colour.fit_grid(recon, orig, (17, 1))


def test_choose_picks_what_pays():
    orig, recon = _locally_cast()
    code = colour.choose(recon, orig, 0.015)
    assert code is not None and colour.grid_shape(code) != (1, 1)   # a drifting cast: a grid pays
    # its choice beats the global map on the encoder's own score (MSE + weight * bpp)
    px = orig.shape[0] * orig.shape[1]
    score = lambda c: _mse(colour.apply(recon, c), orig) / 255**2 + 0.015 * 8 * len(c) / px  # noqa: E731
    assert score(code) < score(colour.fit(recon, orig))
    assert colour.choose(orig, orig, 0.015) is None                 # nothing to correct: nothing sent
    o2, r2 = _pair(5)                                               # one global distortion: one map
    assert len(colour.choose(r2, o2, 0.015)) == colour.MAP_BYTES
    small_o, small_r = _locally_cast(1, shape=(40, 60, 3))          # < 2 cells of MIN_CELL per side
    assert colour._candidate_grids(40, 60) == [(1, 1)]
    assert colour.choose(small_r, small_o, 0.015) in (None, colour.fit(small_r, small_o))


def test_fit_grid_is_tame_on_grey_images():
    """Channels that move together leave the gains undetermined; the ridge keeps a grey image grey."""
    rng = np.random.default_rng(11)
    grey = rng.integers(0, 256, size=(128, 128, 1)).astype(np.uint8)
    orig = np.repeat(grey, 3, axis=2)
    recon = np.repeat(np.clip(grey * 0.9 + 10, 0, 255).astype(np.uint8), 3, axis=2)
    out = colour.apply(recon, colour.fit_grid(recon, orig, (4, 4)))
    assert np.abs(out.astype(int) - orig).mean() < 1.0
    assert np.ptp(out.astype(int), axis=2).max() <= 1                  # still grey


def test_grid_apply_is_exact_on_any_cpu():
    """Pinned bytes: integer blending weights and elementwise float32, so exact on every machine."""
    import hashlib

    rng = np.random.default_rng(20261127)
    recon = rng.integers(0, 256, size=(61, 47, 3)).astype(np.uint8)
    out = colour.apply(recon, _grid_code(3, 2, seed=1))
    assert hashlib.md5(out.tobytes()).hexdigest() == GOLDEN_GRID_MD5


def _numpy_apply(recon: np.ndarray, code: bytes) -> np.ndarray:
    """The float32 arithmetic ``ext/colourmap.pyx`` states, in NumPy (what labkit ran before the kernel)."""
    h, w = recon.shape[:2]
    x = recon.astype(np.float32) * np.float32(1.0 / 255.0)

    def affine(x, p):
        return x[..., 0:1] * p[..., 0:3] + x[..., 1:2] * p[..., 3:6] + x[..., 2:3] * p[..., 6:9] + p[..., 9:12]

    if len(code) == colour.MAP_BYTES:
        g, o = colour._affine(recon, code)
        y = affine(x, np.concatenate([g.ravel(), o]))
    else:
        gh, gw = colour.grid_shape(code)
        nodes = colour._node_affines(recon, code)
        i0, i1, wy = colour._axis_weights(h, gh, 0, h)
        j0, j1, wx = colour._axis_weights(w, gw, 0, w)
        per_row = nodes[i0] * (np.float32(1.0) - wy)[:, None, None] + nodes[i1] * wy[:, None, None]
        y0 = affine(x, per_row[:, j0])
        y1 = affine(x, per_row[:, j1])
        y = y0 * (np.float32(1.0) - wx)[:, None] + y1 * wx[:, None]
    return np.clip(np.rint(y * np.float32(255.0)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 5), (16, 16), (1, 4)])
def test_the_compiled_map_gives_numpys_bytes(shape):
    """ext/colourmap.pyx against the same float32 arithmetic in NumPy, byte for byte, with codes up to
    their reach (so outputs clip at both ends) on photo-like and random pixels."""
    rng = np.random.default_rng(sum(shape))
    smooth = np.cumsum(rng.integers(-3, 4, size=(53, 71, 3)), axis=1) + 128
    for recon in (rng.integers(0, 256, size=(53, 71, 3)).astype(np.uint8), np.clip(smooth, 0, 255).astype(np.uint8)):
        for spread in (6, 127):
            if shape == (1, 1):
                code = rng.integers(-spread, spread + 1, size=12).astype(np.int8).tobytes()
            else:
                code = _grid_code(*shape, seed=spread, spread=spread)
            np.testing.assert_array_equal(colour.apply(recon, code), _numpy_apply(recon, code))


def test_the_compiled_map_checks_its_arguments():
    from labkit import _colourmap

    src = np.zeros((2, 3, 3), dtype=np.uint8)
    params = np.zeros((1, 2, 12), dtype=np.float32)
    node, weight = np.zeros(3, dtype=np.int32), np.zeros(3, dtype=np.float32)
    _colourmap.map_rows(src, params, node, node, weight, weight, np.empty_like(src), True)
    with pytest.raises(ValueError, match="names node 0 / 2; there are 2"):
        _colourmap.map_rows(src, params, node, np.full(3, 2, dtype=np.int32), weight, weight, np.empty_like(src), True)
    with pytest.raises(ValueError, match="names node -1 / 0"):
        _colourmap.map_rows(src, params, np.full(3, -1, dtype=np.int32), node, weight, weight, np.empty_like(src), True)
    with pytest.raises(ValueError, match="one entry per column"):
        _colourmap.map_rows(src, params, node[:2], node, weight, weight, np.empty_like(src), True)
    with pytest.raises(ValueError, match="params must be"):
        _colourmap.map_rows(src, np.zeros((3, 2, 12), dtype=np.float32), node, node, weight, weight,
                            np.empty_like(src), True)
    with pytest.raises(ValueError, match="src and out"):
        _colourmap.map_rows(src, params, node, node, weight, weight, np.empty((2, 4, 3), dtype=np.uint8), True)


def test_rate_weights_are_the_measured_slopes():
    """spec's per-b weights are what tools/measure_map_rate_weights.py measured (one source, rounded there)."""
    import json

    from labkit import spec
    from labkit.paths import ROOT

    recorded = json.loads((ROOT / "benchmarks/results/experiments/colour_rate_weights.json").read_text())
    assert {int(b): w for b, w in recorded["rate_weights"].items()} == spec.COLOUR_MAP_RATE_WEIGHTS
    weights = [spec.colour_map_rate_weight(b) for b in spec.BITS]
    assert weights == sorted(weights, reverse=True) and weights[-1] == spec.COLOUR_MAP_RATE_WEIGHTS[5]
    with pytest.raises(ValueError):
        spec.colour_map_rate_weight(0)


def test_the_container_reads_the_grid_byte_as_colour_does():
    """bitstream parses the grid byte itself (it stays numpy-free); both must agree on every layout."""
    from labkit import bitstream

    for gh in range(1, colour.MAX_GRID + 1):
        for gw in range(1, colour.MAX_GRID + 1):
            code = bytes(12) if (gh, gw) == (1, 1) else bytes([(gh - 1) << 4 | (gw - 1)]) + bytes(12 * gh * gw)
            header = bitstream.Header(model="resae", b=2, height=64, width=64, latent_channels=16,
                                      downsample=8, ymax=1.0, colour_map=code)
            bitstream.validate_header(header)
            assert header.colour_grid == colour.grid_shape(code) == (gh, gw)
            assert len(code) == colour.code_bytes((gh, gw))


@pytest.mark.parametrize("shape", [(3, 4), (8, 8), (12, 16)])
def test_grid_solve_is_the_dense_solve_on_the_band(shape):
    """The grid's normal equations are banded (a pixel blends the 2 x 2 nodes around it): the
    banded Cholesky solve gives the dense solution, and a matrix that is not positive definite
    falls back to the dense solver."""
    orig, recon = _locally_cast(2, shape=(32 * shape[0], 32 * shape[1], 3))
    s = colour._Summary(recon, orig)
    a, bm = s.system(shape)
    n4 = a.shape[0]
    i, j = np.indices(a.shape)
    assert not a[np.abs(i - j) > 4 * (shape[1] + 1) + 3].any()      # nothing outside the band
    lhs = a + np.trace(a) / n4 * 1e-3 * np.eye(n4)
    np.testing.assert_allclose(colour._solve_grid_system(lhs, bm, shape), np.linalg.solve(lhs, bm),
                               rtol=1e-9, atol=1e-12)
    indefinite = lhs - 2 * np.abs(np.linalg.eigvalsh(lhs)).max() * np.eye(n4)
    np.testing.assert_allclose(colour._solve_grid_system(indefinite, bm, shape),
                               np.linalg.solve(indefinite, bm), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- the colour floor (mean CIE76 error)

def test_delta_e_is_skimages_mean_cie76_chunked_and_after_the_map(monkeypatch):
    """Within float32 rounding of scikit-image's rgb2lab and deltaE_cie76 (relative 1e-5 on the mean)."""
    from skimage.color import deltaE_cie76, rgb2lab

    orig, recon = _locally_cast(3)
    want = float(np.mean(deltaE_cie76(rgb2lab(orig), rgb2lab(recon))))
    assert colour.delta_e(orig, recon) == pytest.approx(want, rel=1e-5)
    code = colour.fit_grid(recon, orig, (2, 3))
    mapped = float(np.mean(deltaE_cie76(rgb2lab(orig), rgb2lab(colour.apply(recon, code)))))
    assert colour.delta_e(orig, recon, code) == pytest.approx(mapped, rel=1e-5)
    monkeypatch.setattr(colour, "CHUNK_PIXELS", 1000)  # many chunks: the same mean
    assert colour.delta_e(orig, recon, code) == pytest.approx(mapped, rel=1e-5)
    assert colour.delta_e(orig, orig) == 0.0
    with pytest.raises(ValueError):
        colour.delta_e(orig, recon[:-1])


def test_colour_floor_sends_a_finer_map_only_when_the_error_is_over_it():
    orig, recon = _locally_cast()
    price = 0.5  # bits so dear that the encoder's own choice is at most the global map
    plain = colour.choose(recon, orig, price)
    assert plain is None or len(plain) == colour.MAP_BYTES
    plain_de = colour.delta_e(orig, recon, plain)
    best_de = min(colour.delta_e(orig, recon, colour.fit_grid(recon, orig, s))
                  for s in colour._candidate_grids(*orig.shape[:2]))
    assert best_de < plain_de - 1.0  # a grid could take more of the cast
    floor = (best_de + plain_de) / 2
    code = colour.choose(recon, orig, price, max_delta_e=floor)
    assert code is not None and colour.grid_shape(code) != (1, 1)
    assert colour.delta_e(orig, recon, code) <= floor
    # the coarsest grid finer than the plain choice that meets the floor: every one between fails it
    gh, gw = colour.grid_shape(code)
    between = [s for s in colour._candidate_grids(*orig.shape[:2])
               if colour._nodes(plain) < s[0] * s[1] < gh * gw]
    assert all(colour.delta_e(orig, recon, colour.fit_grid(recon, orig, s)) > floor for s in between)
    # a floor the choice already meets, or one no candidate meets: the encoder's own choice
    assert colour.choose(recon, orig, price, max_delta_e=plain_de + 0.01) == plain
    assert colour.choose(recon, orig, price, max_delta_e=0.0) == plain


@pytest.mark.parametrize("shape,block", [((53, 71, 3), 4), ((8, 8, 3), 4), ((33, 5, 3), 8), ((1, 1, 3), 4)])
def test_the_compiled_block_sums_are_the_per_block_normal_equations(shape, block):
    """ext/colourmap.pyx's block_sums against f^T (f, t) summed block by block in NumPy (float64, within
    rounding), ragged edge blocks included; and its argument checks."""
    from labkit import _colourmap

    rng = np.random.default_rng(shape[0])
    recon, orig = (rng.integers(0, 256, size=shape).astype(np.uint8) for _ in range(2))
    mu = recon.reshape(-1, 3).mean(axis=0) / 255.0
    nby, nbx = -(-shape[0] // block), -(-shape[1] // block)
    sums = np.zeros((nby, nbx, 4, 7))
    tt = _colourmap.block_sums(recon, orig, *mu, block, sums)
    f = np.concatenate([recon / 255.0 - mu, np.ones(shape[:2] + (1,)), orig / 255.0 - mu], axis=-1)
    want = np.zeros_like(sums)
    for by in range(nby):
        for bx in range(nbx):
            g = f[by * block:(by + 1) * block, bx * block:(bx + 1) * block].reshape(-1, 7)
            want[by, bx] = g[:, :4].T @ g
    np.testing.assert_allclose(sums, want, rtol=1e-12, atol=1e-12)
    assert tt == pytest.approx(float(np.sum(f[..., 4:] ** 2)), rel=1e-12)
    with pytest.raises(ValueError, match="sums must be"):
        _colourmap.block_sums(recon, orig, *mu, block, np.zeros((nby + 1, nbx, 4, 7)))
    with pytest.raises(ValueError, match="one size"):
        _colourmap.block_sums(recon, orig[:, :0], *mu, block, sums)
    with pytest.raises(ValueError, match="block must be"):
        _colourmap.block_sums(recon, orig, *mu, 0, sums)


def test_dense_and_sparse_grid_systems_agree(monkeypatch):
    """Small grid systems are assembled densely, large ones sparsely: the same normal equations
    (within rounding) and the same codes, whichever path a size takes."""
    orig, recon = _locally_cast()
    systems = {}
    for limit in (1 << 40, 0):
        monkeypatch.setattr(colour, "DENSE_SYSTEM_MACS", limit)
        summary = colour._Summary(recon, orig)
        systems[limit] = {s: (summary.system(s), summary.fit(s)) for s in colour._candidate_grids(*orig.shape[:2])
                          if s != (1, 1)}
    assert len(systems[0]) >= 2
    for shape, ((a, bm), code) in systems[0].items():
        (a_dense, bm_dense), code_dense = systems[1 << 40][shape]
        np.testing.assert_allclose(a_dense, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
        np.testing.assert_allclose(bm_dense, bm, rtol=1e-12, atol=1e-12 * np.abs(bm).max())
        assert code_dense == code


def test_the_encoders_shortcuts_choose_what_the_plain_computations_choose(monkeypatch):
    """fit() solves the global map from the grid fit's block sums, and choose() converts the original to
    CIELAB once (kept between the floor's passes); neither may change what they pick."""
    orig, recon = _locally_cast()
    assert colour.fit(recon, orig) == _plain_fit(recon, orig)
    for seed in range(6):
        o, r = _pair(seed)
        assert colour.fit(r, o) == _plain_fit(r, o)
    monkeypatch.setattr(colour, "CHUNK_PIXELS", 128 * 7)        # ragged chunks: the kept values are per chunk
    monkeypatch.setattr(colour, "GRID_CHUNK_PIXELS", 128 * 5)
    price = 0.5
    plain_de = colour.delta_e(orig, recon, colour.choose(recon, orig, price))
    floors = (plain_de - 1.0, plain_de - 0.5, plain_de + 0.01, 0.0)
    kept = [colour.choose(recon, orig, price, max_delta_e=f) for f in floors]
    assert len(set(kept)) >= 2                            # the floor changes the choice here
    monkeypatch.setattr(colour, "LAB_CACHE_PIXELS", 0)    # nothing kept: every pass converts again
    assert [colour.choose(recon, orig, price, max_delta_e=f) for f in floors] == kept
    reference = colour._ReferenceLab(orig)
    assert not reference.keep
    assert colour.delta_e(orig, recon, kept[0], reference=reference) == colour.delta_e(orig, recon, kept[0])


def test_colour_floor_applies_at_b_2_and_up_on_whole_photos_only():
    from labkit import spec

    big = spec.COLOUR_FLOOR_MIN_PIXELS
    assert spec.colour_floor(1, 10 * big) is None
    assert spec.colour_floor(2, big - 1) is None
    assert [spec.colour_floor(b, big) for b in (2, 3, 4, 5)] == [spec.COLOUR_FLOOR_DELTA_E] * 4
    with pytest.raises(ValueError):
        spec.colour_floor(0, big)
