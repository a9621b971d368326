"""Learned codecs on whole photos: BD-rates at full size and the colour check.

    python benchmarks/bench_fullsize.py [--models resae-rd resae-rd-fast resae ae2] [--bits 1 2 3 4 5]

1. The default test photos (scikit-image's coffee.png and rocket.jpg, the photos the
   default test tiles are cut from) at full size: per codec the mean curve over the photos
   (bpp, PSNR, SSIM from real bytes), and BD-rates of every learned model against WebP,
   JPEG and `resae`, each with the quality interval it averages over.
2. astronaut, camera, chelsea and coffee at full size: mean CIE76 colour error per b
   (target: every b >= 2 at most 6).
Writes benchmarks/results/bench_fullsize.json; prints the CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import atomic, photos, rd, report, spec  # noqa: E402
from labkit.data import DEFAULT_SOURCES  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def mean_curve(records: list[dict], key: str) -> dict[str, dict[str, list[float]]]:
    """codec -> {bpp, psnr, ssim} lists, averaged over photos per setting (``key``: b or quality)."""
    out: dict[str, dict[str, list[float]]] = {}
    for codec in sorted({r["codec"] for r in records}):
        rs = [r for r in records if r["codec"] == codec]
        settings = sorted({r[key] for r in rs})
        out[codec] = {m: [float(np.mean([r[m] for r in rs if r[key] == s])) for s in settings]
                      for m in ("bpp", "psnr", "ssim")}
        out[codec][key] = settings
    return out


def bd_rows(curves: dict, models: list[str], classic: list[str]) -> list[dict]:
    """Each model's BD-rates (PSNR and SSIM) against every classic codec and every other model."""
    rows = []
    for test in models:
        for anchor in [*classic, *[m for m in models if m != test]]:
            for metric in ("psnr", "ssim"):
                a, t = curves[anchor], curves[test]
                rows.append({"test": test, "anchor": anchor, "metric": metric,
                             **rd.bd_detail(a["bpp"], a[metric], t["bpp"], t[metric])})
    return rows


def rederive(path: Path) -> bool:
    """Recompute a recorded result's BD-rates from its curves with today's ``labkit.rd``; True if they changed."""
    result = json.loads(path.read_text())
    models = list(dict.fromkeys(r["test"] for r in result["bd"]))
    classic = [a for a in dict.fromkeys(r["anchor"] for r in result["bd"]) if a not in models]
    fresh = jsonable(bd_rows(result["curves"], models, classic))
    if fresh == result["bd"]:
        return False
    atomic.write_text(path, json.dumps(result | {"bd": fresh}, indent=1) + "\n")
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resae-rd", "resae-rd-fast", "resae", "ae2"])
    p.add_argument("--bits", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--classic", nargs="+", default=["webp", "jpeg-opt"])
    p.add_argument("--scale-search", nargs="*", default=[], metavar="MODEL",
                   help="models whose encoder chooses the stored scale per image (Codec(scale='search'))")
    p.add_argument("--refine", nargs="*", default=[], metavar="MODEL",
                   help="models whose encoder refines the latent (Codec(refine=--refine-steps))")
    p.add_argument("--refine-steps", type=int, default=spec.REFINE_STEPS, metavar="N")
    p.add_argument("--weights-dir", default=None,
                   help="folder with <model>/ checkpoints (default: the shipped weights), e.g. a candidate's")
    p.add_argument("--out", default=None,
                   help="default: benchmarks/results/bench_fullsize.json (_search / _refine added to the name "
                        "with --scale-search / --refine)")
    p.add_argument("--rederive", nargs="+", default=None, metavar="FILE",
                   help="measure nothing: recompute these recorded results' BD-rates from their own curves "
                        "with today's labkit.rd, and rewrite them in place")
    args = p.parse_args()
    if args.rederive:
        for path in map(Path, args.rederive):
            print(f"{path}: {'rewrote bd' if rederive(path) else 'already current'}")
        return 0
    scales = {n: spec.SCALE_SEARCH for n in args.scale_search}
    refine = {n: args.refine_steps for n in args.refine}
    args.out = args.out or str(Path(__file__).resolve().parent / "results"
                               / f"bench_fullsize{'_search' if scales else ''}{'_refine' if refine else ''}.json")
    t0 = time.perf_counter()
    test_photos = DEFAULT_SOURCES["test"]
    learned = photos.evaluate_learned_photos(args.models, test_photos, args.bits, scales=scales,
                                             refine=refine, weights_dir=args.weights_dir)
    classic = photos.evaluate_classic_photos(args.classic, test_photos)
    # rounded as the file keeps them, so a --rederive of the file computes the same BD-rates
    curves = report.rounded({**mean_curve(learned, "b"), **mean_curve(classic, "quality")})
    bd = bd_rows(curves, args.models, args.classic)
    colour = photos.evaluate_learned_photos(args.models, photos.COLOUR_PHOTOS, args.bits, scales=scales,
                                            refine=refine, weights_dir=args.weights_dir)
    result = {"cpu": cpu_name(), "seconds": round(time.perf_counter() - t0, 1), "test_photos": test_photos,
              **({"weights_dir": str(args.weights_dir)} if args.weights_dir else {}),
              "scales": scales, "refine": refine, "curves": curves, "bd": bd,
              "colour": [{k: r[k] for k in ("codec", "b", "photo", "scale", "bpp", "psnr", "ssim", "delta_e")}
                         for r in colour]}
    atomic.write_text(args.out, json.dumps(jsonable(result), indent=1) + "\n")  # left-out BD-rates: null
    print(f"CPU: {result['cpu']}; {result['seconds']} s; photos {', '.join(test_photos)} at full size")
    for name, c in curves.items():
        pts = ", ".join(f"{b:.3f} bpp {q:.2f} dB {s:.3f}" for b, q, s in zip(c["bpp"], c["psnr"], c["ssim"]))
        print(f"  {name:9s} {pts}")
    print("BD-rate (akima; negative = fewer bits than the anchor at equal quality; over the quality overlap):")
    for r in bd:
        val = f"left out ({r['reason']})" if r["reason"] else f"{r['value']:+.1f} %"
        ov = "" if r["overlap"] is None else f"over {r['overlap'][0]:.3f}..{r['overlap'][1]:.3f}"
        print(f"  {r['test']:9s} vs {r['anchor']:9s} {r['metric']:4s} {val} {ov}")
    print("Mean CIE76 dE per photo (target: <= 6 at every b >= 2):")
    for name in args.models:
        for b in args.bits:
            rs = [r for r in colour if r["codec"] == name and r["b"] == b]
            cells = "  ".join(f"{r['photo'].split('.')[0]} {r['delta_e']:.1f}" for r in rs)
            ok = all(r["delta_e"] <= 6 for r in rs)
            print(f"  {name:9s} b={b}  {cells}  {'ok' if ok or b < 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
