"""Make a trained model fast for CPU inference without changing what it computes.

* BatchNorm (eval mode) is folded into the preceding convolution, where one directly
  precedes it (in a ``Sequential``, or a ResBlock's ``convN``/``bnN`` pair);
* a nearest x2 upsampling followed by a 3x3 convolution becomes one transposed
  convolution (kernel 4, stride 2), 2.25x fewer multiply-adds;
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


_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.Module:
    """A convolution computing ``bn(conv(x))`` (eval-mode BN statistics)."""
    fused = copy.deepcopy(conv)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)  # output-channel axis
    if isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1:
        raise ValueError("cannot fold BatchNorm into a grouped transposed convolution")
    fused.weight = nn.Parameter(conv.weight.detach() * scale.reshape(shape))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _last_conv(module: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, attribute) of the convolution a module ends with, if it ends with one."""
    if isinstance(module, _CONVS):
        return None
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], _CONVS) \
            and not (isinstance(module[-1], nn.ConvTranspose2d) and module[-1].groups != 1):
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
            if isinstance(first, nn.Conv2d) or (isinstance(first, nn.ConvTranspose2d) and first.groups == 1):
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


#: Rows of the 3 x 3 -> 4 x 4 map below: nearest x2 upsampling followed by a 3x3 convolution
#: (padding 1) reads, for output row 2m, input rows m-1 (tap 0) and m (taps 1+2), and for row
#: 2m+1 rows m (taps 0+1) and m+1 (tap 2): a transposed convolution, kernel 4, stride 2, padding 1.
_NEAREST2_TO_TRANSPOSE = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float64)


def _is_nearest_x2(m: nn.Module) -> bool:
    if not isinstance(m, nn.Upsample) or m.mode != "nearest" or m.size is not None:
        return False
    f = m.scale_factor
    return all(float(v) == 2.0 for v in (f if isinstance(f, tuple) else (f,)))


def _plain_conv3(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")


def _as_transpose(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The ConvTranspose2d(k=4, s=2, p=1) computing ``conv(upsample_nearest_x2(x))``."""
    t = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1,
                           bias=conv.bias is not None)
    m = _NEAREST2_TO_TRANSPOSE.to(conv.weight.device)
    w = torch.einsum("ak,oikl,bl->ioab", m, conv.weight.detach().to(torch.float64), m)
    t.weight = nn.Parameter(w.to(conv.weight.dtype))
    if conv.bias is not None:
        t.bias = nn.Parameter(conv.bias.detach().clone())
    return t


def fuse_nearest_upsampling(module: nn.Module) -> int:
    """Replace every ``Upsample(x2, nearest)`` + ``Conv2d(3x3, pad 1)`` pair by one transposed conv, in place.

    The transposed convolution reads a 2 x 2 input window per output pixel instead of a
    3 x 3 window of the 4x larger upsampled tensor: 16 instead of 36 multiply-adds per
    input pixel and channel pair, and the upsampled tensor is never made.  Same output
    up to float rounding (weights are summed in float64).  Returns the count.
    """
    fused = 0
    for child in module.children():
        fused += fuse_nearest_upsampling(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            first, second = module._modules[a], module._modules[b]
            if _is_nearest_x2(first) and _plain_conv3(second):
                module._modules[a] = _as_transpose(second)
                module._modules[b] = nn.Identity()
                fused += 1
    return fused


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model``: BatchNorm folded, nearest upsampling fused, channels-last weights.

    Parameters
    ----------
    model : nn.Module
        A trained model (left untouched).

    Returns
    -------
    nn.Module
        A copy computing the same function up to float rounding (tests check it).
    """
    fast = copy.deepcopy(model).eval()
    with torch.no_grad():
        fold_batchnorm(fast)
        fuse_nearest_upsampling(fast)
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
            k, s, p = max(m.kernel_size), max(m.stride), max(m.padding)
            radius += -(-max(k - 1 - p, p) // s) * jump
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


def _leaf_output_sizes(net: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(input bytes, output bytes) of every leaf layer of ``net``, in call order, from one run on ``x``."""
    sizes: list[tuple[int, int]] = []

    def hook(module: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        size = sum(t.numel() * t.element_size() for t in inp if isinstance(t, torch.Tensor))
        sizes.append((size, out.numel() * out.element_size()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if next(m.children(), None) is None]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return sizes


def activation_bytes_per_pixel(net: nn.Module, x: torch.Tensor, pixels: int) -> float:
    """Peak bytes of one layer's input plus output, per pixel, measured by running ``net`` on ``x``.

    ``pixels`` is what the count is per (the input's pixels for an encoder, the output's
    for a decoder).  Convolutional activations grow linearly with the area, so this times
    a tile's area is the tile's working set (oneDNN's scratch aside).
    """
    return max(i + o for i, o in _leaf_output_sizes(net, x)) / pixels


def training_bytes_per_pixel(net: nn.Module, x: torch.Tensor, pixels: int) -> float:
    """Bytes per pixel that a forward *and backward* pass of ``net`` on ``x`` holds.

    Backward keeps every layer's output until it is used, and builds a gradient of about the
    same size beside it, so the working set is about twice the sum of all outputs (measured by
    running ``net`` on ``x``) plus the input's share (``labkit.refine`` sizes its tiles by it).
    """
    total = x.numel() * x.element_size() + sum(o for _, o in _leaf_output_sizes(net, x))
    return 2.0 * total / pixels


def tile_for_budget(bytes_per_pixel: float, budget: int, stride: int, margin: int) -> int:
    """Core tile side (pixels, a multiple of ``stride``) whose tile, margins included, fits ``budget`` bytes."""
    side = int((budget / max(bytes_per_pixel, 1e-9)) ** 0.5)
    core = (side - 2 * margin * stride) // stride * stride
    return max(core, 2 * margin * stride, stride)


def auto_tiles(model: nn.Module, budget: int) -> tuple[int, int]:
    """(encoder tile, decoder tile) in pixels for ``model`` so each network's working set is about ``budget`` bytes."""
    s = int(model.downsample)
    x = torch.zeros((1, 3, 8 * s, 8 * s))
    enc = activation_bytes_per_pixel(model.encoder, x, x.shape[-2] * x.shape[-1])
    with torch.inference_mode():
        y = model.encoder(x)
    dec = activation_bytes_per_pixel(model.decoder, y, x.shape[-2] * x.shape[-1])
    return (tile_for_budget(enc, budget, s, encoder_margin(model.encoder, s)),
            tile_for_budget(dec, budget, s, decoder_margin(model.decoder)))


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
