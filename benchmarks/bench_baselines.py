"""Time each classic codec (encode + decode, and match_bpp) on default test tiles.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_baselines.py [n_tiles]``
"""
from __future__ import annotations

import sys
import time

from labkit import baselines as B
from labkit.data import default_dataset


def main(n_tiles: int = 8) -> None:
    tiles = default_dataset("test")[:n_tiles]
    print(f"{'codec':10s} {'compress ms':>12s} {'match_bpp(1.0) ms':>18s}")
    for name, c in B.CODECS.items():
        q = c.sweep_qualities[len(c.sweep_qualities) // 2]
        t0 = time.perf_counter()
        for t in tiles:
            B.compress(t, name, q)
        t1 = time.perf_counter()
        for t in tiles:
            B.match_bpp(t, 1.0, name)
        t2 = time.perf_counter()
        print(f"{name:10s} {(t1 - t0) / len(tiles) * 1e3:12.2f} {(t2 - t1) / len(tiles) * 1e3:18.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
