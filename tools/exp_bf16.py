"""bfloat16 inference for the codec's networks: speed and rate–distortion against float32.

    python tools/exp_bf16.py [--out benchmarks/results/experiments/bf16.json] [--repeats 7]

The networks are run under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (their outputs cast
back to float32 before the quantizer and the pixels); nothing else changes.  Measured, one
thread, in one run, the CPU named beside the numbers:

- *speed*: encode and decode of a 128x128 and a 768x512 image (astronaut, as ``bench_codec.py``
  cuts it) for ``resae`` and ``resae-rd-fast``, each in float32 and in bfloat16, best of
  ``--repeats``; the ratios against ``resae`` are given in the same precision and across;
- *quality*: ``resae-rd-fast`` through the real codec on the 31 default test tiles at b = 1..5 in
  both precisions (bpp from the whole file, PSNR, SSIM), the BD-rate of bfloat16 against float32,
  the share of latent symbols that differ, and the PSNR between the two decoders' pixels for the
  same files (float32-encoded).

Whether the CPU runs bfloat16 natively (AVX512-BF16 / AMX) is recorded: without it, oneDNN
emulates the type and the speed numbers do not carry over.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from labkit import codec, rd  # noqa: E402
from labkit.data import get_splits  # noqa: E402
from labkit.metrics import psnr, ssim  # noqa: E402
from labkit.speed import best_time, cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def in_bfloat16(c: codec.Codec) -> codec.Codec:
    """``c`` with its model's ``encode`` and ``decode`` run under bfloat16 autocast (float32 out)."""
    model = c.model
    encode, decode = model.encode, model.decode

    def enc(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encode(x).float()

    def dec(y: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return decode(y).float()

    model.encode, model.decode = enc, dec
    return c


def make(name: str, b: int, precision: str) -> codec.Codec:
    c = codec.Codec.from_pretrained(name, b=b)
    return in_bfloat16(c) if precision == "bfloat16" else c


def speed(repeats: int) -> dict:
    import skimage.data

    big = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((768, 512), Image.BICUBIC))
    images = {"128x128": np.ascontiguousarray(big[192:320, 320:448]), "768x512": big}
    out: dict = {}
    for name in ("resae", "resae-rd-fast"):
        for precision in ("float32", "bfloat16"):
            c = make(name, 2, precision)
            for size, img in images.items():
                data = c.encode(img)
                enc = best_time(lambda: c.encode(img), repeats)
                dec = best_time(lambda: c.decode(data), repeats)
                out.setdefault(size, {}).setdefault(name, {})[precision] = dict(
                    encode_ms=1e3 * enc, decode_ms=1e3 * dec, total_ms=1e3 * (enc + dec), bytes=len(data))
    for size, row in out.items():
        fast, seed = row["resae-rd-fast"], row["resae"]
        row["ratios"] = {
            "resae-rd-fast/resae, both float32": fast["float32"]["total_ms"] / seed["float32"]["total_ms"],
            "resae-rd-fast/resae, both bfloat16": fast["bfloat16"]["total_ms"] / seed["bfloat16"]["total_ms"],
            "resae-rd-fast bfloat16 / resae float32": fast["bfloat16"]["total_ms"] / seed["float32"]["total_ms"],
            "resae-rd-fast float32 / bfloat16": fast["float32"]["total_ms"] / fast["bfloat16"]["total_ms"],
            "resae float32 / bfloat16": seed["float32"]["total_ms"] / seed["bfloat16"]["total_ms"],
        }
    return out


def quality(name: str = "resae-rd-fast") -> dict:
    tiles = get_splits(None, 0)["test"]
    curves: dict = {}
    agreement: dict = {}
    for b in spec_bits():
        f32, b16 = make(name, b, "float32"), make(name, b, "bfloat16")
        rows = {"float32": [], "bfloat16": []}
        differ, total, cross = 0, 0, []
        for img in tiles:
            for precision, c in (("float32", f32), ("bfloat16", b16)):
                r = c.compress(img)
                rows[precision].append((r.bpp, psnr(img, r.recon), ssim(img, r.recon)))
                if precision == "float32":
                    sym32, data32, rec32 = r.symbols, r.data, r.recon
                else:
                    differ += int(np.count_nonzero(r.symbols != sym32))
                    total += r.symbols.size
            rec16 = b16.decode(data32)  # the same file through the bfloat16 decoder
            cross.append(psnr(rec32, rec16))
        for precision, vals in rows.items():
            m = np.mean(np.asarray(vals), axis=0)
            c = curves.setdefault(precision, {"b": [], "bpp": [], "psnr": [], "ssim": []})
            c["b"].append(b)
            c["bpp"].append(float(m[0]))
            c["psnr"].append(float(m[1]))
            c["ssim"].append(float(m[2]))
        agreement[b] = {"symbols_differing_pct": 100.0 * differ / total,
                        "decoders_psnr_db_mean": float(np.mean([p for p in cross if np.isfinite(p)] or [np.inf])),
                        "identical_pixels_files": int(sum(not np.isfinite(p) for p in cross))}
    bd = {}
    for metric in ("psnr", "ssim"):
        a, t = curves["float32"], curves["bfloat16"]
        bd[f"bd_rate_{metric}_pct"] = rd.bd_rate(a["bpp"], a[metric], t["bpp"], t[metric])
    return {"model": name, "images": len(tiles), "curves": curves, "bfloat16_vs_float32": bd, "agreement": agreement}


def spec_bits() -> list[int]:
    return list(range(1, 6))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/experiments/bf16.json")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    record = {
        "command": "python tools/exp_bf16.py" + (f" --repeats {args.repeats}" if args.repeats != 7 else ""),
        "cpu": cpu_name(), "threads": 1, "torch": torch.__version__,
        "native_bfloat16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "speed": speed(args.repeats),
        "quality": quality(),
    }
    record["seconds"] = time.time() - started
    Path(args.out).write_text(json.dumps(jsonable(record), indent=1, allow_nan=False) + "\n")
    print(json.dumps(jsonable({k: record[k] for k in ("cpu", "native_bfloat16")}), indent=1))
    for size, row in record["speed"].items():
        print(size, {k: round(v, 2) for k, v in row["ratios"].items()})
    print(json.dumps(jsonable(record["quality"]["bfloat16_vs_float32"])), json.dumps(jsonable(record["quality"]["agreement"])))


if __name__ == "__main__":
    main()
