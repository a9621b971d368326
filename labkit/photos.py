"""The codecs on whole photos: scikit-image's sample photos at full size, colour error included.

The course works on 128x128 tiles; a codec is used on whole photos.  This module runs
the learned codecs (real ``.lkc`` bytes) and the classic codecs on full-size photos that
scikit-image ships (no download) and adds the mean CIE76 colour error, which shows
colour casts that PSNR averages away.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import baselines, metrics
from .profiles import PHOTOS

__all__ = ["COLOUR_PHOTOS", "photo", "delta_e76", "evaluate_learned_photos", "evaluate_classic_photos",
           "grid_columns", "colour_table"]

#: Full-size photos for the colour check (target: every b >= 2 with mean dE76 <= 6).
COLOUR_PHOTOS: tuple[str, ...] = tuple(PHOTOS)


def photo(name: str) -> np.ndarray:
    """A photo shipped with scikit-image (``skimage/data/<name>``) as uint8 RGB (grey expanded, silently)."""
    import warnings

    from .data import _skimage_data_dir
    from .imageio import LabkitDataWarning, load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabkitDataWarning)  # camera.png is grey on purpose
        return load(_skimage_data_dir() / name)


def delta_e76(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB) of two uint8 RGB images
    (:func:`labkit.colour.delta_e`, the measure the encoder's colour floor uses)."""
    from .colour import delta_e

    return delta_e(ref, test)


def evaluate_learned_photos(models: Iterable[str], photos: Sequence[str], bits: Iterable[int],
                            keep_recon: bool = False, weights_dir: str | None = None,
                            scales: Mapping[str, str] | None = None,
                            refine: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Every shipped model at every b on every photo: bytes, bpp, PSNR, SSIM, dE76 (and the scale rule).

    Parameters
    ----------
    models : iterable of str
        Registered model names with weights in ``weights_dir`` (default: the shipped ones).
    photos : sequence of str
        File names in scikit-image's data folder.
    bits : iterable of int
        Bit depths.
    keep_recon : bool
        Keep each reconstruction (``recon``) for figures.
    scales : mapping, optional
        Another scale rule for a model's encoder (``Codec``'s ``scale``, e.g. ``"search"``).
    refine : mapping, optional
        Latent refinement steps for a model's encoder (``Codec``'s ``refine``).

    Returns
    -------
    list of dict
        One record per (model, b, photo).
    """
    from .codec import Codec

    images = {p: photo(p) for p in photos}
    out = []
    for name in models:
        for b in bits:
            codec = Codec.from_pretrained(name, b=b, weights_dir=weights_dir, scale=(scales or {}).get(name),
                                          refine=(refine or {}).get(name, 0))
            for p, img in images.items():
                r = codec.compress(img)
                rec = dict(codec=name, b=b, photo=p, scale=codec.scale, bytes=len(r.data), bpp=r.bpp,
                           psnr=metrics.psnr(img, r.recon), ssim=metrics.ssim(img, r.recon),
                           delta_e=delta_e76(img, r.recon))
                if keep_recon:
                    rec["recon"] = r.recon
                out.append(rec)
    return out


def evaluate_classic_photos(codecs: Iterable[str], photos: Sequence[str]) -> list[dict[str, Any]]:
    """Each classic codec swept over its whole quality range (``baselines.SWEEPS``) on every photo."""
    out = []
    for p in photos:
        img = photo(p)
        for c in codecs:
            for r in baselines.sweep(img, c):
                out.append({**r, "photo": p})
    return out


def grid_columns(records: Sequence[dict[str, Any]], models: Sequence[str], b: int) -> dict[str, list[dict[str, Any]]]:
    """Columns for ``plots.comparison_grid``: per model, its records at ``b`` with a two-line caption."""
    return {m: [dict(r, caption=f"SSIM {r['ssim']:.3f}, {r['bpp']:.3f} bpp\nΔE {r['delta_e']:.1f}, PSNR {r['psnr']:.1f} dB")
                for r in records if r["codec"] == m and r["b"] == b] for m in models}


def row_label(name: str, trained_on_default: bool = True) -> str:
    """A photo's name and whether the models shown trained on it.

    The four photos include two of the embedded training photos (astronaut, chelsea,
    ``data.DEFAULT_SOURCES``): models trained on the embedded data (the shipped weights) saw
    them, and the label says so beside the picture, so their numbers are not read as unseen ones.
    Models retrained on a course folder (``trained_on_default=False``) saw none of them.
    """
    from .data import DEFAULT_SOURCES

    if not trained_on_default:
        return f"{Path(name).stem}\n(not in training)"
    seen = ("in training" if name in DEFAULT_SOURCES["train"] else
            "a test photo" if name in DEFAULT_SOURCES["test"] else "not in training")
    return f"{Path(name).stem}\n({seen})"


def colour_table(records: Sequence[dict[str, Any]], models: Sequence[str], photos: Sequence[str]) -> list[dict[str, Any]]:
    """Rows (model, b) with the mean CIE76 colour error of each photo (its name without suffix)."""
    return [{"model": m, "b": b, **{p.split(".")[0]: round(r["delta_e"], 2) for p in photos for r in records
                                     if r["codec"] == m and r["b"] == b and r["photo"] == p}}
            for m in models for b in sorted({r["b"] for r in records})]
