"""Convolutional autoencoders: the course AE (``BaseAE``) and a residual variant (``ResAE``).

Both map an image ``x`` in [0, 1] of shape [N, 3, H, W] (H, W divisible by 8) to a
non-negative latent ``y`` of shape [N, 16, H/8, W/8] and back.  ``y >= 0`` because the
quantizer (``labkit.quant``) divides by the per-image maximum and clips at 0.

``build_model(name, **cfg)`` is the one entry point used by training, checkpoints and the
codec; ``model.config`` holds everything needed to rebuild the same architecture.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import quant, spec

__all__ = [
    "UPSAMPLE_MODES",
    "MODEL_NAMES",
    "BaseAE",
    "ResAE",
    "build_model",
    "default_noise",
    "count_parameters",
    "describe",
]

UPSAMPLE_MODES = ("transpose", "pixelshuffle", "resize")


# --------------------------------------------------------------------------- blocks
def _icnr_(weight: Tensor, scale: int = 2) -> None:
    """ICNR init: all ``scale**2`` sub-pixel filters start equal, so the pixel shuffle
    begins as nearest-neighbour upsampling (no checkerboard at init)."""
    out_ch = weight.shape[0] // scale**2
    sub = torch.empty(out_ch, *weight.shape[1:])
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))


def upsample_block(mode: str, cin: int, cout: int, transpose_kernel: int = 2) -> nn.Module:
    """A x2 upsampling layer ``cin -> cout`` (no activation).

    ``transpose``: ConvTranspose2d (kernel 2 stride 2 = course; 4/2/1 overlaps and can
    ripple); ``pixelshuffle``: Conv3x3 to 4*cout + PixelShuffle, ICNR-initialised;
    ``resize``: nearest upsampling + Conv3x3.
    """
    if mode == "transpose":
        k = transpose_kernel
        if k not in (2, 4):
            raise ValueError(f"transpose_kernel must be 2 or 4, got {k}")
        return nn.ConvTranspose2d(cin, cout, kernel_size=k, stride=2, padding=(k - 2) // 2)
    if mode == "pixelshuffle":
        conv = nn.Conv2d(cin, cout * 4, kernel_size=3, padding=1)
        _icnr_(conv.weight)
        nn.init.zeros_(conv.bias)
        return nn.Sequential(conv, nn.PixelShuffle(2))
    if mode == "resize":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(cin, cout, kernel_size=3, padding=1),
        )
    raise ValueError(f"unknown upsample mode {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")


class ResBlock(nn.Module):
    """``relu(x + BN(conv(relu(BN(conv(x))))))`` with 3x3 convolutions, same width."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        nn.init.zeros_(self.bn2.weight)  # start as identity: stable early training
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(x + self.bn2(self.conv2(h)))


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


# --------------------------------------------------------------------------- models
class _AutoEncoder(nn.Module):
    """Shared interface: ``encode``, ``decode`` and the quantization-aware ``forward``."""

    downsample = 8
    latent_channels = 16
    encoder: nn.Module
    decoder: nn.Module
    config: dict[str, Any]

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(
                f"H and W must be divisible by {self.downsample}, got {h}x{w} (pad the image first)"
            )

    def encode(self, x: Tensor) -> Tensor:
        """Images in [0, 1] -> latent ``y >= 0`` of shape [N, 16, H/8, W/8]."""
        self._check_input(x)
        return self.encoder(x)

    def decode(self, y: Tensor) -> Tensor:
        """Latent -> reconstruction in [0, 1] of shape [N, 3, 8h, 8w]."""
        if y.dim() != 4 or y.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latent [N, {self.latent_channels}, h, w], got shape {tuple(y.shape)}"
            )
        return self.decoder(y)

    def forward(self, x: Tensor, b: int | None = None, noise: bool = False,
                scale: str = "max") -> dict[str, Tensor]:
        """Encode, pass the latent through the quantizer model, decode.

        ``noise=True`` (training, needs ``b``): add the course uniform noise of bin width
        ``ymax / 2**b``.  ``b`` given and ``noise=False``: hard quantize/dequantize (eval;
        no gradient reaches the encoder).  ``b=None``: no quantization.
        ``scale`` is the encoder's rule for the stored scale ``ymax``
        (:func:`labkit.quant.latent_scale`); values above it are clipped into the top bin,
        as the codec does.  Returns ``dict(x_hat, y, y_hat, ymax)`` with ``y`` clipped.
        """
        y = self.encode(x)
        ymax = quant.latent_scale(y.detach(), scale) if b is not None else None
        if ymax is not None and scale != "max":
            y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1))
        if noise:
            if b is None:
                raise ValueError("noise=True needs the bit depth b")
            y_hat = quant.add_noise(y, b, ymax)
        elif b is not None:
            y_hat = quant.quantize_dequantize(y, b, ymax)
        else:
            y_hat = y
        return {"x_hat": self.decode(y_hat), "y": y, "y_hat": y_hat, "ymax": ymax}


class BaseAE(_AutoEncoder):
    """The course autoencoder (AE1 without, AE2 with training noise).

    Encoder: Conv7x7(3->128)+ReLU+AvgPool2, Conv5x5(128->32)+ReLU+AvgPool2,
    Conv3x3(32->16)+ReLU+AvgPool2.  Decoder: three x2 upsamplings 16->32->128->128, each
    followed by ReLU, then Conv3x3(128->3) + sigmoid.  ``upsample="transpose"`` uses
    ConvTranspose2d(k=2, s=2) as in the course.
    """

    def __init__(self, upsample: str = "transpose") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {upsample!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
        self.upsample = upsample
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 128, 7, padding=3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(128, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.decoder = nn.Sequential(
            upsample_block(upsample, 16, 32), nn.ReLU(),
            upsample_block(upsample, 32, 128), nn.ReLU(),
            upsample_block(upsample, 128, 128), nn.ReLU(),
            nn.Conv2d(128, 3, 3, padding=1), nn.Sigmoid(),
        )
        self.config = {"upsample": upsample}


class ResAE(_AutoEncoder):
    """Residual autoencoder with BatchNorm, sized for CPU training.

    Same skeleton as ``BaseAE`` (three stride-2 stages, 16-channel latent >= 0 from a
    final ReLU) with widths ``widths=(c1, c2, c3)`` at 1/2, 1/4, 1/8 resolution and
    ``blocks`` residual blocks at the two coarsest stages of encoder and decoder.
    ``upsample`` picks the decoder's x2 layer (see ``upsample_block``; "transpose" here
    is the overlapping kernel-4 stride-2 variant).

    Two options make a lighter decoder for the same encoder layout (``resae-rd-fast``):
    ``decoder_blocks=(n8, n4)`` residual blocks at 1/8 and 1/4 in the decoder (default
    ``blocks`` at both), and ``head``: ``"conv"`` upsamples to full resolution and ends
    with Conv3x3(c1 -> 3); ``"shuffle"`` ends at half resolution with Conv3x3(c1 -> 12) +
    PixelShuffle(2), so no layer runs at full resolution.
    """

    HEADS = ("conv", "shuffle")

    def __init__(
        self,
        widths: tuple[int, int, int] | list[int] = (32, 64, 96),
        blocks: int = 1,
        upsample: str = "resize",
        latent_channels: int = 16,
        decoder_blocks: tuple[int, int] | list[int] | None = None,
        head: str = "conv",
    ) -> None:
        super().__init__()
        if not 1 <= int(latent_channels) <= 255:
            raise ValueError(f"latent_channels must be in 1..255, got {latent_channels}")
        self.latent_channels = int(latent_channels)
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {upsample!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {widths}")
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        dec_blocks = (blocks, blocks) if decoder_blocks is None else tuple(int(n) for n in decoder_blocks)
        if len(dec_blocks) != 2 or min(dec_blocks) < 0:
            raise ValueError(f"decoder_blocks must be two non-negative ints (at 1/8, 1/4), got {decoder_blocks}")
        if head not in self.HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(self.HEADS)}")
        c1, c2, c3 = widths
        lat = self.latent_channels
        self.upsample = upsample

        def res(ch: int, n: int = blocks) -> list[nn.Module]:
            return [ResBlock(ch) for _ in range(n)]

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [upsample_block(upsample, cin, cout, transpose_kernel=4),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.encoder = nn.Sequential(
            _conv_bn_relu(3, c1, 5, stride=2),           # 1/2
            _conv_bn_relu(c1, c2, 3, stride=2), *res(c2),  # 1/4
            _conv_bn_relu(c2, c3, 3, stride=2), *res(c3),  # 1/8
            nn.Conv2d(c3, lat, 3, padding=1), nn.ReLU(),   # latent >= 0
        )
        # built in execution order, so a seed gives the same initial weights as before the options
        layers: list[nn.Module] = [
            _conv_bn_relu(lat, c3, 3), *res(c3, dec_blocks[0]),  # 1/8
            *up(c3, c2), *res(c2, dec_blocks[1]),                 # 1/4
            *up(c2, c1),                                          # 1/2
        ]
        if head == "conv":
            layers += [*up(c1, c1), nn.Conv2d(c1, 3, 3, padding=1)]        # 1/1
        else:
            layers += [nn.Conv2d(c1, 12, 3, padding=1), nn.PixelShuffle(2)]  # 1/2 -> 1/1
        self.decoder = nn.Sequential(*layers, nn.Sigmoid())
        #: every constructor argument as the layout used it (``labkit.models.build_model`` records
        #: from here what a name's defaults set, so a config rebuilds the same layout)
        self.arguments = {"widths": list(widths), "blocks": int(blocks), "upsample": upsample,
                          "latent_channels": lat, "decoder_blocks": list(dec_blocks), "head": head}
        self.config = {"widths": list(widths), "blocks": int(blocks), "upsample": upsample}
        if self.latent_channels != 16:
            self.config["latent_channels"] = self.latent_channels
        if dec_blocks != (blocks, blocks):
            self.config["decoder_blocks"] = list(dec_blocks)
        if head != "conv":
            self.config["head"] = head


# --------------------------------------------------------------------------- registry
# name -> (class, fixed entries of model.config).  "noise" is the training recipe the
# name stands for (AE1 plain, AE2 with noise); labkit.train reads it as the default.
_REGISTRY: dict[str, tuple[type[_AutoEncoder], dict[str, Any]]] = {
    "ae1": (BaseAE, {"noise": spec.MODEL_NOISE["ae1"]}),
    "ae2": (BaseAE, {"noise": spec.MODEL_NOISE["ae2"]}),
    "resae": (ResAE, {"noise": spec.MODEL_NOISE["resae"]}),
    "resae-rd": (ResAE, {"noise": spec.MODEL_NOISE["resae-rd"]}),
    "resae-rd-fast": (ResAE, {"noise": spec.MODEL_NOISE["resae-rd-fast"]}),
}
#: Constructor defaults that a name adds on top of its class's (``resae-rd``: the
#: rate-distortion model, wider and with twice the latent channels for the rate term to spend;
#: ``resae-rd-fast``: the same encoder layout with a decoder that has one residual block less at 1/4
#: and ends at half resolution with a pixel shuffle, so it runs no slower than the encoder).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "resae-rd": {"widths": [32, 96, 160], "blocks": 2, "upsample": "resize", "latent_channels": 32},
    "resae-rd-fast": {"widths": [32, 96, 160], "blocks": 2, "upsample": "resize", "latent_channels": 32,
                      "decoder_blocks": [2, 1], "head": "shuffle"},
}
for _old, _new in spec.SUPERSEDED.items():  # earlier weights of a name: its class, recipe and layout
    _REGISTRY[_old] = (_REGISTRY[_new][0], {"noise": spec.MODEL_NOISE[_old]})
    if _new in _DEFAULTS:
        _DEFAULTS[_old] = _DEFAULTS[_new]
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def default_noise(name: str) -> bool:
    """Whether model ``name`` is trained with quantization noise (ae1: False, others: True)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")
    return bool(_REGISTRY[name][1]["noise"])


def build_model(name: str, *, seed: int | None = None, **cfg: Any) -> _AutoEncoder:
    """Build a model by name (``MODEL_NAMES``); ``cfg`` goes to the class constructor.

    ``seed`` makes the initial weights reproducible without touching the global RNG.
    The result's ``.config`` is ``{"name", "noise", **constructor args}`` (JSON-able),
    enough for ``build_model(**config)``-style rebuilding (``name``/``noise`` are ignored
    as constructor args).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")
    cls, fixed = _REGISTRY[name]
    cfg = {**_DEFAULTS.get(name, {}), **cfg}
    cfg.pop("name", None)
    noise = cfg.pop("noise", fixed["noise"])
    if noise != fixed["noise"]:
        raise ValueError(
            f"model {name!r} stands for noise={fixed['noise']}; pick another name "
            f"(or set the training noise in TrainConfig) instead of noise={noise}"
        )
    try:
        if seed is None:
            model = cls(**cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = cls(**cfg)
    except TypeError as e:
        raise ValueError(f"bad config for model {name!r} ({cls.__name__}): {e}") from None
    built = dict(model.config)
    for key in _DEFAULTS.get(name, {}):
        # the class leaves out an argument equal to its own default, but rebuilding by name would
        # put the name's default there instead (resae-rd-fast with decoder_blocks == (blocks, blocks)
        # came back with [2, 1]): record what the model was built with
        if key not in built:
            built[key] = getattr(model, "arguments", {}).get(key, cfg[key])
    model.config = {"name": name, "noise": fixed["noise"], **built}
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _pair(v: Any) -> Any:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return v[0]
    return v


def describe(model: _AutoEncoder, size: tuple[int, int] = (128, 128)) -> list[dict[str, Any]]:
    """Layer table, in execution order, for a [1, 3, *size] input.

    One dict per leaf layer call: ``part`` (encoder/decoder), ``name`` (module path),
    ``type``, ``in_channels``/``out_channels``/``kernel``/``stride`` (the layer's own
    arguments; None where they do not apply), ``scale`` (output/input width: 2 for an
    upsampling, 0.5 for a pooling), ``output_shape`` ([C, H, W]) and ``params``.
    Used to draw the architecture diagram from the definitions.
    """
    rows: list[dict[str, Any]] = []
    hooks = []
    for part in ("encoder", "decoder"):
        root = getattr(model, part)
        for name, mod in root.named_modules():
            if any(True for _ in mod.children()):
                continue

            def hook(m: nn.Module, inp: Any, out: Tensor, _part: str = part, _name: str = name) -> None:
                kernel = getattr(m, "kernel_size", None)
                stride = getattr(m, "stride", None)
                scale = out.shape[-1] / inp[0].shape[-1]
                rows.append({
                    "part": _part,
                    "name": f"{_part}.{_name}",
                    "type": type(m).__name__,
                    "in_channels": getattr(m, "in_channels", None) or getattr(m, "num_features", None),
                    "out_channels": getattr(m, "out_channels", None) or getattr(m, "num_features", None),
                    "kernel": _pair(kernel),
                    "stride": _pair(stride),
                    "scale": int(scale) if scale >= 1 else scale,
                    "output_shape": list(out.shape[1:]),
                    "params": sum(p.numel() for p in m.parameters(recurse=False)),
                })

            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows

