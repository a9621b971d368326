"""The end-to-end image codec: image -> latent -> quantizer -> arithmetic coder -> ``.lkc``.

``Codec(model, b, context)`` ties the chain together.  Decoding needs only the file
and the (shipped) weights the file names: every other parameter is in the header.

Any image size works: the image is padded (edge replication) to the network's
multiple of 8 and the reconstruction is cropped back.  bpp is always counted from
the whole file (header + payload) over the *original* pixel count.

Memory is bounded at any size: both networks run over overlapping tiles
(``labkit.inference.encode_tiled`` / ``decode_tiled``) whose overlap covers their
receptive field, so the result equals whole-image inference (tests check it); only the
small latent of the whole image is held, and ``ymax`` is computed over all of it.

Decoding checks every header field against the model it names (stride, latent
channels, b, the pixel cap) before the coder allocates anything.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bitstream, coder, colour, quant, settings, spec
from . import coder_prior as priors
from .atomic import check_target, write_bytes
from .bitstream import Header
from .checkpoint import available_weights, decoder_tag
from .imageio import DataError, as_rgb8
from .inference import (auto_tiles, decode_tiled, decoder_margin, encode_tiled, encoder_margin,
                        optimize_for_inference)
from .paths import WEIGHTS_DIR
from .rate import prior_in_symbols
from .refine import refine_tiles

DEFAULT_CONTEXT = spec.DEFAULT_CONTEXT
#: Working-set budget of one network tile (bytes of one layer's input + output); the tile
#: side is derived per network from it (``labkit.inference.auto_tiles``), which bounds the
#: networks' memory at any image size.
TILE_BUDGET = 256 * 2**20


class CodecError(ValueError):
    """The codec cannot do what was asked; the message says why and what to do."""


def max_pixels() -> int:
    """Largest image (in pixels) encoded or decoded, so a crafted header cannot demand gigabytes.

    ``$LABKIT_MAX_PIXELS`` (read when used; default 2**26 = 64 Mpx, e.g. 8192 x 8192).
    A value that is not a positive integer raises ``CodecError`` naming the variable.
    """
    try:
        return settings.max_pixels()
    except settings.SettingsError as err:
        raise CodecError(str(err)) from None


def _check_size(height: int, width: int) -> None:
    message = settings.pixel_cap_excess(width, height, max_pixels())
    if message:
        raise CodecError(message)


def registered_name(name: object) -> str:
    """``name`` as a registered model name (any case), else ``CodecError``; nothing is read from disk."""
    try:
        return spec.model_name(name) if isinstance(name, str) else spec.model_name(repr(name))
    except ValueError:
        raise CodecError(f"unknown model {name!r}: a model is named by a registered name "
                         f"({', '.join(spec.MODEL_NAMES)}; shipped weights: {', '.join(available_weights()) or 'none'}); "
                         "to load a checkpoint file use Codec.from_checkpoint(path)") from None


def load_pretrained(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[torch.nn.Module, dict]:
    """Load the shipped checkpoint ``name`` (eval mode, CPU) and its config dict.

    ``name`` must be a registered model name (checked before anything is read, so
    ``"../../elsewhere/ckpt"`` is refused); checkpoints elsewhere load with
    :func:`load_checkpoint_file`.
    """
    name = registered_name(name)
    root = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise CodecError(f"weights folder {root} {what}; pass a folder holding <model>/model.pt and config.json "
                         "(or a run folder of labkit train --out)")
    path = root / name
    if not (path / "model.pt").is_file():
        run_model = _run_folder_model(root)
        if run_model == name:  # weights_dir is itself a run folder of this model (labkit train --out DIR)
            return load_checkpoint_file(root)
        have = ", ".join(available_weights(root)) or "none"
        run = f"; {root} is a run folder of {run_model!r}" if run_model else ""
        raise CodecError(f"no weights of model {name!r} in {root} (it holds <model>/ folders: {have}{run}); pass the "
                         f"run folder of a {name!r} run, or a folder holding {name}/, or pick an available name")
    return load_checkpoint_file(path)


def _run_folder_model(folder: Path) -> str | None:
    """The model a training-run folder (``model.pt`` + ``config.json``) holds, or None when it is not one."""
    import json

    try:
        if (folder / "model.pt").is_file():
            model = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model")
            return model if isinstance(model, str) else None
    except (OSError, ValueError):
        pass
    return None


def load_checkpoint_file(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint folder (``model.pt`` + ``config.json``) or ``.pt`` file: (eval model, config)."""
    from .checkpoint import load

    model, config = load(path, map_location="cpu")
    model.eval()
    return model, config


def _as_uint8_rgb(image: Any) -> np.ndarray:
    """Any image (array, PIL image, path) as uint8 H x W x 3 via ``labkit.imageio.as_rgb8``, size-checked."""
    try:
        arr = as_rgb8(image, stacklevel=4, max_pixels=max_pixels())  # a file: its size checked before decoding
    except DataError as err:
        raise CodecError(str(err)) from None
    if arr.shape[0] < 1 or arr.shape[1] < 1 or max(arr.shape[:2]) > 0xFFFF:
        raise CodecError(f"image size {arr.shape[1]}x{arr.shape[0]} is outside 1..65535 pixels per side; "
                         "crop or downscale it")
    _check_size(arr.shape[0], arr.shape[1])
    return arr


@dataclass
class EncodeResult:
    """What one image costs and how it comes back (all from the real bytes): :meth:`Codec.compress`.

    Attributes
    ----------
    data : bytes
        The whole ``.lkc`` file (header, colour map if any, payload).
    recon : numpy.ndarray
        uint8 ``H x W x 3``: what a receiver decodes from ``data`` (colour map applied).
    bpp : float
        Bits per pixel of the whole file over the original image's pixels (``8 * len(data) / (H * W)``).
    header : labkit.bitstream.Header
        The parsed header (model, b, size, scale ``ymax``, coder settings, colour map).
    symbols : numpy.ndarray
        uint8 ``[C, ceil(H / s), ceil(W / s)]``: the quantized latent the payload codes (stride ``s``).
    """

    data: bytes
    recon: np.ndarray
    bpp: float
    header: Header
    symbols: np.ndarray


class Codec:
    """A learned codec: one autoencoder, one bit depth ``b``, one coder context mode.

    Parameters
    ----------
    model : torch.nn.Module
        A trained autoencoder (``encoder``, ``decoder``, ``downsample``,
        ``latent_channels``); an optimised copy is used (``labkit.inference``).
    b : int
        Bit depth, in :data:`labkit.spec.BITS`.
    context : str, optional
        Coder context mode (``labkit.coder.CONTEXT_MODES``).  Default: ``"learned"`` when
        ``coder_prior`` has a table for ``b`` (the shipped ``resae-rd-fast`` has them for
        b = 1..5), else :data:`labkit.spec.DEFAULT_CONTEXT` (``"neighbor"``).
    coder_prior : mapping of int to numpy.ndarray, optional
        The model's prior tables per bit depth (:mod:`labkit.coder_prior`), which the
        ``"learned"`` mode starts its models from.  Default: the model's ``coder_prior``
        attribute, which :func:`labkit.checkpoint.load` sets from the tables shipped beside the
        weights (so :meth:`from_pretrained` and :meth:`from_checkpoint` have them).
    model_name : str, optional
        Name written into files (must have a bitstream id), which picks the weights that decode
        them.  Default: the name the network carries (``model.config["name"]``, set by
        :func:`labkit.models.build_model` and so by every checkpoint load); a network without
        one is refused rather than labelled with another model's name.
    increment, limit : int, optional
        Coder model settings (default: the coder's; in the ``"learned"`` mode
        :data:`labkit.coder_prior.INCREMENT` and :data:`labkit.coder_prior.LIMIT`).
    scale : str, optional
        Encoder rule for the stored scale ``ymax`` (``labkit.quant.latent_scale``):
        ``"max"`` or a percentile such as ``"p99.9"``.  The decoder only reads ``ymax``.
        Default: the rule the model was trained with (``model.scale_rule``, set by
        ``labkit.checkpoint.load`` from the checkpoint's config), else ``"max"``.
        ``"search"`` (:data:`labkit.spec.SCALE_SEARCH`): try every rule of
        :data:`labkit.spec.SCALE_SEARCH_RULES` per image and keep the file with the least
        ``MSE + colour_map_rate_weight(b) * bpp``; fewer bits for the same quality, one
        decoder run per rule when encoding.
    tile : int, optional
        Core tile side in pixels for both networks; default: derived per network from
        :data:`TILE_BUDGET`.  The output does not depend on it (tests check it).
    colour_map : bool, optional
        Let the encoder fit a per-image colour map (``labkit.colour``), which the decoder
        applies after the network, and send it when it pays by
        :func:`labkit.spec.colour_map_rate_weight` at this ``b``: one global map (12 bytes, format
        version 3) or a blended grid of them (12 bytes per node, version 4), whichever pays
        best.  The encoder then runs the decoder once.  Default: on for :data:`labkit.spec.COLOUR_MAP_MODELS` (the ``resae-rd`` models), off
        for the seed's and the course's models.  Files with a map decode with any setting.
    refine : int, optional
        Gradient steps of encoder-side latent refinement (:mod:`labkit.refine`, settings
        :func:`labkit.spec.refine_settings`): the latent is improved for the fixed decoder on the
        file's own rate–distortion cost before it is coded.  0 (default) = the network's latent.
        Files are unchanged in format and decode with the same weights; each step costs about
        three (a tile) to five (a large image, refined tile by tile with margins) decoder runs of
        encode time (``benchmarks/bench_codec.py --refine``).  With ``scale="search"`` the search picks the scale
        first and the winner is refined.
    """

    def __init__(self, model: torch.nn.Module, b: int, context: str | None = None, *,
                 model_name: str | None = None, increment: int | None = None, limit: int | None = None,
                 scale: str | None = None, tile: int | None = None, colour_map: bool | None = None,
                 refine: int = 0, coder_prior: Mapping[int, np.ndarray] | None = None) -> None:
        try:
            b = spec.check_bits(b)
        except ValueError:
            raise CodecError(f"b must be an integer in {spec.MIN_BITS}..{spec.MAX_BITS}, got {b!r}") from None
        try:
            self.scale = (spec.SCALE_SEARCH if scale == spec.SCALE_SEARCH else
                          quant.check_scale_rule(getattr(model, "scale_rule", "max") if scale is None else scale))
        except ValueError as err:
            raise CodecError(f"{err}; or {spec.SCALE_SEARCH!r} to choose per image") from None
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1):
            raise CodecError(f"tile must be a positive number of pixels (or None: from the memory budget), got {tile!r}")
        try:
            #: encoder-side latent refinement (``labkit.refine``); steps == 0: none
            self.refine = spec.refine_settings(b, refine)
        except ValueError as err:
            raise CodecError(f"{err} (0 = no refinement; {spec.REFINE_STEPS} is the usual choice)") from None
        if coder_prior is None:
            coder_prior = getattr(model, "coder_prior", None)
        #: the model's coder prior tables by bit depth (``labkit.coder_prior``); may be empty
        self.coder_prior: dict[int, np.ndarray] = dict(coder_prior or {})
        if context is None:
            context = spec.PRIOR_CONTEXT if b in self.coder_prior else DEFAULT_CONTEXT
        if context not in coder.CONTEXT_MODES:
            raise CodecError(f"unknown context mode {context!r}; choose one of {', '.join(coder.CONTEXT_MODES)}")
        if context in coder.PRIOR_MODES and b not in self.coder_prior:
            raise CodecError(f"context mode {context!r} needs the model's coder prior for b={b}, and this model "
                             f"has {'none' if not self.coder_prior else 'one only for b=' + ', '.join(map(str, sorted(self.coder_prior)))}; "
                             f"use context {DEFAULT_CONTEXT!r}")
        if model_name is None:
            model_name = (getattr(model, "config", None) or {}).get("name")
            if model_name is None:
                raise CodecError("this network carries no model name (labkit.models.build_model and checkpoint loads "
                                 "give one); pass model_name=, the registered model whose weights will decode the "
                                 "files")
        if model_name not in bitstream.MODEL_IDS:
            raise CodecError(f"model name {model_name!r} has no bitstream id; known: {', '.join(bitstream.MODEL_IDS)}")
        #: fingerprint of the decoder's weights, which the files' CRC starts from
        self.weights_tag = decoder_tag(model)  # before BatchNorm is folded
        self.model = optimize_for_inference(model)  # BN folded, channels-last: same outputs, faster
        self.b = b
        self.context = context
        self.model_name = model_name
        learned = context in coder.PRIOR_MODES
        self.increment = (priors.INCREMENT if learned else coder.DEFAULT_INCREMENT) if increment is None else increment
        self.limit = (priors.LIMIT if learned else coder.DEFAULT_LIMIT) if limit is None else limit
        _check_coder_settings(b, context, self.increment, self.limit)  # here, not at the first encode
        if colour_map is not None and not isinstance(colour_map, bool):
            raise CodecError(f"colour_map must be True, False or None (the model's default), got {colour_map!r}")
        #: whether the encoder fits and (when it pays) sends a colour map
        self.colour_map = model_name in spec.COLOUR_MAP_MODELS if colour_map is None else colour_map
        self.downsample = int(getattr(model, "downsample", 8))
        self.latent_channels = int(getattr(model, "latent_channels", 16))
        #: core tile sides (pixels) of the encoder and the decoder network
        self.tiles = auto_tiles(self.model, TILE_BUDGET) if tile is None else (int(tile), int(tile))
        #: overlaps (latent positions) the encoder's and the decoder's tiles need: from their layers, once
        self.margins = (encoder_margin(self.model.encoder, self.downsample), decoder_margin(self.model.decoder))

    def __repr__(self) -> str:
        refine = f", refine={self.refine.steps}" if self.refine.steps else ""
        return (f"Codec(model={self.model_name!r}, b={self.b}, context={self.context!r}, scale={self.scale!r}, "
                f"colour_map={self.colour_map}{refine}, weights_tag=0x{self.weights_tag:08X})")

    @classmethod
    def from_pretrained(cls, name: str = spec.DEFAULT_MODEL, b: int = 2, context: str | None = None,
                        weights_dir: str | os.PathLike[str] | None = None, **kw: Any) -> "Codec":
        """A codec over the shipped weights of a registered model name (``resae-rd-fast``, ``resae``, ``ae2``, ...).

        The default is :data:`labkit.spec.DEFAULT_MODEL` (``resae-rd-fast``: the rate-distortion
        model ``resae-rd``'s layout with a lighter decoder, trained whole with the codec's quantization).  Only registered names are accepted (a path is refused before anything is
        read); use :meth:`from_checkpoint` for a checkpoint file.  ``scale`` defaults to the
        rule the model was trained with (the checkpoint config's ``"scale"``, else ``"max"``).
        """
        name = registered_name(name)
        model, config = load_pretrained(name, weights_dir)
        return cls(model, b, context, model_name=name, **kw)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], b: int = 2, context: str | None = None,
                        **kw: Any) -> "Codec":
        """A codec over an explicit checkpoint (folder with ``model.pt`` + ``config.json``, or a ``.pt``).

        The model name written into files is the config's ``"model"`` (override with
        ``model_name=``); decoding such files later needs weights under that name.
        """
        model, config = load_checkpoint_file(path)
        if config.get("model") is not None:
            kw.setdefault("model_name", config["model"])
        return cls(model, b, context, **kw)

    # -- the chain ------------------------------------------------------------------
    @torch.inference_mode()
    def analyse(self, image: Any) -> tuple[np.ndarray, float, tuple[int, int]]:
        """Image -> (quantized symbols uint8 [C,h,w], float32 ymax, original (H, W)).

        With ``scale="search"`` the symbols and scale are those the search keeps (it runs the
        decoder once per rule)."""
        arr = _as_uint8_rgb(image)
        if self.scale == spec.SCALE_SEARCH:
            symbols, ymax, _ = self._search(arr)[:3]
            return symbols, ymax, arr.shape[:2]
        y = encode_tiled(self.model, arr, self.tiles[0], self.margins[0])  # the whole (small) latent, network run tile by tile
        symbols, ymax = self._quantize(y, self.scale)
        if self.refine.steps:
            symbols = self._refined(arr, y, ymax)
        return symbols, ymax, arr.shape[:2]

    def _quantize(self, y: torch.Tensor, rule: str) -> tuple[np.ndarray, float]:
        """The latent's symbols and stored scale under ``rule``."""
        ymax = quant.to_float32(quant.latent_scale(y, rule))  # stored as float32: both sides use it
        q = quant.quantize(y, ymax, self.b)[0]
        return q.numpy().astype(np.uint8, copy=False), float(ymax[0])

    def _refined(self, arr: np.ndarray, y: torch.Tensor, ymax: float) -> np.ndarray:
        """Symbols of the latent ``y`` refined for this codec's decoder at the stored scale ``ymax`` (:mod:`labkit.refine`)."""
        table = self.prior_table(self.context, self.b)  # the learned coder's prices, when it codes the file
        better = refine_tiles(self.model, arr, y, ymax, self.b, self.refine, TILE_BUDGET,
                              prior=None if table is None else prior_in_symbols(table))
        q = quant.quantize(better, quant.to_float32(ymax), self.b)[0]
        return q.numpy().astype(np.uint8, copy=False)

    @torch.inference_mode()
    def _search(self, arr: np.ndarray) -> tuple[np.ndarray, float, bytes | None, bytes]:
        """(symbols, ymax, colour map, file bytes) of the scale rule whose file costs the least
        ``MSE + colour_map_rate_weight(b) * bpp`` (:data:`labkit.spec.SCALE_SEARCH_RULES`).

        The encoder network runs once; each rule's symbols are decoded (what the receiver
        sees), given their colour map when this codec sends maps, and priced with the whole
        file's bytes.  Rules that give the same scale are tried once; ties keep the earlier rule.
        With refinement on, the winning rule's latent is then refined (and its map refitted).
        """
        h, w = arr.shape[:2]
        y = encode_tiled(self.model, arr, self.tiles[0], self.margins[0])
        price = spec.colour_map_rate_weight(self.b)
        best: tuple[float, np.ndarray, float, bytes | None, bytes] | None = None
        tried: set[float] = set()
        for rule in spec.SCALE_SEARCH_RULES:
            symbols, ymax = self._quantize(y, rule)
            if ymax in tried:
                continue
            tried.add(ymax)
            recon = self.synthesise(symbols, ymax, (h, w))
            cmap = colour.choose(recon, arr, price, spec.colour_floor(self.b, h * w)) if self.colour_map else None
            sse = colour.squared_errors(recon, arr, cmap)[1] if cmap is not None else colour.squared_error(recon, arr)
            data = self._pack(symbols, ymax, (h, w), cmap)
            cost = sse / (3.0 * h * w) + price * spec.bits_per_pixel(len(data), h, w)
            if best is None or cost < best[0]:
                best = (cost, symbols, ymax, cmap, data)
        assert best is not None  # SCALE_SEARCH_RULES is not empty
        if not self.refine.steps:
            return best[1:]
        symbols, ymax = self._refined(arr, y, best[2]), best[2]
        cmap = self.fit_colour_map(arr, symbols, ymax) if self.colour_map else None
        return symbols, ymax, cmap, self._pack(symbols, ymax, (h, w), cmap)

    @torch.inference_mode()
    def synthesise(self, symbols: np.ndarray, ymax: float, size: tuple[int, int], b: int | None = None) -> np.ndarray:
        """(symbols, ymax) at bit depth ``b`` (default: this codec's) -> uint8 H x W x 3 cropped to ``size``."""
        q = torch.from_numpy(np.ascontiguousarray(symbols))
        m, bits = torch.tensor([ymax], dtype=torch.float32), b or self.b

        def latent_of(rows: slice, cols: slice) -> torch.Tensor:
            return quant.dequantize(q[:, rows, cols].unsqueeze(0), m, bits)

        return decode_tiled(self.model, latent_of, tuple(q.shape[1:]), size, self.tiles[1], self.margins[1])

    def encode(self, image: Any) -> bytes:
        """Compress an image into ``.lkc`` bytes.

        ``image``: an H x W x 3 (or grey / RGBA) array, a PIL image, or the path of an image file
        (``labkit.imageio.as_rgb8`` converts it, with a warning for anything it changes).
        """
        arr = _as_uint8_rgb(image)
        if self.scale == spec.SCALE_SEARCH:
            return self._search(arr)[3]
        symbols, ymax, size = self.analyse(arr)
        return self._pack(symbols, ymax, size, self.fit_colour_map(arr, symbols, ymax) if self.colour_map else None)

    def _pack(self, symbols: np.ndarray, ymax: float, size: tuple[int, int], cmap: bytes | None) -> bytes:
        """The ``.lkc`` bytes of these symbols, scale and colour map for an image of ``size``."""
        h, w = size
        header = Header(model=self.model_name, b=self.b, height=h, width=w,
                        latent_channels=int(symbols.shape[0]), downsample=self.downsample, ymax=ymax,
                        context=self.context, increment=self.increment, limit=self.limit, colour_map=cmap,
                        weights_tag=self.weights_tag)
        if header.latent_shape != symbols.shape:
            raise CodecError(f"model produced a latent of shape {symbols.shape}, expected {header.latent_shape} "
                             f"for a {h}x{w} image at stride {self.downsample}")
        payload = coder.encode(symbols, 1 << self.b, self.context, increment=self.increment, limit=self.limit,
                               prior=self.prior_table(self.context, self.b))
        return bitstream.pack(header, payload)

    def prior_table(self, context: str, b: int) -> np.ndarray | None:
        """The prior table the coder needs for ``context`` at ``b`` (None for modes without one)."""
        return self.coder_prior[b] if context in coder.PRIOR_MODES else None

    def fit_colour_map(self, image: np.ndarray, symbols: np.ndarray, ymax: float) -> bytes | None:
        """The colour map (or grid of maps) of ``image`` for these symbols, or None when none pays.

        Runs the decoder on the symbols (what the receiver will see), then lets
        :func:`labkit.colour.choose` fit one global map and grids of them and keep the one
        whose drop in squared error best pays for its bytes, at the price the next bit depth
        would charge for quality (:func:`labkit.spec.colour_map_rate_weight`), finer where the
        colour floor asks for it (:func:`labkit.spec.colour_floor`).
        """
        h, w = image.shape[:2]
        recon = self.synthesise(symbols, ymax, (h, w))
        return colour.choose(recon, image, spec.colour_map_rate_weight(self.b), spec.colour_floor(self.b, h * w))

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress ``.lkc`` bytes written by this codec's model into a uint8 H x W x 3 array."""
        _check_file_bytes(data)
        return self._decode_parsed(*self._unpack(data))

    def _unpack(self, data: bytes) -> tuple[Header, bytes]:
        """``bitstream.unpack`` with this codec's weights tag (the CRC of a file written since
        2026-11-28 covers the decoder's weights).

        When that CRC fails but the file is intact as written by the shipped weights of the
        model it names, the reason is the codec, not the file: a header that does not fit it
        (another model) says so, else the error says to decode with the shipped weights.
        Otherwise the CRC error stands: no field of an unverified header is trusted for a
        diagnosis.
        """
        try:
            return bitstream.unpack(data, weights_tag=self.weights_tag)
        except bitstream.ChecksumError as checksum:
            try:
                intact = bitstream.unpack(data)[0]  # as the shipped weights of the model it names wrote it?
            except bitstream.BitstreamError:
                raise checksum from None
            self.check_header(intact)  # raises CodecError when the file does not fit this codec's model
            raise bitstream.ChecksumError(
                f"this file was written with the shipped {intact.model!r} weights, not with this codec's; decode it "
                "with those (labkit decode without --weights, labkit.codec.decode(data))") from None

    def _decode_parsed(self, header: Header, payload: bytes) -> np.ndarray:
        return self._decode_with_symbols(header, payload)[1]

    def check_header(self, header: Header) -> None:
        """Raise ``CodecError`` unless every field of ``header`` fits this codec's model.

        Checked before anything is allocated: the model name, the stride and latent
        channel count (must equal the model's), ``b`` (in :data:`labkit.spec.BITS`) and the
        image size against the pixel cap, which bounds the memory decoding needs
        (:meth:`decode_memory_bytes`).
        """
        if header.model != self.model_name:
            raise CodecError(f"this file was written by model {header.model!r} but this codec holds "
                             f"{self.model_name!r}; use labkit.codec.decode(data) to pick the model from the file")
        if header.downsample != self.downsample:
            raise CodecError(f"corrupt or crafted file: the header says stride {header.downsample} but model "
                             f"{self.model_name!r} has stride {self.downsample}; re-encode the source image")
        if header.latent_channels != self.latent_channels:
            raise CodecError(f"corrupt or crafted file: the header says {header.latent_channels} latent channels but "
                             f"model {self.model_name!r} has {self.latent_channels}; re-encode the source image")
        if header.b not in spec.BITS:
            raise CodecError(f"corrupt or crafted file: bit depth b={header.b!r} outside "
                             f"{spec.MIN_BITS}..{spec.MAX_BITS}; re-encode the source image")
        if header.context in coder.PRIOR_MODES:
            table = self.coder_prior.get(header.b)
            if table is None:
                raise CodecError(f"this file's symbols are coded with the {header.context!r} context, which needs the "
                                 f"coder prior of model {self.model_name!r} for b={header.b}, and these weights ship "
                                 "none; decode it with the weights that wrote it")
            if int(table.sum(axis=-1, dtype=np.int64).max()) > header.limit:
                raise CodecError(f"corrupt or crafted file: the header's coder limit {header.limit} is below the "
                                 f"totals of model {self.model_name!r}'s coder prior; re-encode the source image")
        need = f" (about {self.decode_memory_bytes(header.height, header.width) / 2**20:.0f} MiB to decode)"
        message = settings.pixel_cap_excess(header.width, header.height, max_pixels(), need)
        if message:
            raise CodecError(message)

    def decode_memory_bytes(self, height: int, width: int) -> int:
        """Bytes decoding an ``height x width`` image allocates beyond the tile working set.

        The output (3 bytes per pixel) and the symbols (one byte per latent value); the
        networks run on tiles of at most ``(tile + 2 * margin)**2`` pixels, a constant.
        """
        d = self.downsample
        return 3 * height * width + self.latent_channels * (-(-height // d)) * (-(-width // d))

    def _decode_with_symbols(self, header: Header, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, reconstruction) from a parsed file; the file's b and coder settings rule."""
        self.check_header(header)
        symbols = bitstream.decode_symbols(header, payload, prior=self.prior_table(header.context, header.b))
        recon = self.synthesise(symbols, header.ymax, (header.height, header.width), header.b)
        if header.colour_map is not None:
            recon = colour.apply(recon, header.colour_map)
        return symbols, recon

    def compress(self, image: Any) -> EncodeResult:
        """Encode then decode the real bytes: the reconstruction a receiver sees, and its bpp."""
        data = self.encode(image)
        header, payload = self._unpack(data)
        symbols, recon = self._decode_with_symbols(header, payload)
        return EncodeResult(data=data, recon=recon, bpp=spec.bits_per_pixel(len(data), header.height, header.width),
                            header=header, symbols=symbols)

    # -- files ----------------------------------------------------------------------
    def encode_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool = True) -> int:
        """Read any image Pillow can open, write ``dst`` atomically; return the file size in bytes.

        ``overwrite=False`` refuses an existing ``dst``, also one that appears while encoding.
        """
        from . import imageio

        check_target(dst, source=src, overwrite=overwrite)  # refuse before the work, not after
        data = self.encode(imageio.load(src, max_pixels=max_pixels()))  # refused before decoding when too large
        write_bytes(dst, data, source=src, overwrite=overwrite)
        return len(data)


_MODEL_CACHE: dict[tuple[str, str, int | None], Codec] = {}


def _check_file_bytes(data: Any) -> None:
    """``CodecError`` unless ``data`` is the bytes of a file (a path, str, number or None is not)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"decode takes the file's bytes, got {type(data).__name__}; for a path use "
                         "decode(pathlib.Path(p).read_bytes()) or labkit.codec.decode_file")


def _check_coder_settings(b: int, context: str, increment: Any, limit: Any) -> None:
    """``CodecError`` unless the coder and the ``.lkc`` header take these settings (checked when the codec is made)."""
    if isinstance(increment, (int, np.integer)) and not isinstance(increment, bool) \
            and not 1 <= increment <= bitstream.MAX_INCREMENT:
        raise CodecError(f"increment must be a whole number in 1..{bitstream.MAX_INCREMENT} (the header's field), "
                         f"got {increment!r}")
    try:
        coder.check_settings(1 << b, context, increment, limit)
    except ValueError as err:
        raise CodecError(str(err)) from None


def decode(data: bytes, weights_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Decode any ``.lkc`` file: the model, b and coder settings all come from its header.

    The weights are the ones its header names, from ``weights_dir`` (default: the shipped
    ones).  A file written since 2026-11-28 carries a CRC over the weights that wrote it, so a
    file from other weights under the same name (a user's own ``ae1``) is refused with a
    :class:`labkit.bitstream.ChecksumError` that says to pass their folder, instead of being
    decoded to noise.
    """
    _check_file_bytes(data)
    try:
        header, _ = bitstream.unpack(data)  # CRC first: against the shipped weights of the model it names
    except bitstream.ChecksumError:
        if weights_dir is None:
            raise
        header = bitstream.unpack(data, verify=False)[0]  # the codec checks the CRC against the weights in weights_dir
    folder = Path(weights_dir or WEIGHTS_DIR) / header.model
    try:  # weights retrained into the same folder in this session are not served from the cache
        stamp: int | None = (folder / "model.pt").stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (header.model, str(weights_dir or WEIGHTS_DIR), stamp)
    if key not in _MODEL_CACHE:
        if header.model not in spec.MODEL_NAMES:   # an id kept in the format for a retired experiment
            raise CodecError(f"this file was written by model {header.model!r}, an experiment this version of labkit "
                             "no longer builds (its bitstream id stays reserved); decode it with the labkit version "
                             "that wrote it")
        try:
            _MODEL_CACHE[key] = Codec.from_pretrained(header.model, b=header.b, context=header.context,
                                                      weights_dir=weights_dir)
        except CodecError as err:
            if not str(err).startswith("context mode"):
                raise
            # the header asks for settings no encoder of this model writes: say so in the decoder's terms
            raise CodecError(f"its header asks {header.model} for b={header.b} with the {header.context!r} context, "
                             f"which these weights cannot decode ({str(err).split('; use context')[0]}): a corrupt "
                             "or crafted file, or one written with a coder prior these weights do not carry") from None
    return _MODEL_CACHE[key].decode(data)


def decode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                weights_dir: str | os.PathLike[str] | None = None, *, overwrite: bool = True) -> np.ndarray:
    """Decode the ``.lkc`` file ``src`` and write the image ``dst`` atomically (format from its suffix).

    The output format is checked before decoding: that Pillow can write it, and (from the
    header's size) that it can hold the image.  ``overwrite=False`` refuses an existing ``dst``,
    also one that appears while decoding.
    """
    from . import imageio

    try:
        imageio.check_writable(dst)  # fail before decoding, not after
    except DataError as err:
        raise CodecError(str(err)) from None
    check_target(dst, source=src, overwrite=overwrite)
    try:
        data = Path(src).read_bytes()
    except OSError as err:
        raise CodecError(f"cannot read {src}: {err.strerror or err}") from err
    try:
        claimed = bitstream.unpack(data, verify=False)[0]
    except bitstream.BitstreamError:
        claimed = None  # decode() says what is wrong with it
    if claimed is not None:
        try:
            imageio.check_writable(dst, claimed.width, claimed.height)
        except DataError as err:
            raise CodecError(str(err)) from None
    image = decode(data, weights_dir)
    imageio.save(image, dst, source=src, overwrite=overwrite)
    return image


def encode_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: str = spec.DEFAULT_MODEL, b: int = 2,
                context: str | None = None, weights_dir: str | os.PathLike[str] | None = None,
                colour_map: bool | None = None, scale: str | None = None, refine: int = 0, *,
                overwrite: bool = True) -> int:
    """Compress the image file ``src`` into ``dst`` with shipped weights ``model``; return the byte count.

    ``colour_map``, ``scale`` and ``refine``: see :class:`Codec` (None: the model's default;
    ``scale="search"`` chooses the stored scale per image, ``refine=N`` refines the latent for N
    steps: smaller files for the same quality and a slower encode).  ``overwrite=False`` refuses an
    existing ``dst``, also one that appears while encoding.
    """
    return Codec.from_pretrained(model, b=b, context=context, weights_dir=weights_dir,
                                 colour_map=colour_map, scale=scale, refine=refine).encode_file(src, dst, overwrite=overwrite)
