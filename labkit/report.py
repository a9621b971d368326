"""The report: turn measured records into the curves, tables, figures and prose of the report.

Kept apart from :mod:`labkit.evaluate` (which only measures) and :mod:`labkit.plots`
(which only draws), so every notebook builds its numbers the same way. Every figure and
table is built over the models it is given (``labkit.profiles.MODELS``), so a new model
appears everywhere by being listed there.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import plots, rd
from .evaluate import Record, mean_curve, select
from .profiles import MODELS, REFERENCE, proposed
from .trainconfig import trained_bits

Curves = dict[str, dict[str, list[float]]]

#: The course's criterion is stated against its baseline AE2.
COURSE_ANCHOR = "ae2"

#: Floats are stored (and figures drawn) at this many significant digits: further digits
#: are float noise that may differ between CPUs.
SIG_DIGITS = 6


def rounded(obj: Any, digits: int = SIG_DIGITS) -> Any:
    """``obj`` with every finite float rounded to ``digits`` significant digits.

    Dicts, lists and tuples are walked (tuples come back as lists); numpy float scalars
    become Python floats; arrays (e.g. reconstructions) and everything else pass unchanged.

    Parameters
    ----------
    obj : Any
        Records, curves or a single number.
    digits : int
        Significant digits to keep.

    Returns
    -------
    Any
        The same structure with rounded floats.
    """
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return float(f"{v:.{digits}g}") if math.isfinite(v) else v
    return obj


def label(name: str) -> str:
    """Display name of a codec or model (``plots.LABELS``)."""
    return plots.label(name)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (floats to 4 significant digits)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return {True: "yes", False: "no", None: "–"}[v]
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else f"{v:.4g}"
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            return f"{v[0]:.4g}–{v[1]:.4g}"
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
    """"b=…" annotations for the learned codecs' RD points.

    A model that writes another listed model's symbols (:data:`labkit.spec.SAME_ENCODER`) gets
    none: its points sit beside that model's, whose labels mark them, and two sets would overlap.
    """
    from .spec import SAME_ENCODER

    shown = [n for n in names if n in curves_]
    return {n: [f"b={b}" for b in curves_[n]["b"]] for n in shown if SAME_ENCODER.get(n) not in shown}


def _points(curve: Mapping[str, Sequence[float]], metric: str) -> list[tuple[float, float]]:
    return list(zip(curve["bpp"], curve[metric]))


def spread_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (first and last included), so grids show every source."""
    if total <= 0 or n <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(n, total))})


def grid_models(models: Sequence[str]) -> list[str]:
    """The learned columns of the comparison grids: the seed's view (ResAE, AE2) plus every other proposal.

    Every proposal of ``models`` (not a course model), in order, then the course's AE2;
    AE1 (the plain-trained course model) stays out of the grids, as in the seed's report.
    """
    return proposed(models) + [m for m in models if m == "ae2"]


def jpeg_floor(sweeps: Sequence[Record], codec: str | None = None) -> dict[str, Any] | None:
    """JPEG's smallest files: mean bpp over the images at the lowest quality swept (None if not swept).

    ``codec`` defaults to the JPEG the course comparison matches (:data:`labkit.baselines.MATCHED_JPEG`).
    """
    from .baselines import MATCHED_JPEG

    codec = codec or MATCHED_JPEG
    recs = [r for r in sweeps if r["codec"] == codec]
    if not recs:
        return None
    q = min(r["quality"] for r in recs)
    bpps = [r["bpp"] for r in recs if r["quality"] == q]
    return {"codec": codec, "quality": int(q), "mean_bpp": float(np.mean(bpps)),
            "min_bpp": float(np.min(bpps)), "max_bpp": float(np.max(bpps))}


def jpeg_caption(record: Mapping[str, Any]) -> str:
    """Caption under a matched JPEG: SSIM, bpp, its quality q and its bits as a multiple of the matched model's."""
    who = label(record.get("matched_to", REFERENCE))
    ratio = record["bpp"] / record["target_bpp"] if record.get("target_bpp") else math.nan
    return f"SSIM {record['ssim']:.3f}, {record['bpp']:.3f} bpp\nq={record['quality']}: {ratio:.1f}× {who}'s bits"


def comparison_figure(images: Sequence[np.ndarray], learned: Sequence[Record], matched: Sequence[Record],
                      b: int, n: int, models: Sequence[str], floor: Mapping[str, Any] | None = None,
                      title: str | None = None):
    """RAW / the learned models / JPEG at the bpp nearest the reference model's, for ``n`` images at bit depth b.

    Under each picture: SSIM and real bpp; under JPEG also its quality and its bpp as a multiple
    of the model it was matched to (the course method: per image, the JPEG quality whose file
    size is nearest that model's; optimized Huffman tables, :data:`labkit.baselines.MATCHED_JPEG`).
    """
    idx = spread_indices(len(images), n)
    columns: dict[str, list[Record]] = {}
    for c in grid_models(models):
        by_image = {r["image"]: r for r in select(learned, codec=c, b=b)}
        if all(i in by_image for i in idx):
            columns[c] = [by_image[i] for i in idx]
    jp = {r["image"]: r for r in select(matched, b=b)}
    target = REFERENCE
    if jp and all(i in jp for i in idx):
        columns["jpeg-matched"] = [dict(jp[i], caption=jpeg_caption(jp[i])) for i in idx]
        target = jp[idx[0]].get("matched_to", target)
    if title is None:
        title = (f"b = {b}.  Under each picture: SSIM (mean over RGB) and real bpp.\n"
                 f"JPEG (optimized Huffman tables): per image, the quality q whose file is nearest "
                 f"{label(target)}'s bpp (course method)")
        if floor:
            title += (f";\nits smallest files (q={floor['quality']}) average {floor['mean_bpp']:.2f} bpp "
                      "on these test images")
    return plots.comparison_grid([images[i] for i in idx], columns, title=title)


def difference_figure(images: Sequence[np.ndarray], learned: Sequence[Record], b: int, models: Sequence[str],
                      index: int = 0):
    """|error| maps of every learned model (proposals and course models) for one image at bit depth b."""
    recons = {}
    for c in models:
        hit = select(learned, codec=c, b=b, image=index)
        if hit:
            recons[c] = hit[0]
    return plots.difference_view(images[index], recons, title=f"Absolute error at b = {b} (same colour scale)")


def criteria(curves_: Curves, anchors: Sequence[str], bits: Sequence[int],
             tests: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The course criteria for each ``tests`` model at each b against each anchor's mean SSIM curve.

    Primary reading: the test model's point at b against the anchor's curve (ΔSSIM at the
    test's bpp, Δbits at the test's SSIM; ``where = "at its b point"``). When neither is
    defined there (the point lies outside the anchor's range, e.g. ResAE's b=5 beyond AE2's
    best SSIM) and the anchor is also indexed by b, the anchor's point at b is read against
    the test's curve instead (``where = "at anchor's b point"``), unless the anchor's point is the
    same at several b (JPEG at matched bpp pinned at its smallest file: it has no b of its own
    there, so the row is left undefined). Nothing is extrapolated.
    Thresholds: ``rd.SSIM_GAIN`` and ``rd.BITS_SAVING_PCT``.

    Parameters
    ----------
    curves_ : dict
        Mean curves by codec name (:func:`curves`).
    anchors : sequence of str
        Codecs to compare against (missing ones are skipped).
    bits : sequence of int
        The b values to report.
    tests : sequence of str, optional
        The models under test (default: the proposals among ``curves_``'s learned models).

    Returns
    -------
    list of dict
        One row per (test, anchor, b).
    """
    if tests is None:
        tests = proposed([n for n, c in curves_.items() if "b" in c and n != "jpeg-matched"])
    rows = []
    for test in tests:
        if test not in curves_:
            continue
        t = curves_[test]
        test_pts = _points(t, "ssim")
        for anchor in anchors:
            if anchor not in curves_ or anchor == test:
                continue
            a = curves_[anchor]
            res = rd.course_criteria(test_pts, _points(a, "ssim"))
            by_bpp = {round(bpp, 12): k for k, bpp in enumerate(res["bpp"])}
            a_by_b = dict(zip(a.get("b", []), zip(a["bpp"], a["ssim"])))
            for b, bpp, ssim_v in zip(t["b"], t["bpp"], t["ssim"]):
                if b not in bits or round(bpp, 12) not in by_bpp:
                    continue
                k = by_bpp[round(bpp, 12)]
                ds, db, where = res["dssim_at_equal_bpp"][k], res["dbits_pct_at_equal_ssim"][k], "at its b point"
                # an anchor whose point is the same at several b (JPEG at matched bpp pinned at its smallest
                # file) has no b of its own there: reading at it would credit b with another rate's result
                pinned = b in a_by_b and list(a_by_b.values()).count(a_by_b[b]) > 1
                if not (math.isfinite(ds) or math.isfinite(db)) and b in a_by_b and not pinned:
                    a_bpp, a_ssim = a_by_b[b]
                    ds = rd.quality_at_rate(test_pts, a_bpp) - a_ssim
                    r_test = rd.rate_at_quality(test_pts, a_ssim)
                    db = 100.0 * (r_test / a_bpp - 1.0) if r_test > 0 else math.nan
                    where = "at anchor's b point"
                gain_ok = bool(math.isfinite(ds) and ds >= rd.SSIM_GAIN - 1e-12)
                save_ok = bool(math.isfinite(db) and db <= -rd.BITS_SAVING_PCT + 1e-12)
                defined = math.isfinite(ds) or math.isfinite(db)
                rows.append(dict(test=test, anchor=anchor, b=int(b), bpp=bpp, ssim=ssim_v, dssim_at_equal_bpp=ds,
                                 dbits_pct_at_equal_ssim=db, ssim_gain_ok=gain_ok, bits_saving_ok=save_ok,
                                 holds=(gain_ok or save_ok) if defined else None,
                                 where=where if defined else "no overlap (anchor's point is the same at several b)"
                                 if pinned else "no overlap"))
    return rows


def criteria_rule() -> str:
    """The course criteria in words, with the thresholds of :mod:`labkit.rd`."""
    return (f"+{rd.SSIM_GAIN:g} SSIM at equal bpp, or ≥{rd.BITS_SAVING_PCT:g} % fewer bits at equal SSIM")


def rate_table(learned: Sequence[Record], codec: str = REFERENCE) -> list[dict[str, Any]]:
    """Real vs ideal rate per b: file bpp, header bpp, and the adaptive model's ideal bpp.

    ``ideal_bpp`` is the ideal code length of the payload under the coder's own adaptive model
    (labkit's independent reference model) plus the real header; the gap to ``real`` is what the
    arithmetic coder loses to finite precision and its final flush. Each is the real bpp scaled
    by its share of the file's bits.
    """
    rows = []
    for b in sorted({r["b"] for r in learned if r["codec"] == codec}):
        rs = select(learned, codec=codec, b=b)
        real = np.array([r["bpp"] for r in rs])
        file_bits = np.array([r["bytes"] * 8.0 for r in rs])
        header = real * np.array([r["header_bytes"] * 8.0 for r in rs]) / file_bits
        est = real * np.array([r["ideal_bits"] for r in rs]) / file_bits + header
        rows.append(dict(b=b, real_bpp=float(real.mean()), ideal_bpp=float(est.mean()),
                         header_bpp=float(header.mean()), coder_overhead_pct=float(100 * (real.mean() / est.mean() - 1))))
    return rows


def at_equal_rate(curves_: Curves, test: str, anchor: str, bits: Sequence[int] = (2, 3, 4)) -> list[dict[str, Any]]:
    """``test``'s SSIM and PSNR at each b beside ``anchor``'s at the same bpp (issue 9's per-b targets).

    The anchor's quality is read off its curve at the test model's bpp (PCHIP in log-bpp,
    :func:`labkit.rd.quality_at_rate`; nan outside its range).  One row per b with ``bpp``,
    ``ssim``, ``anchor_ssim``, ``dssim``, ``psnr``, ``anchor_psnr``, ``dpsnr``.
    """
    if test not in curves_ or anchor not in curves_:
        return []
    t, a = curves_[test], curves_[anchor]
    rows = []
    for b, bpp, ssim_v, psnr_v in zip(t["b"], t["bpp"], t["ssim"], t["psnr"]):
        if b not in bits:
            continue
        a_ssim = rd.quality_at_rate(_points(a, "ssim"), bpp)
        a_psnr = rd.quality_at_rate(_points(a, "psnr"), bpp)
        rows.append(dict(b=int(b), bpp=bpp, ssim=ssim_v, anchor_ssim=a_ssim, dssim=ssim_v - a_ssim,
                         psnr=psnr_v, anchor_psnr=a_psnr, dpsnr=psnr_v - a_psnr))
    return rows


def criteria_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The criteria rows as a markdown table."""
    cols = ["test", "anchor", "b", "bpp", "ssim", "dssim_at_equal_bpp", "dbits_pct_at_equal_ssim", "holds", "where"]
    return markdown_table(rows, cols)


def bd_rates(curves_: Curves, tests: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """BD-rate (%) of each test model against every other curve, on SSIM and on PSNR.

    Negative = the test model needs fewer bits for the same quality. Each value comes with
    the quality interval it averages over (``<metric>_overlap``, its share of the two curves'
    joint range ``<metric>_overlap_fraction``); where that is missing or narrower than
    ``rd.MIN_BD_OVERLAP`` the value is None and ``<metric>_left_out`` says why.
    """
    if tests is None:
        tests = proposed([n for n, c in curves_.items() if "b" in c and n != "jpeg-matched"])
    rows = []
    for test in tests:
        if test not in curves_:
            continue
        t = curves_[test]
        for anchor, c in curves_.items():
            if anchor == test:
                continue
            row: dict[str, Any] = {"test": test, "anchor": anchor}
            for metric in ("ssim", "psnr"):
                d = rd.bd_detail(c["bpp"], c[metric], t["bpp"], t[metric])
                row[f"bd_rate_{metric}_pct"] = d["value"] if d["reason"] is None else None
                row[f"{metric}_overlap"] = d["overlap"]
                row[f"{metric}_overlap_fraction"] = d["overlap_fraction"]
                row[f"{metric}_left_out"] = d["reason"]
            rows.append(row)
    return rows


def bd_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The BD rows as a markdown table (overlap shown as lo–hi and its share of the joint range)."""
    table = []
    for r in rows:
        row = dict(r)
        for m in ("ssim", "psnr"):
            f = r.get(f"{m}_overlap_fraction")
            row[f"{m}_overlap_share"] = f"{100 * f:.0f} %" if isinstance(f, (int, float)) and r.get(f"{m}_overlap") else "–"
            if r.get(f"{m}_left_out"):
                row[f"bd_rate_{m}_pct"] = str(r[f"{m}_left_out"]).split(":")[0]
        table.append(row)
    return markdown_table(table, ["test", "anchor", "bd_rate_ssim_pct", "ssim_overlap", "ssim_overlap_share",
                                  "bd_rate_psnr_pct", "psnr_overlap", "psnr_overlap_share"])


def criteria_figure(rows: Sequence[Mapping[str, Any]]):
    """The criteria table as a figure."""
    def f(v: float | None, fmt: str) -> str:
        return "–" if v is None or not math.isfinite(v) else format(v, fmt)
    tests = list(dict.fromkeys(r["test"] for r in rows))
    body = [([label(r["test"])] if len(tests) > 1 else []) +
            [label(r["anchor"]), str(r["b"]), f(r["bpp"], ".3f"), f(r["ssim"], ".3f"), f(r["dssim_at_equal_bpp"], "+.3f"),
             f(r["dbits_pct_at_equal_ssim"], "+.1f"), {True: "yes", False: "no", None: "n/a"}[r["holds"]],
             "anchor's b" if r["where"] == "at anchor's b point" else "its b" if r["holds"] is not None else "–"] for r in rows]
    who = label(tests[0]) if len(tests) == 1 else "model"
    header = (["model"] if len(tests) > 1 else []) + [
        "anchor", "b", f"{who} bpp", f"{who} SSIM", "ΔSSIM @ bpp", "Δbits % @ SSIM", "holds", "read at"]
    names = ", ".join(label(t) for t in tests)
    return plots.table_figure(body, header, title=f"Course criteria for {names} ({criteria_rule()})", note=CRITERIA_KEY,
                              shade={"yes": "#e5f5e0", "no": "#fde0dd"})


#: The key under the criteria table: what its columns and marks mean.
CRITERIA_KEY = ("ΔSSIM @ bpp: the model's SSIM minus the anchor's at the model's bpp; Δbits % @ SSIM: the model's bits "
                "against the anchor's at the model's SSIM (negative = fewer). Both are read on the anchor's curve, inside its range.\n"
                "read at: its b = at the model's point (the bpp and SSIM columns); anchor's b = neither is defined there, so "
                "the anchor's own point at the same b is read against the model's curve.\n"
                "holds: yes / no by the rule in the title; n/a = neither reading is defined (no overlap); – = not defined.\n"
                "JPEG at ResAE's bpp: optimized JPEG matched per image to ResAE's files (the course's comparison); "
                "for the other models it is a five-point sample of the JPEG (optimized) curve. "
                "b = 1 is not listed: the targets read the criterion at b = 2..5 (benchmarks/bench_rd.py also reads b = 1).")


def training_summary(models: Sequence[str], weights_dir: str | os.PathLike[str],
                     histories: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: parameters, epochs, training time and device, last validation PSNR and its epoch.

    Validation runs every ``val_every`` epochs, so the last validation may precede the last
    epoch (e.g. epoch 330 of 336): ``val_epoch`` says which epoch ``val_psnr`` is from.
    ``finetune_steps`` counts the steps of a fine-tune after the epochs (``labkit.finetune``:
    the shipped ``resae-rd``'s GPU steps, the ``cpu`` profile's ``resae-rd-fast``), and
    ``train_s`` is the wall clock of every stage the checkpoint records.
    """
    rows = []
    for name in models:
        cfg_path = Path(weights_dir) / name / "config.json"
        meta = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        h = histories.get(name, {})
        epochs = h.get("epoch") or list(range(1, len(h.get("val_psnr", [])) + 1))
        val = [(e, v) for e, v in zip(epochs, h.get("val_psnr", [])) if v is not None]
        val_epoch, val_psnr = val[-1] if val else (None, meta.get("final_val_psnr"))
        epochs: Any = meta.get("epochs_completed", len(h.get("epoch", [])))
        if "decoder_fit" in meta:  # a decoder fit counts steps (labkit.decoder_fit)
            epochs = _decoder_fit_stages(meta)
        elif isinstance(more := meta.get("decoder_continuation"), Mapping) and more.get("steps"):
            epochs = f"{epochs}, + {more['steps']} decoder steps"  # trained whole, then its decoder alone
        rows.append({"model": name, "params": meta.get("param_count"),
                     "epochs": epochs, "finetune_steps": _finetune_steps(meta),
                     "train_s": meta.get("train_seconds"), "device": meta.get("device"),
                     "val_psnr": val_psnr, "val_epoch": val_epoch,
                     "b_train": trained_bits(meta.get("train", {})),
                     "noise": meta.get("noise")})
    return rows


def _decoder_fit_stages(meta: Mapping[str, Any]) -> str:
    """A decoder fit's stages in words: its own steps (when recorded) and a later decoder continuation's."""
    source = meta["decoder_fit"].get("source")
    text = f"decoder fit from {source}" + (f", {meta['steps']} steps" if meta.get("steps") else "")
    more = meta.get("decoder_continuation")
    if isinstance(more, Mapping) and more.get("steps"):
        text += f", + {more['steps']} decoder steps"
    return text


def _finetune_steps(meta: Mapping[str, Any]) -> int | None:
    """Steps of every whole-model fine-tune the checkpoint records (``finetune`` and an earlier one), or None."""
    steps = [d["steps"] for key in ("finetune", "previous_finetune")
             if isinstance(d := meta.get(key), Mapping) and isinstance(d.get("steps"), int)]
    return sum(steps) if steps else None


def histogram_facts(symbols_by_b: Mapping[int, np.ndarray]) -> str:
    """One markdown line per fact the symbol histograms show, computed (the prose above them is general).

    Per b: the most frequent symbol and its share, and the share of the top symbol 2^b - 1 beside
    the one below it (the top bin collects each image's largest values, the maximum included).
    """
    mode, top = [], []
    for b in sorted(symbols_by_b):
        counts = np.bincount(np.asarray(symbols_by_b[b]).ravel(), minlength=1 << b).astype(float)
        p = counts / max(counts.sum(), 1.0)
        mode.append(f"b={b}: {int(p.argmax())} ({100 * p.max():.1f} %)")
        if b >= 2:
            top.append(f"b={b}: {100 * p[-1]:.3f} % (the one below: {100 * p[-2]:.3f} %)")
    return ("- Most frequent symbol: " + "; ".join(mode) + ".\n"
            + ("- Top symbol 2^b − 1: " + "; ".join(top) + "." if top else ""))


def context_savings(table: Mapping[int, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Per b: bits saved by each context mode relative to the memoryless (``none``) coder, in percent."""
    rows = []
    for b, t in table.items():
        base = t["coded none"]
        row: dict[str, Any] = {"b": b, "none bits/sym": round(base, 4)}
        for k, v in t.items():
            if k.startswith("coded ") and k != "coded none":
                row[f"{k.removeprefix('coded ')} saves %"] = round(100.0 * (1.0 - v / base), 2) if base > 0 else 0.0
        rows.append(row)
    return rows


def _mean(records: Sequence[Record], key: str) -> float:
    return float(np.mean([r[key] for r in records]))


def criterion_words(held: Sequence[int], failed: Sequence[int], undefined: Sequence[int]) -> str:
    """The course criterion's verdict in words, e.g. ``holds at b = 2, 3; fails at b = 1`` (one wording everywhere)."""
    def bs(values: Sequence[int]) -> str:
        return ", ".join(map(str, values))

    text = f"holds at b = {bs(held)}" if held else "holds at no b"
    text += f"; fails at b = {bs(failed)}" if failed else ""
    text += f"; cannot be read at b = {bs(undefined)} (no overlap)" if undefined else ""
    return text


def summary(curves_: Curves, learned: Sequence[Record], matched: Sequence[Record], crit: Sequence[Mapping[str, Any]],
            bd: Sequence[Mapping[str, Any]], n_images: int, floor: Mapping[str, Any] | None = None,
            models: Sequence[str] | None = None, described: str | None = None) -> dict[str, Any]:
    """Headline numbers and an honest paragraph generated from them (quoted in the README).

    ``described`` says what the test images are (``workflow.test_description``); the paragraph
    opens with it.
    """
    if models is None:
        models = [n for n, c in curves_.items() if "b" in c and n != "jpeg-matched"]
    shown = grid_models(models)
    head: dict[str, Any] = {"n_images": n_images}
    if floor:
        head["jpeg_floor"] = dict(floor)
    if described:
        head["test_images"] = described
    lines = [f"On {n_images} {described or 'test images'}:"]
    for b in (1, 2, 3):
        j = select(matched, b=b)
        row: dict[str, Any] = {}
        for m in shown:
            r = select(learned, codec=m, b=b)
            if r:
                row[f"{m}_bpp"], row[f"{m}_ssim"], row[f"{m}_psnr"] = _mean(r, "bpp"), _mean(r, "ssim"), _mean(r, "psnr")
        if j:
            row["jpeg_bpp"], row["jpeg_ssim"], row["jpeg_psnr"] = _mean(j, "bpp"), _mean(j, "ssim"), _mean(j, "psnr")
            row["jpeg_matched_to"] = j[0].get("matched_to", REFERENCE)
            # mean JPEG bpp over the mean bpp it was matched to (a ratio of the means quoted beside it)
            row["jpeg_bits_ratio"] = _mean(j, "bpp") / _mean(j, "target_bpp")
        if not row:
            continue
        row = rounded(row)  # the digits metrics.json keeps, so this text and headline_table round alike
        head[f"b{b}"] = row
        parts = [f"{label(m)} {row[f'{m}_bpp']:.3f} bpp, SSIM {row[f'{m}_ssim']:.3f}, PSNR {row[f'{m}_psnr']:.2f} dB"
                 for m in shown if f"{m}_bpp" in row]
        if j:
            parts.append(f"{label('jpeg-matched')}: {row['jpeg_bpp']:.3f} bpp ({row['jpeg_bits_ratio']:.1f}× "
                         f"{label(row['jpeg_matched_to'])}'s mean bpp), SSIM {row['jpeg_ssim']:.3f}")
        lines.append(f"- b={b}: " + "; ".join(parts) + ".")
    if floor:
        what = ("optimized JPEG (Huffman tables fitted to the image; Pillow's default JPEG gives the same pixels "
                "in more bytes)" if floor.get("codec", "jpeg-opt") == "jpeg-opt" else "Pillow's default JPEG")
        lines.append(f"- {label('jpeg-matched')} is {what}. Its smallest files (q={floor['quality']}) "
                     f"average {floor['mean_bpp']:.3f} bpp ({floor['min_bpp']:.3f}–{floor['max_bpp']:.3f}): below "
                     "that it cannot match the learned codecs' rate.")
    anchor = COURSE_ANCHOR
    for test in dict.fromkeys(r["test"] for r in crit):
        rows_ = [r for r in crit if r["test"] == test and r["anchor"] == anchor]
        if rows_:
            held = [r["b"] for r in rows_ if r["holds"] is True]
            failed = [r["b"] for r in rows_ if r["holds"] is False]
            undef = [r["b"] for r in rows_ if r["holds"] is None]
            head.setdefault("criterion", {})[f"{test}_vs_{anchor}"] = dict(holds_at=held, fails_at=failed,
                                                                          undefined_at=undef)
            lines.append(f"- Course criterion, {label(test)} vs {label(anchor)}: " + criterion_words(held, failed, undef)
                         + ".")
    # the same rule against every other anchor (JPEG at ResAE's bpp, the classic codecs): where it fails
    for test in dict.fromkeys(r["test"] for r in crit):
        others = [r for r in crit if r["test"] == test and r["anchor"] != anchor]
        if not others:
            continue
        fails: dict[str, list[int]] = {}
        unread: dict[str, list[int]] = {}
        for r in others:
            if r["holds"] is not True:
                (fails if r["holds"] is False else unread).setdefault(r["anchor"], []).append(r["b"])
        head.setdefault("criterion_fails", {})[test] = fails
        if unread:
            head.setdefault("criterion_unread", {})[test] = unread
        where = ("fails against " + "; ".join(f"{label(a)} at b = {', '.join(map(str, bs))}" for a, bs in fails.items())
                 if fails else "fails against none")
        if unread:
            where += ("; cannot be read (no overlap) against "
                      + "; ".join(f"{label(a)} at b = {', '.join(map(str, bs))}" for a, bs in unread.items()))
        lines.append(f"- Course criterion, {label(test)} vs JPEG and the classic codecs: {where}.")
    for test in dict.fromkeys(r["test"] for r in bd):
        for metric, name in (("ssim", "SSIM"), ("psnr", "PSNR")):
            rows_ = [r for r in bd if r["test"] == test]
            head.setdefault(f"bd_rate_{metric}_pct", {})[test] = {r["anchor"]: r[f"bd_rate_{metric}_pct"] for r in rows_}
            parts = [f"{label(r['anchor'])} {r[f'bd_rate_{metric}_pct']:+.1f}% (over {name} "
                     f"{_fmt_range(r[f'{metric}_overlap'])})" for r in rows_ if r[f"bd_rate_{metric}_pct"] is not None
                     and math.isfinite(r[f"bd_rate_{metric}_pct"])]
            # each left-out curve with its own reason: no overlap, too narrow an overlap, or too few points
            out = [f"{label(r['anchor'])} ({str(r.get(f'{metric}_left_out') or 'no value').split(':')[0]})"
                   for r in rows_ if r[f"bd_rate_{metric}_pct"] is None or not math.isfinite(r[f"bd_rate_{metric}_pct"])]
            lines.append(f"- BD-rate of {label(test)} on {name} (negative = fewer bits): " + (", ".join(parts) or "none")
                         + (f"; left out (a BD-rate needs {rd.MIN_BD_POINTS} points per curve and an overlap of at least "
                            f"{100 * rd.MIN_BD_OVERLAP:.0f} % of the joint range): " + ", ".join(out) if out else "")
                         + ".")
    return {"headline": head, "text": "\n".join(lines)}


def headline_table(head: Mapping[str, Any], anchors: Sequence[str] = ("webp", "resae")) -> str:
    """The headline numbers of :func:`summary` as a short plain-text table, for a terminal.

    What ``labkit reproduce`` and ``00_reproduce`` print at the end of a run: per b = 1..3 each
    model's mean bpp, PSNR and SSIM (and JPEG at the matched bpp), the course criterion per
    model, and each proposed model's BD-rates against ``anchors``.  Every number is one of
    ``head``'s (``metrics.json``'s ``evaluate.summary.headline``), rounded for reading; the
    file keeps them all.

    Parameters
    ----------
    head : Mapping
        The ``headline`` dict of :func:`summary`.
    anchors : sequence of str
        Codecs or models to quote BD-rates against, when ``head`` has them.

    Returns
    -------
    str
        About twenty lines, no trailing newline.
    """
    n = head.get("n_images")
    what = head.get("test_images", "test images")
    lines = [f"Headline numbers{f' on {n} {what}' if n else ''} (mean per image):",
             f"  {'b':>2}  {'model':<22}{'bpp':>8}{'PSNR dB':>9}{'SSIM':>8}"]

    def order(model: str) -> int:
        return MODELS.index(model) if model in MODELS else len(MODELS)

    for b in (1, 2, 3):
        row = head.get(f"b{b}")
        if not row:
            continue
        found = [k.removesuffix("_bpp") for k in row if k.endswith("_bpp")]
        # the report's order (profiles.MODELS: the seed's, the proposed, the course's), JPEG last
        names = sorted(found, key=lambda m: (m == "jpeg", order(m)))
        for i, m in enumerate(names):
            name = (f"JPEG ({row['jpeg_bits_ratio']:.1f}x {label(row['jpeg_matched_to'])}'s)"  # nearest it can get
                    if m == "jpeg" and "jpeg_matched_to" in row and "jpeg_bits_ratio" in row
                    else label("jpeg-matched" if m == "jpeg" else m))   # the headline's JPEG is the matched one
            lines.append(f"  {str(b) if i == 0 else '':>2}  {name:<22}{row[f'{m}_bpp']:>8.3f}"
                         f"{row[f'{m}_psnr']:>9.2f}{row[f'{m}_ssim']:>8.3f}")
    for key, verdict in sorted(head.get("criterion", {}).items(), key=lambda kv: order(kv[0].partition("_vs_")[0])):
        test, _, anchor = key.partition("_vs_")
        held, failed, undef = verdict.get("holds_at", []), verdict.get("fails_at", []), verdict.get("undefined_at", [])
        lines.append(f"Course criterion, {label(test)} vs {label(anchor)}: {criterion_words(held, failed, undef)}")
    unread_all = head.get("criterion_unread", {})
    for test, fails in sorted(head.get("criterion_fails", {}).items(), key=lambda kv: order(kv[0])):
        where = "; ".join(f"{label(a)} at b = {', '.join(map(str, bs))}" for a, bs in fails.items()) or "none"
        unread = "; ".join(f"{label(a)} at b = {', '.join(map(str, bs))}" for a, bs in unread_all.get(test, {}).items())
        lines.append(f"  {label(test)} fails it against: {where}" + (f" (cannot be read against {unread})" if unread else ""))
    psnr, ssim = head.get("bd_rate_psnr_pct", {}), head.get("bd_rate_ssim_pct", {})

    def pct(v: Any) -> str:
        return "left out" if v is None or not math.isfinite(v) else f"{v:+.1f} %"

    for test in sorted(proposed(list(dict.fromkeys([*ssim, *psnr]))), key=order):
        parts = [f"vs {label(a)} SSIM {pct(ssim.get(test, {}).get(a))}, PSNR {pct(psnr.get(test, {}).get(a))}"
                 for a in anchors if a != test and (a in ssim.get(test, {}) or a in psnr.get(test, {}))]
        if parts:
            lines.append(f"BD-rate of {label(test)} (negative = fewer bits): " + "; ".join(parts))
    return "\n".join(lines)


def _fmt_range(r: Sequence[float] | None) -> str:
    if not r:
        return "–"
    digits = 3 if max(abs(x) for x in r) < 2 else 1
    return f"{r[0]:.{digits}f}–{r[1]:.{digits}f}"


README_START = "<!-- results:start (generated by `make figures` from figures/metrics.json; do not edit) -->"
README_END = "<!-- results:end -->"


def results_markdown(evaluate_metrics: Mapping[str, Any]) -> str:
    """The README's results block: headline prose, course-criteria table and BD-rates, from metrics.json."""
    s = evaluate_metrics["summary"]

    def nan_for_null(rows: Sequence[Mapping[str, Any]], keep: Sequence[str]) -> list[dict[str, Any]]:
        return [{k: (float("nan") if v is None and k not in keep else v) for k, v in r.items()} for r in rows]

    crit = nan_for_null(evaluate_metrics["criteria"], ("holds",))
    bd = evaluate_metrics["bd_rate"]
    parts = [s["text"], "",
             f"Course criteria ({criteria_rule()}); \"at anchor's b point\" = the test model's point lies outside "
             "the anchor's range, so the anchor's point at the same b is read against the test model's curve:", "",
             criteria_markdown(crit), "",
             "BD-rate of each model against each codec (negative = fewer bits for the same quality; Akima "
             "interpolation over the overlapping quality range only, shown with its share of the two curves' joint "
             f"range; left out where the curves do not overlap or the overlap is < {100 * rd.MIN_BD_OVERLAP:.0f} %):", "",
             bd_markdown(bd)]
    return "\n".join(parts)


def update_readme(readme: str, evaluate_metrics: Mapping[str, Any]) -> str:
    """``readme`` with the text between the results markers replaced by :func:`results_markdown`."""
    if README_START not in readme or README_END not in readme:
        return readme
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{results_markdown(evaluate_metrics)}\n{README_END}{tail}"
