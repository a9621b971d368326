"""The colour map: a per-image affine RGB correction the encoder fits and sends in 12 bytes.

A learned decoder can be biased in colour and contrast on a given image (``resae-rd``'s
outputs on the default test tiles are, measured: red +7 of 255 on average, channels
mixed).  The encoder sees both the original and what the decoder will produce, so it fits
the least-squares affine map from the reconstruction ``x`` to the original, quantizes it
and sends it when it pays for its 12 bytes; the decoder applies it after the network.
Nothing in the network changes, and files without a map decode as before.

The map is centred on the reconstruction's own mean colour ``mu`` (which the decoder
computes exactly from the integer pixel sums), so gain and offset do not trade off::

    y = mu + d + (x - mu) @ G        (x, y, mu, d: RGB rows in [0, 1]; G: 3 x 3)

The code: 9 signed bytes for ``G - I`` in steps of ``1 / GAIN_STEP`` (row-major: input
channel r, g, b by output channel r, g, b), then 3 signed bytes for ``d`` in steps of
``1 / OFFSET_STEP``.  The encoder rounds every parameter to an even code (:data:`CODE_STEP`:
gains in steps of 1/32, offsets of 1/256), which the container stores compactly (format
version 5, ``labkit.bitstream.compact_colour_map``: about half the bytes), and it prices a map
by the bytes it takes there.  Measured on ``resae-rd`` at b = 3 over the default test tiles, the
quantized map gives 27.14 dB where the unquantized least-squares map gives 27.14 dB
(and no map 24.44 dB); a plain uncentred 3 x 4 map in 1/256 steps clips and gives 24.30.

A **grid of maps** (format version 4) corrects colour locally: ``gh x gw`` nodes at the
centres of a regular grid of cells, each with its own 12-byte map (same code, same global
``mu``), after one grid byte (``gh - 1`` in the high nibble, ``gw - 1`` in the low one).
The decoder blends the nodes' affine parameters bilinearly between node centres (constant
beyond the outer ones), so there are no seams.  The weights come from exact integer
arithmetic, so every CPU computes the same ones.  The encoder fits all nodes jointly by
least squares on block summaries of the image (ridge-pulled toward the global map where a
cell says little) and :func:`choose` picks the grid -- or the one global map, or none --
that minimises ``MSE + rate_weight * bpp`` with every byte counted.  Measured gains are in
NOTES.md.

Everything here works in row chunks of at most ``CHUNK_PIXELS`` pixels, so memory stays
bounded at any image size; what the decoder computes is elementwise (no BLAS), so every
CPU rounds it the same way (the encoder's least-squares fit uses BLAS; its result is rounded
to the code).  Torch-free.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import _colourmap
from .bitstream import stored_colour_map

__all__ = ["MAP_BYTES", "GAIN_STEP", "OFFSET_STEP", "CODE_STEP", "stored_bytes", "MAX_GRID", "MIN_CELL", "fit", "fit_grid", "choose", "apply", "delta_e",
           "parameters", "grid_shape", "grid_parameters", "code_bytes", "pays", "squared_error", "squared_errors"]

#: Bytes a colour map takes in a file.
MAP_BYTES = 12
#: Gains ``G - I`` are sent in steps of 1/GAIN_STEP (reach +-127/64, about +-2).
GAIN_STEP = 64.0
#: Offsets ``d`` are sent in steps of 1/OFFSET_STEP (reach +-127/512 of full scale).
OFFSET_STEP = 512.0
#: The encoder writes every parameter as a multiple of this many code steps (gains in 1/32, offsets
#: in 1/256): at the quality a map buys, the finer half-steps are not worth their bit each, and even
#: codes are what the compact coding (format version 5) stores.  Against 8-bit codes stored as
#: versions 3/4, through the codec (``python tools/exp_compact_maps.py``): BD-rate -3.0 % (PSNR) /
#: +0.1 % (SSIM) on the default test tiles, -2.5 % / +0.4 % on the four full-size photos.
CODE_STEP = 2
#: Pixels per chunk when fitting or applying (bounds the float64 working set to ~100 MiB).
CHUNK_PIXELS = 1 << 20


def _chunks(image: np.ndarray, pixels: int | None = None) -> Iterator[slice]:
    """Row slices of at most ``pixels`` pixels (default :data:`CHUNK_PIXELS`, read at call time)."""
    h, w = image.shape[:2]
    rows = max(1, (pixels or CHUNK_PIXELS) // max(1, w))
    for r0 in range(0, h, rows):
        yield slice(r0, min(h, r0 + rows))


def _check_pair(recon: np.ndarray, original: np.ndarray | None = None) -> None:
    for name, a in (("reconstruction", recon), ("original", original)):
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.size == 0:
            raise ValueError(f"the {name} must be a non-empty uint8 H x W x 3 array, got "
                             f"{getattr(a, 'dtype', type(a).__name__)} of shape {getattr(a, 'shape', None)}")
    if original is not None and original.shape != recon.shape:
        raise ValueError(f"reconstruction {recon.shape} and original {original.shape} differ in shape")


def _mean_colour(image: np.ndarray) -> np.ndarray:
    """Mean RGB in [0, 1] from exact integer sums (the same bits on every machine)."""
    total = np.zeros(3, dtype=np.int64)
    width = image.shape[1]
    for rows in _chunks(image):
        # summed down the columns of whole pixel rows first (contiguous, vectorised: ~14x faster
        # than reducing an [n, 3] array along its long axis), then across them; exact integers
        per_column = image[rows].reshape(-1, width * 3).sum(axis=0, dtype=np.int64)
        total += per_column.reshape(width, 3).sum(axis=0)
    return total.astype(np.float64) / (image.shape[0] * image.shape[1] * 255.0)


def parameters(code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(G, d)`` of a 12-byte code: the 3 x 3 gain matrix and the offset, float64."""
    if not isinstance(code, (bytes, bytearray)) or len(code) != MAP_BYTES:
        raise ValueError(f"a colour map code is {MAP_BYTES} bytes, got {code!r}")
    gains, offsets = grid_parameters(code)
    return gains[0, 0], offsets[0, 0]


def fit(recon: np.ndarray, original: np.ndarray) -> bytes:
    """Least-squares map from ``recon`` to ``original`` (both uint8 H x W x 3), quantized to its code.

    The centred normal equations come from the grid fit's block sums (one compiled pass over the
    pixels, bounded memory, :meth:`_Summary.global_code`); coefficients beyond the code's reach are
    clipped to it.
    """
    _check_pair(recon, original)
    return _Summary(recon, original).global_code()


def _affine(recon: np.ndarray, code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(G, o)`` with ``y = x @ G + o`` for this image (``o = mu + d - mu @ G``)."""
    gain, d = parameters(code)
    mu = _mean_colour(recon)
    mu_gain = mu[0] * gain[0] + mu[1] * gain[1] + mu[2] * gain[2]  # mu @ G, elementwise (no BLAS)
    return gain.astype(np.float32), (mu + d - mu_gain).astype(np.float32)


def apply(recon: np.ndarray, code: bytes) -> np.ndarray:
    """``recon`` (uint8 H x W x 3) after the map (or grid of maps) of ``code``, rounded back to uint8 (a new array)."""
    _check_pair(recon)
    out = np.empty_like(recon)
    for rows, mapped in _mapped_chunks(recon, code):
        out[rows] = mapped
    return out


def squared_error(recon: np.ndarray, original: np.ndarray) -> float:
    """Sum of squared differences of ``recon`` to ``original`` in [0, 1] units (chunked: bounded memory)."""
    _check_pair(recon, original)
    total = 0.0
    for rows in _chunks(recon):
        d = recon[rows].astype(np.float64) - original[rows]
        total += float(np.vdot(d, d))
    return total / 255.0**2


def squared_errors(recon: np.ndarray, original: np.ndarray, code: bytes) -> tuple[float, float]:
    """Sums of squared differences to ``original`` of ``recon`` without and with the map, in [0, 1] units.

    Chunked, and the mapped image is never held whole: what the encoder needs to decide
    whether the map pays (:func:`pays`) at bounded memory.  ``code`` is a global map or a grid.
    """
    return _errors(recon, original, code, with_delta_e=False)[:2]


def _errors(recon: np.ndarray, original: np.ndarray, code: bytes,
            with_delta_e: bool, reference: _ReferenceLab | None = None) -> tuple[float, float, float | None]:
    """:func:`squared_errors` and, with ``with_delta_e``, :func:`delta_e` with the map, in one pass over the chunks."""
    _check_pair(recon, original)
    reference = reference or _ReferenceLab(original)
    without = with_map = colour_error = 0.0
    for rows, mapped in _mapped_chunks(recon, code):
        ref = original[rows].astype(np.float64)
        d0 = recon[rows] - ref
        d1 = mapped - ref
        without += float(np.vdot(d0, d0))
        with_map += float(np.vdot(d1, d1))
        if with_delta_e:
            colour_error += _delta_e_sum(reference.lab(rows), mapped)
    mean_de = colour_error / (original.shape[0] * original.shape[1]) if with_delta_e else None
    return without / 255.0**2, with_map / 255.0**2, mean_de


def pays(sse_without: float, sse_with: float, pixels: int, rate_weight: float, nbytes: int = MAP_BYTES) -> bool:
    """Whether the map's drop in squared error is worth its ``8 * nbytes`` bits.

    The trade-off is the model's own training objective ``MSE + rate_weight * bpp``: send
    the map when ``(sse_without - sse_with) / pixels / 3 > rate_weight * 8 * nbytes / pixels``.
    """
    mse_gain = (sse_without - sse_with) / (3.0 * pixels)
    return mse_gain > rate_weight * 8 * nbytes / pixels


# --------------------------------------------------------------------------- grids of maps
#: Most nodes per side of a grid of maps (the grid byte holds each side minus one in a nibble).
MAX_GRID = 16
#: Smallest cell side, in pixels, the encoder gives a grid: at most one node per 32 x 32 pixels.
MIN_CELL = 32
#: Pixels per chunk when applying a grid (its uint8 output and each row's blended node parameters).
GRID_CHUNK_PIXELS = 1 << 18
#: Most blocks the encoder summarises an image into for the grid fit (bounds its memory).
MAX_FIT_BLOCKS = 1 << 18
#: Grid systems whose dense assembly costs at most this many multiply-adds are assembled densely (one
#: matrix product, no sparse-matrix set-up: what small images and coarse grids need); larger ones sparsely.
DENSE_SYSTEM_MACS = 1 << 23
#: Ridge weight pulling each node toward the global map, in units of the node's share of the
#: image's energy (per gain: the mean channel's centred energy; for the offset: its pixels):
#: where a cell is flat, or its channels move together, its gains stay near the global ones.
RIDGE = 0.003
#: Nodes along the longer side the encoder tries (the shorter side in proportion).
GRID_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16)


def code_bytes(shape: tuple[int, int]) -> int:
    """Bytes of the code of a ``(gh, gw)`` grid: 12 for the global map, else a grid byte + 12 per node."""
    gh, gw = shape
    return MAP_BYTES if (gh, gw) == (1, 1) else 1 + MAP_BYTES * gh * gw


def grid_shape(code: bytes) -> tuple[int, int]:
    """``(gh, gw)`` of a code: ``(1, 1)`` for a 12-byte global map, else from its grid byte.

    Raises ``ValueError`` unless the code's length is exactly what its grid byte says.
    """
    if not isinstance(code, (bytes, bytearray)) or len(code) == 0:
        raise ValueError(f"a colour map code is {MAP_BYTES} bytes or a grid byte + {MAP_BYTES} per node, got {code!r}")
    if len(code) == MAP_BYTES:
        return 1, 1
    gh, gw = (code[0] >> 4) + 1, (code[0] & 0x0F) + 1
    if (gh, gw) == (1, 1):
        raise ValueError(f"a colour map code is {MAP_BYTES} bytes, or a grid byte (for more than one node) and "
                         f"{MAP_BYTES} bytes per node; got {len(code)} bytes")
    if len(code) != code_bytes((gh, gw)):
        raise ValueError(f"a {gh}x{gw} grid of colour maps is {code_bytes((gh, gw))} bytes, got {len(code)}")
    return gh, gw


def grid_parameters(code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(G, d)`` of every node: gains ``[gh, gw, 3, 3]`` and offsets ``[gh, gw, 3]``, float64."""
    gh, gw = grid_shape(code)
    body = bytes(code) if (gh, gw) == (1, 1) else bytes(code)[1:]
    c = np.frombuffer(body, dtype=np.int8).astype(np.float64).reshape(gh, gw, MAP_BYTES)
    gains = np.eye(3) + c[..., :9].reshape(gh, gw, 3, 3) / GAIN_STEP
    return gains, c[..., 9:] / OFFSET_STEP


def _node_code(theta: np.ndarray) -> bytes:
    """The 12-byte codes of maps' float ``theta`` (``[..., 4, 3]``: gains G, then offset d; one map
    or many, concatenated), in even code steps (:data:`CODE_STEP`), clipped to their reach."""
    reach = 127 // CODE_STEP
    g = np.clip(np.round((theta[..., :3, :] - np.eye(3)) * (GAIN_STEP / CODE_STEP)), -reach, reach) * CODE_STEP
    d = np.clip(np.round(theta[..., 3, :] * (OFFSET_STEP / CODE_STEP)), -reach, reach) * CODE_STEP
    return np.concatenate([g.reshape(*g.shape[:-2], 9), d], axis=-1).astype(np.int8).tobytes()


def stored_bytes(code: bytes) -> int:
    """Bytes the map (or grid) ``code`` takes in a file (``labkit.bitstream``: compact when it can be)."""
    return len(stored_colour_map(code))


def _grid_code(shape: tuple[int, int], theta: np.ndarray) -> bytes:
    """The code of a grid from its nodes' float parameters ``theta`` ([gh * gw, 4, 3], row-major nodes)."""
    gh, gw = shape
    nodes = _node_code(theta)
    return nodes if (gh, gw) == (1, 1) else bytes([(gh - 1) << 4 | (gw - 1)]) + nodes


def _axis_weights(size: int, nodes: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear blending along one axis for pixels ``start..stop-1`` of ``size``: ``(i0, i1, w1)``.

    Node ``k`` sits at the centre of cell ``k``, ``(k + 1/2) * size / nodes``; pixel ``r`` at
    ``r + 1/2``.  Its position in node units, ``((2r + 1) * nodes - size) / (2 * size)``, is
    clamped to ``[0, nodes - 1]`` and split into the node below (``i0``), the one above
    (``i1``) and the weight of the one above (``w1``, float32).  The numerator is an exact
    integer and one correctly rounded division makes the weight, so every machine gets the
    same weights.
    """
    r = np.arange(start, stop, dtype=np.int64)
    den = 2 * size
    num = np.clip((2 * r + 1) * nodes - size, 0, den * (nodes - 1))
    i0 = num // den
    w1 = ((num - i0 * den).astype(np.float64) / den).astype(np.float32)
    return i0, np.minimum(i0 + 1, nodes - 1), w1


def _node_affines(recon: np.ndarray, code: bytes) -> np.ndarray:
    """float32 ``[gh, gw, 12]``: each node's ``G`` (row-major) and ``o = mu + d - mu @ G`` (``y = x @ G + o``)."""
    gains, offsets = grid_parameters(code)
    mu = _mean_colour(recon)
    mu_gain = mu[0] * gains[..., 0, :] + mu[1] * gains[..., 1, :] + mu[2] * gains[..., 2, :]  # elementwise
    o = mu + offsets - mu_gain
    return np.concatenate([gains.reshape(*gains.shape[:2], 9), o], axis=-1).astype(np.float32)


def _map_kernel(part: np.ndarray, params: np.ndarray, left: np.ndarray, right: np.ndarray,
                wx: np.ndarray, vx: np.ndarray, blend: bool) -> np.ndarray:
    """``part`` (uint8 rows) mapped by the compiled kernel (``ext/colourmap.pyx``, which states the
    float32 arithmetic); the same bytes as that arithmetic in NumPy (``tests/test_colour.py``)."""
    out = np.empty(part.shape, dtype=np.uint8)
    _colourmap.map_rows(np.ascontiguousarray(part), np.ascontiguousarray(params, dtype=np.float32),
                        left, right, wx, vx, out, blend)
    return out


def _mapped_chunks(recon: np.ndarray, code: bytes) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, mapped uint8 rows)`` of ``recon`` under ``code``, chunk by chunk.

    A global map takes the path version 3 always took: ``y = x @ G + o`` with ``x`` the pixel in
    [0, 1] (float32).  A grid blends bilinearly: each pixel row first blends the node rows'
    parameters (``(1 - wy) P[i0] + wy P[i1]``); between two node columns ``j0, j1`` the pixel
    is mapped by both columns' blended maps and the two results are blended
    (``(1 - wx) y0 + wx y1``), which is the same bilinear map and needs no per-pixel
    parameters.  All in elementwise float32, in this order, on every machine (the per-pixel
    part in ``ext/colourmap.pyx``).
    """
    width = recon.shape[1]
    if len(code) == MAP_BYTES:
        g, o = _affine(recon, code)
        params = np.concatenate([g.ravel(), o]).reshape(1, 1, 12)
        node, weight = np.zeros(width, dtype=np.int32), np.zeros(width, dtype=np.float32)
        for rows in _chunks(recon):
            yield rows, _map_kernel(recon[rows], params, node, node, weight, weight, blend=False)
        return
    gh, gw = grid_shape(code)
    height = recon.shape[0]
    nodes = _node_affines(recon, code)
    j0, j1, wx = _axis_weights(width, gw, 0, width)
    vx = np.float32(1.0) - wx
    left, right = j0.astype(np.int32), j1.astype(np.int32)
    for rows in _chunks(recon, GRID_CHUNK_PIXELS):
        i0, i1, wy = _axis_weights(height, gh, rows.start, rows.stop)
        per_row = nodes[i0] * (np.float32(1.0) - wy)[:, None, None] + nodes[i1] * wy[:, None, None]  # [r, gw, 12]
        yield rows, _map_kernel(recon[rows], per_row, left, right, wx, vx, blend=True)


class _Summary:
    """What the encoder's grid fit needs of an image, per block of ``block x block`` pixels.

    Features ``f = (x - mu, 1)`` of the reconstruction and target ``t = original - mu`` (in
    [0, 1] units, ``mu`` the reconstruction's mean colour): per block the sums ``f f^T``
    ([nb, 4, 4]), ``f t^T`` ([nb, 4, 3]) and ``|t|^2``, and the blocks' centres.  A grid's
    normal equations are then sums over blocks (each weighted at its centre), so fitting
    many grids costs one pass over the pixels.
    """

    def __init__(self, recon: np.ndarray, original: np.ndarray) -> None:
        height, width = recon.shape[:2]
        block = 4
        while -(-height // block) * -(-width // block) > MAX_FIT_BLOCKS:
            block *= 2
        nby, nbx = -(-height // block), -(-width // block)
        self.height, self.width, self.pixels = height, width, height * width
        self.mu = _mean_colour(recon)
        n = nby * nbx
        sums = np.zeros((nby, nbx, 4, 7))
        # one compiled pass over the pixels (ext/colourmap.pyx): no per-pixel float64 copies
        tt = _colourmap.block_sums(np.ascontiguousarray(recon), np.ascontiguousarray(original),
                                   *(float(m) for m in self.mu), block, sums)
        ff, ft = np.ascontiguousarray(sums[..., :4]), np.ascontiguousarray(sums[..., 4:])
        ff, ft = ff.reshape(n, 4, 4), ft.reshape(n, 4, 3)
        iu = np.triu_indices(4, 1)
        ff[:, iu[1], iu[0]] = ff[:, iu[0], iu[1]]
        self.ff, self.ft, self.tt = ff, ft, tt
        self.block, self.blocks = block, (nby, nbx)
        self._levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._systems: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _level(self, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sums over blocks of ``factor x factor`` base blocks: ``ff [nb, 16]``, ``ft [nb, 12]``, centres."""
        if factor not in self._levels:
            (nby, nbx), f = self.blocks, factor
            cy, cx = -(-nby // f), -(-nbx // f)

            def coarse(a: np.ndarray) -> np.ndarray:
                grid = np.zeros((cy * f, cx * f, a.shape[-1]))
                grid[:nby, :nbx] = a.reshape(nby, nbx, -1)
                return grid.reshape(cy, f, cx, f, -1).sum(axis=(1, 3)).reshape(cy * cx, -1)

            side = self.block * f
            edges_y = np.minimum(np.arange(cy + 1) * side, self.height)
            edges_x = np.minimum(np.arange(cx + 1) * side, self.width)
            self._levels[f] = (coarse(self.ff.reshape(-1, 16)), coarse(self.ft.reshape(-1, 12)),
                               (edges_y[:-1] + edges_y[1:]) / 2.0, (edges_x[:-1] + edges_x[1:]) / 2.0)
        return self._levels[factor]

    def system(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Normal equations ``(A [4N, 4N], B [4N, 3])`` of a ``(gh, gw)`` grid, ``N = gh * gw``.

        Each block is weighted at its centre; blocks are merged up to an eighth of the grid's
        cell side (the weights vary little across them), so coarse grids cost little.
        """
        if shape in self._systems:
            return self._systems[shape]
        gh, gw = shape
        n = gh * gw
        cell = min(self.height / gh, self.width / gw)
        factor = 1
        while 2 * factor * self.block <= cell / 8:
            factor *= 2
        ff, ft, centre_y, centre_x = self._level(factor)

        def axis(centres: np.ndarray, size: int, nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            pos = np.clip(centres * nodes / size - 0.5, 0, nodes - 1)
            i0 = np.minimum(np.floor(pos).astype(np.int64), nodes - 1)
            return i0, np.minimum(i0 + 1, nodes - 1), pos - i0

        y0, y1, wy = axis(centre_y, self.height, gh)
        x0, x1, wx = axis(centre_x, self.width, gw)
        corners = [(a[:, None] * gw + b[None, :], (va[:, None] * vb[None, :]))
                   for a, va in ((y0, 1 - wy), (y1, wy)) for b, vb in ((x0, 1 - wx), (x1, wx))]
        node = np.stack([c[0].ravel() for c in corners])        # [4, nb]
        weight = np.stack([c[1].ravel() for c in corners])      # [4, nb]
        nb = node.shape[1]
        if nb * n * n * 16 <= DENSE_SYSTEM_MACS:
            # small: each block's node weights as a dense row (corners clamped onto one node add up),
            # then one matrix product sums weight products x block sums for every node pair
            dense = np.bincount((np.arange(nb) * n + node).ravel(), weights=weight.ravel(),
                                minlength=nb * n).reshape(nb, n)
            a = dense.T @ (dense[:, :, None] * ff[:, None, :]).reshape(nb, n * 16)
            big_a = a.reshape(n, n, 4, 4).transpose(0, 2, 1, 3).reshape(4 * n, 4 * n)
            self._systems[shape] = big_a, (dense.T @ ft).reshape(4 * n, 3)
            return self._systems[shape]
        from scipy import sparse  # here, not at import: scipy.sparse takes ~0.4 s to load

        # sum over blocks of corner weight products x block sums, as sparse [pairs, blocks] @ [blocks, 16]
        pair_key = (node[:, None, :] * n + node[None, :, :]).ravel()
        pair_w = (weight[:, None, :] * weight[None, :, :]).ravel()
        blocks = np.tile(np.arange(nb), 16)
        a = sparse.csr_matrix((pair_w, (pair_key, blocks)), shape=(n * n, nb)) @ ff
        big_a = a.reshape(n, n, 4, 4).transpose(0, 2, 1, 3).reshape(4 * n, 4 * n)
        bm = sparse.csr_matrix((weight.ravel(), (node.ravel(), np.tile(np.arange(nb), 4))), shape=(n, nb)) @ ft
        self._systems[shape] = big_a, bm.reshape(4 * n, 3)
        return self._systems[shape]

    def sse(self, shape: tuple[int, int], code: bytes) -> float:
        """Squared error (before rounding to uint8) of the grid ``code`` on this image, from the sums."""
        a, bm = self.system(shape)
        gains, offsets = grid_parameters(code)
        theta = np.concatenate([gains, offsets[..., None, :]], axis=-2).reshape(-1, 3)
        return float(self.tt - 2.0 * np.vdot(theta, bm) + np.vdot(theta, a @ theta))

    def global_code(self) -> bytes:
        """The global map's code (:func:`fit`) from the block sums: the gains solve the centred normal
        equations, the offset is the mean colour difference."""
        total_ff, total_ft = self.ff.sum(axis=0), self.ft.sum(axis=0)
        gain = np.linalg.lstsq(total_ff[:3, :3], total_ft[:3], rcond=None)[0]
        return _node_code(np.vstack([gain, total_ft[3] / self.pixels]))

    def fit(self, shape: tuple[int, int]) -> bytes:
        """The least-squares code of a ``(gh, gw)`` grid, each node pulled toward the global map by :data:`RIDGE`."""
        n = shape[0] * shape[1]
        total_ff, total_ft = self.ff.sum(axis=0), self.ft.sum(axis=0)
        theta0 = np.linalg.lstsq(total_ff, total_ft, rcond=None)[0]     # the global map, [4, 3]
        a, bm = self.system(shape)
        energy = np.trace(total_ff[:3, :3]) / 3.0   # the mean channel's centred energy: isotropic, so
        per_node = np.array([energy, energy, energy, self.pixels]) * (RIDGE / n)  # collinear channels stay tame
        lhs = a.copy()                            # + the ridge, which is diagonal (node by node)
        diagonal = np.arange(4 * n)
        lhs[diagonal, diagonal] += np.tile(per_node, n)
        lhs[diagonal, diagonal] += 1e-9
        rhs = bm + np.tile(per_node[:, None] * theta0, (n, 1))
        theta = _solve_grid_system(lhs, rhs, shape)
        return _grid_code(shape, theta.reshape(n, 4, 3))


def _solve_grid_system(lhs: np.ndarray, rhs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Solve a grid's ridge normal equations (symmetric positive definite, ``[4N, 4N]``).

    A pixel blends only the 2 x 2 nodes around it, so node ``(i, j)`` couples with its eight
    neighbours alone: with row-major nodes the matrix is a band of half-width ``4 (gw + 1) + 3``
    (``gw`` nodes per row).  A banded Cholesky solve costs ``O(N gw^2)`` instead of the dense
    ``O(N^3)`` (about 40x less for a 12 x 16 grid); a matrix that is not numerically positive
    definite falls back to the dense solver.
    """
    from scipy.linalg import LinAlgError, solveh_banded

    gw = shape[1]
    half = min(lhs.shape[0] - 1, 4 * (gw + 1) + 3)
    band = np.zeros((half + 1, lhs.shape[0]))
    for k in range(half + 1):                # upper form: band[half - k, j] = lhs[j - k, j]
        band[half - k, k:] = np.diagonal(lhs, k)
    try:
        return solveh_banded(band, rhs, check_finite=False)
    except (LinAlgError, ValueError):
        return np.linalg.solve(lhs, rhs)


def _candidate_grids(height: int, width: int) -> list[tuple[int, int]]:
    """Grids the encoder tries: :data:`GRID_CANDIDATES` nodes along the longer side, cells >= MIN_CELL."""
    long_side = max(height, width)
    out: list[tuple[int, int]] = []
    for n in GRID_CANDIDATES:
        gh = min(MAX_GRID, max(1, height // MIN_CELL), max(1, round(n * height / long_side)))
        gw = min(MAX_GRID, max(1, width // MIN_CELL), max(1, round(n * width / long_side)))
        if (gh, gw) not in out:
            out.append((gh, gw))
    return out


def fit_grid(recon: np.ndarray, original: np.ndarray, shape: tuple[int, int]) -> bytes:
    """The code of a ``(gh, gw)`` grid of maps from ``recon`` to ``original`` (``(1, 1)``: :func:`fit`)."""
    _check_pair(recon, original)
    gh, gw = shape
    if not (1 <= gh <= min(MAX_GRID, recon.shape[0]) and 1 <= gw <= min(MAX_GRID, recon.shape[1])):
        raise ValueError(f"a grid of {gh}x{gw} nodes does not fit a {recon.shape[1]}x{recon.shape[0]} image "
                         f"(1..{MAX_GRID} nodes per side, at most one per pixel)")
    if (gh, gw) == (1, 1):
        return fit(recon, original)
    return _Summary(recon, original).fit((gh, gw))


#: sRGB (8-bit code) -> linear light, the IEC 61966-2-1 curve: what ``skimage.color.rgb2lab`` computes
#: per channel, as a table, since the inputs here are always uint8.
_SRGB_LINEAR = np.where(np.arange(256) / 255.0 > 0.04045, ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4,
                        np.arange(256) / 255.0 / 12.92).astype(np.float32)
#: linear sRGB -> CIE XYZ (D65), divided by the D65 white (2 degree observer): scikit-image's constants.
_XYZ_OVER_WHITE = (np.array([[0.412453, 0.357580, 0.180423],
                             [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]]) / np.array([0.95047, 1.0, 1.08883])[:, None]
                   ).T.astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB ``[n, 3]`` (float32) of uint8 RGB pixels: ``skimage.color.rgb2lab``'s formula (D65, 2 degrees)
    through a table for the sRGB curve, about 2.5x faster than it on whole photos."""
    t = _SRGB_LINEAR[rgb.reshape(-1, 3)] @ _XYZ_OVER_WHITE
    f = np.cbrt(t)
    dark = t <= 0.008856
    f[dark] = np.float32(7.787) * t[dark] + np.float32(16.0 / 116.0)
    return np.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], axis=-1)


#: Largest image (pixels) whose original's CIELAB values the encoder keeps between the colour floor's
#: passes (12 bytes a pixel for each of the two chunkings a global map and a grid use: 96 MiB at
#: most); larger images convert each chunk again per pass.
LAB_CACHE_PIXELS = 1 << 22


class _ReferenceLab:
    """The original's CIELAB values chunk by chunk, kept (up to :data:`LAB_CACHE_PIXELS`) so the
    encoder's passes over candidate maps convert the original once, not once per pass."""

    def __init__(self, original: np.ndarray) -> None:
        self.original = original
        self.keep = original.shape[0] * original.shape[1] <= LAB_CACHE_PIXELS
        self._kept: dict[tuple[int, int], np.ndarray] = {}

    def lab(self, rows: slice) -> np.ndarray:
        key = (rows.start, rows.stop)
        if key in self._kept:
            return self._kept[key]
        value = _lab(self.original[rows])
        if self.keep:
            self._kept[key] = value
        return value


def _delta_e_sum(original_lab: np.ndarray, decoded: np.ndarray) -> float:
    """Sum over pixels of the CIE76 difference between a chunk's original (as CIELAB, :func:`_lab`)
    and its decoded uint8 RGB pixels (float64 accumulation)."""
    d = original_lab - _lab(np.asarray(decoded, dtype=np.uint8))
    return float(np.sqrt(np.einsum("ij,ij->i", d, d)).sum(dtype=np.float64))


def delta_e(original: np.ndarray, recon: np.ndarray, code: bytes | None = None,
            reference: _ReferenceLab | None = None) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB, D65) of ``recon`` to ``original``.

    ``code``: measure ``recon`` after that map or grid of maps, as the decoder outputs it (rounded
    to uint8).  Chunked, so memory stays bounded at any image size.  The CIELAB conversion is
    scikit-image's ``rgb2lab`` in float32 (within 1e-4 of it per pixel); the mean is accumulated
    in float64.
    """
    _check_pair(recon, original)
    reference = reference or _ReferenceLab(original)
    chunks = _mapped_chunks(recon, code) if code is not None else ((r, recon[r]) for r in _chunks(recon))
    total = sum(_delta_e_sum(reference.lab(rows), decoded) for rows, decoded in chunks)
    return total / (original.shape[0] * original.shape[1])


def _nodes(code: bytes | None) -> int:
    """Map nodes a code sends (0: no map, 1: the global map)."""
    if code is None:
        return 0
    gh, gw = grid_shape(code)
    return gh * gw


def choose(recon: np.ndarray, original: np.ndarray, rate_weight: float,
           max_delta_e: float | None = None) -> bytes | None:
    """The colour map the encoder sends for ``recon``: a grid, the global map, or None.

    Every candidate grid (:func:`_candidate_grids`; ``(1, 1)`` is :func:`fit`'s global map)
    is fitted and scored by ``MSE + rate_weight * bpp`` of the bytes it takes in the file
    (:func:`stored_bytes`) from the image's block sums; the best is then checked on the real pixels (rounding included) with :func:`pays`,
    falling back to the global map if the best grid does not pay.

    ``max_delta_e`` is a colour floor on top of that choice: when the decoded image's mean CIE76
    error (:func:`delta_e`) with the chosen map exceeds it, the finer candidates (more nodes than
    the choice) are tried from the coarsest up and the first that meets it is sent instead (none
    meeting it: the first choice stays).  Squared error weighs a colour cast like any other error,
    so a low bit depth can leave a cast that this floor removes for a few more bytes.  The error of
    the choice is measured in the same pass as its squared error.
    """
    _check_pair(recon, original)
    summary = _Summary(recon, original)
    reference = _ReferenceLab(original)
    pixels = summary.pixels
    scored = []
    for shape in _candidate_grids(*recon.shape[:2]):
        code = summary.global_code() if shape == (1, 1) else summary.fit(shape)
        nbytes = stored_bytes(code)
        cost = summary.sse(shape, code) / (3.0 * pixels) + rate_weight * 8 * nbytes / pixels
        scored.append((cost, nbytes, code))
    scored.sort(key=lambda s: (s[0], s[1]))
    best = scored[0]
    tries = [best] + ([s for s in scored if len(s[2]) == MAP_BYTES] if len(best[2]) != MAP_BYTES else [])
    floor = max_delta_e is not None
    chosen, chosen_error = None, None
    for _, nbytes, code in tries:
        without, with_map, error = _errors(recon, original, code, with_delta_e=floor, reference=reference)
        if pays(without, with_map, pixels, rate_weight, nbytes):
            chosen, chosen_error = code, error
            break
    if not floor:
        return chosen
    if chosen is None:
        chosen_error = delta_e(original, recon, reference=reference)
    if chosen_error <= max_delta_e:
        return chosen
    finer = sorted((code for _, _, code in scored if _nodes(code) > _nodes(chosen)), key=_nodes)
    for code in finer:
        if delta_e(original, recon, code, reference=reference) <= max_delta_e:
            return code
    return chosen
