"""Encoder-side latent refinement: spend encode time to get a better file for the same decoder.

The encoder network maps an image to a latent in one pass, but nothing obliges the encoder to
send the network's latent: any symbols decode, and the receiver only runs the decoder.
:func:`refine_latent` starts from the network's latent and improves it by gradient descent on
the file's own rate–distortion cost, with the decoder held fixed:

``MSE(x, x̂) + ssim_weight · (1 − SSIM(x, x̂)) + rate_weight · bits / pixels``

* ``x̂`` is the decoder's output for the latent *as the codec quantizes it*
  (``labkit.quant.quantize_dequantize`` at the stored scale, which stays the one the codec's
  rule picked from the network's latent), with the identity as the quantizer's gradient
  (straight-through), so the descent sees the real bins;
* ``bits`` is the training-time estimate of what the adaptive coder spends
  (:func:`labkit.rate.estimate_bits`); the file size is still the real coder's.

The idea is that of "iterative inference" in learned compression (Campos et al. 2019;
Yang, Bamler & Mandt 2020): the amortised encoder leaves a gap that per-image optimisation closes.
Nothing in the file format or the decoder changes, so refined files decode everywhere (the
model id is the same); only the encode is slower (each step is a decoder run forward and back).

Memory stays bounded at any image size: the latent is refined tile by tile
(:func:`refine_tiles`), each tile's core optimised with its decoder margin held at the current
values and the loss read on the core's pixels.  An image that fits one tile is refined whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from . import quant
from .distortion import ssim as differentiable_ssim
from .inference import _spans, decoder_margin, tile_for_budget, training_bytes_per_pixel
from .rate import estimate_bits

__all__ = ["RefineSettings", "rd_cost", "refine_latent", "refine_tiles"]

#: SSIM needs an 11 x 11 window; smaller crops (image edges) use MSE alone.
_SSIM_MIN_SIDE = 11


@dataclass(frozen=True)
class RefineSettings:
    """One refinement's settings.

    Attributes
    ----------
    steps : int
        Gradient steps (Adam) per tile; 0 = no refinement.
    rate_weight : float
        Price of one bit per pixel in units of MSE on [0, 1] pixels.
    ssim_weight : float
        Weight of ``1 - SSIM`` in the distortion.
    lr : float
        Adam's step size as a fraction of one quantization bin (``ymax / 2**b``).
    """

    steps: int
    rate_weight: float
    ssim_weight: float
    lr: float

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"refinement steps must be a whole number >= 0, got {self.steps!r}")
        for name in ("rate_weight", "ssim_weight"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not float(self.lr) > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


def rd_cost(x_hat: Tensor, x: Tensor, y: Tensor, scale: Tensor, b: int, settings: RefineSettings,
            prior: Tensor | None = None) -> Tensor:
    """The refinement's objective for decoded ``x_hat`` of target ``x`` from clipped latent ``y``.

    ``MSE + ssim_weight * (1 - SSIM) + rate_weight * bits / pixels``, the bits estimated by
    :func:`labkit.rate.estimate_bits` in the coder's context (``"learned"`` under ``prior``, in
    symbols, else ``"neighbor"``) at the stored ``scale`` (``[N]``) and averaged over the batch.
    SSIM is left out on crops under 11 pixels a side (its window).  The encoder-only fine-tune
    (``labkit.finetune.codec_objective``) trains on the same cost.
    """
    loss = torch.mean((x_hat - x) ** 2)
    if settings.ssim_weight > 0 and min(x.shape[-2:]) >= _SSIM_MIN_SIDE:
        loss = loss + settings.ssim_weight * (1.0 - differentiable_ssim(x_hat, x))
    if settings.rate_weight:
        bits = estimate_bits(y, scale, b, "neighbor" if prior is None else "learned", prior)
        loss = loss + settings.rate_weight * bits.mean() / (x.shape[-2] * x.shape[-1])
    return loss


def refine_latent(model: nn.Module, x: Tensor, y: Tensor, ymax: float, b: int, settings: RefineSettings,
                  window: tuple[Tensor, slice, slice] | None = None, prior: Tensor | None = None) -> Tensor:
    """Refined latent of image ``x`` for ``model``'s decoder at bit depth ``b`` and stored scale ``ymax``.

    Parameters
    ----------
    model : nn.Module
        A ``labkit.models`` autoencoder (only ``decode`` is used; its weights are not changed).
    x : Tensor
        The target pixels in [0, 1], ``[1, 3, H, W]``: what the (window's) core decodes to.
    y : Tensor
        The starting latent ``[1, C, h, w]`` (the network's), float32.
    ymax : float
        The stored scale (kept: the refined latent is quantized at it).
    b : int
        Bit depth.
    settings : RefineSettings
        Steps, weights and step size.
    window : (Tensor, slice, slice), optional
        For tiled refinement: the latent window around ``y`` (``[1, C, h', w']``, margins
        included) and where ``y`` sits in it; ``x`` is then the pixels of ``y``'s positions
        only.  Default: ``y`` is the whole latent.
    prior : Tensor, optional
        The coder prior in symbols (``labkit.rate.prior_in_symbols``) when the file is coded in
        the ``"learned"`` context: the rate term then prices bits as that coder does.  Default:
        the ``"neighbor"`` context's estimate.

    Returns
    -------
    Tensor
        The refined latent with the least loss seen, the start included, so the refinement never
        returns a point its own objective scores worse; same shape as ``y`` (not yet quantized).
    """
    step = settings.lr * float(ymax) / 2**b
    with torch.inference_mode(False), torch.enable_grad():  # callers may be in inference mode
        scale = torch.tensor([float(ymax)], dtype=torch.float32)
        ceiling = scale.reshape(1, 1, 1, 1)
        core = y.detach().clone().requires_grad_(True)
        context = None if window is None else window[0].detach().clone()
        target = x.detach().clone()
        opt = torch.optim.Adam([core], lr=step)
        best, best_loss = core.detach().clone(), math.inf
        for i in range(int(settings.steps) + 1):  # the last pass only scores the last step
            clipped = torch.minimum(core, ceiling)
            y_hat = clipped + (quant.quantize_dequantize(clipped, b, scale) - clipped).detach()
            if context is None:
                x_hat = model.decode(y_hat)[..., : target.shape[-2], : target.shape[-1]]
            else:
                latent, rows, cols = context.clone(), window[1], window[2]
                latent[:, :, rows, cols] = y_hat
                out = model.decode(latent.contiguous(memory_format=torch.channels_last))
                s = out.shape[-1] // latent.shape[-1]
                x_hat = out[..., rows.start * s: rows.start * s + target.shape[-2],
                            cols.start * s: cols.start * s + target.shape[-1]]
            loss = rd_cost(x_hat, target, clipped, scale, b, settings, prior)
            value = float(loss.detach())
            if value < best_loss:  # the hard bins make the path noisy: keep the best point seen
                best, best_loss = core.detach().clone(), value
            if i == settings.steps:
                break
            (grad,) = torch.autograd.grad(loss, [core])
            core.grad = grad
            opt.step()
        return best


def refine_tiles(model: nn.Module, image: np.ndarray, y: Tensor, ymax: float, b: int,
                 settings: RefineSettings, budget: int, prior: Tensor | None = None) -> Tensor:
    """:func:`refine_latent` over a whole image of any size, tile by tile within ``budget`` bytes.

    Each tile's core latent is refined with its decoder margin (the decoder's receptive field)
    held at the current values, tiles in raster order, so later tiles see the refined cores of
    earlier ones; the loss is read on the core's own pixels (cropped to the image).

    Parameters
    ----------
    model : nn.Module
        The codec's (inference-optimised) model.
    image : np.ndarray
        uint8 ``H x W x 3``, the image the latent was computed from.
    y : Tensor
        The network's latent ``[1, C, ceil(H/s), ceil(W/s)]``.
    ymax, b, settings, prior
        As for :func:`refine_latent`.
    budget : int
        Working-set bytes for one tile's forward and backward pass.

    Returns
    -------
    Tensor
        The refined latent (a new tensor; ``y`` is left untouched).
    """
    if settings.steps == 0:
        return y
    s = int(model.downsample)
    h, w = image.shape[:2]
    hl, wl = y.shape[-2:]
    m = decoder_margin(model.decoder)
    probe = torch.zeros((1, y.shape[1], 8, 8))
    per_pixel = training_bytes_per_pixel(model.decoder, probe, 64 * s * s)
    core = max(1, tile_for_budget(per_pixel, budget, s, m) // s)
    out = y.detach().clone()
    for iy0, iy1, cy0, cy1 in _spans(hl, core, m):
        for ix0, ix1, cx0, cx1 in _spans(wl, core, m):
            r0, r1, c0, c1 = cy0 * s, min(cy1 * s, h), cx0 * s, min(cx1 * s, w)
            x = torch.from_numpy(np.ascontiguousarray(image[r0:r1, c0:c1], dtype=np.float32) / 255.0)
            x = x.permute(2, 0, 1).unsqueeze(0)
            if (cy0, cy1, cx0, cx1) == (0, hl, 0, wl):  # one tile: the whole latent, no margins
                out = refine_latent(model, x, out, ymax, b, settings, prior=prior)
                continue
            win = out[:, :, iy0:iy1, ix0:ix1]
            rows, cols = slice(cy0 - iy0, cy1 - iy0), slice(cx0 - ix0, cx1 - ix0)
            refined = refine_latent(model, x, out[:, :, cy0:cy1, cx0:cx1], ymax, b, settings,
                                    window=(win, rows, cols), prior=prior)
            out[:, :, cy0:cy1, cx0:cx1] = refined
    return out
