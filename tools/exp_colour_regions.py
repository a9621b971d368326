"""What a grid of colour maps buys over the one global map, and what its alternatives would (issue 9's dE target).

    python tools/exp_colour_regions.py        # ~2 min on 2 cores; writes the JSON below

For resae-rd at b = 2 and 3 on scikit-image's astronaut, camera, chelsea and coffee at full
size, the plain chain's reconstruction (colour map off) is corrected by

* ``global``: the one 12-byte map (format version 3);
* ``grid GxG``: labkit.colour's blended grid (version 4), G = 4, 8, 12, 16 nodes per side;
* ``offsets GxG``: a rejected variant -- every node keeps the global gains and sends only its
  3 offsets (3 bytes per node + the 12-byte global map), emulated with a huge ridge on the gains;
* ``chosen``: what the encoder sends (labkit.colour.choose at spec.colour_map_rate_weight(b)).

Each with mean CIE76 dE, PSNR and its side information in bpp; for the global and the chosen
map also the decoder's time to apply it (ns per pixel, one thread).  It also prices the grid
codes with a rejected entropy code (each node predicted from its left / upper neighbour,
residuals in signed Exp-Golomb, best order k) against their raw 12 bytes per node.
Writes benchmarks/results/experiments/colour_grid.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit import colour, metrics, spec  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.photos import delta_e76, photo  # noqa: E402

PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png")
GRIDS = (4, 8, 12, 16)
OUT = ROOT / "benchmarks" / "results" / "experiments" / "colour_grid.json"


def offsets_only(summary: colour._Summary, shape: tuple[int, int]) -> bytes:
    """A grid fit whose nodes keep the global gains (a 1e3 ridge on them): only offsets vary."""
    n = shape[0] * shape[1]
    total_ff, total_ft = summary.ff.sum(axis=0), summary.ft.sum(axis=0)
    theta0 = np.linalg.lstsq(total_ff, total_ft, rcond=None)[0]
    a, bm = summary.system(shape)
    energy = np.trace(total_ff[:3, :3]) / 3.0
    ridge = np.kron(np.eye(n), np.diag([energy * 1e3] * 3 + [summary.pixels * colour.RIDGE]) / n)
    theta = np.linalg.solve(a + ridge + 1e-9 * np.eye(4 * n), bm + ridge @ np.tile(theta0, (n, 1)))
    return colour._grid_code(shape, theta.reshape(n, 4, 3))


def exp_golomb_bytes(code: bytes) -> float:
    """Bytes of the grid's node values as left/up-predicted residuals in signed Exp-Golomb (best k)."""
    gh, gw = colour.grid_shape(code)
    vals = np.frombuffer(code[1:], dtype=np.int8).reshape(gh, gw, 12).astype(int)
    pred = np.zeros_like(vals)
    pred[:, 1:] = vals[:, :-1]
    pred[1:, 0] = vals[:-1, 0]
    res = (vals - pred).ravel()
    zig = np.where(res >= 0, 2 * res, -2 * res - 1)

    def bits(k: int) -> int:
        z = zig + (1 << k)
        return int(np.sum(2 * (np.floor(np.log2(z)).astype(int)) + 1 - k))

    return 1 + min(bits(k) for k in range(5)) / 8.0


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    torch.set_num_threads(1)
    rows = []
    for b in (2, 3):
        codec = Codec.from_pretrained("resae-rd", b=b, colour_map=False)
        for name in PHOTOS:
            x = photo(name)
            recon = codec.compress(x).recon
            px = x.shape[0] * x.shape[1]
            summary = colour._Summary(recon, x)

            def entry(code: bytes | None, nbytes: float | None = None) -> dict:
                out = recon if code is None else colour.apply(recon, code)
                size = 0 if code is None else (len(code) if nbytes is None else nbytes)
                return {"dE": round(delta_e76(x, out), 3), "psnr": round(metrics.psnr(x, out), 3),
                        "bytes": round(size, 1), "bpp": round(8 * size / px, 5)}

            row = {"b": b, "photo": name, "plain": entry(None), "global": entry(colour.fit(recon, x))}
            for g in GRIDS:
                shape = (g, g)
                grid = summary.fit(shape)
                row[f"grid {g}x{g}"] = entry(grid) | {"exp_golomb_bytes": round(exp_golomb_bytes(grid), 1)}
                row[f"offsets {g}x{g}"] = entry(offsets_only(summary, shape), nbytes=12 + 3 * g * g)
            chosen = colour.choose(recon, x, spec.colour_map_rate_weight(b))
            row["chosen"] = entry(chosen) | {"grid": list(colour.grid_shape(chosen)) if chosen else None}
            for key, code in (("global", colour.fit(recon, x)), ("chosen", chosen)):
                if code is not None:  # the decoder's cost of the map, one thread, best of 5
                    row[key]["apply_ns_per_px"] = round(min(timed(lambda: colour.apply(recon, code))
                                                            for _ in range(5)) / px * 1e9, 1)
            rows.append(row)
            print(b, name, " | ".join(f"{k} dE {v['dE']:.2f} {v['psnr']:.2f} dB +{v['bpp']:.4f} bpp"
                                      for k, v in row.items() if isinstance(v, dict)), flush=True)
    OUT.write_text(json.dumps({"command": "python tools/exp_colour_regions.py", "model": "resae-rd",
                               "rate_weights": spec.COLOUR_MAP_RATE_WEIGHTS, "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
