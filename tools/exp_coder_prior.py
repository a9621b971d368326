"""How the coder prior (``labkit.coder_prior``) was set up: its strength, the coder's cap, its contexts.

    python tools/exp_coder_prior.py          # ~10 min on one core; writes the JSON below

``resae-rd-fast``'s symbols at b = 1..5 (the codec's own quantization, one encoder run per image)
are coded by a pure-Python model of the adaptive coder (ideal code length, which the real coder
meets within 16 bits per file, ``tests/test_coder.py``).  Three measurements:

* ``tune``: the 166 default training tiles split in two (even / odd); a table fitted on one half
  codes the other, for prior strengths 4..64 (a row totals ``strength * 2**b``) and the coder's
  cap ``limit`` in {1024, 4096}, against the ``"neighbor"`` mode;
* ``test``: the shipped settings on the 31 default test tiles (table from the training tiles),
  against ``"neighbor"``;
* ``contexts``: richer contexts for the learned mode on the test tiles, each with its own table
  from the training tiles: (left, top) as shipped, + top-right, + top-left, + the same position in
  the previous channel (bucketed as the neighbours are);
* ``files``: the real codec with the shipped table, ``"learned"`` against ``"neighbor"``: whole-file
  bytes on the 31 test tiles and on scikit-image's four full-size colour photos (the symbols and
  pixels are the same; the test suite checks that).

Writes benchmarks/results/experiments/coder_prior.json.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import coder_prior  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "coder_prior.json"
BITS = (1, 2, 3, 4, 5)


buckets = coder_prior._buckets  # the coder's neighbour buckets, as the shipped fit computes them


def shifted(q: np.ndarray, dc: int, dy: int, dx: int) -> np.ndarray:
    """``q`` moved by (dc, dy, dx): each position sees the symbol that far before it (0 outside)."""
    out = np.zeros_like(q)
    c, h, w = q.shape
    src = tuple(slice(0, n - d) if d >= 0 else slice(-d, n) for n, d in zip((c, h, w), (dc, dy, dx)))
    dst = tuple(slice(d, n) if d >= 0 else slice(0, n + d) for n, d in zip((c, h, w), (dc, dy, dx)))
    out[dst] = q[src]
    return out


def contexts(q: np.ndarray, a: int, kind: str) -> tuple[np.ndarray, int]:
    """Context index of every symbol and the number of contexts, for the mode ``kind``."""
    nb = coder_prior.n_buckets(a)
    base = buckets(shifted(q, 0, 0, 1)) * nb + buckets(shifted(q, 0, 1, 0))
    if kind == "neighbor":
        return base.ravel(), nb * nb
    extra = {"learned": None, "+top-right": (0, 1, -1), "+top-left": (0, 1, 1), "+previous channel": (1, 0, 0)}[kind]
    n = nb * nb
    if extra is not None:
        base, n = base * nb + buckets(shifted(q, *extra)), n * nb
    channel = np.broadcast_to(np.arange(q.shape[0])[:, None, None], q.shape)
    return (channel * n + base).ravel(), q.shape[0] * n


def code_length(q: np.ndarray, ctx: np.ndarray, start: np.ndarray, increment: int, limit: int) -> float:
    """Ideal adaptive code length (bits) of ``q`` with models started from ``start`` [contexts, A]."""
    freq = start.astype(np.int64).tolist()
    total = [sum(r) for r in freq]
    bits, log2 = 0.0, math.log2
    for s, c in zip(q.ravel().tolist(), ctx.tolist()):
        row = freq[c]
        bits -= log2(row[s] / total[c])
        row[s] += increment
        total[c] += increment
        if total[c] > limit:
            for i in range(len(row)):
                row[i] = (row[i] + 1) // 2
            total[c] = sum(row)
    return bits


def table(arrays: list[np.ndarray], b: int, kind: str, strength: float) -> np.ndarray:
    a = 1 << b
    counts = None
    for q in arrays:
        ctx, n = contexts(q, a, kind)
        if counts is None:
            counts = np.zeros((n, a))
        np.add.at(counts, (ctx, q.ravel().astype(np.int64)), 1)
    pooled = counts.sum(0) + 0.5
    pooled /= pooled.sum()
    p = (counts + coder_prior.SMOOTHING * pooled) / (counts.sum(1, keepdims=True) + coder_prior.SMOOTHING)
    return np.maximum(1, np.rint(p * strength * a)).astype(np.int64)


def total_bits(arrays: list[np.ndarray], b: int, kind: str, start: np.ndarray | None, increment: int,
               limit: int) -> float:
    a, out = 1 << b, 0.0
    for q in arrays:
        ctx, n = contexts(q, a, kind)
        out += code_length(q, ctx, np.ones((n, a), np.int64) if start is None else start, increment, limit)
    return out


def main() -> int:
    torch.set_num_threads(1)
    symbols = {}
    for b in BITS:
        codec = Codec.from_pretrained("resae-rd-fast", b=b, context="neighbor")
        symbols[b] = {split: [codec.analyse(img)[0] for img in default_dataset(split)] for split in ("train", "test")}
    result: dict = {"tune": {}, "test": {}, "contexts": {}}
    for b in BITS:
        train, test = symbols[b]["train"], symbols[b]["test"]
        half_a, half_b = train[0::2], train[1::2]
        base = total_bits(half_b, b, "neighbor", None, 8, 1024)
        row = {}
        for strength in (4, 8, 16, 32, 64):
            start = table(half_a, b, "learned", strength)
            for limit in (1024, 4096):
                row[f"strength {strength}, limit {limit}"] = \
                    100 * (total_bits(half_b, b, "learned", start, 8, limit) / base - 1)
        result["tune"][b] = row
        print(f"b={b} tune (other half of the training tiles, % vs neighbor): "
              + ", ".join(f"{k}: {v:+.1f}" for k, v in row.items()), flush=True)
        base = total_bits(test, b, "neighbor", None, 8, 1024)
        shipped = total_bits(test, b, "learned", table(train, b, "learned", coder_prior.STRENGTH),
                             coder_prior.INCREMENT, coder_prior.LIMIT)
        result["test"][b] = 100 * (shipped / base - 1)
        ctx_row = {}
        for kind in ("+top-right", "+top-left", "+previous channel"):
            bits = total_bits(test, b, kind, table(train, b, kind, coder_prior.STRENGTH), coder_prior.INCREMENT,
                              coder_prior.LIMIT)
            ctx_row[kind] = 100 * (bits / shipped - 1)
        result["contexts"][b] = ctx_row
        print(f"b={b} test tiles: learned {result['test'][b]:+.1f} % vs neighbor; richer contexts vs learned: "
              + ", ".join(f"{k} {v:+.2f} %" for k, v in ctx_row.items()), flush=True)
    from labkit import photos

    result["files"] = {}
    for name, images in (("tiles", list(default_dataset("test"))),
                         ("photos", [photos.photo(p) for p in photos.COLOUR_PHOTOS])):
        row = {}
        for b in BITS:
            sizes = {ctx: sum(len(Codec.from_pretrained("resae-rd-fast", b=b, context=ctx).encode(img)) for img in images)
                     for ctx in ("neighbor", "learned")}
            row[b] = {**sizes, "change_pct": 100 * (sizes["learned"] / sizes["neighbor"] - 1)}
        result["files"][name] = row
        print(f"whole files, {name} ({len(images)}): learned vs neighbor "
              + ", ".join(f"b={b} {r['change_pct']:+.1f} %" for b, r in row.items()), flush=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
