"""labkit.metrics: PSNR, SSIM, bpp on crafted inputs."""
import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from labkit.metrics import bpp, psnr, ssim

RNG = np.random.default_rng(1)


def test_psnr_known_value_and_identical():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110                     # MSE = 100 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100))
    assert psnr(a, a) == math.inf


def test_ssim_identical_and_matches_skimage_channel_mean():
    a = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    ref = structural_similarity(a, b, channel_axis=-1, data_range=255)
    per_channel = [structural_similarity(a[..., c], b[..., c], data_range=255) for c in range(3)]
    assert ssim(a, b) == pytest.approx(ref) == pytest.approx(np.mean(per_channel))


def test_ssim_tiny_images():
    a = RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)            # window shrinks to 3
    assert math.isnan(ssim(a[:2], a[:2]))


def test_bpp_and_validation():
    assert bpp(2048, 128, 128) == 1.0
    with pytest.raises(ValueError, match="positive"):
        bpp(10, 0, 5)
    a = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        psnr(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="differ"):
        ssim(a, np.zeros((4, 5, 3), np.uint8))
