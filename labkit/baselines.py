"""Classic codecs through Pillow, measured on their real encoded bytes.

``CODECS`` names each codec with the Pillow settings used and its integer quality
range (higher = better quality, more bytes). Images come in as uint8 HxWx3 arrays and
are wrapped with ``Image.fromarray``, so no ICC profile, EXIF or timestamp is written:
the bytes are deterministic for a given Pillow build. Sizes are whole files, headers
and containers included (AVIF's HEIF boxes cost ~300 bytes, i.e. ~0.15 bpp on a
128x128 tile -- that is part of the real cost).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from labkit.metrics import psnr as _psnr
from labkit.metrics import ssim as _ssim
from labkit.spec import bits_per_pixel as _bpp

__all__ = ["Codec", "CODECS", "SWEEPS", "MATCHED_JPEG", "encode", "decode", "compress", "match_bpp", "sweep"]


@dataclass(frozen=True)
class Codec:
    """One Pillow codec configuration.

    ``quality_key`` is the Pillow save option the integer quality goes to;
    ``qualities`` every allowed value (searched by ``match_bpp``); ``sweep_qualities``
    the default RD sweep; ``cheap`` codecs are searched exhaustively by ``match_bpp``.
    """

    name: str
    pillow_format: str
    qualities: range
    sweep_qualities: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    quality_key: str = "quality"
    cheap: bool = False

    def save_kwargs(self, quality: int) -> dict[str, Any]:
        """Pillow ``save`` keyword arguments for one quality."""
        kw = dict(self.options)
        kw[self.quality_key] = [quality] if self.quality_key == "quality_layers" else quality
        return kw


#: The RD sweep of every codec, the one list the report, the profiles and the benchmarks use.
#: Each starts at the codec's lowest setting (JPEG q=1, WebP/AVIF q=0, JPEG 2000 at a 10 dB
#: target, where its files stop shrinking: ~0.09 bpp at 128x128) and ends far beyond the
#: learned models' range (<= ~1 bpp): q=90 is 2-3 bpp at 128x128.
_JPEG_SWEEP = (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 75, 90)
_WEBP_SWEEP = (0, 1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 75, 90)
_AVIF_SWEEP = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
_J2K_SWEEP = (10, 15, 20, 22, 24, 26, 28, 30, 32, 35, 38, 42)

CODECS: dict[str, Codec] = {c.name: c for c in (
    # Pillow defaults, as the course: baseline Huffman tables, 4:2:0 subsampling
    Codec("jpeg", "JPEG", range(1, 101), _JPEG_SWEEP, cheap=True),
    # optimized Huffman tables only (same pixels as "jpeg", fewer bytes)
    Codec("jpeg-opt", "JPEG", range(1, 101), _JPEG_SWEEP, {"optimize": True}, cheap=True),
    # libwebp lossy, Pillow defaults (method=4, 4:2:0)
    Codec("webp", "WEBP", range(0, 101), _WEBP_SWEEP),
    # libavif (aom), Pillow defaults (speed=6, 4:2:0), single thread for determinism
    Codec("avif", "AVIF", range(0, 101), _AVIF_SWEEP, {"max_threads": 1}),
    # OpenJPEG: quality = target PSNR in dB of the single layer, 9/7 wavelet,
    # raw .j2k codestream (no JP2 boxes); below ~10 dB the files do not shrink further
    Codec("jpeg2000", "JPEG2000", range(10, 61), _J2K_SWEEP,
          {"quality_mode": "dB", "irreversible": True, "no_jp2": True},
          quality_key="quality_layers"),
)}

#: The JPEG the course comparison matches to a learned model's bpp ("JPEG at the same bpp"): the
#: best Pillow JPEG, optimized Huffman tables. It decodes to the same pixels as Pillow's default
#: JPEG at every quality, in fewer bytes (at 128x128 its q=1 files are about half the size), so
#: the comparison does not hand the learned codecs bytes that JPEG did not need to spend.
MATCHED_JPEG = "jpeg-opt"

#: ``{codec name: its sweep qualities}``, derived from ``CODECS`` (not a second list).
SWEEPS: dict[str, list[int]] = {name: list(c.sweep_qualities) for name, c in CODECS.items()}


def _codec(codec: str | Codec) -> Codec:
    if isinstance(codec, Codec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}") from None


def _check_image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {a.dtype} {a.shape}")
    return a


def encode(img: np.ndarray, codec: str | Codec, quality: int) -> bytes:
    """Encode one uint8 HxWx3 image; returns the file's bytes."""
    c = _codec(codec)
    if int(quality) not in c.qualities:
        raise ValueError(f"{c.name} quality must be in {c.qualities.start}.."
                         f"{c.qualities.stop - 1}, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(_check_image(img), "RGB").save(buf, c.pillow_format,
                                                   **c.save_kwargs(int(quality)))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode any file Pillow reads to uint8 HxWx3 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def compress(img: np.ndarray, codec: str | Codec, quality: int) -> dict[str, Any]:
    """Encode + decode. Keys: codec, quality, bytes (the encoded file, a ``bytes``
    object), bpp (from its length), recon (uint8 HxWx3)."""
    img = _check_image(img)
    c = _codec(codec)
    data = encode(img, c, quality)
    return {"codec": c.name, "quality": int(quality), "bytes": data,
            "bpp": _bpp(len(data), img.shape[0], img.shape[1]), "recon": decode(data)}


def match_bpp(img: np.ndarray, target_bpp: float, codec: str | Codec = MATCHED_JPEG,
              exhaustive: bool | None = None) -> dict[str, Any]:
    """The course method: the quality whose real file bpp is nearest ``target_bpp``.

    Ties go to the lower bpp. ``exhaustive`` (default: True for cheap codecs, i.e.
    JPEG) tries every quality; otherwise bisection on the (nearly monotone) size curve
    finds the crossing and the 2 qualities on each side of it are checked too.
    Returns ``compress``'s dict plus ``target_bpp``.
    """
    img = _check_image(img)
    c = _codec(codec)
    if not target_bpp > 0:
        raise ValueError(f"target_bpp must be > 0, got {target_bpp}")
    h, w = img.shape[:2]
    sizes: dict[int, int] = {}

    def size(q: int) -> int:
        if q not in sizes:
            sizes[q] = len(encode(img, c, q))
        return sizes[q]

    qs = list(c.qualities)
    if c.cheap if exhaustive is None else exhaustive:
        candidates = qs
    else:
        lo, hi = 0, len(qs) - 1          # first index whose bpp >= target
        while lo < hi:
            mid = (lo + hi) // 2
            if _bpp(size(qs[mid]), h, w) >= target_bpp:
                hi = mid
            else:
                lo = mid + 1
        candidates = qs[max(lo - 2, 0):lo + 3]
    best = min(candidates, key=lambda q: (abs(_bpp(size(q), h, w) - target_bpp), size(q), q))
    out = compress(img, c, best)
    out["target_bpp"] = float(target_bpp)
    return out


def sweep(img: np.ndarray, codec: str | Codec,
          qualities: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """RD points of one image: tidy records with codec, quality, bytes (the file size,
    an int -- unlike ``compress``), bpp, psnr, ssim."""
    img = _check_image(img)
    c = _codec(codec)
    records = []
    for q in (c.sweep_qualities if qualities is None else qualities):
        r = compress(img, c, q)
        records.append({"codec": c.name, "quality": r["quality"], "bytes": len(r["bytes"]),
                        "bpp": r["bpp"], "psnr": _psnr(img, r["recon"]),
                        "ssim": _ssim(img, r["recon"])})
    return records
