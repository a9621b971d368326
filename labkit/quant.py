"""Uniform scalar quantizer of the latent, exactly as the course defines it.

For a non-negative latent ``y`` of one image with maximum ``ymax`` and bit depth ``b``::

    q = floor(clip(y / ymax, 0, 1 - eps) * 2**b)        in {0, ..., 2**b - 1}
    y_hat = ymax * (q / 2**b + 1 / 2**(b + 1))          (centre of bin q)

so ``|y_hat - y| <= ymax / 2**(b+1)`` for ``0 <= y <= ymax``.  Training replaces the
hard quantizer by additive uniform noise of the same half-width (``add_noise``).

Every function is batch-aware: the first dimension of ``y`` is the image index and
``ymax`` has one value per image (shape ``[N]``, or a scalar for all).

``ymax`` travels in the bitstream as float32, so both ``quantize`` and ``dequantize``
first round it with ``to_float32`` and compute in float32: the encoder's bins are then
exactly the decoder's, whatever dtype the model ran in.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .spec import MAX_BITS, check_bits, check_scale_rule

__all__ = [
    "EPS",
    "YMAX_MIN",
    "MAX_BITS",
    "check_bits",
    "latent_max",
    "latent_scale",
    "check_scale_rule",
    "to_float32",
    "quantize",
    "dequantize",
    "quantize_dequantize",
    "add_noise",
    "noise_halfwidth",
]

EPS = 1e-6
"""``clip(y/ymax, 0, 1-EPS)`` keeps ``y == ymax`` in the top bin (float32-safe for b <= 8)."""
YMAX_MIN = 1e-12
"""Lower clamp of ``ymax`` so an all-zero latent quantizes (to 0) instead of dividing by 0."""


def latent_max(y: Tensor) -> Tensor:
    """Per-image maximum of ``y`` ([N, ...] -> [N]), clamped to at least ``YMAX_MIN``."""
    if y.dim() < 1 or y.shape[0] == 0:
        raise ValueError(f"latent must have a non-empty batch dimension, got shape {tuple(y.shape)}")
    return y.reshape(y.shape[0], -1).amax(dim=1).clamp_min(YMAX_MIN)


def latent_scale(y: Tensor, rule: str = "max") -> Tensor:
    """The per-image scale ``ymax`` the encoder stores ([N, ...] -> [N]).

    The decoder only reads ``ymax`` from the header, so the encoder is free to choose it:
    ``"max"`` (the course) puts the largest value at the top of the range; a percentile
    such as ``"p99.9"`` clips the few largest values (they land in the top bin) and gives
    the rest finer bins, which pays at small ``b`` on large images.

    Parameters
    ----------
    y : Tensor
        Non-negative latent, first dimension = image index.
    rule : str
        ``"max"`` or ``"pNN.N"`` (see :func:`check_scale_rule`).

    Returns
    -------
    Tensor
        One scale per image, clamped to at least ``YMAX_MIN``.
    """
    rule = check_scale_rule(rule)
    if rule == "max" or rule == "p100":
        return latent_max(y)
    if y.dim() < 1 or y.shape[0] == 0:
        raise ValueError(f"latent must have a non-empty batch dimension, got shape {tuple(y.shape)}")
    flat = y.detach().reshape(y.shape[0], -1).to(torch.float32)
    k = max(1, min(flat.shape[1], int(round(float(rule[1:]) / 100.0 * flat.shape[1]))))
    return flat.kthvalue(k, dim=1).values.clamp_min(YMAX_MIN).to(y.dtype)


def to_float32(ymax: Tensor | float) -> Tensor:
    """``ymax`` rounded to float32, as stored in the bitstream (and clamped to ``YMAX_MIN``)."""
    t = torch.as_tensor(ymax)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    return t.to(torch.float32).clamp_min(YMAX_MIN)


def _per_image(ymax: Tensor | float, y: Tensor) -> Tensor:
    """float32 ``ymax`` shaped to broadcast against ``y`` ([N] -> [N, 1, 1, ...])."""
    m = to_float32(ymax).to(y.device)
    if m.dim() == 0:
        return m
    if m.dim() != 1 or m.shape[0] != y.shape[0]:
        raise ValueError(
            f"ymax must be a scalar or have one value per image ({y.shape[0]}), got shape {tuple(m.shape)}"
        )
    return m.reshape(-1, *([1] * (y.dim() - 1)))


def quantize(y: Tensor, ymax: Tensor | float, b: int) -> Tensor:
    """Hard quantization to uint8 symbols in ``[0, 2**b - 1]`` (no gradient)."""
    b = check_bits(b)
    levels = 2**b
    m = _per_image(ymax, y)
    u = (y.detach().to(torch.float32) / m).clamp(0.0, 1.0 - EPS)
    q = torch.floor(u * levels).clamp(0, levels - 1)
    return q.to(torch.uint8)


def dequantize(q: Tensor, ymax: Tensor | float, b: int) -> Tensor:
    """Bin centres ``ymax * (q / 2**b + 1 / 2**(b+1))`` as float32."""
    b = check_bits(b)
    m = _per_image(ymax, q)
    qf = q.to(torch.float32)
    return m * (qf / 2**b + 1.0 / 2 ** (b + 1))


def quantize_dequantize(y: Tensor, b: int, ymax: Tensor | float | None = None) -> Tensor:
    """Hard quantize then dequantize (evaluation path); returns ``y``'s dtype, no gradient.

    ``ymax`` defaults to ``latent_max(y)``, i.e. what the encoder would store.
    """
    if ymax is None:
        ymax = latent_max(y.detach())
    return dequantize(quantize(y, ymax, b), ymax, b).to(y.dtype)


def noise_halfwidth(ymax: Tensor | float, b: int) -> Tensor:
    """Half-width ``ymax / 2**(b+1)`` of one quantization bin (the max rounding error)."""
    b = check_bits(b)
    return torch.as_tensor(ymax) / 2 ** (b + 1)


def add_noise(
    y: Tensor,
    b: int,
    ymax: Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training proxy for quantization: ``y + U(-ymax/2**(b+1), +ymax/2**(b+1))``.

    ``ymax`` (per image, default ``latent_max(y)``) is **detached**: the noise amplitude is
    treated as a constant, so the gradient flows to ``y`` only through the identity term
    and the encoder cannot shrink the noise by moving its maximum.
    """
    b = check_bits(b)
    if ymax is None:
        ymax = latent_max(y)
    m = torch.as_tensor(ymax, device=y.device).detach().to(y.dtype)
    if m.dim() == 1:
        if m.shape[0] != y.shape[0]:
            raise ValueError(f"ymax must have one value per image ({y.shape[0]}), got {m.shape[0]}")
        m = m.reshape(-1, *([1] * (y.dim() - 1)))
    half = m / 2 ** (b + 1)
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return y + (2.0 * u - 1.0) * half
