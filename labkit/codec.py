"""The end-to-end image codec: image -> latent -> quantizer -> arithmetic coder -> ``.lkc``.

``Codec(model, b, context)`` ties the chain together.  Decoding needs only the file
and the (shipped) weights the file names: every other parameter is in the header.

Any image size works: the image is padded (edge replication) to the network's
multiple of 8 and the reconstruction is cropped back.  bpp is always counted from
the whole file (header + payload) over the *original* pixel count.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bitstream, coder, quant
from .atomic import atomic_path, write_bytes
from .bitstream import Header
from .inference import optimize_for_inference
from .paths import WEIGHTS_DIR

DEFAULT_CONTEXT = "neighbor"


class CodecError(ValueError):
    """The codec cannot do what was asked; the message says why and what to do."""


#: Largest image (in pixels) encoded or decoded, so a crafted header cannot demand
#: gigabytes; raise it with the environment variable LABKIT_MAX_PIXELS.
MAX_PIXELS = int(os.environ.get("LABKIT_MAX_PIXELS", 1 << 26))  # 64 megapixels, e.g. 8192 x 8192


def _check_size(height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise CodecError(f"image of {width}x{height} = {height * width} pixels exceeds the limit of {MAX_PIXELS}; "
                         "set LABKIT_MAX_PIXELS to allow larger images")


def available_weights(weights_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the pretrained models shipped in ``weights_dir`` (default: the package's)."""
    root = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "model.pt").is_file())


def load_pretrained(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[torch.nn.Module, dict]:
    """Load the shipped checkpoint ``name`` (eval mode, CPU) and its config dict."""
    from .train import load_checkpoint

    root = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if not root.is_dir():
        raise CodecError(f"weights folder {root} does not exist; pass a folder holding <model>/model.pt and config.json")
    path = root / name
    if not (path / "model.pt").is_file():
        have = ", ".join(available_weights(root)) or "none"
        raise CodecError(f"no pretrained weights named {name!r} in {root} (available: {have}); "
                         "train one with `python -m labkit.train` or pick an available name")
    model, config = load_checkpoint(path, map_location="cpu")
    model.eval()
    return model, config


def _as_uint8_rgb(image: Any) -> np.ndarray:
    """Accept a PIL image or an H x W x 3 uint8 array (H x W grey is promoted)."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise CodecError(f"expected an H x W x 3 RGB image, got an array of shape {arr.shape}; "
                         "load files with labkit.data.load_image, which converts any mode to RGB")
    if arr.dtype != np.uint8:
        raise CodecError(f"expected uint8 pixels, got {arr.dtype}; convert with labkit.data.to_uint8 or np.uint8")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or max(arr.shape[:2]) > 0xFFFF:
        raise CodecError(f"image size {arr.shape[0]}x{arr.shape[1]} is outside 1..65535 pixels per side")
    _check_size(arr.shape[0], arr.shape[1])
    return np.ascontiguousarray(arr)


def pad_to_multiple(arr: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Edge-pad an H x W x C array so H and W are multiples of ``multiple``; return it and (H, W) to crop back to."""
    h, w = arr.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return arr, (h, w)


@dataclass
class EncodeResult:
    """What one image costs and how it comes back (all from the real bytes)."""

    data: bytes
    recon: np.ndarray
    bpp: float
    header: Header
    symbols: np.ndarray


class Codec:
    """A learned codec: one autoencoder, one bit depth ``b``, one coder context mode."""

    def __init__(self, model: torch.nn.Module, b: int, context: str = DEFAULT_CONTEXT, *,
                 model_name: str = "resae", increment: int | None = None, limit: int | None = None) -> None:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= int(b) <= 8:
            raise CodecError(f"b must be an integer in 1..8, got {b!r}")
        b = int(b)
        if context not in coder.CONTEXT_MODES:
            raise CodecError(f"unknown context mode {context!r}; choose one of {', '.join(coder.CONTEXT_MODES)}")
        if model_name not in bitstream.MODEL_IDS:
            raise CodecError(f"model name {model_name!r} has no bitstream id; known: {', '.join(bitstream.MODEL_IDS)}")
        self.model = optimize_for_inference(model)  # BN folded, channels-last: same outputs, faster
        self.b = b
        self.context = context
        self.model_name = model_name
        self.increment = coder.DEFAULT_INCREMENT if increment is None else increment
        self.limit = coder.DEFAULT_LIMIT if limit is None else limit
        self.downsample = int(getattr(model, "downsample", 8))

    @classmethod
    def from_pretrained(cls, name: str = "resae", b: int = 2, context: str = DEFAULT_CONTEXT,
                        weights_dir: str | os.PathLike[str] | None = None, **kw: Any) -> "Codec":
        """A codec over the shipped weights ``name`` (``resae``, ``ae1``, ``ae2``, ...)."""
        model, _ = load_pretrained(name, weights_dir)
        return cls(model, b, context, model_name=name, **kw)

    # -- the chain ------------------------------------------------------------------
    @torch.inference_mode()
    def analyse(self, image: Any) -> tuple[np.ndarray, float, tuple[int, int]]:
        """Image -> (quantized symbols uint8 [C,h,w], float32 ymax, original (H, W))."""
        arr = _as_uint8_rgb(image)
        padded, (h, w) = pad_to_multiple(arr, self.downsample)
        x = torch.from_numpy(np.array(padded, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).div_(255.0)
        y = self.model.encode(x.contiguous(memory_format=torch.channels_last))
        ymax = quant.latent_max(y).to(torch.float32)  # stored as float32: both sides use the same value
        q = quant.quantize(y, ymax, self.b)[0]
        return q.cpu().numpy().astype(np.uint8, copy=False), float(ymax[0]), (h, w)

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, ymax: float, size: tuple[int, int], b: int | None = None) -> np.ndarray:
        """(symbols, ymax) at bit depth ``b`` (default: this codec's) -> uint8 H x W x 3 cropped to ``size``."""
        q = torch.from_numpy(np.ascontiguousarray(symbols)).unsqueeze(0)
        y_hat = quant.dequantize(q, torch.tensor([ymax], dtype=torch.float32), b or self.b)
        x_hat = self.model.decode(y_hat.contiguous(memory_format=torch.channels_last))[0]
        out = x_hat.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(out[: size[0], : size[1]])

    def encode(self, image: Any) -> bytes:
        """Compress an image (uint8 H x W x 3 array or PIL image) into ``.lkc`` bytes."""
        symbols, ymax, (h, w) = self.analyse(image)
        header = Header(model=self.model_name, b=self.b, height=h, width=w,
                        latent_channels=int(symbols.shape[0]), downsample=self.downsample, ymax=ymax,
                        context=self.context, increment=self.increment, limit=self.limit)
        if header.latent_shape != symbols.shape:
            raise CodecError(f"model produced a latent of shape {symbols.shape}, expected {header.latent_shape} "
                             f"for a {h}x{w} image at stride {self.downsample}")
        payload = coder.encode(symbols, 1 << self.b, self.context, increment=self.increment, limit=self.limit)
        return bitstream.pack(header, payload)

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress ``.lkc`` bytes written by this codec's model into a uint8 H x W x 3 array."""
        header, payload = bitstream.unpack(data)
        if header.model != self.model_name:
            raise CodecError(f"this file was written by model {header.model!r} but this codec holds "
                             f"{self.model_name!r}; use labkit.codec.decode(data) to pick the model from the file")
        return self._decode_parsed(header, payload)

    def _decode_parsed(self, header: Header, payload: bytes) -> np.ndarray:
        return self._decode_with_symbols(header, payload)[1]

    def _decode_with_symbols(self, header: Header, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, reconstruction) from a parsed file; the file's b and coder settings rule."""
        _check_size(header.height, header.width)
        symbols = coder.decode(payload, header.latent_shape, 1 << header.b, header.context,
                               increment=header.increment, limit=header.limit)
        return symbols, self.synthesise(symbols, header.ymax, (header.height, header.width), header.b)

    def compress(self, image: Any) -> EncodeResult:
        """Encode then decode the real bytes: the reconstruction a receiver sees, and its bpp."""
        data = self.encode(image)
        header, payload = bitstream.unpack(data)
        symbols, recon = self._decode_with_symbols(header, payload)
        return EncodeResult(data=data, recon=recon, bpp=len(data) * 8.0 / (header.height * header.width),
                            header=header, symbols=symbols)

    # -- files ----------------------------------------------------------------------
    def encode_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
        """Read any image Pillow can open, write ``dst`` atomically; return the file size in bytes."""
        from .data import load_image

        data = self.encode(load_image(src))
        write_bytes(dst, data)
        return len(data)


_MODEL_CACHE: dict[tuple[str, str], Codec] = {}


def decode(data: bytes, weights_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Decode any ``.lkc`` file: the model, b and coder settings all come from its header."""
    header, payload = bitstream.unpack(data)
    key = (header.model, str(weights_dir or WEIGHTS_DIR))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = Codec.from_pretrained(header.model, b=header.b, context=header.context,
                                                  weights_dir=weights_dir)
    return _MODEL_CACHE[key]._decode_parsed(header, payload)


def image_format(dst: str | os.PathLike[str]) -> str:
    """Pillow's format name for ``dst``'s suffix; CodecError when the suffix names no image format."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(dst).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise CodecError(f"cannot tell the image format from {Path(dst).name!r}; use a suffix such as .png")
    return fmt


def save_image(image: np.ndarray, dst: str | os.PathLike[str]) -> None:
    """Write a uint8 RGB array atomically in the format named by ``dst``'s suffix."""
    from PIL import Image

    dst = Path(dst)
    fmt = image_format(dst)
    with atomic_path(dst) as tmp:
        Image.fromarray(image, "RGB").save(tmp, format=fmt)


def decode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                weights_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Decode the ``.lkc`` file ``src`` and write the image ``dst`` atomically (format from its suffix)."""
    image_format(dst)  # fail before decoding, not after
    try:
        data = Path(src).read_bytes()
    except OSError as err:
        raise CodecError(f"cannot read {src}: {err.strerror or err}") from err
    image = decode(data, weights_dir)
    save_image(image, dst)
    return image


def encode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: str = "resae", b: int = 2,
                context: str = DEFAULT_CONTEXT, weights_dir: str | os.PathLike[str] | None = None) -> int:
    """Compress the image file ``src`` into ``dst`` with shipped weights ``model``; return the byte count."""
    return Codec.from_pretrained(model, b=b, context=context, weights_dir=weights_dir).encode_file(src, dst)
