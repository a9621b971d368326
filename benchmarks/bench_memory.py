"""Time and peak memory of the codec at 1, 16 and 64 megapixels, encode and decode.

    python benchmarks/bench_memory.py [--sizes 1 16 64] [--threads 1]
    python benchmarks/bench_memory.py --model resae-rd-fast --refine 1 --sizes 64 --compare-mpx 0

Each measurement runs in its own subprocess so that its peak resident set size
(``VmHWM`` of ``/proc/self/status``, else ``resource.getrusage``) is its own: the child loads the image
(or the ``.lkc`` file), runs the codec once, and reports wall time and peak RSS
(which includes the Python interpreter, torch and the image itself).  Images are real
photo content (the embedded test tiles, resized with LANCZOS and repeated to size).

Target (issue 7): peak RSS <= 1.5 GB to encode and to decode 64 Mpx.  Time per Mpx of
the tiled path is compared on the same 1-Mpx image, interleaved in one process (best
of ``--repeats``, so load from other work hits every path alike), with the whole-image
path (``tile`` larger than the image) and with the previous code's whole-image path
(BatchNorm folded, no fused upsampling), which is what ``Codec`` ran before tiling.
The CPU is printed beside every number.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

LIMIT_BYTES = int(1.5 * 2**30)
TILE_HUGE = 1 << 20


def _image(mpx: int) -> np.ndarray:
    """A square-ish uint8 image of about ``mpx`` megapixels: test photos, resized and repeated."""
    from PIL import Image

    from labkit.data import default_dataset

    tiles = default_dataset("test")
    mosaic = np.concatenate([np.concatenate(list(tiles[r * 4:(r + 1) * 4]), axis=1) for r in range(3)], axis=0)
    base = np.asarray(Image.fromarray(mosaic).resize((1024, 768), Image.Resampling.LANCZOS))
    side_h = int((mpx * 2**20 * 3 / 4) ** 0.5)
    side_w = mpx * 2**20 // side_h  # h * w <= mpx * 2**20: 64 Mpx is the default pixel cap
    reps = (-(-side_h // base.shape[0]), -(-side_w // base.shape[1]), 1)
    return np.ascontiguousarray(np.tile(base, reps)[:side_h, :side_w])


def peak_rss() -> int:
    """Peak resident set size of this process in bytes.

    ``VmHWM`` from ``/proc/self/status`` where it exists (it belongs to this program's
    address space, so it starts afresh at ``exec``); else ``getrusage``'s ``ru_maxrss``,
    which on Linux also counts the parent's pages at ``fork`` (an over-estimate).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _child(args: argparse.Namespace) -> int:
    """One measurement in this process: print a JSON line with seconds and peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    from labkit import codec as C
    from labkit import inference

    if args.variant == "previous":  # the code before tiling: whole image, no fused upsampling
        inference.fuse_nearest_upsampling = lambda module: 0
    tile = None if args.variant == "tiled" else TILE_HUGE
    codec = C.Codec.from_pretrained(args.model, b=args.b, context=args.context, tile=tile, refine=args.refine)
    rss_ready = peak_rss()
    seconds = float("inf")
    if args.direction == "encode":
        image = np.load(args.input)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            data = codec.encode(image)
            seconds = min(seconds, time.perf_counter() - t0)
        pixels = image.shape[0] * image.shape[1]
        Path(args.output).write_bytes(data)
    else:
        data = Path(args.input).read_bytes()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            image = codec.decode(data)
            seconds = min(seconds, time.perf_counter() - t0)
            pixels = image.shape[0] * image.shape[1]
            del image
    peak = peak_rss()
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "rss_after_load": rss_ready, "pixels": pixels}))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Time per Mpx of the tiled, whole-image and previous paths, interleaved in one process (best of N)."""
    import torch

    torch.set_num_threads(args.threads)
    from labkit import codec as C
    from labkit import inference

    model = C.load_pretrained(args.model)[0]
    kw = dict(model_name=args.model, context=args.context)
    codecs = {"tiled": C.Codec(model, args.b, **kw), "whole": C.Codec(model, args.b, tile=TILE_HUGE, **kw)}
    fuse = inference.fuse_nearest_upsampling
    inference.fuse_nearest_upsampling = lambda module: 0  # the code before: BN folded, no fused upsampling
    try:
        codecs["previous"] = C.Codec(model, args.b, tile=TILE_HUGE, **kw)
    finally:
        inference.fuse_nearest_upsampling = fuse
    image = np.load(args.input)
    data = codecs["tiled"].encode(image)
    best: dict = {}
    names = list(codecs)
    for i in range(args.repeats):
        for name in names[i % 3:] + names[:i % 3]:  # rotate the order: no path always runs after another
            codec = codecs[name]
            for direction, fn in (("encode", lambda: codec.encode(image)), ("decode", lambda: codec.decode(data))):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                best[f"{name}_{direction}"] = min(best.get(f"{name}_{direction}", dt), dt)
    mpx = image.shape[0] * image.shape[1] / 1e6
    print(json.dumps({k: v / mpx for k, v in best.items()}))
    return 0


def _run(direction: str, variant: str, src: Path, dst: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", direction, "--variant", variant, "--input", str(src),
           "--output", str(dst), "--model", args.model, "--b", str(args.b),
           *(["--context", args.context] if args.context else []), "--threads", str(args.threads), "--refine", str(args.refine), "--repeats", str(args.repeats if direction == "compare" else 1)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64], help="megapixels")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="resae")
    p.add_argument("--b", type=int, default=2)
    p.add_argument("--context", default=None, help="coder context mode (default: each model's own, labkit.codec.Codec)")
    p.add_argument("--compare-mpx", type=int, default=1, help="size at which the whole-image paths are timed too")
    p.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs in the comparison")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="encoder-side latent refinement steps (Codec(refine=...)); the default output name gets _refine")
    p.add_argument("--out", default=None, help="default: benchmarks/results/bench_memory[_refine].json")
    p.add_argument("--child", choices=["encode", "decode", "compare"], help=argparse.SUPPRESS)
    p.add_argument("--variant", default="tiled", choices=["tiled", "whole", "previous"], help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.out = args.out or str(Path(__file__).parent / "results" / f"bench_memory{'_refine' if args.refine else ''}.json")
    if args.child == "compare":
        return _compare(args)
    if args.child:
        args.direction = args.child
        return _child(args)

    from labkit.speed import cpu_name

    cpu = cpu_name()
    print(f"codec time and peak RSS, model={args.model} b={args.b} context={args.context} refine={args.refine}, "
          f"{args.threads} thread(s), CPU: {cpu}")
    rows: list[dict] = []
    ratios: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mpx in args.sizes:
            image = _image(mpx)
            src = Path(tmp) / f"img{mpx}.npy"
            np.save(src, image)
            del image
            lkc = Path(tmp) / f"img{mpx}.lkc"
            for direction, inp in (("encode", src), ("decode", lkc)):
                if not inp.exists():
                    continue
                r = _run(direction, "tiled", inp, lkc, args)
                row = {"mpx": mpx, "direction": direction, **r}
                rows.append(row)
                if "error" in r:
                    print(f"  {mpx:3d} Mpx {direction}: FAILED: {r['error']}", flush=True)
                    continue
                row["seconds_per_mpx"] = per = r["seconds"] / (r["pixels"] / 1e6)
                ok = "meets" if r["peak_rss"] <= LIMIT_BYTES else "MISSES"
                print(f"  {mpx:3d} Mpx ({r['pixels']} px) {direction}: {r['seconds']:7.2f} s  {per:6.3f} s/Mpx  "
                      f"peak RSS {r['peak_rss'] / 2**20:6.0f} MiB ({ok} <= 1536 MiB; "
                      f"{r['rss_after_load'] / 2**20:.0f} MiB after imports and weights)", flush=True)
            if mpx == args.compare_mpx:
                r = _run("compare", "tiled", src, lkc, args)
                ratios = r
                if "error" in r:
                    print(f"  comparison FAILED: {r['error']}")
                else:
                    print(f"  time per Mpx at {mpx} Mpx, best of {args.repeats} interleaved runs in one process:")
                    for d in ("encode", "decode"):
                        t, w, prev = r[f"tiled_{d}"], r[f"whole_{d}"], r[f"previous_{d}"]
                        print(f"    {d}: tiled {t:.3f} s/Mpx, whole-image {w:.3f} ({t / w:.2f}x), previous code's "
                              f"whole-image path {prev:.3f} ({t / prev:.2f}x; <= 1 means no slower)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu, "threads": args.threads, "model": args.model, "b": args.b,
                                          "context": args.context, "refine": args.refine, "rows": rows, "compare_mpx": args.compare_mpx, "compare_seconds_per_mpx": ratios}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
