"""Rate-distortion targets of the models/codec issue, printed from a real run.

    python benchmarks/bench_rd.py                                   # embedded default test split, shipped weights
    python benchmarks/bench_rd.py --data-dir DIR --weights-dir W    # e.g. course128 with models trained on its train part
    python benchmarks/bench_rd.py --scale-search resae-rd-fast      # that model's encoder searches the scale per image
    python benchmarks/bench_rd.py --refine resae-rd-fast            # that model's encoder refines its latent (labkit.refine)
    python benchmarks/bench_rd.py --data-dir DIR --weights-dir W --curves-from EARLIER.json   # W holds one retrained model
    python benchmarks/bench_rd.py --rederive benchmarks/results/bench_rd*.json   # tables of recorded curves, today's rules

Prints, for every model of ``labkit.profiles.MODELS`` found in the weights folder (others are
skipped with a message): mean bpp/SSIM/PSNR per b beside JPEG at matched bpp (the course
method); the course criterion of each proposal vs AE2 and vs that JPEG at b=1..5; BD-rates
of each proposal against every curve, each with the quality overlap it averages over (left
out below ``labkit.rd.MIN_BD_OVERLAP``); and writes the numbers as JSON (default
benchmarks/results/bench_rd[_<data>].json). Classic codecs use ``labkit.baselines.SWEEPS``,
each from its lowest setting.

``--curves-from`` compares a folder that holds only some models (one retrained on a course folder,
say) with the rest of an earlier run on the same images: the missing models' curves, and JPEG at
matched bpp when the reference model is missing, are read from that file and named in the output's
``curves_from``; the classic codecs are measured again and checked against it.

``--rederive`` measures nothing: it recomputes a recorded file's criteria, BD-rates and
equal-rate rows from its own curves with today's ``labkit.report`` (after a change of those rules,
say) and rewrites only those tables, so every committed result reads by the same rules as the
report. ``tests/test_results.py`` checks that they do.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import atomic, baselines, evaluate, report, spec  # noqa: E402
from labkit.baselines import SWEEPS  # noqa: E402
from labkit.codec import load_pretrained  # noqa: E402
from labkit.data import get_splits  # noqa: E402
from labkit.paths import WEIGHTS_DIR  # noqa: E402
from labkit.profiles import MODELS, REFERENCE  # noqa: E402
from labkit.workflow import available, jsonable  # noqa: E402


CRITERIA_ANCHORS = [report.COURSE_ANCHOR, "jpeg-matched"]
CRITERIA_BITS = [1, 2, 3, 4, 5]


def derived_tables(curves: dict) -> dict:
    """The tables a result derives from its curves: course criteria, BD-rates, rows at WebP's rate.

    Every learned model but the reference (ResAE) is compared with WebP at the same bpp, whether
    its curve was measured in this run or taken from an earlier one (``--curves-from``).

    Parameters
    ----------
    curves : dict
        ``report.curves`` of one run (each model's and codec's mean bpp / SSIM / PSNR per point).

    Returns
    -------
    dict
        ``criteria``, ``bd_rate`` and ``at_equal_rate``, as JSON-ready values (NaN as None).
    """
    anchors = [a for a in CRITERIA_ANCHORS if a in curves]
    vs_webp = [n for n in MODELS if n in curves and n != REFERENCE] if "webp" in curves else []
    return jsonable({"criteria": report.criteria(curves, anchors, bits=CRITERIA_BITS),
                     "bd_rate": report.bd_rates(curves),
                     "at_equal_rate": {f"{n} vs webp": report.rounded(report.at_equal_rate(curves, n, "webp"))
                                       for n in vs_webp}})


def rederive(path: Path) -> list[str]:
    """Rewrite ``path``'s derived tables from its curves; return the names of the tables that changed."""
    result = json.loads(path.read_text())
    fresh = derived_tables(result["curves"])
    changed = [key for key, value in fresh.items() if (key in result or value) and result.get(key) != value]
    if changed:
        atomic.write_text(path, json.dumps(result | fresh, indent=1) + "\n")
    return changed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="course-layout folder (default: embedded data)")
    p.add_argument("--weights-dir", default=None,
                   help="folder with <model>/ checkpoints of labkit.profiles.MODELS (default: shipped)")
    p.add_argument("--context", default=None, help="coder context mode (default: each model's own, labkit.codec.Codec)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale-search", nargs="*", default=[], metavar="MODEL",
                   help="models whose encoder chooses the stored scale per image (Codec(scale='search')); "
                        "the JSON file name gets _search")
    p.add_argument("--refine", nargs="*", default=[], metavar="MODEL",
                   help="models whose encoder refines the latent (Codec(refine=--refine-steps)); "
                        "the JSON file name gets _refine")
    p.add_argument("--refine-steps", type=int, default=spec.REFINE_STEPS, metavar="N",
                   help=f"refinement steps for --refine (default {spec.REFINE_STEPS})")
    p.add_argument("--curves-from", default=None, metavar="FILE",
                   help="an earlier bench_rd result on the same images: the curves of the models missing from "
                        "--weights-dir (and JPEG at matched bpp without the reference model) come from it")
    p.add_argument("--out", default=None,
                   help="JSON file for the results (default: benchmarks/results/bench_rd[_<data>][_search][_refine].json "
                        "for the shipped weights; with --weights-dir, that name inside the weights folder, so a run "
                        "of your own weights never replaces a committed result)")
    p.add_argument("--rederive", nargs="+", default=None, metavar="FILE",
                   help="measure nothing: recompute these recorded results' criteria, BD-rates and equal-rate rows "
                        "from their own curves with today's labkit.report, and rewrite those tables in place")
    args = p.parse_args()
    if args.rederive:
        for path in map(Path, args.rederive):
            changed = rederive(path)
            print(f"{path}: {'rewrote ' + ', '.join(changed) if changed else 'already current'}")
        return 0
    earlier = json.loads(Path(args.curves_from).read_text()) if args.curves_from else None
    t0 = time.perf_counter()
    images = get_splits(args.data_dir, args.seed)["test"]
    wdir = Path(args.weights_dir) if args.weights_dir else WEIGHTS_DIR
    names, skipped = available(list(MODELS), wdir)
    if not names:
        raise SystemExit(f"no model of {', '.join(MODELS)} has weights in {wdir}")
    if earlier is not None and earlier["n_images"] != len(images):
        raise SystemExit(f"{args.curves_from} was measured on {earlier['n_images']} images, this run has {len(images)}: "
                         "its curves are not comparable (same --data-dir and --seed needed)")
    for name, why in skipped.items():
        from_earlier = earlier is not None and name in earlier["curves"]
        print(f"{name}: not in {wdir}; its curve comes from {args.curves_from}" if from_earlier else f"{name}: {why}")
    nets = {n: load_pretrained(n, wdir)[0] for n in names}
    scales = {n: spec.SCALE_SEARCH for n in args.scale_search}
    refine = {n: args.refine_steps for n in args.refine}
    learned = report.rounded(evaluate.evaluate_learned(nets, images, [1, 2, 3, 4, 5], args.context, progress=False,
                                                       scales=scales, refine=refine))
    matched = (report.rounded(evaluate.evaluate_matched_jpeg(images, evaluate.select(learned, codec=REFERENCE)))
               if REFERENCE in names else [])
    sweeps = report.rounded(evaluate.evaluate_sweeps(images, SWEEPS, progress=False))
    curves = report.rounded(report.curves(learned, matched, sweeps, names, list(SWEEPS)))
    borrowed: dict = {}
    if earlier is not None:
        taken = [n for n in MODELS if n not in names and n in earlier["curves"]]
        taken += ["jpeg-matched"] if "jpeg-matched" not in curves and "jpeg-matched" in earlier["curves"] else []
        for n in taken:
            curves[n] = earlier["curves"][n]
        differ = [n for n in SWEEPS if curves[n] != earlier["curves"].get(n)]
        if differ:
            print(f"warning: {', '.join(differ)} measure differently here than in {args.curves_from} "
                  "(another codec library version?): the borrowed curves were made beside the old ones")
        borrowed = {"file": args.curves_from, "curves": taken, "classic_codecs_differ": differ}
        curves = {n: curves[n] for n in [*MODELS, "jpeg-matched", *SWEEPS] if n in curves}   # display order
    tables = derived_tables(curves)
    crit, bd, equal = tables["criteria"], tables["bd_rate"], tables["at_equal_rate"]
    # which JPEG the "jpeg-matched" curve is (files without this key matched Pillow's default JPEG)
    matched_jpeg = (baselines.MATCHED_JPEG if matched else
                    (earlier or {}).get("matched_jpeg", "jpeg") if "jpeg-matched" in borrowed.get("curves", []) else None)
    floor = report.jpeg_floor(sweeps, matched_jpeg)   # the floor of the JPEG that was matched
    data = args.data_dir or "embedded default test split"
    print(f"data: {data} ({len(images)} test images); weights: {wdir}; context={args.context or 'the model default'}"
          + (f"; scale searched per image for {', '.join(scales)}" if scales else "")
          + (f"; latent refined ({args.refine_steps} steps) for {', '.join(refine)}" if refine else ""))
    print(f"JPEG's smallest files (q={floor['quality']}): mean {floor['mean_bpp']:.3f} bpp")
    print("\nmean per b: bpp / SSIM / PSNR")
    rows = []
    shown = [n for n in [*MODELS, "jpeg-matched"] if n in curves]
    for i, b in enumerate(curves[shown[0]]["b"]):
        row = {"b": b}
        for n in shown:
            c = curves[n]
            row[n] = f"{c['bpp'][i]:.4f} / {c['ssim'][i]:.4f} / {c['psnr'][i]:.2f}"
        rows.append(row)
    print(report.markdown_table(rows, ["b"] + shown))
    if borrowed:
        print(f"(curves of {', '.join(borrowed['curves'])} from {borrowed['file']})")
    print(f"\ncourse criteria ({report.criteria_rule()})")
    print(report.criteria_markdown(crit))
    print("\nBD-rate (negative = fewer bits at equal quality; Akima, over the stated overlap only)")
    print(report.bd_markdown(bd))
    for key, rows_ in equal.items():
        print(f"\n{key} at the same bpp (target at b = 2..4: SSIM >= WebP's, PSNR within 1 dB)")
        print(report.markdown_table(rows_, ["b", "bpp", "ssim", "anchor_ssim", "dssim", "psnr", "anchor_psnr", "dpsnr"]))
    elapsed = time.perf_counter() - t0
    print(f"\n({elapsed:.1f} s)")
    tag = ("" if not args.data_dir else "_" + Path(args.data_dir).resolve().name) + ("_search" if scales else "") + ("_refine" if refine else "")
    # your own weights' results go beside them, not over the committed file of the same data
    results_dir = Path(args.weights_dir) if args.weights_dir else Path(__file__).parent / "results"
    out = Path(args.out) if args.out else results_dir / f"bench_rd{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(jsonable({"data": data, "n_images": len(images), "weights": str(wdir),
                                         "sweeps": SWEEPS, "scales": scales, "refine": refine, "jpeg_floor": floor,
                                         "matched_jpeg": matched_jpeg, "curves": curves,
                                         "criteria": crit,
                                         "bd_rate": bd, "at_equal_rate": equal}
                                        | ({"curves_from": borrowed} if borrowed else {})), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
