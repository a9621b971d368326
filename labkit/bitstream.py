"""The ``.lkc`` container: a 22-byte header, then the arithmetic-coded payload.

Every byte of the file counts in bpp, so the header is packed by hand.  Layout
(little-endian, offsets in bytes)::

    0   2  magic            b"LK"
    2   1  version          FORMAT_VERSION (1)
    3   1  model id         MODEL_IDS (ae1=1, ae2=2, resae=3, ...)
    4   1  b | context      high nibble: b - 1 (b = 1..8); low nibble: context mode id
    5   1  log2 downsample  low 4 bits: k, the network's total stride is 2**k
    6   2  height           original image height in pixels (1..65535)
    8   2  width            original image width in pixels (1..65535)
    10  1  latent channels  C (1..255)
    11  4  ymax             float32, the per-image latent maximum used to dequantize
    15  1  increment        coder model: count added per coded symbol (1..255)
    16  2  limit            coder model: halve the counts when their total exceeds this
    18  4  crc32            CRC-32 of bytes 0..17 and of the whole payload
    22  .. payload          labkit.coder bytes for C x ceil(H/2**k) x ceil(W/2**k) symbols

The latent shape is derived, not stored: ``(C, ceil(H / 2**k), ceil(W / 2**k))``.
The CRC covers header and payload, so truncation and bit flips are caught before
any decoding is attempted.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"LK"
FORMAT_VERSION = 1
_BODY = struct.Struct("<2sBBBBHHBfBH")  # everything before the CRC
_CRC = struct.Struct("<I")
HEADER_SIZE = _BODY.size + _CRC.size  # 22 bytes

#: Model name <-> one-byte id stored in the header.  Append only: ids are forever.
MODEL_IDS: dict[str, int] = {"ae1": 1, "ae2": 2, "resae": 3, "resae-ps": 4, "resae-wide": 5}

#: Context mode <-> id; mirrors ``labkit.coder.CONTEXT_MODES`` (checked by a test).
CONTEXT_IDS: dict[str, int] = {"none": 0, "channel": 1, "neighbor": 2, "neighbor+channel": 3}


class BitstreamError(ValueError):
    """A ``.lkc`` file (or header field) is malformed; the message says what and what to do."""


@dataclass(frozen=True)
class Header:
    """Everything the decoder needs besides the payload and the named weights."""

    model: str
    b: int
    height: int
    width: int
    latent_channels: int
    downsample: int
    ymax: float
    context: str = "none"
    increment: int = 8
    limit: int = 1024
    version: int = FORMAT_VERSION

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of the coded symbol array."""
        d = self.downsample
        return (self.latent_channels, -(-self.height // d), -(-self.width // d))

    @property
    def num_symbols(self) -> int:
        c, h, w = self.latent_shape
        return c * h * w


def _name_for(table: dict[str, int], value: int, what: str, hint: str) -> str:
    for name, ident in table.items():
        if ident == value:
            return name
    raise BitstreamError(f"unknown {what} id {value}; {hint}")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise BitstreamError(message)


def validate_header(h: Header) -> None:
    """Raise :class:`BitstreamError` if any field cannot be stored or makes no sense."""
    _check(h.version == FORMAT_VERSION, f"unsupported format version {h.version}; this labkit writes and reads version {FORMAT_VERSION}")
    _check(h.model in MODEL_IDS, f"unknown model {h.model!r}; known models: {', '.join(MODEL_IDS)}")
    _check(isinstance(h.b, int) and 1 <= h.b <= 8, f"b must be an integer in 1..8, got {h.b!r}")
    _check(h.context in CONTEXT_IDS, f"unknown context mode {h.context!r}; valid: {', '.join(CONTEXT_IDS)}")
    _check(1 <= h.height <= 0xFFFF and 1 <= h.width <= 0xFFFF, f"image size {h.height}x{h.width} outside 1..65535 pixels per side")
    _check(1 <= h.latent_channels <= 255, f"latent channels {h.latent_channels} outside 1..255")
    k = int(round(math.log2(h.downsample))) if h.downsample > 0 else -1
    _check(0 <= k <= 15 and (1 << k) == h.downsample, f"downsample factor {h.downsample} must be a power of two up to 2**15")
    _check(math.isfinite(h.ymax) and h.ymax > 0, f"ymax must be a finite positive number, got {h.ymax!r}")
    _check(1 <= h.increment <= 255, f"coder increment {h.increment} outside 1..255")
    _check(1 <= h.limit <= 0xFFFF, f"coder limit {h.limit} outside 1..65535")


def _body(h: Header) -> bytes:
    validate_header(h)
    nib = ((h.b - 1) << 4) | CONTEXT_IDS[h.context]
    k = h.downsample.bit_length() - 1
    return _BODY.pack(MAGIC, h.version, MODEL_IDS[h.model], nib, k, h.height, h.width,
                      h.latent_channels, h.ymax, h.increment, h.limit)


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise ``header`` and ``payload`` into one ``.lkc`` byte string."""
    body = _body(header)
    crc = zlib.crc32(payload, zlib.crc32(body))
    return body + _CRC.pack(crc) + bytes(payload)


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and validate a ``.lkc`` byte string into ``(header, payload)``.

    Raises :class:`BitstreamError` for wrong magic, unknown version, truncation,
    CRC mismatch or fields that are out of range.
    """
    data = bytes(data)
    if len(data) < 3 or data[:2] != MAGIC:
        raise BitstreamError("not a labkit .lkc file (wrong magic bytes); pass a file written by `labkit encode`")
    if data[2] != FORMAT_VERSION:
        raise BitstreamError(f"unsupported .lkc format version {data[2]}; this labkit reads version {FORMAT_VERSION} (upgrade labkit or re-encode)")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    body, (crc,), payload = data[:_BODY.size], _CRC.unpack_from(data, _BODY.size), data[HEADER_SIZE:]
    if zlib.crc32(payload, zlib.crc32(body)) != crc:
        raise BitstreamError("CRC mismatch: the .lkc file is corrupted or truncated; re-encode the source image")
    _, version, model_id, nib, k, height, width, channels, ymax, inc, limit = _BODY.unpack(body)
    model = _name_for(MODEL_IDS, model_id, "model", "the file was written by a newer labkit")
    context = _name_for(CONTEXT_IDS, nib & 0x0F, "context mode", "the file was written by a newer labkit")
    _check(k <= 15, f"corrupt header: log2 downsample {k} > 15")
    header = Header(model=model, b=(nib >> 4) + 1, height=height, width=width, latent_channels=channels,
                    downsample=1 << k, ymax=float(ymax), context=context, increment=inc, limit=limit,
                    version=version)
    validate_header(header)
    return header, payload
