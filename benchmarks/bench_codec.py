"""Whole-codec benchmark: speed as ratios to Pillow's WebP and JPEG, where decode time goes, context coding.

    python benchmarks/bench_codec.py [--repeats 10]
    python benchmarks/bench_codec.py --model resae-rd-fast --refine 30   # also the encode with latent refinement
    python benchmarks/bench_codec.py --model resae-rd-fast --vs resae --weights-dir W   # your weights W/resae-rd-fast/ against the shipped resae

Speed (one CPU thread, best of N, the CPU's name printed beside every number):
encode + decode of a 128x128 and a 768x512 image (real photo content) with
``--model`` (default: the shipped ResAE; ``--weights-dir``: yours) at b=2 (network +
quantizer + coder + container), and Pillow's WebP
and JPEG (quality 75) encode + decode of the *same* images *in the same run*; the
ratios codec / WebP and codec / JPEG mean the same thing on any CPU.
Where the time goes: the encoder and decoder networks alone, in ns per pixel, and
the decoder before the upsampling fusion of ``labkit.inference`` (BN folded only,
as the codec ran before), measured in the same run; and each network's multiply-adds
per pixel with the rate (GMAC/s) it runs them at, which separates "more work" from
"slower work".
Context coding: real payload bits per latent symbol of that model on the
embedded test split for b = 1..5, per context mode, and the saving vs memoryless.
"""
from __future__ import annotations

import os

# "one thread" covers numpy's BLAS too (the colour-map fit's solves): set before numpy loads it
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from labkit import coder, evaluate, inference  # noqa: E402
from labkit.codec import Codec, load_pretrained  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.report import context_savings  # noqa: E402
from labkit.speed import best_time, cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

SIZES = ((128, 128), (512, 768))
PIL_QUALITY = 75


def _images() -> dict[str, np.ndarray]:
    tiles = default_dataset("test")
    mosaic = np.concatenate([np.concatenate(list(tiles[i * 6:(i + 1) * 6]), axis=1) for i in range(4)], axis=0)
    return {f"{w}x{h}": np.asarray(Image.fromarray(mosaic).resize((w, h), Image.Resampling.LANCZOS))
            for h, w in SIZES}


def _pillow_times(img: np.ndarray, fmt: str, repeats: int) -> dict:
    pil = Image.fromarray(img)

    def enc() -> bytes:
        buf = io.BytesIO()
        pil.save(buf, format=fmt, quality=PIL_QUALITY)
        return buf.getvalue()

    data = enc()

    def dec() -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    e, d = best_time(enc, repeats), best_time(dec, repeats)
    return {"encode_ms": e * 1e3, "decode_ms": d * 1e3, "total_ms": (e + d) * 1e3,
            "bpp": len(data) * 8 / (img.shape[0] * img.shape[1])}


def speed_ratios(model: str, repeats: int, colour_map: bool | None = None, refine: int = 0,
                 weights_dir: str | None = None) -> dict:
    """Codec vs Pillow WebP/JPEG encode+decode, same images, same run (``colour_map``: the
    codec's setting, None = the model's default; with a map the encoder also runs the decoder;
    ``refine``: steps of encoder-side latent refinement; ``weights_dir``: a folder of
    ``<model>/`` checkpoints instead of the shipped weights)."""
    codec = Codec.from_pretrained(model, b=2, colour_map=colour_map, refine=refine, weights_dir=weights_dir)
    out = {"colour_map": codec.colour_map, "refine": refine, "coder_context": codec.context}
    for size, img in _images().items():
        data = codec.encode(img)
        e = best_time(lambda: codec.encode(img), repeats)
        d = best_time(lambda: codec.decode(data), repeats)
        row = {"codec": {"encode_ms": e * 1e3, "decode_ms": d * 1e3, "total_ms": (e + d) * 1e3,
                         "bpp": len(data) * 8 / (img.shape[0] * img.shape[1])},
               "webp": _pillow_times(img, "WEBP", repeats), "jpeg": _pillow_times(img, "JPEG", repeats)}
        row["codec_over_webp"] = row["codec"]["total_ms"] / row["webp"]["total_ms"]
        row["codec_over_jpeg"] = row["codec"]["total_ms"] / row["jpeg"]["total_ms"]
        out[size] = row
    return out


def sizes(speed: dict) -> list[tuple[str, dict]]:
    """The per-image-size rows of a :func:`speed_ratios` result (its settings left out)."""
    return [(k, v) for k, v in speed.items() if k not in ("colour_map", "refine", "coder_context")]


def multiply_adds(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution (plain and transposed) of one ``net(x)`` call.

    Conv2d: output values x (in_channels / groups) x kernel area; ConvTranspose2d: input
    values x (out_channels / groups) x kernel area (each input value is scattered over a
    kernel's worth of outputs).  Elementwise layers are not counted.
    """
    total = 0

    def hook(m: torch.nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, torch.nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels // m.groups * k
        else:
            total += out.numel() * m.in_channels // m.groups * k

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return total


def network_split(model: str, repeats: int, weights_dir: str | None = None) -> dict:
    """ns per pixel of the encoder and decoder networks (768x512), the decoder before the fusion,
    and where the time goes: each network's multiply-adds per pixel and the rate it runs them at."""
    net = load_pretrained(model, weights_dir)[0]
    fast = inference.optimize_for_inference(net)
    folded = copy.deepcopy(net).eval()
    with torch.no_grad():
        inference.fold_batchnorm(folded)
    folded = folded.to(memory_format=torch.channels_last)
    h, w = SIZES[1]
    x = torch.from_numpy(np.array(_images()[f"{w}x{h}"], dtype=np.float32)).permute(2, 0, 1)[None].div(255.0)
    px = h * w
    with torch.inference_mode():
        y = fast.encode(x).contiguous(memory_format=torch.channels_last)
        enc = best_time(lambda: fast.encode(x), repeats)
        dec = best_time(lambda: fast.decode(y), repeats)
        dec_before = best_time(lambda: folded.decode(y), repeats)
    enc_macs, dec_macs = multiply_adds(fast.encoder, x), multiply_adds(fast.decoder, y)
    return {"size": f"{w}x{h}", "encoder_ns_per_px": enc / px * 1e9, "decoder_ns_per_px": dec / px * 1e9,
            "encoder_macs_per_px": enc_macs / px, "decoder_macs_per_px": dec_macs / px,
            "decoder_over_encoder_macs": dec_macs / enc_macs,
            "encoder_gmacs_per_s": enc_macs / enc / 1e9, "decoder_gmacs_per_s": dec_macs / dec / 1e9,
            "decoder_before_fusion_ns_per_px": dec_before / px * 1e9,
            "decoder_over_encoder": dec / enc, "decoder_before_fusion_over_encoder": dec_before / enc,
            "fusion_speedup": dec_before / dec}


def default_out(weights_dir: str | None) -> Path:
    """Where the JSON goes without ``--out``: the committed results for the shipped weights, the
    weights folder itself for ``--weights-dir`` (so timing your own weights never replaces a result)."""
    return Path(weights_dir) / "bench_codec.json" if weights_dir else Path(__file__).parent / "results" / "bench_codec.json"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--model", default="resae")
    p.add_argument("--vs", default=None, metavar="MODEL",
                   help="also time MODEL in the same run and print --model's encode+decode time over it")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="also time the encode with STEPS of latent refinement (best of min(--repeats, 3))")
    p.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="time --model's weights from DIR/<model>/ (e.g. your own retrained ones); --vs stays the "
                        "shipped weights, so the ratio compares yours with the shipped reference")
    p.add_argument("--out", default=None,
                   help="JSON file for the results (default: benchmarks/results/bench_codec.json; with "
                        "--weights-dir, bench_codec.json inside that folder, so a run of your own weights never "
                        "replaces a committed result)")
    args = p.parse_args()
    if args.out is None:
        args.out = str(default_out(args.weights_dir))
    wdir = args.weights_dir
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)

    cpu = cpu_name()
    results: dict = {"model": args.model, "cpu": cpu, "threads": 1, "speed": {}, "context": {}}
    if wdir:
        results["weights_dir"] = str(wdir)
    results["speed"] = speed_ratios(args.model, args.repeats, weights_dir=wdir)
    print(f"codec speed vs Pillow (quality {PIL_QUALITY}), model={args.model} b=2 {results['speed']['coder_context']} "
          f"context, one thread, best of {args.repeats}, CPU: {cpu}")
    for size, r in sizes(results["speed"]):
        c, wp, jp = r["codec"], r["webp"], r["jpeg"]
        print(f"  {size:>8}: codec {c['encode_ms']:7.2f} + {c['decode_ms']:7.2f} ms ({c['bpp']:.3f} bpp)   "
              f"WebP {wp['encode_ms']:6.2f} + {wp['decode_ms']:6.2f} ms   JPEG {jp['encode_ms']:6.2f} + {jp['decode_ms']:6.2f} ms   "
              f"codec/WebP {r['codec_over_webp']:5.1f}x  codec/JPEG {r['codec_over_jpeg']:5.1f}x")
    if args.vs:
        other = speed_ratios(args.vs, args.repeats)
        again = speed_ratios(args.model, args.repeats, weights_dir=wdir)  # once more after, so load drifts hit both
        # The ratio's numerator is the better of the two runs of the model, so the file keeps both
        # runs and the two totals the ratio divides.
        results["vs"] = {"model": args.vs, "speed": other, "speed_again": again, "ratio": {}, "total_ms": {}}
        # the same name on both sides (your weights of a model against its shipped ones) keeps both times
        mine_key = args.model if args.vs != args.model else f"{args.model} ({wdir or 'again'})"
        for size, r in sizes(results["speed"]):
            mine = min(r["codec"]["total_ms"], again[size]["codec"]["total_ms"])
            ratio = mine / other[size]["codec"]["total_ms"]
            results["vs"]["ratio"][size] = ratio
            results["vs"]["total_ms"][size] = {mine_key: mine, args.vs: other[size]["codec"]["total_ms"]}
            print(f"  {size:>8}: {args.model} {mine:7.2f} ms vs {args.vs} {other[size]['codec']['total_ms']:7.2f} ms "
                  f"encode+decode: {ratio:.2f}x")
    if results["speed"]["colour_map"]:
        plain = speed_ratios(args.model, args.repeats, colour_map=False, weights_dir=wdir)
        results["speed_without_colour_map"] = plain
        for size, r in sizes(plain):
            with_map = results["speed"][size]["codec"]
            print(f"  {size:>8}: without the colour map {r['codec']['encode_ms']:7.2f} + {r['codec']['decode_ms']:7.2f} ms "
                  f"(the map's fit costs {with_map['encode_ms'] / r['codec']['encode_ms']:.2f}x the encode time)")
    if args.refine:
        refined = speed_ratios(args.model, min(args.repeats, 3), refine=args.refine, weights_dir=wdir)
        results["speed_with_refine"] = refined
        for size, r in sizes(refined):
            plain_ms = results["speed"][size]["codec"]
            print(f"  {size:>8}: with --refine {args.refine}: encode {r['codec']['encode_ms']:9.1f} ms "
                  f"({r['codec']['encode_ms'] / plain_ms['encode_ms']:.1f}x the plain encode), "
                  f"{r['codec']['bpp']:.3f} bpp against {plain_ms['bpp']:.3f}")
    split = network_split(args.model, args.repeats, wdir)
    results["networks"] = split
    print(f"  networks at {split['size']}: encoder {split['encoder_ns_per_px']:.0f} ns/px, decoder "
          f"{split['decoder_ns_per_px']:.0f} ns/px ({split['decoder_over_encoder']:.2f}x the encoder; before the "
          f"upsampling fusion {split['decoder_before_fusion_ns_per_px']:.0f} ns/px = "
          f"{split['decoder_before_fusion_over_encoder']:.2f}x, fusion {split['fusion_speedup']:.2f}x faster)")
    print(f"  where the time goes: the decoder does {split['decoder_macs_per_px']:.0f} multiply-adds per pixel, "
          f"{split['decoder_over_encoder_macs']:.2f}x the encoder's {split['encoder_macs_per_px']:.0f}, and runs them at "
          f"{split['decoder_gmacs_per_s']:.1f} GMAC/s against the encoder's {split['encoder_gmacs_per_s']:.1f}")

    net = load_pretrained(args.model, wdir)[0]
    images = default_dataset("test")
    prior = Codec.from_pretrained(args.model, weights_dir=wdir).coder_prior  # the model's coder prior tables, if it ships them
    table = {b: evaluate.coding_table(evaluate.latent_symbols(net, images, b), b, prior=prior.get(b))
             for b in (1, 2, 3, 4, 5)}
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
        # a 256-symbol model needs its own increment/limit: with the 2^b-tuned (8, 1024) it barely adapts
        tuned = sum(len(coder.encode(s, 256, "none", increment=255, limit=coder.MAX_LIMIT)) for s in symbols)
        results["context"]["alphabet_256_vs_2b"][b] = {"bytes_2b": own, "bytes_256": full, "bytes_256_inc255": tuned,
                                                        "extra_pct": 100.0 * (full / own - 1.0),
                                                        "extra_pct_inc255": 100.0 * (tuned / own - 1.0)}
        print(f"  b={b}: {own} bytes with {1 << b} symbols; with 256: {full} at increment/limit 8/1024 "
              f"(+{100.0 * (full / own - 1.0):.1f}%), {tuned} at 255/{coder.MAX_LIMIT} (+{100.0 * (tuned / own - 1.0):.1f}%)")
    print("\nbits saved vs the memoryless coder (context none), %")
    for row in results["context"]["savings_pct"]:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(jsonable(results), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
