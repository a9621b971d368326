"""The colour maps' rate weights: the slope of resae-rd's own rate-distortion curve at each b.

    python tools/measure_map_rate_weights.py      # ~1 min; writes the JSON below

The encoder sends a colour map (or a grid of them) only when it buys quality at least as
cheaply as the model's own bits do at that b.  This measures that price: resae-rd's mean MSE
(in [0, 1] units) and bpp at b = 1..5 on the default validation tiles, with colour maps off,
the secant slopes ``(MSE_b - MSE_b+1) / (bpp_b+1 - bpp_b)`` between neighbouring b, and the
curve's slope at each b as the geometric mean of the secants on either side (one-sided at
b = 1 and b = 5).  Those slopes, rounded to two significant digits, are
``labkit.spec.COLOUR_MAP_RATE_WEIGHTS`` (tools/exp_colour_pricing.py compares the rules).
Writes benchmarks/results/experiments/colour_rate_weights.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit.codec import Codec  # noqa: E402
from labkit.data import get_splits  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "colour_rate_weights.json"


def main() -> int:
    torch.set_num_threads(1)
    tiles = get_splits(None, 0)["val"]
    points = []
    for b in range(1, 6):
        codec = Codec.from_pretrained("resae-rd", b=b, colour_map=False)
        results = [codec.compress(x) for x in tiles]
        mse = np.mean([np.mean((x / 255.0 - r.recon / 255.0) ** 2) for x, r in zip(tiles, results)])
        points.append({"b": b, "bpp": float(np.mean([r.bpp for r in results])), "mse": float(mse)})
    secants = [(lo["mse"] - hi["mse"]) / (hi["bpp"] - lo["bpp"]) for lo, hi in zip(points, points[1:])]
    slopes = {}
    for i, p in enumerate(points):
        sides = secants[max(0, i - 1):i + 1]  # the secant(s) on either side of b
        slopes[p["b"]] = float(f"{float(np.prod(sides)) ** (1 / len(sides)):.2g}")
        print(f"b={p['b']}: {p['bpp']:.4f} bpp, MSE {p['mse']:.6f}; rate weight {slopes[p['b']]:g}")
    OUT.write_text(json.dumps({"command": "python tools/measure_map_rate_weights.py", "model": "resae-rd",
                               "tiles": f"default validation split ({len(tiles)} tiles of 128x128)",
                               "points": points, "secants": secants, "rate_weights": slopes}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
