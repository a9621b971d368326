"""Whole-codec benchmark: speed on one CPU thread, and bits saved by each coder context mode.

    python benchmarks/bench_codec.py [--repeats 10]

Speed: best-of-N encode and decode (network + quantizer + coder + container) of a
128x128 and a 768x512 image with the shipped ResAE, torch limited to one thread.
Targets (issue 3): encode+decode <= 20 ms at 128x128 and <= 300 ms at 768x512.
Context coding: real payload bits per latent symbol of the shipped ResAE on the
embedded test split for b = 1..5, per context mode, and the saving vs memoryless.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from labkit import coder, evaluate  # noqa: E402
from labkit.codec import load_pretrained  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.report import context_savings  # noqa: E402
from labkit.speed import bench_codec_speed  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--model", default="resae")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_codec.json"))
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)

    results: dict = {"model": args.model, "speed": {}, "context": {}}
    print(f"codec speed, model={args.model}, one thread, best of {args.repeats}")
    for ctx in ("none", "neighbor"):
        rows = bench_codec_speed(model=args.model, b=2, context=ctx, repeats=args.repeats)
        results["speed"][ctx] = rows
        for r in rows:
            target = 20 if r["size"] == "128x128" else 300
            ok = "meets" if r["total_ms"] <= target else "MISSES"
            print(f"  context={ctx:9s} {r['size']:>8}: encode {r['encode_ms']:7.2f} ms  decode {r['decode_ms']:7.2f} ms  "
                  f"total {r['total_ms']:7.2f} ms  ({ok} <= {target} ms)  {r['bpp']:.3f} bpp")

    net = load_pretrained(args.model)[0]
    images = default_dataset("test")
    table = {b: evaluate.coding_table(evaluate.latent_symbols(net, images, b), b) for b in (1, 2, 3, 4, 5)}
    results["context"]["bits_per_symbol"] = table
    results["context"]["savings_pct"] = context_savings(table)
    print(f"\nreal payload bits per latent symbol ({len(images)} test tiles, 4096 symbols each)")
    keys = list(table[1])
    print("  b  " + "  ".join(f"{k:>24s}" for k in keys))
    for b, t in table.items():
        print(f"  {b}  " + "  ".join(f"{t[k]:24.4f}" for k in keys))
    print("\nthe course coder's fixed 256-symbol alphabet vs the real 2^b alphabet (context none, same latents)")
    results["context"]["alphabet_256_vs_2b"] = {}
    for b in (1, 2, 3, 4, 5):
        symbols = evaluate.latent_symbols(net, images, b)
        own = sum(len(coder.encode(s, 1 << b, "none")) for s in symbols)
        full = sum(len(coder.encode(s, 256, "none")) for s in symbols)
        results["context"]["alphabet_256_vs_2b"][b] = {"bytes_2b": own, "bytes_256": full,
                                                        "extra_pct": 100.0 * (full / own - 1.0)}
        print(f"  b={b}: {own} bytes with {1 << b} symbols, {full} with 256 (+{100.0 * (full / own - 1.0):.1f}%)")
    print("\nbits saved vs the memoryless coder (context none), %")
    for row in results["context"]["savings_pct"]:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(jsonable(results), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
