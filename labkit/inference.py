"""Make a trained model fast for CPU inference without changing what it computes.

* BatchNorm (eval mode) is folded into the preceding convolution, where one directly
  precedes it (in a ``Sequential``, or a ResBlock's ``convN``/``bnN`` pair);
* weights are stored channels-last, which oneDNN runs markedly faster on CPU.

Outputs match the original model to float rounding (checked by tests).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d computing ``bn(conv(x))`` (eval-mode BN statistics)."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _last_conv(module: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, attribute) of the Conv2d a module ends with, if it ends with one."""
    if isinstance(module, nn.Conv2d):
        return None
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Conv2d):
        return module, str(len(module) - 1)
    return None


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place; return the count."""
    folded = 0
    for child in module.children():
        folded += fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            first, second = module._modules[a], module._modules[b]
            if not isinstance(second, nn.BatchNorm2d):
                continue
            if isinstance(first, nn.Conv2d):
                module._modules[a] = _fold(first, second)
            else:
                hit = _last_conv(first)
                if hit is None:
                    continue
                parent, idx = hit
                parent._modules[idx] = _fold(parent._modules[idx], second)
            module._modules[b] = nn.Identity()
            folded += 1
    for i in range(1, 10):  # ResBlock-style convN / bnN pairs
        conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, f"conv{i}", _fold(conv, bn))
            setattr(module, f"bn{i}", nn.Identity())
            folded += 1
    return folded


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with BatchNorm folded and channels-last weights."""
    fast = copy.deepcopy(model).eval()
    with torch.no_grad():
        fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- tiled inference
#
# A convolutional network's output at one position depends only on the inputs within its
# receptive field.  Running it over overlapping tiles whose overlap (``margin``) covers
# that field, and keeping only each tile's core, gives the whole-image output with memory
# bounded by the tile size.  Tiles start on the network's stride grid, so the encoder
# samples exactly the positions it samples on the whole image; at the image border a tile
# sees the same zero padding as the whole image does.

_POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh)


def _reach(kernel: int, padding: int, dilation: int = 1) -> int:
    """Farthest input offset (either side) an output of a conv/pool with these settings reads."""
    span = (kernel - 1) * dilation
    return max(padding, span - padding)


def receptive_radius(net: nn.Module) -> float:
    """Conservative receptive-field radius of ``net``, in units of its input's pixels.

    Walks the leaf modules in registration order (a residual block's convolutions count
    one after the other, which bounds the block's field).  Convolutions and pools add
    their reach times the current input spacing; upsampling layers (``Upsample``,
    ``PixelShuffle``, ``ConvTranspose2d``) add one input spacing (plus the transposed
    kernel's reach) and shrink the spacing.  Unknown layers raise ``TypeError`` rather
    than guess.
    """
    radius, jump = 0.0, 1.0
    for m in net.modules():
        if next(m.children(), None) is not None:
            continue
        if isinstance(m, nn.Conv2d):
            k, d, s = max(m.kernel_size), max(m.dilation), max(m.stride)
            pad = max(m.padding) if isinstance(m.padding, tuple) else (k - 1) * d // 2  # padding="same"
            radius += _reach(k, pad, d) * jump
            jump *= s
        elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else max(m.kernel_size)
            s = m.stride if isinstance(m.stride, int) else max(m.stride)
            p = m.padding if isinstance(m.padding, int) else max(m.padding)
            radius += _reach(k, p) * jump
            jump *= s
        elif isinstance(m, nn.ConvTranspose2d):
            s = m.stride[0]
            radius += (-(-max(m.kernel_size) // s) + 1) * jump
            jump /= s
        elif isinstance(m, nn.Upsample):
            radius += jump
            jump /= float(m.scale_factor if not isinstance(m.scale_factor, tuple) else m.scale_factor[0])
        elif isinstance(m, nn.PixelShuffle):
            radius += jump
            jump /= m.upscale_factor
        elif isinstance(m, _POINTWISE):
            continue
        else:
            raise TypeError(f"receptive_radius does not know layer {type(m).__name__}; add it to labkit.inference")
    return radius


def _spans(n: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of ``n`` units: (in_start, in_stop, core_start, core_stop)."""
    out = []
    for c0 in range(0, n, core):
        c1 = min(c0 + core, n)
        out.append((max(0, c0 - margin), min(n, c1 + margin), c0, c1))
    return out


def _edge_rows_cols(image: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``image[r0:r1, c0:c1]`` of the image edge-padded to any size (padding made per tile)."""
    h, w = image.shape[:2]
    part = image[r0:min(r1, h), c0:min(c1, w)]
    ph, pw = r1 - min(r1, h), c1 - min(c1, w)
    if ph or pw:
        part = np.pad(part, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return part


def encoder_margin(encode: nn.Module, stride: int) -> int:
    """Overlap (in latent positions) the encoder needs on each side of a tile."""
    return int(math.ceil(receptive_radius(encode) / stride))


def decoder_margin(decode: nn.Module) -> int:
    """Overlap (in latent positions) the decoder needs on each side of a tile."""
    return int(math.ceil(receptive_radius(decode)))


def encode_tiled(model: nn.Module, image: np.ndarray, tile: int, margin: int | None = None) -> torch.Tensor:
    """Latent ``[1, C, ceil(H/s), ceil(W/s)]`` of a uint8 ``H x W x 3`` image, tile by tile.

    Parameters
    ----------
    model : nn.Module
        An autoencoder with ``encoder``, ``encode`` and ``downsample`` (stride ``s``).
    image : np.ndarray
        uint8 ``H x W x 3``; it is edge-padded to a multiple of ``s`` one tile at a time.
    tile : int
        Core tile side in pixels (rounded down to a multiple of ``s``, at least ``s``).
    margin : int, optional
        Overlap in latent positions; default: the encoder's receptive field.

    Returns
    -------
    torch.Tensor
        The float32 latent, equal to whole-image inference up to float rounding.
    """
    s = int(model.downsample)
    h, w = image.shape[:2]
    hl, wl = -(-h // s), -(-w // s)
    core = max(1, int(tile) // s)
    m = encoder_margin(model.encoder, s) if margin is None else int(margin)
    y: torch.Tensor | None = None
    for iy0, iy1, cy0, cy1 in _spans(hl, core, m):
        for ix0, ix1, cx0, cx1 in _spans(wl, core, m):
            part = _edge_rows_cols(image, iy0 * s, iy1 * s, ix0 * s, ix1 * s)
            x = torch.from_numpy(np.array(part, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)  # channels-last
            out = model.encode(x.div_(255.0))
            if y is None:
                y = torch.empty((1, out.shape[1], hl, wl), dtype=torch.float32)
            y[:, :, cy0:cy1, cx0:cx1] = out[:, :, cy0 - iy0:cy1 - iy0, cx0 - ix0:cx1 - ix0]
    assert y is not None
    return y


def decode_tiled(model: nn.Module, latent_of: Callable[[slice, slice], torch.Tensor], latent_hw: tuple[int, int],
                 size: tuple[int, int], tile: int, margin: int | None = None) -> np.ndarray:
    """uint8 ``H x W x 3`` reconstruction, decoding the latent tile by tile.

    Parameters
    ----------
    model : nn.Module
        An autoencoder with ``decoder``, ``decode`` and ``downsample`` (stride ``s``).
    latent_of : callable
        ``latent_of(rows, cols)`` -> float latent ``[1, C, h', w']`` of that window (e.g.
        dequantized symbols), so the whole float latent never needs to exist.
    latent_hw : (int, int)
        Latent height and width.
    size : (int, int)
        Output (H, W) to crop to.
    tile : int
        Core tile side in output pixels (rounded down to a multiple of ``s``).
    margin : int, optional
        Overlap in latent positions; default: the decoder's receptive field.
    """
    s = int(model.downsample)
    hl, wl = latent_hw
    h, w = size
    core = max(1, int(tile) // s)
    m = decoder_margin(model.decoder) if margin is None else int(margin)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for iy0, iy1, cy0, cy1 in _spans(hl, core, m):
        for ix0, ix1, cx0, cx1 in _spans(wl, core, m):
            y = latent_of(slice(iy0, iy1), slice(ix0, ix1))
            x = model.decode(y.contiguous(memory_format=torch.channels_last))
            x = x[0, :, (cy0 - iy0) * s:(cy1 - iy0) * s, (cx0 - ix0) * s:(cx1 - ix0) * s]
            px = x.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
            r0, c0 = cy0 * s, cx0 * s
            r1, c1 = min(cy1 * s, h), min(cx1 * s, w)
            out[r0:r1, c0:c1] = px[: r1 - r0, : c1 - c0]
    return out
