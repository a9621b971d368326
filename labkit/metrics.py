"""Image quality metrics as the course computes them: PSNR and SSIM on 8-bit RGB, bpp.

Both metrics take two uint8 ``HxWx3`` images (reference first) and return a float for
that one image; average per image over a dataset. Reconstructions must be rounded to
8 bits first (``labkit.data.to_uint8``) so ours and the classic codecs are scored alike.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from .spec import bits_per_pixel

__all__ = ["psnr", "ssim", "bpp"]


def _check_pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both uint8 HxWx3 of the same shape, else a ValueError saying what to pass."""
    ref, test = np.asarray(ref), np.asarray(test)
    for name, a in (("ref", ref), ("test", test)):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{name} must be a uint8 HxWx3 RGB image, got {a.dtype} "
                             f"{a.shape}; convert tensors with labkit.data.to_uint8")
    if ref.shape != test.shape:
        raise ValueError(f"ref and test shapes differ: {ref.shape} vs {test.shape}")
    if ref.size == 0:
        raise ValueError("images are empty")
    return ref, test


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and the 3 channels, peak 255.

    Returns ``float('inf')`` for identical images (MSE = 0): callers averaging PSNR
    should handle it (e.g. report lossless separately).
    """
    ref, test = _check_pair(ref, test)
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """SSIM from ``skimage.metrics.structural_similarity`` (defaults: 7x7 uniform
    window, K1=0.01, K2=0.03), ``data_range=255``, ``channel_axis=-1``.

    With ``channel_axis`` skimage computes SSIM per channel and returns their mean, so
    this is the mean of the R, G and B SSIMs. Images smaller than 7 px on a side use the
    largest odd window that fits (3 or 5); below 3 px SSIM is undefined: returns nan.
    """
    ref, test = _check_pair(ref, test)
    side = min(ref.shape[:2])
    if side < 3:
        return math.nan
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(ref, test, win_size=win, data_range=255,
                                       channel_axis=-1))


#: Bits per pixel of a whole file (``labkit.spec.bits_per_pixel``, re-exported so metrics
#: are imported from one module; the formula lives only in ``labkit.spec``).
bpp = bits_per_pixel
