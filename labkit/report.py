"""Turn evaluation records into the report's curves, tables, figures and prose.

Kept apart from :mod:`labkit.evaluate` (which only measures) and :mod:`labkit.plots`
(which only draws), so every notebook builds its numbers the same way.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import plots, rd
from .evaluate import Record, mean_curve, select

Curves = dict[str, dict[str, list[float]]]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (floats to 4 significant digits)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return {True: "yes", False: "no", None: "–"}[v]
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def curves(learned: Sequence[Record], matched: Sequence[Record], sweeps: Sequence[Record],
           learned_names: Sequence[str], sweep_names: Sequence[str]) -> Curves:
    """Mean (bpp, PSNR, SSIM) per setting for every codec: learned by b, classic by quality."""
    out: Curves = {name: mean_curve(learned, name, by="b") for name in learned_names}
    if matched:
        out["jpeg-matched"] = mean_curve(matched, "jpeg-matched", by="b")
    for name in sweep_names:
        out[name] = mean_curve(sweeps, name, by="quality")
    return out


def b_labels(curves_: Curves, names: Sequence[str]) -> dict[str, list[str]]:
    """"b=…" annotations for the learned codecs' RD points."""
    return {n: [f"b={b}" for b in curves_[n]["b"]] for n in names if n in curves_}


def _points(curve: Mapping[str, Sequence[float]], metric: str) -> list[tuple[float, float]]:
    return list(zip(curve["bpp"], curve[metric]))


def spread_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (first and last included), so grids show every source."""
    if total <= 0 or n <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(n, total))})


def comparison_figure(images: Sequence[np.ndarray], learned: Sequence[Record], matched: Sequence[Record],
                      b: int, n: int, codecs: Sequence[str] = ("resae", "ae2")):
    """RAW / ResAE / AE2 / JPEG (matched to ResAE's bpp) for ``n`` test images spread over the set, at bit depth b."""
    idx = spread_indices(len(images), n)
    columns: dict[str, list[Record]] = {}
    for c in codecs:
        by_image = {r["image"]: r for r in select(learned, codec=c, b=b)}
        if by_image:
            columns[c] = [by_image[i] for i in idx]
    jp = {r["image"]: r for r in select(matched, b=b)}
    if jp:
        columns["jpeg"] = [jp[i] for i in idx]
    return plots.comparison_grid([images[i] for i in idx], columns,
                                 title=f"b = {b}.  Q = SSIM (mean over RGB).\nJPEG: the Pillow quality whose real bpp "
                                       "is nearest ResAE's (its smallest file is ≈0.45 bpp at 128x128)")


def difference_figure(images: Sequence[np.ndarray], learned: Sequence[Record], b: int, index: int = 0,
                      codecs: Sequence[str] = ("resae", "ae2", "ae1")):
    """|error| maps of ResAE against the course baselines for one image at bit depth b."""
    recons = {}
    for c in codecs:
        hit = select(learned, codec=c, b=b, image=index)
        if hit:
            recons[c] = hit[0]
    return plots.difference_view(images[index], recons, title=f"Absolute error at b = {b} (same colour scale)")


def criteria(curves_: Curves, anchors: Sequence[str], bits: Sequence[int], test: str = "resae") -> list[dict[str, Any]]:
    """The course criteria for ``test`` at each b against each anchor's mean SSIM curve.

    Primary reading: ``test``'s point at b against the anchor's curve (ΔSSIM at the test's
    bpp, Δbits at the test's SSIM).  When neither is defined there (the point lies outside
    the anchor's range, e.g. ResAE's b=5 beyond AE2's best SSIM) and the anchor is also
    indexed by b, the anchor's point at b is read against ``test``'s curve instead
    (``where = "at anchor's b point"``).  Nothing is extrapolated.
    """
    rows = []
    t = curves_[test]
    test_pts = _points(t, "ssim")
    for anchor in anchors:
        if anchor not in curves_:
            continue
        a = curves_[anchor]
        res = rd.course_criteria(test_pts, _points(a, "ssim"))
        by_bpp = {round(bpp, 12): k for k, bpp in enumerate(res["bpp"])}
        a_by_b = dict(zip(a.get("b", []), zip(a["bpp"], a["ssim"])))
        for b, bpp, ssim_v in zip(t["b"], t["bpp"], t["ssim"]):
            if b not in bits or round(bpp, 12) not in by_bpp:
                continue
            k = by_bpp[round(bpp, 12)]
            ds, db, where = res["dssim_at_equal_bpp"][k], res["dbits_pct_at_equal_ssim"][k], "at ResAE's point"
            if not (math.isfinite(ds) or math.isfinite(db)) and b in a_by_b:
                a_bpp, a_ssim = a_by_b[b]
                ds = rd.quality_at_rate(test_pts, a_bpp) - a_ssim
                r_test = rd.rate_at_quality(test_pts, a_ssim)
                db = 100.0 * (r_test / a_bpp - 1.0) if r_test > 0 else math.nan
                where = "at anchor's b point"
            gain_ok = bool(math.isfinite(ds) and ds >= 0.05 - 1e-12)
            save_ok = bool(math.isfinite(db) and db <= -3.0 + 1e-12)
            defined = math.isfinite(ds) or math.isfinite(db)
            rows.append(dict(test=test, anchor=anchor, b=int(b), bpp=bpp, ssim=ssim_v, dssim_at_equal_bpp=ds,
                             dbits_pct_at_equal_ssim=db, ssim_gain_ok=gain_ok, bits_saving_ok=save_ok,
                             holds=(gain_ok or save_ok) if defined else None, where=where if defined else "no overlap"))
    return rows


def rate_table(learned: Sequence[Record], codec: str = "resae") -> list[dict[str, Any]]:
    """Real vs estimated rate per b: file bpp, payload-only bpp, and the adaptive model's ideal bpp.

    ``estimated`` is the ideal code length of the payload under the coder's own adaptive model
    (labkit's independent reference model) plus the real header; the gap to ``real`` is what the
    arithmetic coder loses to finite precision and its final flush.
    """
    rows = []
    for b in sorted({r["b"] for r in learned if r["codec"] == codec}):
        rs = select(learned, codec=codec, b=b)
        px = np.array([r["bytes"] * 8 / r["bpp"] for r in rs])
        real = np.array([r["bpp"] for r in rs])
        header = np.array([r["header_bytes"] * 8 for r in rs]) / px
        est = np.array([r["ideal_bits"] for r in rs]) / px + header
        rows.append(dict(b=b, real_bpp=float(real.mean()), estimated_bpp=float(est.mean()),
                         header_bpp=float(header.mean()), coder_overhead_pct=float(100 * (real.mean() / est.mean() - 1))))
    return rows


def criteria_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    cols = ["anchor", "b", "bpp", "ssim", "dssim_at_equal_bpp", "dbits_pct_at_equal_ssim", "holds", "where"]
    return markdown_table(rows, cols)


def bd_rates(curves_: Curves, test: str = "resae") -> list[dict[str, Any]]:
    """BD-rate (%) of ``test`` against every other curve, on SSIM and on PSNR (negative = test saves bits)."""
    import warnings

    rows = []
    t = curves_[test]
    for anchor, c in curves_.items():
        if anchor == test:
            continue
        row: dict[str, Any] = {"anchor": anchor}
        for metric in ("ssim", "psnr"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rd.RDWarning)
                row[f"bd_rate_{metric}_pct"] = rd.bd_rate(c["bpp"], c[metric], t["bpp"], t[metric])
        rows.append(row)
    return rows


def bd_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return markdown_table(rows, ["anchor", "bd_rate_ssim_pct", "bd_rate_psnr_pct"])


def criteria_figure(rows: Sequence[Mapping[str, Any]]):
    """The criteria table as a figure."""
    def f(v: float, fmt: str) -> str:
        return "–" if v is None or not math.isfinite(v) else format(v, fmt)
    body = [[r["anchor"], str(r["b"]), f(r["bpp"], ".3f"), f(r["ssim"], ".3f"), f(r["dssim_at_equal_bpp"], "+.3f"),
             f(r["dbits_pct_at_equal_ssim"], "+.1f"), {True: "yes", False: "no", None: "n/a"}[r["holds"]]] for r in rows]
    return plots.table_figure(body, ["anchor", "b", "ResAE bpp", "ResAE SSIM", "ΔSSIM @ bpp", "Δbits % @ SSIM", "holds"],
                              title="Course criteria for ResAE (+0.05 SSIM at equal bpp, or ≥3% fewer bits at equal SSIM)")


def summary(curves_: Curves, learned: Sequence[Record], matched: Sequence[Record], crit: Sequence[Mapping[str, Any]],
            bd: Sequence[Mapping[str, Any]], n_images: int) -> dict[str, Any]:
    """Headline numbers and an honest paragraph generated from them (quoted in the README)."""
    head: dict[str, Any] = {"n_images": n_images}
    for b in (1, 2, 3):
        r = select(learned, codec="resae", b=b)
        j = select(matched, b=b)
        a = select(learned, codec="ae2", b=b)
        if r and j and a:
            head[f"b{b}"] = dict(resae_bpp=float(np.mean([x["bpp"] for x in r])), resae_ssim=float(np.mean([x["ssim"] for x in r])),
                                 ae2_bpp=float(np.mean([x["bpp"] for x in a])), ae2_ssim=float(np.mean([x["ssim"] for x in a])),
                                 jpeg_bpp=float(np.mean([x["bpp"] for x in j])), jpeg_ssim=float(np.mean([x["ssim"] for x in j])))
    vs_ae2 = [r for r in crit if r["anchor"] == "ae2"]
    head["criterion_vs_ae2_holds_at"] = [r["b"] for r in vs_ae2 if r["holds"] is True]
    head["criterion_vs_ae2_fails_at"] = [r["b"] for r in vs_ae2 if r["holds"] is False]
    head["criterion_vs_ae2_undefined_at"] = [r["b"] for r in vs_ae2 if r["holds"] is None]
    head["bd_rate_ssim_pct"] = {r["anchor"]: r["bd_rate_ssim_pct"] for r in bd}
    head["bd_rate_psnr_pct"] = {r["anchor"]: r["bd_rate_psnr_pct"] for r in bd}
    lines = [f"On {n_images} test images:"]
    for b in (1, 2, 3):
        h = head.get(f"b{b}")
        if h:
            lines.append(f"- b={b}: ResAE {h['resae_bpp']:.3f} bpp, SSIM {h['resae_ssim']:.3f}; AE2 {h['ae2_bpp']:.3f} bpp, "
                         f"SSIM {h['ae2_ssim']:.3f}; JPEG at matched bpp {h['jpeg_bpp']:.3f} bpp, SSIM {h['jpeg_ssim']:.3f}.")
    if vs_ae2:
        held, failed = head["criterion_vs_ae2_holds_at"], head["criterion_vs_ae2_fails_at"]
        undef = head["criterion_vs_ae2_undefined_at"]
        lines.append(f"- Course criterion vs AE2 holds at b = {held or 'none'}" + (f", fails at b = {failed}" if failed else "")
                     + (f", cannot be read at b = {undef} (no overlap)" if undef else "") + ".")
    parts = []
    for r in bd:
        v = r["bd_rate_ssim_pct"]
        parts.append(f"{r['anchor']} {v:+.1f}%" if v is not None and math.isfinite(v) else f"{r['anchor']} n/a")
    if parts:
        lines.append("- BD-rate of ResAE on SSIM (negative = fewer bits): " + ", ".join(parts) + ".")
    return {"headline": head, "text": "\n".join(lines)}


README_START = "<!-- results:start (generated by `make figures` from figures/metrics.json; do not edit) -->"
README_END = "<!-- results:end -->"


def results_markdown(evaluate_metrics: Mapping[str, Any]) -> str:
    """The README's results block: headline prose, course-criteria table and BD-rates, from metrics.json."""
    s = evaluate_metrics["summary"]
    def nan_for_null(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{k: (float("nan") if v is None and k != "holds" else v) for k, v in r.items()} for r in rows]

    crit = nan_for_null(evaluate_metrics["criteria"])
    bd = nan_for_null(evaluate_metrics["bd_rate"])
    parts = [s["text"], "",
             "Course criteria for ResAE (+0.05 SSIM at equal bpp, or ≥3 % fewer bits at equal SSIM):", "",
             criteria_markdown(crit), "",
             "BD-rate of ResAE against each codec (negative = ResAE needs fewer bits for the same quality; "
             "Akima interpolation over the overlapping quality range only; – = the curves do not overlap):", "",
             bd_markdown(bd)]
    return "\n".join(parts)


def update_readme(readme: str, evaluate_metrics: Mapping[str, Any]) -> str:
    """``readme`` with the text between the results markers replaced by :func:`results_markdown`."""
    if README_START not in readme or README_END not in readme:
        return readme
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{results_markdown(evaluate_metrics)}\n{README_END}{tail}"
