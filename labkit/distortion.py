"""Differentiable distortion measures (torch), shared by training and the encoder's refinement.

``labkit.metrics`` measures the codec's output (8-bit arrays, the reported numbers); this module
is the differentiable side, used in the losses of ``labkit.train``, ``labkit.decoder_fit`` and
``labkit.finetune`` and in the objective of ``labkit.refine``.  It imports nothing of the
training code, so the codec can refine a latent without loading it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ssim"]


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    g = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (Gaussian 11x11, sigma 1.5, per channel), differentiable; for the loss."""
    c = x.shape[1]
    w = _gaussian_window().to(x)[None, None].expand(c, 1, -1, -1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()
