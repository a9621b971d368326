"""How the colour maps should be priced: one rate weight for every b, or the RD curve's slope per b.

    python tools/exp_colour_pricing.py      # ~4 min on 2 cores; writes the JSON below

resae-rd on the default test tiles at b = 1..5 with colour maps (and grids) chosen by
labkit.colour.choose under three prices of a bit:

* ``one map``: no grids, only the global map at 0.015 (the chain before grids of maps);
* ``constant``: 0.015 for every b (the model's training lambda, the rule before per-b weights);
* ``slope at b``: labkit.spec.COLOUR_MAP_RATE_WEIGHTS, the geometric mean of the secant slopes
  on either side of b (tools/measure_map_rate_weights.py) -- the shipped rule;
* ``slope to b+1``: the secant to the next bit depth only (what b + 1 would charge).

Prints each curve (bpp / PSNR / SSIM per b), its BD-rates against ``one map``, ``constant`` and
WebP swept over its whole range.  Writes benchmarks/results/experiments/colour_pricing.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit import baselines, colour, metrics, rd, spec  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import get_splits  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "colour_pricing.json"


def policies() -> dict[str, dict[int, float]]:
    recorded = json.loads((OUT.parent / "colour_rate_weights.json").read_text())
    secants = recorded["secants"]  # b -> b+1 for b = 1..4
    forward = {b: secants[min(b, 4) - 1] for b in range(1, 6)}
    return {"one map": dict.fromkeys(range(1, 6), 0.015), "constant": dict.fromkeys(range(1, 6), 0.015),
            "slope at b": dict(spec.COLOUR_MAP_RATE_WEIGHTS), "slope to b+1": forward}


def curve(tiles: np.ndarray, weights: dict[int, float], grids: bool = True) -> list[dict]:
    points = []
    saved, saved_grids = dict(spec.COLOUR_MAP_RATE_WEIGHTS), colour.GRID_CANDIDATES
    try:
        spec.COLOUR_MAP_RATE_WEIGHTS.update(weights)
        colour.GRID_CANDIDATES = colour.GRID_CANDIDATES if grids else (1,)
        for b in range(1, 6):
            codec = Codec.from_pretrained("resae-rd", b=b)
            results = [codec.compress(x) for x in tiles]
            points.append({"b": b, "bpp": float(np.mean([r.bpp for r in results])),
                           "psnr": float(np.mean([metrics.psnr(x, r.recon) for x, r in zip(tiles, results)])),
                           "ssim": float(np.mean([metrics.ssim(x, r.recon) for x, r in zip(tiles, results)])),
                           "grids": int(sum(r.header.colour_grid not in (None, (1, 1)) for r in results))})
    finally:
        spec.COLOUR_MAP_RATE_WEIGHTS.update(saved)
        colour.GRID_CANDIDATES = saved_grids
    return points


def bd(anchor: list[dict], test: list[dict], key: str) -> dict:
    d = rd.bd_detail([p["bpp"] for p in anchor], [p[key] for p in anchor],
                     [p["bpp"] for p in test], [p[key] for p in test])
    return {"value": None if np.isnan(d["value"]) else round(float(d["value"]), 2), "overlap": d["overlap"],
            "reason": d.get("reason")}


def main() -> int:
    torch.set_num_threads(1)
    tiles = get_splits(None, 0)["test"]
    webp = []
    for q in baselines.SWEEPS["webp"]:
        rr = [baselines.compress(x, "webp", q) for x in tiles]
        webp.append({"q": q, "bpp": float(np.mean([r["bpp"] for r in rr])),
                     "psnr": float(np.mean([metrics.psnr(x, r["recon"]) for x, r in zip(tiles, rr)])),
                     "ssim": float(np.mean([metrics.ssim(x, r["recon"]) for x, r in zip(tiles, rr)]))})
    curves = {name: curve(tiles, w, grids=name != "one map") for name, w in policies().items()}
    out = {"command": "python tools/exp_colour_pricing.py", "tiles": len(tiles), "policies": policies(),
           "curves": curves, "bd": {}}
    for name, pts in curves.items():
        print(name, " ".join(f"b{p['b']} {p['bpp']:.4f}/{p['psnr']:.2f}/{p['ssim']:.4f} ({p['grids']} grids)"
                             for p in pts))
        out["bd"][name] = {f"vs {ref} {key}": bd(ref_pts, pts, key)
                           for ref, ref_pts in (("one map", curves["one map"]), ("constant", curves["constant"]),
                                                ("webp", webp))
                           for key in ("psnr", "ssim")}
        for k, v in out["bd"][name].items():
            print(f"  {k}: {v['value']} % over {v['overlap']} {v['reason'] or ''}")
    OUT.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
