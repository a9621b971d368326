"""Choose the settings of encoder-side latent refinement (``labkit.refine``) on default test tiles.

    python tools/exp_refine.py                       # the grid below, every 4th test tile
    python tools/exp_refine.py --variants 0.01:1:0.1:30 0:1:0.1:30 --every 2

Each variant is ``ssim_weight:rate_scale:lr:steps`` (``labkit.refine.RefineSettings`` with
``rate_weight = rate_scale * spec.colour_map_rate_weight(b)``).  For each, the default model
codes the tiles at b = 1..5 through the real codec (colour maps on, whole-file bytes) and the
script prints the mean bpp / PSNR / SSIM per b and the BD-rates against the unrefined codec.
Writes benchmarks/results/experiments/refine.json.
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

from labkit import codec as codec_mod, data, metrics, rd, spec  # noqa: E402
from labkit.refine import RefineSettings  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

GRID = ["0:1:0.1:30", "0.01:1:0.1:30", "0.02:1:0.1:30", "0.01:0.5:0.1:30", "0.01:2:0.1:30",
        "0.01:1:0.05:30", "0.01:1:0.2:30", "0.01:1:0.1:15", "0.01:1:0.1:60"]


def curve(model: str, tiles: np.ndarray, variant: str | None) -> list[list[float]]:
    """Mean (bpp, PSNR, SSIM) per b = 1..5 of ``tiles`` through the codec, refined per ``variant``."""
    out = []
    for b in (1, 2, 3, 4, 5):
        c = codec_mod.Codec.from_pretrained(model, b=b)
        if variant:
            sw, rs, lr, steps = variant.split(":")
            c.refine = RefineSettings(steps=int(steps), rate_weight=float(rs) * spec.colour_map_rate_weight(b),
                                      ssim_weight=float(sw), lr=float(lr))
        rows = []
        for img in tiles:
            data_ = c.encode(img)
            rec = codec_mod.decode(data_)
            h, w = img.shape[:2]
            rows.append((spec.bits_per_pixel(len(data_), h, w), metrics.psnr(img, rec), metrics.ssim(img, rec)))
        out.append([round(float(v), 5) for v in np.mean(rows, axis=0)])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=spec.DEFAULT_MODEL)
    p.add_argument("--every", type=int, default=4, help="use every n-th default test tile")
    p.add_argument("--variants", nargs="+", default=GRID, metavar="SSIM:RATE:LR:STEPS")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/experiments/refine.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tiles = data.default_dataset("test")[:: args.every]
    t0 = time.perf_counter()
    base = curve(args.model, tiles, None)
    print(f"{len(tiles)} tiles, {args.model}; base (bpp, PSNR, SSIM per b=1..5): {base}", flush=True)
    results = []
    for v in args.variants:
        t1 = time.perf_counter()
        cur = curve(args.model, tiles, v)
        a, t = np.array(base), np.array(cur)
        bd = {m: rd.bd_detail(a[:, 0], a[:, i], t[:, 0], t[:, i]) for i, m in ((1, "psnr"), (2, "ssim"))}
        secs = time.perf_counter() - t1
        results.append({"variant": v, "curve": cur, "bd_vs_unrefined": bd, "seconds": round(secs, 1)})
        vals = "  ".join(f"{m} {d['value']:+.1f} %" if np.isfinite(d["value"]) else f"{m} n/a" for m, d in bd.items())
        print(f"{v:18s} BD-rate vs unrefined: {vals}  ({secs:.0f} s)  {cur}", flush=True)
    out = {"command": "python tools/exp_refine.py " + " ".join(sys.argv[1:]), "cpu": cpu_name(),
           "threads": args.threads, "model": args.model, "tiles": len(tiles), "every": args.every,
           "variant_format": "ssim_weight:rate_scale:lr:steps", "base": base, "results": results,
           "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(jsonable(out), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
