"""The .lkc container: round trip, size, and a clear error for every kind of damage."""
from __future__ import annotations

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
    model=st.sampled_from(sorted(bitstream.MODEL_IDS)),
    b=st.integers(1, 8),
    hw=st.tuples(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)),
    c=st.integers(1, 255),
    k=st.integers(0, 15),
    ymax=st.floats(2.0**-100, 2.0**100, allow_nan=False, width=32),
    context=st.sampled_from(sorted(bitstream.CONTEXT_IDS)),
    inc=st.integers(1, 255),
    limit=st.integers(1, 0xFFFF),
    payload=st.binary(max_size=64),
)
def test_round_trip_any_valid_header(model, b, hw, c, k, ymax, context, inc, limit, payload):
    h = Header(model=model, b=b, height=hw[0], width=hw[1], latent_channels=c, downsample=1 << k,
               ymax=ymax, context=context, increment=inc, limit=limit)
    assert unpack(pack(h, payload)) == (h, payload)


@pytest.mark.parametrize("field,value,needle", [
    ("model", "vgg", "unknown model"),
    ("b", 0, "b must be"),
    ("b", 9, "b must be"),
    ("context", "diagonal", "unknown context"),
    ("height", 0, "image size"),
    ("width", 70000, "image size"),
    ("latent_channels", 0, "latent channels"),
    ("downsample", 6, "power of two"),
    ("ymax", 0.0, "ymax"),
    ("ymax", float("nan"), "ymax"),
    ("increment", 0, "increment"),
    ("limit", 1 << 16, "limit"),
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
    data[2] = 9
    with pytest.raises(BitstreamError, match="version 9"):
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


@pytest.mark.parametrize("fields,needle", [
    ((b"LK", 1, 99, 0x12, 3, 128, 128, 16, 1.0, 24, 4096), "unknown model id 99"),
    ((b"LK", 1, 3, 0x1F, 3, 128, 128, 16, 1.0, 24, 4096), "unknown context mode id 15"),
    ((b"LK", 1, 3, 0x12, 3, 0, 128, 16, 1.0, 24, 4096), "image size"),
    ((b"LK", 1, 3, 0x12, 3, 128, 128, 0, 1.0, 24, 4096), "latent channels"),
    ((b"LK", 1, 3, 0x12, 3, 128, 128, 16, -1.0, 24, 4096), "ymax"),
    ((b"LK", 1, 3, 0x12, 3, 128, 128, 16, float("inf"), 24, 4096), "ymax"),
    ((b"LK", 1, 3, 0x12, 3, 128, 128, 16, 1.0, 0, 4096), "increment"),
    ((b"LK", 1, 3, 0x12, 20, 128, 128, 16, 1.0, 24, 4096), "downsample"),
])
def test_inconsistent_fields_with_valid_crc(fields, needle):
    with pytest.raises(BitstreamError, match=needle):
        unpack(_forge(fields))


@settings(max_examples=500, derandomize=True)
@given(st.binary(max_size=80))
def test_random_bytes_never_crash(data):
    try:
        unpack(data)
    except BitstreamError as err:
        assert str(err)


def test_bitstream_error_is_value_error():
    assert issubclass(BitstreamError, ValueError)
