"""Does refinement's SSIM weight or rate price close b = 4's gap to WebP? (a probe, 2026-11-28)

    python tools/exp_refine_b4.py --tiles holdout --variants 0:1:0 0.01:1:30 0.03:1:30 0.1:1:30 0.01:2:30 \\
        0.01:4:30 0.02:4:30 0.005:3:30

Each variant is ``ssim_weight:rate_scale:steps`` (steps 0: no refinement; see ``tools/exp_refine.py``).
The default model codes the tiles at b = 4 through the real codec (whole-file bytes), and the mean
point is compared with WebP's curve on the same tiles at the same bpp (``report.at_equal_rate``).
``--tiles holdout`` uses the tiles of the photo no split uses (``data.holdout_tiles``), so the
choice is not made on the test tiles. One thread. Writes
benchmarks/results/experiments/refine_b4.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit import atomic, baselines, codec as codec_mod, data, evaluate, metrics, report, spec  # noqa: E402
from labkit.refine import RefineSettings  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", choices=("holdout", "test"), default="holdout")
    p.add_argument("--b", type=int, default=4)
    p.add_argument("--variants", nargs="+", default=["0:1:0", "0.01:1:30"], metavar="SSIM:RATE:STEPS")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/experiments/refine_b4.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    tiles = data.holdout_tiles() if args.tiles == "holdout" else data.default_dataset("test")
    webp = evaluate.mean_curve(evaluate.evaluate_sweeps(tiles, {"webp": baselines.SWEEPS["webp"]}, progress=False),
                               "webp", by="quality")
    rows = []
    for variant in args.variants:
        sw, rs, steps = variant.split(":")
        c = codec_mod.Codec.from_pretrained(b=args.b)
        if int(steps):
            c.refine = RefineSettings(steps=int(steps), rate_weight=float(rs) * spec.colour_map_rate_weight(args.b),
                                      ssim_weight=float(sw), lr=spec.REFINE_LR)
        t0 = time.perf_counter()
        points = []
        for img in tiles:
            coded = c.encode(img)
            rec = codec_mod.decode(coded)
            points.append((spec.bits_per_pixel(len(coded), *img.shape[:2]), metrics.psnr(img, rec), metrics.ssim(img, rec)))
        bpp, psnr, ssim = (float(v) for v in np.mean(points, axis=0))
        curves = {"m": {"b": [args.b], "bpp": [bpp], "psnr": [psnr], "ssim": [ssim]}, "webp": webp}
        eq = report.at_equal_rate(curves, "m", "webp", bits=[args.b])[0]
        rows.append(dict(variant=variant, bpp=bpp, psnr=psnr, ssim=ssim, dssim_vs_webp=eq["dssim"],
                         dpsnr_vs_webp=eq["dpsnr"], seconds=round(time.perf_counter() - t0, 1)))
        print(f"{variant:>12}: {bpp:.4f} bpp, {psnr:.2f} dB, SSIM {ssim:.4f}; vs WebP at that bpp "
              f"{eq['dssim']:+.4f} SSIM, {eq['dpsnr']:+.2f} dB", flush=True)
    atomic.write_text(args.out, json.dumps(jsonable({"cpu": cpu_name(), "tiles": args.tiles, "n_tiles": len(tiles),
                                                     "b": args.b, "model": spec.DEFAULT_MODEL, "rows": rows}),
                                           indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
