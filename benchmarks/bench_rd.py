"""Rate-distortion targets of the models/codec issue, printed from a real run.

    python benchmarks/bench_rd.py                                   # embedded default test split, shipped weights
    python benchmarks/bench_rd.py --data-dir DIR --weights-dir W    # e.g. course128 with models trained on its train part

Prints, for ResAE vs AE2: the course criterion at b=2..5; ResAE vs JPEG (course method,
matched bpp) at b=1..3; BD-rates against every classic codec; and writes the numbers as
JSON (default benchmarks/results/bench_rd[_<data>].json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import evaluate, report  # noqa: E402
from labkit.codec import WEIGHTS_DIR, load_pretrained  # noqa: E402
from labkit.data import get_splits  # noqa: E402
from labkit.profiles import SWEEP_DEFAULT  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="course-layout folder (default: embedded data)")
    p.add_argument("--weights-dir", default=None, help="folder with resae/ and ae2/ checkpoints (default: shipped)")
    p.add_argument("--context", default="neighbor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    t0 = time.perf_counter()
    images = get_splits(args.data_dir, args.seed)["test"]
    wdir = Path(args.weights_dir) if args.weights_dir else WEIGHTS_DIR
    nets = {n: load_pretrained(n, wdir)[0] for n in ("resae", "ae2")}
    learned = evaluate.evaluate_learned(nets, images, [1, 2, 3, 4, 5], args.context, progress=False)
    matched = evaluate.evaluate_matched_jpeg(images, evaluate.select(learned, codec="resae"))
    sweeps = evaluate.evaluate_sweeps(images, SWEEP_DEFAULT, progress=False)
    curves = report.curves(learned, matched, sweeps, list(nets), list(SWEEP_DEFAULT))
    crit = report.criteria(curves, ["ae2", "jpeg-matched"], bits=[1, 2, 3, 4, 5])
    bd = report.bd_rates(curves)
    data = args.data_dir or "embedded default test split"
    print(f"data: {data} ({len(images)} test images); weights: {wdir}; context={args.context}")
    print("\nmean per b            ResAE bpp  SSIM   PSNR |  AE2 bpp  SSIM   PSNR | JPEG@matched bpp  SSIM")
    for i, b in enumerate(curves["resae"]["b"]):
        r, a, j = curves["resae"], curves["ae2"], curves["jpeg-matched"]
        print(f"  b={b}                  {r['bpp'][i]:.4f} {r['ssim'][i]:.4f} {r['psnr'][i]:6.2f} | {a['bpp'][i]:.4f} "
              f"{a['ssim'][i]:.4f} {a['psnr'][i]:6.2f} |          {j['bpp'][i]:.4f} {j['ssim'][i]:.4f}")
    print("\ncourse criteria (ResAE vs anchor): +0.05 SSIM at equal bpp, or >=3% fewer bits at equal SSIM")
    print(report.criteria_markdown(crit))
    print("\nBD-rate of ResAE (negative = fewer bits at equal quality; Akima, overlapping range only)")
    print(report.bd_markdown(bd))
    elapsed = time.perf_counter() - t0
    print(f"\n({elapsed:.1f} s)")
    tag = "" if not args.data_dir else "_" + Path(args.data_dir).resolve().name
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"bench_rd{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable({"data": data, "n_images": len(images), "weights": str(wdir),
                                         "curves": curves, "criteria": crit, "bd_rate": bd}), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
