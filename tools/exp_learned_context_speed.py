"""Why the ``learned`` context codes at about half the ``neighbor`` context's speed in ``bench_coder.py``.

    python tools/exp_learned_context_speed.py

Encodes seeded geometric symbols (A = 32, b = 5, the shipped ``resae-rd-fast`` table for the
learned context) for a 16x16 latent (what ``bench_coder.py`` times), a 768x512 image's latent
and a 2048x2048 image's, one thread, best of 20, and prints Msym/s per context.  The learned
mode's per-call costs (the prior table's full check, C * B^2 * A counts, and every channel's
B^2 models started from it) weigh on a 16x16 latent and vanish on real image sizes.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from labkit import codec, coder  # noqa: E402
from labkit import coder_prior as cp  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402


def main() -> None:
    table = codec.Codec.from_pretrained("resae-rd-fast", b=5).coder_prior[5]
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_name()}, one thread, A = 32, best of 20 (Msym/s)")
    for label, shape in (("16x16 latent (bench_coder)", (32, 16, 16)), ("768x512 image", (32, 64, 96)),
                         ("2048x2048 image", (32, 256, 256))):
        x = np.minimum(rng.geometric(0.35, size=shape) - 1, 31).astype(np.uint8)
        row = {}
        for mode, kw in (("neighbor", {}), ("learned", dict(prior=table, increment=cp.INCREMENT, limit=cp.LIMIT))):
            best = min(_timed(lambda: coder.encode(x, 32, mode, **kw)) for _ in range(20))
            row[mode] = round(x.size / best / 1e6)
        print(f"  {label:28s} {row}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
