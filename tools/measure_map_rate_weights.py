"""The colour maps' rate weights: the slope of resae-rd's own rate-distortion curve at each b.

    python tools/measure_map_rate_weights.py      # ~1 min; writes the JSON below

The encoder sends a colour map (or a grid of them) only when it buys quality at least as
cheaply as the next bit depth would.  This measures that price: resae-rd's mean MSE (in
[0, 1] units) and bpp at b = 1..5 on the default validation tiles, with colour maps off, and
the slope ``(MSE_b - MSE_b+1) / (bpp_b+1 - bpp_b)`` (for b = 5, the slope from 4 to 5).  The
values, rounded to two significant digits, are ``labkit.spec.COLOUR_MAP_RATE_WEIGHTS``.
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
    slopes = {}
    for i, p in enumerate(points):
        lo, hi = (points[i], points[i + 1]) if i + 1 < len(points) else (points[i - 1], points[i])
        slope = (lo["mse"] - hi["mse"]) / (hi["bpp"] - lo["bpp"])
        slopes[p["b"]] = float(f"{slope:.2g}")
        print(f"b={p['b']}: {p['bpp']:.4f} bpp, MSE {p['mse']:.6f}; rate weight {slopes[p['b']]:g}")
    OUT.write_text(json.dumps({"command": "python tools/measure_map_rate_weights.py", "model": "resae-rd",
                               "tiles": f"default validation split ({len(tiles)} tiles of 128x128)",
                               "points": points, "rate_weights": slopes}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
