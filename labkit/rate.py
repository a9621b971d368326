"""A differentiable estimate of the bits the real adaptive coder spends on a latent.

Used only at training time (the file size always comes from ``labkit.coder``).  The
real coder (``context="neighbor"``) keeps one adaptive frequency table per context,
the context being the bucketed left and top symbols (``0, 1, 2-3, 4-7, ...``), and it
learns each image's statistics as it goes.  Its cost per image is therefore close to
the *empirical conditional entropy* of that image's symbols given their contexts,
``H(q | ctx) = -sum_{c,k} N[c,k] log2(N[c,k] / N[c])``, with ``N`` the image's joint
count table.  A dataset-wide factorized density overestimates it by 2x on our models
(``../shared/notes/rd-measurements.md``, item 3), so this module estimates the
per-image conditional entropy instead.

The ``"learned"`` context (``labkit.coder_prior``) codes each channel with its own neighbour
models, started from counts the model ships.  Its estimate is the cross-entropy of the image's
soft counts per (channel, context) under the prior plus those counts (the prior in symbols, i.e.
its counts over the coder's increment): a context the prior already knows costs little even in a
small image, which the per-image entropy cannot see.

Soft counts make it differentiable.  Training replaces quantization by uniform noise
of one bin; the probability that ``floor(v + U(-1/2, 1/2))`` equals ``k`` for a value
``v`` in bin units is the overlap of ``[v - 1/2, v + 1/2]`` with ``[k, k + 1]``,
i.e. the linear kernel ``max(0, 1 - |v - (k + 1/2)|)``.  Each element adds that
soft membership to the row of its (soft) context.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    import numpy as np

__all__ = ["bucket_matrix", "soft_symbols", "conditional_entropy_bits", "estimate_bits", "prior_in_symbols"]


def _num_buckets(levels: int) -> int:
    return 1 + int(math.ceil(math.log2(levels)))


def bucket_matrix(levels: int, device: torch.device | None = None) -> Tensor:
    """``[levels, buckets]`` 0/1 matrix mapping symbol ``k`` to the coder's context bucket.

    Bucket of ``k`` is ``0`` if ``k == 0`` else ``1 + floor(log2 k)``, as in ``ext/arith.pyx``.
    """
    nb = _num_buckets(levels)
    m = torch.zeros(levels, nb, device=device)
    for k in range(levels):
        m[k, 0 if k == 0 else 1 + int(math.floor(math.log2(k)))] = 1.0
    return m


def soft_symbols(u: Tensor, levels: int) -> Tensor:
    """Soft one-hot ``[..., levels]`` of normalised values ``u`` (``y / scale``) in bin units.

    ``u`` is clipped to ``[0, 1]`` first (what the quantizer does); the membership of bin
    ``k`` is ``max(0, 1 - |v - (k + 1/2)|)`` with ``v = u * levels`` kept inside
    ``[1/2, levels - 1/2]`` so each element's memberships sum to one.
    """
    v = (u.clamp(0.0, 1.0) * levels).clamp(0.5, levels - 0.5)
    centres = torch.arange(levels, device=u.device, dtype=u.dtype) + 0.5
    return (1.0 - (v.unsqueeze(-1) - centres).abs()).clamp_min(0.0)


def conditional_entropy_bits(p: Tensor, levels: int, context: str = "neighbor",
                             prior: Tensor | None = None) -> Tensor:
    """Bits per image of soft symbols ``p`` ``[N, C, h, w, levels]`` under the coder's context.

    ``context="neighbor"``: joint counts over (left bucket x top bucket, symbol) per image,
    out-of-image neighbours counted as symbol 0 (as the coder does).  ``"none"``: the
    plain per-image histogram entropy.  ``"learned"``: the same contexts per channel, each
    row's soft counts coded under ``prior`` ``[C, B*B, levels]`` (in symbols) plus themselves.
    Returns ``[N]`` bits.
    """
    n = p.shape[0]
    if context == "learned":
        if prior is None or tuple(prior.shape) != (p.shape[1], _num_buckets(levels) ** 2, levels):
            raise ValueError(f"the learned context's estimate needs a prior of shape "
                             f"{(p.shape[1], _num_buckets(levels) ** 2, levels)}, got "
                             f"{None if prior is None else tuple(prior.shape)}")
    if context == "none":
        counts = p.reshape(n, -1, levels).sum(1)  # [N, K]
        total = counts.sum(1, keepdim=True)
        return -(counts * torch.log2((counts + 1e-9) / total)).sum(1)
    elif context not in ("neighbor", "learned"):
        raise ValueError(f"rate estimate supports context 'none', 'neighbor' or 'learned', got {context!r}")
    bk = bucket_matrix(levels, p.device).to(p.dtype)
    zero = F.one_hot(torch.zeros((), dtype=torch.long, device=p.device), levels).to(p.dtype)
    # neighbours: shift by one along w (left) and h (top); outside the image = symbol 0
    left = torch.cat([zero.expand(*p.shape[:3], 1, levels), p[..., :, :-1, :]], dim=3)
    top = torch.cat([zero.expand(p.shape[0], p.shape[1], 1, p.shape[3], levels), p[..., :-1, :, :]], dim=2)
    cl, ct = left @ bk, top @ bk  # [N, C, h, w, B]
    ctx = (cl.unsqueeze(-1) * ct.unsqueeze(-2)).flatten(-2)  # [N, C, h, w, B*B]
    if context == "learned":
        c = p.shape[1]
        joint = torch.einsum("ncxe,ncxk->ncek", ctx.reshape(n, c, -1, ctx.shape[-1]), p.reshape(n, c, -1, levels))
        posterior = joint + prior.to(p.dtype)
        return -(joint * torch.log2(posterior / posterior.sum(-1, keepdim=True))).sum((1, 2, 3))
    joint = torch.einsum("nie,nik->nek", ctx.reshape(n, -1, ctx.shape[-1]), p.reshape(n, -1, levels))
    rows = joint.sum(-1, keepdim=True)
    return -(joint * torch.log2((joint + 1e-9) / (rows + 1e-9))).sum((1, 2))


def estimate_bits(y: Tensor, scale: Tensor, b: int, context: str = "neighbor", prior: Tensor | None = None) -> Tensor:
    """Estimated coded bits per image of latent ``y`` ``[N, C, h, w]`` at bit depth ``b``.

    ``y`` is the clean latent (the kernel of :func:`soft_symbols` already models the
    quantizer's one-bin spread), ``scale`` the per-image stored scale ``[N]``.  ``prior``:
    the ``"learned"`` context's table in symbols (:func:`prior_in_symbols`).
    """
    levels = 2**b
    u = y / scale.reshape(-1, 1, 1, 1)
    return conditional_entropy_bits(soft_symbols(u, levels), levels, context, prior)


def prior_in_symbols(table: "np.ndarray") -> Tensor:
    """A coder prior table (``labkit.coder_prior``, counts in the coder's increments) as a float
    tensor in symbols, what :func:`estimate_bits` takes for the ``"learned"`` context."""
    from .coder_prior import INCREMENT

    return torch.as_tensor(table, dtype=torch.float32) / INCREMENT
