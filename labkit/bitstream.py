"""The ``.lkc`` container: a 22-byte header, then the arithmetic-coded payload.

Every byte of the file counts in bpp, so the header is packed by hand.  Layout
(little-endian, offsets in bytes)::

    0   2  magic            b"LK"
    2   1  version          2, 3 with a colour map, 4 with a grid of them, 5 with either coded compactly
                            (below); 1 is still read; + 0x80 (WEIGHTS_FLAG): the CRC starts from the
                            decoder's weights tag (below)
    3   1  model id         MODEL_IDS (ae1=1, ae2=2, resae=3, ...)
    4   1  b | context      high nibble: b - 1 (b in labkit.spec.BITS, 1..8); low nibble: context mode id
    5   1  log2 downsample  low nibble: k (0..15), the network's total stride is 2**k;
                            high nibble: payload length modulo 16 (version 2; 0 in version 1)
    6   2  height           original image height in pixels (1..65535)
    8   2  width            original image width in pixels (1..65535)
    10  1  latent channels  C (1..255)
    11  4  ymax             float32, the per-image latent maximum used to dequantize
    15  1  increment        coder model: count added per coded symbol (1..255)
    16  2  limit            coder model: halve the counts when their total exceeds this
                            (2**b + increment .. MAX_LIMIT = 65535, what the coder accepts)
    18  4  crc32            CRC-32 of bytes 0..17 and of the whole payload
    22  .. payload          labkit.coder bytes for C x ceil(H/2**k) x ceil(W/2**k) symbols

Version 3 is version 2 with a colour map (``labkit.colour``) between header and payload::

    22  12 colour map       12 signed bytes: the 3x4 affine RGB map the decoder applies last
    34  .. payload          as above; the CRC covers bytes 0..17, the map and the payload

Version 4 is version 2 with a grid of colour maps (``labkit.colour``)::

    22  1  grid             high nibble: gh - 1, low nibble: gw - 1 (1..16 nodes per side, not 1 x 1,
                            at most one node per pixel row / column)
    23  12*gh*gw maps       one 12-byte map per node, row-major
    ..  .. payload          the CRC covers bytes 0..17, the grid and the payload

Version 5 is version 2 with a colour map or a grid of them coded compactly (what labkit writes
when every map parameter is even, as ``labkit.colour``'s encoder makes them)::

    22  1  grid             as version 4, and 1 x 1 (one map) allowed
    23  .. parameters       the gh * gw * 12 parameters ``v = code / 2`` (node by node, row-major; in a
                            node the order of the 12-byte code), each predicted from the same
                            parameter of the node on its left (first row), above (first column),
                            or the floor of their mean (elsewhere; the first node from 0); the
                            residual zig-zagged (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) and written as
                            an Exp-Golomb code of order 2, most significant bit first, the last
                            byte padded with zero bits
    ..  .. payload          the CRC covers bytes 0..17, the map bytes as stored and the payload

The decoder expands them to the version-3/4 code (``Header.colour_map``), so every reader applies
the same map.  Neighbouring nodes differ little, so this takes about half the bytes of version 4.

Since 2026-11-28 labkit writes every version from 2 to 5 with WEIGHTS_FLAG set (0x82 .. 0x85; which
one: :func:`written_version` -- 2 without a colour map; with one, 5 when its compact coding is
shorter, else 3 (one map) or 4 (a grid)): the CRC-32 then
starts from the 32-bit tag of the decoder that wrote the file (``labkit.checkpoint.decoder_tag``: the
decoder network's tensors), not from 0.  The file does not grow, and a file written with
a user's own weights under a shipped name (their ``ae1``) is refused by the shipped weights instead of
decoding to noise; :func:`unpack` checks the shipped weights' tag (``SHIPPED_WEIGHTS_TAGS``) unless told
another.

The latent shape is derived, not stored: ``(C, ceil(H / 2**k), ceil(W / 2**k))``.
The CRC covers header and payload, so truncation and bit flips are caught before
any decoding is attempted.  :func:`unpack` accepts exactly the field values
:func:`pack` can write.  A file whose CRC was recomputed after its payload was cut
or extended is caught twice over, at no cost in bytes: by :func:`unpack` when the
length changed by anything but a multiple of 16 (the spare nibble of byte 5 holds
the payload length modulo 16), and by :func:`decode_symbols`, where the range decoder
reports where the coded data ends, which must be where the payload ends (this
catches all but about 0.2-1.5 % of cuts/extensions, measured; see the tests).

Versions 5 (with a compact colour map or grid), 4 (with a grid of colour maps), 3 (with one colour
map) and 2 (without) terminate the payload with exactly one byte and keep
trailing zero bytes, so its end can be checked; version 1 (labkit before
2026-11-26) dropped trailing zero bytes.  All five are read; version-1 payloads get the
weaker check that they are not longer than their coded data.  Model-specific checks
(stride and channel count against the named model, the pixel cap) are
``labkit.codec``'s job.
"""
from __future__ import annotations

import math
import numbers
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import spec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

MAGIC = b"LK"
#: The version written for files without a colour map.
FORMAT_VERSION = 2
#: The version written for files with a colour map (version 2 + 12 bytes after the header).
COLOUR_MAP_VERSION = 3
#: The version written for files with a grid of colour maps (version 2 + grid byte + 12 bytes per node).
COLOUR_GRID_VERSION = 4
#: The version written for a colour map or grid whose parameters are all even: coded compactly
#: (when that is shorter than version 3/4, as it is for every map the encoder fits).
COMPACT_MAP_VERSION = 5
#: Versions :func:`unpack` reads (2 and 5 are written by the codec; 3 and 4 for maps with odd codes).
READ_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Set in the version byte (over versions 2..5) when the CRC starts from the decoder's weights tag
#: (``Header.weights_tag``, :func:`labkit.checkpoint.decoder_tag`): what labkit writes since 2026-11-28.
WEIGHTS_FLAG = 0x80
#: The weights tag of each model's shipped weights (``labkit/weights/<name>``), so that a file written
#: with them is checked without loading them (``labkit info``); a test recomputes every one.  A name's
#: shipped weights never change (see ``MODEL_IDS``), so neither does its tag.
SHIPPED_WEIGHTS_TAGS: dict[str, int] = {
    "ae1": 0xBA9CC28B, "ae2": 0xA3A5C02B, "resae": 0xB313C13C, "resae-rd": 0x33276DCC,
    "resae-rd-fast-v1": 0x32145DE3, "resae-rd-fast-v2": 0xCAB5EBB2, "resae-rd-fast": 0xD1F1EF73,
}
#: Exp-Golomb order of the compact colour-map coding (version 5).
MAP_GOLOMB_ORDER = 2
#: Largest ``|code / 2|`` of a compact colour map (the 8-bit code's reach, even values).
MAP_COMPACT_MAX = 63
#: Bytes of the colour map of a version-3 file, and of each node of a version-4 grid
#: (``labkit.colour.MAP_BYTES``, checked by a test).
COLOUR_MAP_BYTES = 12
#: Largest coder ``limit`` the 16-bit field holds; equals ``labkit.coder.MAX_LIMIT`` (tested).
MAX_LIMIT = 0xFFFF
MAX_INCREMENT = 0xFF
_BODY = struct.Struct("<2sBBBBHHBfBH")  # everything before the CRC
_CRC = struct.Struct("<I")
HEADER_SIZE = _BODY.size + _CRC.size  # 22 bytes

#: Model name <-> one-byte id stored in the header.  Append only: ids are forever, and an id
#: always means the same weights, so a file decodes to the same pixels forever.  When a name's
#: shipped weights are replaced, the name gets a new id and the old id keeps the old weights
#: under a ``-v1``-style name: id 7 was written as ``resae-rd-fast`` until 2026-11-27 and now
#: reads ``resae-rd-fast-v1`` (the same weights); id 8 was written as ``resae-rd-fast`` until
#: 2026-11-28 and now reads ``resae-rd-fast-v2``; ``resae-rd-fast`` writes id 9.
MODEL_IDS: dict[str, int] = {"ae1": 1, "ae2": 2, "resae": 3, "resae-ps": 4, "resae-wide": 5,
                             "resae-rd": 6, "resae-rd-fast-v1": 7, "resae-rd-fast-v2": 8, "resae-rd-fast": 9}

#: Context mode <-> id; mirrors ``labkit.coder.CONTEXT_MODES`` (checked by a test).
CONTEXT_IDS: dict[str, int] = {"none": 0, "channel": 1, "neighbor": 2, "neighbor+channel": 3, "learned": 4}


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
    #: Colour map code (``labkit.colour``) the decoder applies after the network, or None:
    #: 12 bytes (one map) or a grid byte + 12 bytes per node (a grid).  Written compactly as
    #: version 5 when every parameter is even, else as version 3 or 4; the ``version`` field need
    #: not say so.
    colour_map: bytes | None = None
    #: Fingerprint of the decoder's weights (:func:`labkit.checkpoint.decoder_tag`) the CRC starts
    #: from, flagged in the version byte (:data:`WEIGHTS_FLAG`); None: a file from before 2026-11-28
    #: (its CRC covers the bytes only).  :func:`unpack` returns the tag it checked the CRC with.
    weights_tag: int | None = None

    @property
    def colour_grid(self) -> tuple[int, int] | None:
        """``(gh, gw)`` nodes of the colour map (``(1, 1)``: one map), or None without one."""
        if self.colour_map is None:
            return None
        return (1, 1) if len(self.colour_map) == COLOUR_MAP_BYTES else _grid_of(self.colour_map[0])

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
    """Raise :class:`BitstreamError` unless every field is one :func:`pack` can write.

    Coder parameters are checked against the coder's own bounds
    (``1 <= increment <= 255``, ``2**b + increment <= limit <= 65535``), so a bad
    header never reaches the coder.
    """
    _check(h.version in READ_VERSIONS,
           f"unsupported format version {h.version}; this labkit reads versions "
           f"{', '.join(map(str, READ_VERSIONS))}")
    _check_colour_map(h)
    _check(h.weights_tag is None or (_is_int(h.weights_tag) and 0 <= h.weights_tag <= 0xFFFFFFFF),
           f"weights tag {h.weights_tag!r} must be None or a 32-bit unsigned integer")
    _check(h.weights_tag is None or h.version >= 2, "a version-1 file carries no weights tag")
    _check(h.model in MODEL_IDS, f"unknown model {h.model!r}; known models: {', '.join(MODEL_IDS)}")
    try:
        b = spec.check_bits(h.b)
    except ValueError as err:
        raise BitstreamError(str(err)) from None
    _check(h.context in CONTEXT_IDS, f"unknown context mode {h.context!r}; valid: {', '.join(CONTEXT_IDS)}")
    _check(_is_int(h.height) and _is_int(h.width) and 1 <= h.height <= 0xFFFF and 1 <= h.width <= 0xFFFF,
           f"image size {h.height!r}x{h.width!r} outside 1..65535 pixels per side")
    _check(_is_int(h.latent_channels) and 1 <= h.latent_channels <= 255,
           f"latent channels {h.latent_channels!r} outside 1..255")
    k = int(round(math.log2(h.downsample))) if _is_int(h.downsample) and h.downsample > 0 else -1
    _check(0 <= k <= 15 and (1 << k) == h.downsample, f"downsample factor {h.downsample!r} must be a power of two up to 2**15")
    _check((type(h.ymax) is float or isinstance(h.ymax, numbers.Real)) and math.isfinite(h.ymax) and h.ymax > 0,
           f"ymax must be a finite positive number, got {h.ymax!r}")
    _check(_is_int(h.increment) and 1 <= h.increment <= MAX_INCREMENT,
           f"coder increment {h.increment!r} outside 1..{MAX_INCREMENT}")
    lo = (1 << b) + h.increment
    _check(_is_int(h.limit) and lo <= h.limit <= MAX_LIMIT,
           f"coder limit {h.limit!r} outside {lo}..{MAX_LIMIT} (it must be at least 2**b + increment = "
           f"{1 << b} + {h.increment} and fit 16 bits)")


def _grid_of(grid_byte: int) -> tuple[int, int]:
    return (grid_byte >> 4) + 1, (grid_byte & 0x0F) + 1


def _grid_size(grid: tuple[int, int]) -> int:
    """Bytes of a version-4 colour map: the grid byte and 12 per node."""
    return 1 + COLOUR_MAP_BYTES * grid[0] * grid[1]


def _check_colour_map(h: Header) -> None:
    cmap = h.colour_map
    if cmap is None:
        _check(h.version not in (COLOUR_MAP_VERSION, COLOUR_GRID_VERSION, COMPACT_MAP_VERSION),
               f"a version-{h.version} header must carry a colour map")
        return
    _check(isinstance(cmap, (bytes, bytearray)) and len(cmap) >= COLOUR_MAP_BYTES,
           f"colour map must be None, {COLOUR_MAP_BYTES} bytes or a grid of maps, got {cmap!r}")
    if len(cmap) == COLOUR_MAP_BYTES:
        return
    gh, gw = _grid_of(cmap[0])
    _check((gh, gw) != (1, 1), f"a grid of colour maps has more than one node (one map is {COLOUR_MAP_BYTES} bytes)")
    _check(len(cmap) == _grid_size((gh, gw)),
           f"a {gh}x{gw} grid of colour maps is {_grid_size((gh, gw))} bytes, got {len(cmap)}")
    _check(not _is_int(h.height) or not _is_int(h.width) or (gh <= h.height and gw <= h.width),
           f"a {gh}x{gw} grid of colour maps has more nodes than the {h.width}x{h.height} image has pixels "
           "per side")


def _is_int(v: object) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def written_version(h: Header) -> int:
    """The version :func:`pack` writes for ``h``: 2 without a colour map; with one, 5 (compact) when
    every parameter is even and that is shorter, else 4 for a grid and 3 for one map."""
    if h.colour_map is None:
        return FORMAT_VERSION
    if len(stored_colour_map(h.colour_map)) < len(h.colour_map):
        return COMPACT_MAP_VERSION
    return COLOUR_MAP_VERSION if len(h.colour_map) == COLOUR_MAP_BYTES else COLOUR_GRID_VERSION


def stored_colour_map_bytes(h: Header) -> int:
    """Bytes the colour map of ``h`` takes in the file :func:`pack` writes (0 without one)."""
    if h.colour_map is None:
        return 0
    return len(stored_colour_map(h.colour_map))


def stored_colour_map(cmap: bytes) -> bytes:
    """The colour map's bytes as stored: the compact coding when it applies and is shorter."""
    compact = compact_colour_map(cmap)
    return compact if compact is not None and len(compact) < len(cmap) else bytes(cmap)


def _map_nodes(cmap: bytes) -> tuple[tuple[int, int], list[list[int]]]:
    """``((gh, gw), nodes)`` of a version-3/4 code, each node its 12 signed parameters."""
    cmap = bytes(cmap)
    grid, body = ((1, 1), cmap) if len(cmap) == COLOUR_MAP_BYTES else (_grid_of(cmap[0]), cmap[1:])
    signed = [v - 256 if v > 127 else v for v in body]
    return grid, [signed[i:i + COLOUR_MAP_BYTES] for i in range(0, len(signed), COLOUR_MAP_BYTES)]


def _predict(nodes: list[list[int]], gw: int, n: int, p: int) -> int:
    """The prediction of parameter ``p`` of node ``n`` (row-major, ``gw`` per row) from coded nodes."""
    i, j = divmod(n, gw)
    if n == 0:
        return 0
    if i == 0:
        return nodes[n - 1][p]
    if j == 0:
        return nodes[n - gw][p]
    return (nodes[n - 1][p] + nodes[n - gw][p]) // 2


def compact_colour_map(cmap: bytes) -> bytes | None:
    """The version-5 bytes of a version-3/4 colour map code, or None unless every parameter is even.

    The encoder (``labkit.colour``) quantizes every parameter to even codes, so its maps are
    always written this way; see the module docstring for the coding.
    """
    grid, nodes = _map_nodes(cmap)
    if any(v % 2 or abs(v) > 2 * MAP_COMPACT_MAX for node in nodes for v in node):
        return None
    halves = [[v // 2 for v in node] for node in nodes]
    k, bits = MAP_GOLOMB_ORDER, []
    for n, node in enumerate(halves):
        for p, v in enumerate(node):
            r = v - _predict(halves, grid[1], n, p)
            u = (2 * r if r >= 0 else -2 * r - 1) + (1 << k)
            width = u.bit_length()
            bits.append("0" * (width - 1 - k) + format(u, "b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return bytes([(grid[0] - 1) << 4 | (grid[1] - 1)]) + int(stream or "0", 2).to_bytes(len(stream) // 8, "big")


def _expand_colour_map(data: bytes, start: int) -> tuple[bytes, int]:
    """Parse the version-5 colour map at ``data[start:]``: ``(version-3/4 code, end offset)``.

    Every read is bounded by the data; a code longer than the parameters' reach, a value out of
    it, or padding bits that are not zero raise :class:`BitstreamError`.
    """
    if len(data) <= start:
        raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, a version-5 file needs its colour map's "
                             f"grid byte after the {HEADER_SIZE}-byte header")
    gh, gw = _grid_of(data[start])
    k, pos, limit = MAP_GOLOMB_ORDER, (start + 1) * 8, len(data) * 8
    longest = (4 * MAP_COMPACT_MAX + (1 << k)).bit_length() - 1 - k  # the most leading zeros a code can have

    def bit() -> int:
        nonlocal pos
        if pos >= limit:
            raise BitstreamError("truncated .lkc file: its compact colour map runs past the end; re-encode the "
                                 "source image")
        value = (data[pos >> 3] >> (7 - (pos & 7))) & 1
        pos += 1
        return value

    halves: list[list[int]] = []
    for n in range(gh * gw):
        node: list[int] = []
        halves.append(node)
        for p in range(COLOUR_MAP_BYTES):
            zeros = 0
            while bit() == 0:
                zeros += 1
                if zeros > longest:
                    raise BitstreamError("corrupt .lkc file: a compact colour map code is longer than any "
                                         "parameter needs; re-encode the source image")
            u = 1
            for _ in range(zeros + k):
                u = (u << 1) | bit()
            u -= 1 << k
            r = u // 2 if u % 2 == 0 else -(u + 1) // 2
            v = _predict(halves, gw, n, p) + r
            if abs(v) > MAP_COMPACT_MAX:
                raise BitstreamError(f"corrupt .lkc file: a compact colour map parameter ({v}) is outside "
                                     f"-{MAP_COMPACT_MAX}..{MAP_COMPACT_MAX}; re-encode the source image")
            node.append(v)
    while pos & 7:
        if bit():
            raise BitstreamError("corrupt .lkc file: the compact colour map's padding bits are not zero; "
                                 "re-encode the source image")
    body = bytes((2 * v) & 0xFF for node in halves for v in node)
    code = body if (gh, gw) == (1, 1) else bytes([data[start]]) + body
    return code, pos >> 3


def _body(h: Header, payload_size: int) -> bytes:
    validate_header(h)
    version = written_version(h)
    _check(h.version in (FORMAT_VERSION, version),
           f"labkit writes format version {version} for this header, not {h.version}; leave Header.version "
           "at its default")
    nib = ((h.b - 1) << 4) | CONTEXT_IDS[h.context]
    k = (h.downsample.bit_length() - 1) | ((payload_size & 0x0F) << 4)
    flag = WEIGHTS_FLAG if h.weights_tag is not None else 0
    return _BODY.pack(MAGIC, version | flag, MODEL_IDS[h.model], nib, k, h.height, h.width,
                      h.latent_channels, h.ymax, h.increment, h.limit)


def _crc(body: bytes, stored_map: bytes, payload: bytes, weights_tag: int | None) -> int:
    """The file's CRC-32: of the fixed header, the map as stored and the payload, started from the weights tag."""
    return zlib.crc32(payload, zlib.crc32(stored_map, zlib.crc32(body, weights_tag or 0)))


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise ``header`` (with its colour map, if any) and ``payload`` into one ``.lkc`` byte string.

    With ``header.weights_tag`` set (what the codec writes) the version byte carries
    :data:`WEIGHTS_FLAG` and the CRC starts from the tag, which costs no byte.
    """
    body = _body(header, len(payload))
    extra = stored_colour_map(header.colour_map) if header.colour_map is not None else b""
    return body + _CRC.pack(_crc(body, extra, payload, header.weights_tag)) + extra + bytes(payload)


class ChecksumError(BitstreamError):
    """The file's CRC does not match its bytes: it was cut, extended or changed after it was written."""


def _crc_message(version: int, size_tag: int, payload_size: int, weights: str | None = None) -> str:
    """Why the CRC failed, as far as the header's payload-length nibble can tell (version 2 and later).

    ``weights``: for a file whose CRC covers the decoder's weights, whose weights it was checked
    against (another cause the message must name), else None.
    """
    if version >= 2 and size_tag != payload_size & 0x0F:
        return (f"truncated or extended .lkc file: the header records a payload of {size_tag} bytes modulo 16 but "
                f"the file carries {payload_size} ({payload_size & 0x0F} modulo 16), and the CRC does not match; "
                "copy the file again or re-encode the source image")
    if weights is not None:
        return (f"CRC mismatch: bytes of the .lkc file were changed (or it was cut by a multiple of 16 bytes), or it "
                f"was written with other weights than {weights}; decode it with the weights that wrote it (labkit "
                "decode --weights DIR, labkit.codec.decode(data, weights_dir=DIR)), or copy the file again")
    return ("CRC mismatch: bytes of the .lkc file were changed (or it was cut by a multiple of 16 bytes); "
            "copy the file again or re-encode the source image")


def unpack(data: bytes, *, verify: bool = True, weights_tag: int | None = None) -> tuple[Header, bytes]:
    """Parse and validate a ``.lkc`` byte string into ``(header, payload)``.

    Raises :class:`BitstreamError` for wrong magic, unknown version, truncation,
    CRC mismatch (:class:`ChecksumError`, which says whether the length changed) or fields
    that are out of range.  ``verify=False`` skips only the CRC, for ``labkit info`` to show
    a damaged file's header; nothing may be decoded from such a parse.

    A file whose CRC covers its decoder's weights (:data:`WEIGHTS_FLAG`) is checked against
    ``weights_tag``, the tag of the weights that will decode it (``labkit.codec`` passes its
    own), or by default against the shipped weights of the model it names
    (:data:`SHIPPED_WEIGHTS_TAGS`): a file written with other weights is refused, not decoded
    to noise.
    """
    data = bytes(data)
    if not data:
        raise BitstreamError("empty file (0 bytes), not a labkit .lkc file; pass a file written by `labkit encode`")
    if len(data) < 3 and MAGIC.startswith(data):
        raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    if len(data) < 3 or data[:2] != MAGIC:
        raise BitstreamError("not a labkit .lkc file (wrong magic bytes); pass a file written by `labkit encode`")
    flagged = bool(data[2] & WEIGHTS_FLAG)
    layout = data[2] & ~WEIGHTS_FLAG
    if layout not in READ_VERSIONS or (flagged and layout < 2):
        raise BitstreamError(f"unsupported .lkc format version {data[2]}; this labkit reads versions "
                             f"{', '.join(map(str, READ_VERSIONS))}, and 2..5 with their CRC over the weights "
                             f"(+{WEIGHTS_FLAG}) (upgrade labkit or re-encode)")
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    start, expanded = HEADER_SIZE, None
    if layout == COMPACT_MAP_VERSION:
        expanded, start = _expand_colour_map(data, HEADER_SIZE)
    elif layout == COLOUR_MAP_VERSION:
        start += COLOUR_MAP_BYTES
    elif layout == COLOUR_GRID_VERSION:
        if len(data) == HEADER_SIZE:
            raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, a version-4 file needs its grid byte "
                                 f"after the {HEADER_SIZE}-byte header")
        grid = _grid_of(data[HEADER_SIZE])
        if grid == (1, 1):
            raise BitstreamError("corrupt .lkc file: a version-4 grid of colour maps says 1x1 nodes; re-encode "
                                 "the source image")
        start += _grid_size(grid)
    if len(data) < start:
        raise BitstreamError(f"truncated .lkc file: {len(data)} bytes, a version-{layout} header and its colour "
                             f"map need {start}")
    body, (crc,), payload = data[:_BODY.size], _CRC.unpack_from(data, _BODY.size), data[start:]
    stored_map = data[HEADER_SIZE:start] if start > HEADER_SIZE else None
    tag, against, named = None, None, None
    if flagged:  # the tag to check depends on the model named; unflagged files check the CRC before any field
        named = _name_for(MODEL_IDS, data[3], "model", "the file was written by a newer labkit")
        tag = weights_tag if weights_tag is not None else SHIPPED_WEIGHTS_TAGS.get(named)
        against = "these weights" if weights_tag is not None else f"the shipped {named!r} weights"
        if verify and tag is None and named not in spec.MODEL_NAMES:   # an id kept for a retired experiment
            raise BitstreamError(f"this file was written by model {named!r}, an experiment this version of labkit "
                                 "no longer builds (its id stays reserved); decode it with the labkit version that "
                                 "wrote it")
        if verify and tag is None:
            raise BitstreamError(f"this file's CRC covers the weights that decode it, and model {named!r} ships none "
                                "here; decode it with the weights that wrote it (labkit decode --weights DIR)")
    if verify and _crc(body, stored_map or b"", payload, tag) != crc:
        raise ChecksumError(_crc_message(layout, data[5] >> 4, len(payload), against))
    _, _, model_id, nib, k, height, width, channels, ymax, inc, limit = _BODY.unpack(body)
    version = layout
    model = named or _name_for(MODEL_IDS, model_id, "model", "the file was written by a newer labkit")
    context = _name_for(CONTEXT_IDS, nib & 0x0F, "context mode", "the file was written by a newer labkit")
    k, size_tag = k & 0x0F, k >> 4
    expected_tag = len(payload) & 0x0F if version >= 2 else 0
    _check(version >= 2 or size_tag == 0,
           f"corrupt .lkc header: log2 downsample {k | size_tag << 4} > 15; re-encode the source image")
    if verify and size_tag != expected_tag:
        raise BitstreamError(
            f"corrupt .lkc file: the header records a payload of {size_tag} bytes modulo 16, but the file "
            f"carries {len(payload)} ({expected_tag} modulo 16): it was cut or extended (and its CRC "
            f"recomputed); re-encode the source image")
    colour_map = expanded if expanded is not None else stored_map
    header = Header(model=model, b=(nib >> 4) + 1, height=height, width=width, latent_channels=channels,
                    downsample=1 << k, ymax=float(ymax), context=context, increment=inc, limit=limit,
                    version=version, colour_map=colour_map, weights_tag=tag)
    try:
        validate_header(header)
    except BitstreamError as err:
        raise BitstreamError(f"corrupt .lkc header: {err}; re-encode the source image") from None
    return header, payload


def decode_symbols(header: Header, payload: bytes, prior: "np.ndarray | None" = None) -> "np.ndarray":
    """Decode the payload of a parsed file into its ``header.latent_shape`` uint8 symbols.

    The coder settings come from the header.  A version-2 payload must end exactly
    where its coded symbols end (a payload cut short or extended, even with the CRC
    recomputed, is caught with probability about 99.8 %, measured); a version-1
    payload must not be longer than its coded data.

    Parameters
    ----------
    header : Header
        From :func:`unpack` (already validated).
    payload : bytes
        The bytes after the header.
    prior : numpy.ndarray, optional
        The coder prior table of the file's model at its b, for the ``"learned"`` context
        (``labkit.coder_prior``; the container does not hold it, the model's weights do).

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``header.latent_shape``.

    Raises
    ------
    BitstreamError
        When the payload does not fit the header, or the latent is larger than the
        coder's cap (checked before anything is allocated).
    """
    from . import coder  # the compiled coder: imported only when decoding

    if header.num_symbols > coder.MAX_SYMBOLS:
        raise BitstreamError(
            f"corrupt or crafted header: a latent of {header.latent_shape} = {header.num_symbols} symbols "
            f"exceeds the coder's cap of {coder.MAX_SYMBOLS}; re-encode the source image")
    termination = "exact" if header.version >= 2 else "trimmed"
    try:
        return coder.decode(payload, header.latent_shape, 1 << header.b, header.context,
                            increment=header.increment, limit=header.limit, termination=termination, prior=prior)
    except coder.PayloadError as err:
        raise BitstreamError(f"corrupt .lkc payload (CRC matched, so it was rewritten): {err}") from None
    except ValueError as err:  # a prior that does not fit what the header says
        raise BitstreamError(f"the file's coder settings do not fit the prior given: {err}") from None
