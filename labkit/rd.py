"""Rate-distortion comparisons: Bjontegaard deltas and the course criteria.

A *curve* is a sequence of ``(bpp, quality)`` points (quality = SSIM or PSNR), in any
order; it is cleaned before use: non-finite or bpp <= 0 points dropped, sorted by
bpp, and reduced to its monotone envelope (a point is kept only if its quality beats
every cheaper point -- the others are dominated), so that quality is strictly
increasing in bpp and both "quality at a rate" and "rate at a quality" are defined.

Course criteria interpolate quality over log(bpp) with a monotone cubic
(``scipy.interpolate.PchipInterpolator``); the rate at a quality inverts that same
interpolant. Nothing is extrapolated: outside a curve's range the answer is nan.
BD values use the ``bjontegaard`` package (Akima by default, or PCHIP) over the
overlapping range only, and say which range that was (:func:`bd_detail`). When they
cannot be computed -- too few points, no overlap, or an overlap narrower than
``MIN_BD_OVERLAP`` of the two curves' joint range -- they return nan and emit an
``RDWarning`` saying why.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["RDWarning", "SSIM_GAIN", "BITS_SAVING_PCT", "MIN_BD_OVERLAP", "MIN_BD_POINTS", "clean_curve",
           "bd_detail", "bd_rate", "bd_quality", "bd_psnr",
           "quality_at_rate", "rate_at_quality", "delta_quality_at_rate",
           "delta_rate_at_quality", "course_criteria"]

Curve = Sequence[Sequence[float]] | np.ndarray

#: The course's criteria: a proposal must gain at least this much SSIM at equal bpp ...
SSIM_GAIN = 0.05
#: ... or need at least this many percent fewer bits at equal SSIM.
BITS_SAVING_PCT = 3.0
#: A BD value is only reported when the interval it averages over (the overlap of the two
#: curves on the integration axis) is at least this fraction of the two curves' joint
#: range -- the same overlap measure as the ``bjontegaard`` package's ``min_overlap``
#: (whose own default, 0.75, only warns). Narrower, the average rests on a sliver of
#: one curve (e.g. an SSIM overlap 0.012 wide) and says little about the codecs.
MIN_BD_OVERLAP = 0.1
#: Fewest usable RD points per curve a BD-rate is computed from (the cubic fit needs four).
MIN_BD_POINTS = 4


class RDWarning(UserWarning):
    """A BD value or criterion could not be computed (too few points, no overlap)."""


def clean_curve(curve: Curve) -> np.ndarray:
    """``[K, 2]`` float array of (bpp, quality): finite, bpp > 0, sorted, monotone envelope."""
    a = np.asarray(curve, dtype=np.float64)
    if a.size == 0:
        return np.empty((0, 2))
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"a curve is a list of (bpp, quality) pairs, got shape {a.shape}")
    a = a[np.isfinite(a).all(axis=1) & (a[:, 0] > 0)]
    a = a[np.lexsort((-a[:, 1], a[:, 0]))]   # by bpp, best quality first among ties
    keep, best = [], -math.inf
    for i, (_, q) in enumerate(a):
        if q > best:
            keep.append(i)
            best = q
    return a[keep]


def _pairs(rate: Sequence[float], dist: Sequence[float], who: str) -> np.ndarray:
    r, d = np.asarray(rate, dtype=np.float64), np.asarray(dist, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1:
        raise ValueError(f"{who}: rate and quality must be 1-D of equal length, "
                         f"got {r.shape} and {d.shape}")
    return clean_curve(np.stack([r, d], axis=1))


def bd_detail(rate_anchor: Sequence[float], dist_anchor: Sequence[float],
              rate_test: Sequence[float], dist_test: Sequence[float], kind: str = "rate",
              method: str = "akima", min_points: int = MIN_BD_POINTS,
              min_overlap: float = MIN_BD_OVERLAP) -> dict[str, Any]:
    """A BD value with the interval it averages over, or the reason it is left out.

    Parameters
    ----------
    rate_anchor, dist_anchor, rate_test, dist_test : sequence of float
        bpp and quality (SSIM or PSNR) of the anchor and of the tested codec.
    kind : {"rate", "quality"}
        BD-rate (percent, averaged over the quality overlap) or BD-quality (averaged over
        the log-rate overlap).
    method : {"akima", "pchip", "cubic"}
        Interpolation of the ``bjontegaard`` package.
    min_points : int
        Usable points (after dropping dominated ones) each curve needs.
    min_overlap : float
        Smallest overlap, as a fraction of the two curves' joint range on the integration
        axis, for which a value is given.

    Returns
    -------
    dict
        ``value`` (nan when left out), ``overlap`` ([lo, hi] on the integration axis: quality
        for BD-rate, bpp for BD-quality; None without overlap), ``overlap_fraction`` and
        ``reason`` (None when the value is given, else why it is left out).
    """
    import bjontegaard as bd

    if kind not in ("rate", "quality"):
        raise ValueError(f"kind must be 'rate' or 'quality', got {kind!r}")
    if method not in ("akima", "pchip", "cubic"):
        raise ValueError(f"method must be 'akima', 'pchip' or 'cubic', got {method!r}")
    a = _pairs(rate_anchor, dist_anchor, "anchor")
    t = _pairs(rate_test, dist_test, "test")
    out: dict[str, Any] = {"value": math.nan, "overlap": None, "overlap_fraction": 0.0, "reason": None}
    if len(a) < min_points or len(t) < min_points:
        out["reason"] = (f"too few points: need >= {min_points} usable RD points per curve (after "
                         f"dropping dominated ones), got anchor {len(a)}, test {len(t)}")
        return out
    col = 1 if kind == "rate" else 0          # axis the average runs over
    ax_a, ax_t = (a[:, col], t[:, col]) if col == 1 else (np.log(a[:, 0]), np.log(t[:, 0]))
    lo, hi = max(ax_a.min(), ax_t.min()), min(ax_a.max(), ax_t.max())
    joint = max(ax_a.max(), ax_t.max()) - min(ax_a.min(), ax_t.min())
    axis = "quality" if col == 1 else "rate"
    if not hi > lo:
        out["reason"] = f"no overlap: the curves' {axis} ranges do not overlap"
        return out
    out["overlap"] = [float(lo), float(hi)] if col == 1 else [float(math.exp(lo)), float(math.exp(hi))]
    out["overlap_fraction"] = float((hi - lo) / joint) if joint > 0 else 1.0
    if out["overlap_fraction"] < min_overlap:
        out["reason"] = (f"overlap too narrow: the {axis} overlap covers {100 * out['overlap_fraction']:.1f} % "
                         f"of the curves' joint range (< {100 * min_overlap:.0f} %)")
        return out
    fn = bd.bd_rate if kind == "rate" else bd.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["value"] = float(fn(a[:, 0], a[:, 1], t[:, 0], t[:, 1], method,
                                require_matching_points=False, min_overlap=0))
    return out


def _bd(kind: str, rate_anchor, dist_anchor, rate_test, dist_test, method: str,
        min_points: int, min_overlap: float) -> float:
    d = bd_detail(rate_anchor, dist_anchor, rate_test, dist_test, kind, method, min_points, min_overlap)
    if d["reason"]:
        warnings.warn(f"BD-{kind}: {d['reason']}; returning nan", RDWarning, stacklevel=3)
    return d["value"]


def bd_rate(rate_anchor: Sequence[float], dist_anchor: Sequence[float],
            rate_test: Sequence[float], dist_test: Sequence[float],
            method: str = "akima", min_points: int = MIN_BD_POINTS, min_overlap: float = MIN_BD_OVERLAP) -> float:
    """BD-rate in percent: average bit-rate change of test vs anchor at equal quality,
    over the overlapping quality range (negative = test saves bits). nan + RDWarning
    when a curve has < ``min_points`` usable points or the overlap is missing or narrower
    than ``min_overlap`` (see :func:`bd_detail`, which also returns the overlap)."""
    return _bd("rate", rate_anchor, dist_anchor, rate_test, dist_test, method, min_points, min_overlap)


def bd_quality(rate_anchor: Sequence[float], dist_anchor: Sequence[float],
               rate_test: Sequence[float], dist_test: Sequence[float],
               method: str = "akima", min_points: int = MIN_BD_POINTS, min_overlap: float = MIN_BD_OVERLAP) -> float:
    """BD-quality: average quality gain (dB for PSNR, SSIM units for SSIM) of test vs
    anchor over the overlapping log-rate range; nan + RDWarning as for ``bd_rate``."""
    return _bd("quality", rate_anchor, dist_anchor, rate_test, dist_test, method, min_points, min_overlap)


bd_psnr = bd_quality
"""Alias of ``bd_quality`` for PSNR curves."""


def _interp(c: np.ndarray) -> PchipInterpolator | None:
    return PchipInterpolator(np.log(c[:, 0]), c[:, 1], extrapolate=False) if len(c) >= 2 \
        else None


def quality_at_rate(curve: Curve, rate: float) -> float:
    """Quality of ``curve`` at ``rate`` bpp (PCHIP in log-bpp); nan outside its range."""
    c = clean_curve(curve)
    if len(c) == 1:
        return float(c[0, 1]) if rate == c[0, 0] else math.nan
    f = _interp(c)
    if f is None or not rate > 0:
        return math.nan
    return float(f(math.log(rate)))


def rate_at_quality(curve: Curve, quality: float) -> float:
    """bpp at which ``curve`` reaches ``quality``, inverting the PCHIP of
    ``quality_at_rate`` (monotone, so unique); nan outside its quality range."""
    c = clean_curve(curve)
    if len(c) == 0 or not c[0, 1] <= quality <= c[-1, 1]:
        return math.nan
    if len(c) == 1:
        return float(c[0, 0])
    hit = np.flatnonzero(c[:, 1] == quality)
    if hit.size:
        return float(c[hit[0], 0])
    roots = _interp(c).solve(quality, extrapolate=False)
    roots = roots[np.isfinite(roots)]
    return float(math.exp(roots[0])) if roots.size else math.nan


def delta_quality_at_rate(curve_a: Curve, curve_b: Curve, rate: float) -> float:
    """Quality of a minus quality of b at equal ``rate`` (e.g. ΔSSIM at equal bpp)."""
    return quality_at_rate(curve_a, rate) - quality_at_rate(curve_b, rate)


def delta_rate_at_quality(curve_a: Curve, curve_b: Curve, quality: float) -> float:
    """Bits of a relative to b at equal ``quality``, in percent (negative = a saves)."""
    ra, rb = rate_at_quality(curve_a, quality), rate_at_quality(curve_b, quality)
    return 100.0 * (ra / rb - 1.0) if ra > 0 and rb > 0 else math.nan


def course_criteria(test_curve: Curve, anchor_curve: Curve, ssim_gain: float = SSIM_GAIN,
                    bits_saving_pct: float = BITS_SAVING_PCT) -> dict[str, list[Any]]:
    """The course's two criteria at each test point, vs the anchor (e.g. JPEG) curve.

    Per test point (all given points, finite, sorted by bpp -- not only the envelope):
    ``dssim_at_equal_bpp`` = q_test - anchor quality at the test bpp;
    ``dbits_pct_at_equal_ssim`` = 100 * (bpp_test / anchor bpp at q_test - 1);
    ``ssim_gain_ok`` (Δ >= ``ssim_gain``), ``bits_saving_ok`` (Δbits <= -``bits_saving_pct``),
    ``holds`` (either); ``in_anchor_rate_range`` / ``in_anchor_quality_range`` flag where
    the deltas are defined (nan and False outside). Column-oriented: ``pandas.DataFrame``
    of the result gives one row per point.
    """
    t = np.asarray(test_curve, dtype=np.float64)
    if t.size and (t.ndim != 2 or t.shape[1] != 2):
        raise ValueError(f"test_curve must be (bpp, quality) pairs, got shape {t.shape}")
    t = t[np.isfinite(t).all(axis=1) & (t[:, 0] > 0)] if t.size else np.empty((0, 2))
    t = t[np.lexsort((t[:, 1], t[:, 0]))]
    anchor = clean_curve(anchor_curve)
    out: dict[str, list[Any]] = {k: [] for k in (
        "bpp", "quality", "dssim_at_equal_bpp", "dbits_pct_at_equal_ssim", "ssim_gain_ok",
        "bits_saving_ok", "holds", "in_anchor_rate_range", "in_anchor_quality_range")}
    for r, q in t:
        dq = float(q - quality_at_rate(anchor, r))
        rb = rate_at_quality(anchor, q)
        db = float(100.0 * (r / rb - 1.0)) if rb > 0 else math.nan
        gain_ok = bool(dq >= ssim_gain - 1e-12)
        save_ok = bool(db <= -bits_saving_pct + 1e-12)
        for k, v in (("bpp", float(r)), ("quality", float(q)), ("dssim_at_equal_bpp", dq),
                     ("dbits_pct_at_equal_ssim", db), ("ssim_gain_ok", gain_ok),
                     ("bits_saving_ok", save_ok), ("holds", gain_ok or save_ok),
                     ("in_anchor_rate_range", not math.isnan(dq)),
                     ("in_anchor_quality_range", not math.isnan(db))):
            out[k].append(v)
    return out
