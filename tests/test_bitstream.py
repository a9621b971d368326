"""The .lkc container: round trip, size, and a clear error for every kind of damage."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import bitstream
from labkit.bitstream import HEADER_SIZE, BitstreamError, Header, pack, unpack


def make_header(**kw) -> Header:
    base = dict(model="resae", b=2, height=128, width=128, latent_channels=16, downsample=8,
                ymax=np.float32(3.25).item(), context="neighbor", increment=24, limit=4096)
    base.update(kw)
    return Header(**base)


def test_header_is_small_and_documented_size():
    assert HEADER_SIZE == 22
    assert len(pack(make_header(), b"")) == HEADER_SIZE


def test_round_trip_exact():
    h = make_header()
    payload = bytes(range(256)) * 3
    h2, p2 = unpack(pack(h, payload))
    assert h2 == h and p2 == payload


def test_latent_shape_is_derived_with_ceil():
    h = make_header(height=127, width=129)
    assert h.latent_shape == (16, 16, 17)
    assert h.num_symbols == 16 * 16 * 17


@settings(max_examples=300, derandomize=True)
@given(
    data=st.data(),
    model=st.sampled_from(sorted(bitstream.MODEL_IDS)),
    b=st.integers(1, 8),
    hw=st.tuples(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)),
    c=st.integers(1, 255),
    k=st.integers(0, 15),
    ymax=st.floats(2.0**-100, 2.0**100, allow_nan=False, width=32),
    context=st.sampled_from(sorted(bitstream.CONTEXT_IDS)),
    inc=st.integers(1, 255),
    payload=st.binary(max_size=64),
)
def test_round_trip_any_valid_header(data, model, b, hw, c, k, ymax, context, inc, payload):
    limit = data.draw(st.integers((1 << b) + inc, 0xFFFF))
    h = Header(model=model, b=b, height=hw[0], width=hw[1], latent_channels=c, downsample=1 << k,
               ymax=ymax, context=context, increment=inc, limit=limit)
    assert unpack(pack(h, payload)) == (h, payload)


def test_ranges_match_the_coder_and_spec():
    from labkit import coder, spec

    assert bitstream.MAX_LIMIT == coder.MAX_LIMIT
    assert bitstream.CONTEXT_IDS == {m: coder.context_id(m) for m in coder.CONTEXT_MODES}
    for b in spec.BITS:  # the extremes of every coder parameter round-trip ...
        for inc, limit in ((1, (1 << b) + 1), (255, (1 << b) + 255), (255, 0xFFFF)):
            h = make_header(b=b, increment=inc, limit=limit)
            assert unpack(pack(h, b""))[0] == h
            coder.encode(np.zeros(3, np.uint8), 1 << b, increment=inc, limit=limit)  # ... and the coder takes them
        with pytest.raises(BitstreamError, match=rf"coder limit {(1 << b) + 23} outside {(1 << b) + 24}\.\.65535"):
            pack(make_header(b=b, increment=24, limit=(1 << b) + 23), b"")


def test_model_ids_are_append_only():
    assert bitstream.MODEL_IDS == {"ae1": 1, "ae2": 2, "resae": 3, "resae-ps": 4, "resae-wide": 5, "resae-rd": 6,
                                   "resae-rd-fast-v1": 7, "resae-rd-fast-v2": 8, "resae-rd-fast": 9}


@pytest.mark.parametrize("field,value,needle", [
    ("model", "vgg", "unknown model"),
    ("b", 0, "bit depth b must be"),
    ("b", 9, "bit depth b must be"),
    ("context", "diagonal", "unknown context"),
    ("height", 0, "image size"),
    ("width", 70000, "image size"),
    ("latent_channels", 0, "latent channels"),
    ("downsample", 6, "power of two"),
    ("ymax", 0.0, "ymax"),
    ("ymax", float("nan"), "ymax"),
    ("increment", 0, "increment"),
    ("increment", 256, "increment"),
    ("limit", 1 << 16, "limit"),
    ("limit", 27, r"coder limit 27 outside 28\.\.65535 \(it must be at least 2\*\*b \+ increment = 4 \+ 24"),
    ("b", True, "bit depth b must be"),
    ("b", 2.0, "bit depth b must be"),
    ("height", 1.5, "image size"),
    ("ymax", "3", "ymax"),
    ("version", 1, "writes format version 2 for this header, not 1"),
    ("version", 3, "version-3 header must carry a colour map"),
    ("version", 4, "version-4 header must carry a colour map"),
    ("version", 5, "version-5 header must carry a colour map"),
    ("version", 6, "unsupported format version 6"),
    ("colour_map", b"\x00" * 11, "colour map must be None, 12 bytes or a grid"),
    ("colour_map", "x" * 12, "colour map must be None, 12 bytes or a grid"),
    ("colour_map", b"\x00" * 13, "more than one node"),
    ("colour_map", b"\x11" + b"\x00" * 47, "2x2 grid of colour maps is 49 bytes, got 48"),
])
def test_pack_rejects_bad_fields(field, value, needle):
    with pytest.raises(BitstreamError, match=needle):
        pack(make_header(**{field: value}), b"")


def test_wrong_magic():
    data = bytearray(pack(make_header(), b"abc"))
    data[0:2] = b"PK"
    with pytest.raises(BitstreamError, match="magic"):
        unpack(bytes(data))


def test_unknown_version():
    data = bytearray(pack(make_header(), b"abc"))
    for v in (0, 6, 9, 255):
        data[2] = v
        with pytest.raises(BitstreamError, match=f"version {v}; this labkit reads versions 1, 2, 3, 4, 5"):
            unpack(bytes(data))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, HEADER_SIZE - 1])
def test_truncated_header(n):
    data = pack(make_header(), b"payload")[:n]
    with pytest.raises(BitstreamError):
        unpack(data)


def test_truncated_payload_is_caught_by_crc():
    data = pack(make_header(), b"0123456789")
    for n in range(HEADER_SIZE, len(data)):
        with pytest.raises(BitstreamError, match="CRC"):
            unpack(data[:n])


def test_every_single_bit_flip_is_caught():
    data = pack(make_header(), b"\x00\xffpayload")
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            unpack(bytes(flipped))


def _forge(body_fields: tuple) -> bytes:
    """A container with a valid CRC but arbitrary header fields (what a buggy writer might emit)."""
    body = bitstream._BODY.pack(*body_fields)
    return body + struct.pack("<I", zlib.crc32(b"", zlib.crc32(body)))


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("fields,needle", [
    ((99, 0x12, 3, 128, 128, 16, 1.0, 24, 4096), "unknown model id 99"),
    ((3, 0x1F, 3, 128, 128, 16, 1.0, 24, 4096), "unknown context mode id 15"),
    ((3, 0x12, 3, 0, 128, 16, 1.0, 24, 4096), "image size"),
    ((3, 0x12, 3, 128, 128, 0, 1.0, 24, 4096), "latent channels"),
    ((3, 0x12, 3, 128, 128, 16, -1.0, 24, 4096), "ymax"),
    ((3, 0x12, 3, 128, 128, 16, float("inf"), 24, 4096), "ymax"),
    ((3, 0x12, 3, 128, 128, 16, float("nan"), 24, 4096), "ymax"),
    ((3, 0x12, 3, 128, 128, 16, 1.0, 0, 4096), "increment"),
    ((3, 0x12, 0x13, 128, 128, 16, 1.0, 24, 4096), "records a payload of 1 bytes modulo 16, but the file carries 0|log2 downsample 19 > 15"),
    ((3, 0x12, 0xF3, 128, 128, 16, 1.0, 24, 4096), "cut or extended|log2 downsample 243"),
    ((3, 0x82, 3, 128, 128, 16, 1.0, 24, 4096), r"bit depth b must be an integer in 1\.\.8, got 9"),
    ((3, 0xF2, 3, 128, 128, 16, 1.0, 24, 4096), "got 16"),
    ((3, 0x12, 3, 128, 128, 16, 1.0, 24, 27), r"coder limit 27 outside 28\.\.65535"),
    ((3, 0x72, 3, 128, 128, 16, 1.0, 1, 256), r"coder limit 256 outside 257\.\.65535"),
    ((3, 0x12, 3, 128, 128, 16, 1.0, 24, 0), "coder limit 0"),
])
def test_inconsistent_fields_with_valid_crc(version, fields, needle):
    with pytest.raises(BitstreamError, match=needle) as info:
        unpack(_forge((b"LK", version, *fields)))
    msg = str(info.value)  # what is wrong, and what to do
    assert msg.endswith("written by a newer labkit") or (
        msg.startswith("corrupt .lkc ") and msg.endswith("re-encode the source image"))


@settings(max_examples=500, derandomize=True)
@given(st.binary(max_size=80))
def test_random_bytes_never_crash(data):
    try:
        unpack(data)
    except BitstreamError as err:
        assert str(err)


def test_bitstream_error_is_value_error():
    assert issubclass(BitstreamError, ValueError)


# ----------------------------------------------------------------- payload decoding
def _recrc(data: bytes) -> bytes:
    """``data`` with its CRC recomputed (what a crafted or rewritten file has)."""
    body, payload = data[:bitstream._BODY.size], data[HEADER_SIZE:]
    return body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload


def _coded(shape=(16, 16, 16), b=2, context="neighbor", seed=0, **kw):
    from labkit import coder

    rng = np.random.default_rng(seed)
    x = np.minimum(rng.geometric(0.6, size=shape) - 1, (1 << b) - 1).astype(np.uint8)
    h = make_header(b=b, context=context, height=shape[1] * 8, width=shape[2] * 8,
                    latent_channels=shape[0], downsample=8, **kw)
    inc, limit = h.increment, h.limit
    return x, h, pack(h, coder.encode(x, 1 << b, context, increment=inc, limit=limit, prior=_prior(h)))


def _prior(h):
    """A coder prior for the "learned" context (a model ships the real one), else None."""
    from labkit import coder

    if h.context not in coder.PRIOR_MODES:
        return None
    table = np.ones(coder.prior_shape(h.latent_channels, 1 << h.b), np.uint16)
    table[..., 0] += 50
    return table


def test_decode_symbols_round_trip():
    for b in (1, 2, 5, 8):
        for context in bitstream.CONTEXT_IDS:
            x, h, data = _coded(b=b, context=context, shape=(3, 5, 7), increment=8, limit=1024)
            np.testing.assert_array_equal(bitstream.decode_symbols(*unpack(data), prior=_prior(h)), x)


def test_learned_context_without_or_with_a_wrong_prior_is_a_clear_error():
    x, h, data = _coded(b=3, context="learned", shape=(3, 5, 7))
    header, payload = unpack(data)
    with pytest.raises(BitstreamError, match="needs the prior table"):
        bitstream.decode_symbols(header, payload)
    with pytest.raises(BitstreamError, match="shape"):
        bitstream.decode_symbols(header, payload, prior=np.ones((4, 16, 8), np.uint16))


def test_cut_or_extended_payload_with_recomputed_crc_is_rejected():
    # Length changes that are not a multiple of 16 are caught by unpack (the size
    # nibble), always.  The others reach the decoder's end check, which is
    # probabilistic: over 200 seeds of this construction none of 600 cuts/extensions
    # by 16 bytes slipped; cuts by 1 byte, had they reached it, slip 3 of 200 times.
    for seed in range(4):
        x, h, data = _coded(seed=seed)
        for k in (1, 2, 3, 10, 17):
            for v in (data[:-k], data + bytes(range(1, k + 1))):
                with pytest.raises(BitstreamError, match="cut or extended"):
                    unpack(_recrc(v))
        for v in (data[:-16], data + b"\0" * 16, data + bytes(range(7, 23))):
            header, payload = unpack(_recrc(v))  # the container itself is fine
            with pytest.raises(BitstreamError, match="corrupt .lkc payload.*re-encode"):
                bitstream.decode_symbols(header, payload)
    x, h, data = _coded(seed=0)
    np.testing.assert_array_equal(bitstream.decode_symbols(*unpack(data)), x)


def test_version1_file_still_decodes():
    # A version-1 file as labkit wrote it before format version 2: the same header
    # layout, and the version-1 coder's payload (kept in tests/golden/coder.json).
    import json
    from pathlib import Path

    golden = json.loads((Path(__file__).parent / "golden" / "coder.json").read_text())
    payload = bytes.fromhex(golden["v1_payloads"]["A4-neighbor"])
    rng = np.random.default_rng(12345)  # the symbols of that golden case (tests/test_coder.py)
    x = np.minimum(rng.geometric(0.5, size=(4, 8, 8)) - 1, 3).astype(np.uint8)
    body = bitstream._BODY.pack(b"LK", 1, 3, 0x12, 0, 8, 8, 4, 1.5, 8, 1024)
    data = body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload
    header, p = unpack(data)
    assert header.version == 1 and header.latent_shape == (4, 8, 8)
    np.testing.assert_array_equal(bitstream.decode_symbols(header, p), x)
    with pytest.raises(BitstreamError, match="version-1"):  # extended: longer than its coded data
        bitstream.decode_symbols(*unpack(_recrc(data + b"\x05" * 8)))
    with pytest.raises(BitstreamError, match="writes format version 2 for this header, not 1"):
        pack(header, p)
    with pytest.raises(BitstreamError, match="log2 downsample 16 > 15"):  # version 1 has no size nibble
        unpack(_recrc(data[:5] + b"\x10" + data[6:]))


def test_huge_latent_is_refused_before_allocating():
    from labkit import coder

    h = make_header(height=0xFFFF, width=0xFFFF, downsample=1, latent_channels=255)
    assert h.num_symbols > coder.MAX_SYMBOLS
    with pytest.raises(BitstreamError, match="exceeds the coder's cap"):
        bitstream.decode_symbols(h, b"")


# ----------------------------------------------------------------------------- version 3: colour map

MAP = bytes([1, 255, 0, 7, 128, 127, 0, 0, 3, 250, 9, 0])
GRID = bytes([0x12]) + bytes(range(0, 2 * 3 * 12 * 3, 3))  # 2 x 3 nodes, 12 bytes each (version 4)


def test_colour_map_round_trip_writes_version_3():
    from labkit import colour

    assert bitstream.COLOUR_MAP_BYTES == colour.MAP_BYTES
    plain = pack(make_header(), b"payload")
    data = pack(make_header(colour_map=MAP), b"payload")
    assert plain[2] == 2 and data[2] == 3
    assert len(data) == len(plain) + 12 and data[HEADER_SIZE:HEADER_SIZE + 12] == MAP
    header, payload = unpack(data)
    assert header.colour_map == MAP and header.version == 3 and payload == b"payload"
    assert pack(header, payload) == data  # a parsed version-3 header writes the same bytes
    assert unpack(plain)[0].colour_map is None


@pytest.mark.parametrize("cmap", ["map", "grid"])
def test_colour_map_is_covered_by_the_crc(cmap):
    data = pack(make_header(colour_map=MAP if cmap == "map" else GRID), b"\x00\xffpayload")
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            unpack(bytes(flipped))


@pytest.mark.parametrize("n", [HEADER_SIZE, HEADER_SIZE + 5, HEADER_SIZE + 11])
def test_version_3_cut_inside_the_map(n):
    data = pack(make_header(colour_map=MAP), b"payload")
    with pytest.raises(BitstreamError, match="truncated .lkc file: .* colour map need 34"):
        unpack(data[:n])


def test_version_2_file_relabelled_as_3_is_caught():
    data = bytearray(pack(make_header(), bytes(range(40))))
    data[2] = 3  # the first 12 payload bytes would be read as a map: the CRC disagrees
    with pytest.raises(BitstreamError, match="CRC"):
        unpack(bytes(data))


# ----------------------------------------------------------------------------- version 4: a grid of colour maps



def test_colour_grid_round_trip_writes_version_4():
    data = pack(make_header(colour_map=GRID), b"payload")
    assert data[2] == 4 and len(data) == HEADER_SIZE + 1 + 72 + len(b"payload")
    assert data[HEADER_SIZE:HEADER_SIZE + 73] == GRID
    header, payload = unpack(data)
    assert header.colour_map == GRID and header.colour_grid == (2, 3) and header.version == 4
    assert payload == b"payload" and pack(header, payload) == data
    assert unpack(pack(make_header(colour_map=MAP), b"p"))[0].colour_grid == (1, 1)
    assert unpack(pack(make_header(), b"p"))[0].colour_grid is None


@pytest.mark.parametrize("n", [HEADER_SIZE + 1, HEADER_SIZE + 40, HEADER_SIZE + 72])
def test_version_4_cut_inside_the_grid(n):
    data = pack(make_header(colour_map=GRID), b"payload")
    with pytest.raises(BitstreamError, match="truncated .lkc file: .* colour map need 95"):
        unpack(data[:n])


def test_version_4_without_its_grid_byte_or_with_a_1x1_grid_is_refused():
    data = pack(make_header(colour_map=GRID), b"payload")
    with pytest.raises(BitstreamError, match="grid byte"):
        unpack(data[:HEADER_SIZE])
    crafted = bytearray(data)
    crafted[HEADER_SIZE] = 0x00
    with pytest.raises(BitstreamError, match="says 1x1 nodes"):
        unpack(bytes(crafted))


def test_colour_grid_with_more_nodes_than_pixels_is_refused():
    grid = bytes([0xF0]) + bytes(16 * 12)  # 16 x 1 nodes
    with pytest.raises(BitstreamError, match="more nodes than the 128x8 image"):
        pack(make_header(height=8, width=128, colour_map=grid), b"p")
    assert unpack(pack(make_header(height=16, width=128, colour_map=grid), b"p"))[0].colour_grid == (16, 1)


# ----------------------------------------------------------------------------- compact colour maps (version 5)

def _grid_code(grid, values):
    body = np.asarray(values, np.int8).tobytes()
    return body if grid == (1, 1) else bytes([(grid[0] - 1) << 4 | (grid[1] - 1)]) + body


@pytest.mark.parametrize("grid", [(1, 1), (1, 5), (4, 1), (3, 4), (16, 16)])
def test_compact_colour_maps_round_trip_and_save_bytes(grid):
    rng = np.random.default_rng(sum(grid))
    n = grid[0] * grid[1]
    # smooth fields, as fitted maps are: a per-parameter level plus small node-to-node changes
    smooth = np.clip(rng.integers(-10, 11, 12) + np.cumsum(rng.integers(-1, 2, (n, 12)), axis=0), -63, 63) * 2
    for values in (smooth, np.full((n, 12), 126), np.full((n, 12), -126), np.zeros((n, 12))):
        code = _grid_code(grid, values)
        h = make_header(height=64, width=64, colour_map=code)
        data = pack(h, b"xyz")
        back, payload = unpack(data)
        assert back.colour_map == code and payload == b"xyz"
        stored = bitstream.stored_colour_map_bytes(h)
        assert len(data) == HEADER_SIZE + stored + 3
        # compact exactly when that is shorter; the extremes of a single map are not
        assert data[2] == bitstream.written_version(h) == (5 if stored < len(code) else 3 if grid == (1, 1) else 4)
    zero_or_smooth = [make_header(height=64, width=64, colour_map=_grid_code(grid, v)) for v in (np.zeros((n, 12)), smooth)]
    assert bitstream.stored_colour_map_bytes(zero_or_smooth[0]) <= 1 + -(-n * 12 * 3 // 8)  # 3 bits per unchanged value
    if n > 1:
        assert bitstream.stored_colour_map_bytes(zero_or_smooth[1]) < 0.6 * len(zero_or_smooth[1].colour_map)


def test_maps_with_odd_codes_or_no_saving_keep_versions_3_and_4():
    h = make_header(height=64, width=64, colour_map=bytes(range(1, 13)))  # odd codes: not compactable
    assert pack(h, b"a")[2] == 3 and bitstream.compact_colour_map(h.colour_map) is None
    noisy = np.random.default_rng(0).integers(-63, 64, (4, 12)) * 2  # even, but no smoother than noise
    h = make_header(height=64, width=64, colour_map=_grid_code((2, 2), noisy))
    assert len(bitstream.compact_colour_map(h.colour_map)) >= len(h.colour_map) and pack(h, b"a")[2] == 4
    assert unpack(pack(h, b"a"))[0].colour_map == h.colour_map


def test_corrupt_compact_maps_are_clear_errors():
    code = _grid_code((2, 2), np.arange(48).reshape(4, 12) % 7 * 2)
    data = bytearray(pack(make_header(height=64, width=64, colour_map=code), b"xyz"))
    assert data[2] == 5
    stored = bitstream.stored_colour_map_bytes(make_header(height=64, width=64, colour_map=code))
    for cut in (HEADER_SIZE, HEADER_SIZE + 1, HEADER_SIZE + stored - 1):
        with pytest.raises(BitstreamError, match="truncated|runs past the end|CRC"):
            unpack(bytes(data[:cut]))
    long_code = bytes(data[:HEADER_SIZE + 1]) + b"\x00" * 8  # leading zeros beyond any parameter's code
    with pytest.raises(BitstreamError, match="longer than any parameter needs"):
        unpack(long_code)
    for i in range(HEADER_SIZE, HEADER_SIZE + stored):  # every flipped bit of the map: a clear error, never a crash
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack(bytes(bad))


# ----------------------------------------------------------------------------- golden files of every version written

GOLDEN = Path(__file__).parent / "golden" / "bitstream.json"


def _golden_headers() -> dict[str, Header]:
    """One header per container version labkit writes (2; 3, 4 and 5 with colour maps), fixed values only."""
    smooth = (np.arange(48).reshape(4, 12) % 7 - 3) * 2          # even codes, smooth: stored compactly
    noisy = np.random.default_rng(0).integers(-63, 64, (4, 12)) * 2
    return {
        "v2": make_header(),
        "v3-one-map": make_header(model="resae-rd-fast", b=3, latent_channels=32, context="learned",
                                  colour_map=bytes(range(1, 13))),
        "v4-grid": make_header(model="resae-rd-fast", b=4, height=64, width=64, latent_channels=32,
                               context="learned", colour_map=_grid_code((2, 2), noisy)),
        "v5-one-map": make_header(model="resae-rd-fast", b=1, latent_channels=32, context="learned",
                                  colour_map=_grid_code((1, 1), smooth[0])),
        "v5-grid": make_header(model="resae-rd-fast", b=5, height=64, width=96, latent_channels=32,
                               context="learned", colour_map=_grid_code((2, 2), smooth)),
        # since 2026-11-28 the codec writes 2 and 5 with the CRC over the shipped weights' tag
        "w2": make_header(model="resae", b=2, latent_channels=16,
                          weights_tag=bitstream.SHIPPED_WEIGHTS_TAGS["resae"]),
        "w5-grid": make_header(model="resae-rd-fast", b=3, height=64, width=96, latent_channels=32,
                               context="learned", colour_map=_grid_code((2, 2), smooth),
                               weights_tag=bitstream.SHIPPED_WEIGHTS_TAGS["resae-rd-fast"]),
    }


def test_every_written_version_matches_its_golden_bytes():
    """Files of each version are pinned byte for byte, and the pinned bytes read back to their headers,
    so a writer and a reader changed together cannot break the files already written.
    Regenerate only on purpose: ``GENERATE_EXPECTED=1 pytest tests/test_bitstream.py -k golden``."""
    payload = bytes(range(7)) * 3
    got = {name: pack(h, payload).hex() for name, h in _golden_headers().items()}
    if os.environ.get("GENERATE_EXPECTED") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden file regenerated: this run would only be compared with itself")
    expected = json.loads(GOLDEN.read_text())
    assert sorted(expected) == sorted(got)
    for name, h in _golden_headers().items():
        data = bytes.fromhex(expected[name])
        flag = bitstream.WEIGHTS_FLAG if name.startswith("w") else 0
        assert data[2] == int(name[1]) | flag, f"{name} is stored as version {data[2]}"
        assert unpack(data) == (dataclasses.replace(h, version=data[2] & ~bitstream.WEIGHTS_FLAG), payload), \
            f"the stored {name} file no longer reads back to its header"
        assert got[name] == expected[name], f"{name}: the writer's bytes changed (old files still read: see above)"
