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
``1 / OFFSET_STEP``.  Measured on ``resae-rd`` at b = 3 over the default test tiles, the
quantized map gives 27.14 dB where the unquantized least-squares map gives 27.14 dB
(and no map 24.44 dB); a plain uncentred 3 x 4 map in 1/256 steps clips and gives 24.30.

Everything here works in row chunks of at most ``CHUNK_PIXELS`` pixels, so memory stays
bounded at any image size; what the decoder computes is elementwise (no BLAS), so every
CPU rounds it the same way (the encoder's least-squares fit uses BLAS; its result is rounded
to the code).  Torch-free.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["MAP_BYTES", "GAIN_STEP", "OFFSET_STEP", "fit", "apply", "parameters", "pays", "squared_errors"]

#: Bytes a colour map takes in a file.
MAP_BYTES = 12
#: Gains ``G - I`` are sent in steps of 1/GAIN_STEP (reach +-127/64, about +-2).
GAIN_STEP = 64.0
#: Offsets ``d`` are sent in steps of 1/OFFSET_STEP (reach +-127/512 of full scale).
OFFSET_STEP = 512.0
#: Pixels per chunk when fitting or applying (bounds the float64 working set to ~100 MiB).
CHUNK_PIXELS = 1 << 20


def _chunks(image: np.ndarray) -> Iterator[slice]:
    h, w = image.shape[:2]
    rows = max(1, CHUNK_PIXELS // max(1, w))
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
    for rows in _chunks(image):
        total += image[rows].reshape(-1, 3).sum(axis=0, dtype=np.int64)
    return total.astype(np.float64) / (image.shape[0] * image.shape[1] * 255.0)


def parameters(code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(G, d)`` of a 12-byte code: the 3 x 3 gain matrix and the offset, float64."""
    if not isinstance(code, (bytes, bytearray)) or len(code) != MAP_BYTES:
        raise ValueError(f"a colour map code is {MAP_BYTES} bytes, got {code!r}")
    c = np.frombuffer(bytes(code), dtype=np.int8).astype(np.float64)
    return np.eye(3) + c[:9].reshape(3, 3) / GAIN_STEP, c[9:] / OFFSET_STEP


def fit(recon: np.ndarray, original: np.ndarray) -> bytes:
    """Least-squares map from ``recon`` to ``original`` (both uint8 H x W x 3), quantized to its code.

    Sums of the centred normal equations are taken chunk by chunk (bounded memory);
    coefficients beyond the code's reach are clipped to it.
    """
    _check_pair(recon, original)
    mu_x, mu_y = _mean_colour(recon), _mean_colour(original)
    xtx, xty = np.zeros((3, 3)), np.zeros((3, 3))
    for rows in _chunks(recon):
        x = recon[rows].reshape(-1, 3) / 255.0 - mu_x
        y = original[rows].reshape(-1, 3) / 255.0 - mu_y
        xtx += x.T @ x
        xty += x.T @ y
    gain = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    g = np.clip(np.round((gain - np.eye(3)) * GAIN_STEP), -127, 127)
    d = np.clip(np.round((mu_y - mu_x) * OFFSET_STEP), -127, 127)
    return np.concatenate([g.ravel(), d]).astype(np.int8).tobytes()


def _affine(recon: np.ndarray, code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(G, o)`` with ``y = x @ G + o`` for this image (``o = mu + d - mu @ G``)."""
    gain, d = parameters(code)
    mu = _mean_colour(recon)
    mu_gain = mu[0] * gain[0] + mu[1] * gain[1] + mu[2] * gain[2]  # mu @ G, elementwise (no BLAS)
    return gain.astype(np.float32), (mu + d - mu_gain).astype(np.float32)


def _map_rows(part: np.ndarray, g: np.ndarray, o: np.ndarray) -> np.ndarray:
    x = part.reshape(-1, 3).astype(np.float32) * np.float32(1.0 / 255.0)
    y = x[:, 0:1] * g[0] + x[:, 1:2] * g[1] + x[:, 2:3] * g[2] + o
    return np.clip(np.rint(y * np.float32(255.0)), 0, 255).astype(np.uint8).reshape(part.shape)


def apply(recon: np.ndarray, code: bytes) -> np.ndarray:
    """``recon`` (uint8 H x W x 3) after the map of ``code``, rounded back to uint8 (a new array)."""
    _check_pair(recon)
    g, o = _affine(recon, code)
    out = np.empty_like(recon)
    for rows in _chunks(recon):
        out[rows] = _map_rows(recon[rows], g, o)
    return out


def squared_errors(recon: np.ndarray, original: np.ndarray, code: bytes) -> tuple[float, float]:
    """Sums of squared differences to ``original`` of ``recon`` without and with the map, in [0, 1] units.

    Chunked, and the mapped image is never held whole: what the encoder needs to decide
    whether the map pays (:func:`pays`) at bounded memory.
    """
    _check_pair(recon, original)
    g, o = _affine(recon, code)
    without = with_map = 0.0
    for rows in _chunks(recon):
        ref = original[rows].astype(np.float64)
        d0 = recon[rows] - ref
        d1 = _map_rows(recon[rows], g, o) - ref
        without += float(np.vdot(d0, d0))
        with_map += float(np.vdot(d1, d1))
    return without / 255.0**2, with_map / 255.0**2


def pays(sse_without: float, sse_with: float, pixels: int, rate_weight: float) -> bool:
    """Whether the map's drop in squared error is worth its ``8 * MAP_BYTES`` bits.

    The trade-off is the model's own training objective ``MSE + rate_weight * bpp``: send
    the map when ``(sse_without - sse_with) / pixels / 3 > rate_weight * 8 * MAP_BYTES / pixels``.
    """
    mse_gain = (sse_without - sse_with) / (3.0 * pixels)
    return mse_gain > rate_weight * 8 * MAP_BYTES / pixels
