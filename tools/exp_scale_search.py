"""Experiment: choose the stored scale per image by MSE + lambda_b * bpp (an encoder-side search).

    python tools/exp_scale_search.py [--model resae-rd-fast] [--rules p99.5 p99.7 p99.9 p99.97 max] \
        [--out benchmarks/results/experiments/scale_search.json]

The decoder only reads the scale from the header, so the encoder may try several rules and keep,
per image and ``b``, the file that minimises ``MSE + lambda_b * bpp`` (whole-file bytes, colour maps
included; ``lambda_b`` = :func:`labkit.spec.colour_map_rate_weight`, the price the codec already
puts on a bit at that ``b``).  This measures what such a search buys over the model's trained rule
on the default test tiles and on the four full-size colour-check photos (with their mean
CIE76 colour error at b = 2), as BD-rates (PSNR, SSIM) with their
overlap, and what it costs (encodes per image = number of rules).  One thread, deterministic.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import metrics, spec  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.photos import COLOUR_PHOTOS, delta_e76, photo  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402
from labkit.speed import best_time  # noqa: E402

BITS = (1, 2, 3, 4, 5)


def run(images: list[np.ndarray], model: str, rules: list[str], trained: str, ssim_weight: float = 0.0,
        weights_dir: str | None = None) -> dict:
    """Per b: the trained rule's mean curve point and the search's, plus how often each rule won."""
    out: dict = {"trained": {}, "search": {}, "wins": {}, "delta_e_b2": {"trained": [], "search": []}}
    for b in BITS:
        lam = spec.colour_map_rate_weight(b)
        codecs = {r: Codec.from_pretrained(model, b=b, scale=r, weights_dir=weights_dir) for r in rules}
        rows = {"trained": [], "search": [], **{f"fixed {r}": [] for r in rules}}
        wins = dict.fromkeys(rules, 0)
        for img in images:
            px = img.shape[0] * img.shape[1]
            cands = []
            for r, c in codecs.items():
                data = c.encode(img)
                rec = c.decode(data)
                d = float(np.mean((rec.astype(np.float64) - img) ** 2)) / 255.0**2
                if ssim_weight:
                    d += ssim_weight * (1.0 - metrics.ssim(img, rec))
                cands.append((d + lam * 8 * len(data) / px, r, len(data), rec))
            best = min(cands, key=lambda t: t[0])
            wins[best[1]] += 1
            for cand in cands:
                rows[f"fixed {cand[1]}"].append((8 * cand[2] / px, metrics.psnr(img, cand[3]), metrics.ssim(img, cand[3])))
            for key, cand in (("trained", next(t for t in cands if t[1] == trained)), ("search", best)):
                rows[key].append((8 * cand[2] / px, metrics.psnr(img, cand[3]), metrics.ssim(img, cand[3])))
                if b == 2:
                    out["delta_e_b2"][key].append(delta_e76(img, cand[3]))
        for key in rows:
            a = np.array(rows[key])
            out.setdefault(key, {})[str(b)] = {"bpp": a[:, 0].mean(), "psnr": a[:, 1].mean(), "ssim": a[:, 2].mean()}
        out["wins"][str(b)] = wins
    t = out["trained"]
    for m in ("psnr", "ssim"):
        for key in ["search"] + [f"fixed {r}" for r in rules if r != trained]:
            s = out[key]
            d = bd_detail([t[str(b)]["bpp"] for b in BITS], [t[str(b)][m] for b in BITS],
                          [s[str(b)]["bpp"] for b in BITS], [s[str(b)][m] for b in BITS])
            out.setdefault("bd_vs_trained", {}).setdefault(key, {})[m] = d
            if key == "search":
                out[f"bd_{m}"] = d
    return out


def encode_times(model: str, b: int = 3) -> dict:
    """Encode time, best of 3, of the first default test tile and of coffee, trained rule vs search."""
    out = {}
    for name, img in (("tile 128x128", default_dataset("test")[0]), ("coffee 600x400", photo("coffee.png"))):
        for scale in (None, spec.SCALE_SEARCH):
            codec = Codec.from_pretrained(model, b=b, scale=scale)
            out[f"{name}, {scale or 'trained rule'}"] = round(best_time(lambda: codec.encode(img), 3), 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=spec.DEFAULT_MODEL)
    p.add_argument("--rules", nargs="+", default=["p99.5", "p99.7", "p99.9", "p99.97", "max"])
    p.add_argument("--ssim-weight", type=float, default=0.0,
                   help="distortion = MSE + this * (1 - SSIM) (the models' training loss uses 0.05); default MSE")
    p.add_argument("--data-dir", default=None, help="course-layout folder: its held-out test images instead of the "
                                                    "default tiles (the photos are skipped)")
    p.add_argument("--weights-dir", default=None, help="checkpoint folders <model>/ (default: the shipped weights)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    trained = Codec.from_pretrained(args.model).scale
    if trained not in args.rules:
        raise SystemExit(f"--rules must include the model's trained rule {trained!r}")
    t0 = time.perf_counter()
    res = {"model": args.model, "rules": args.rules, "trained_rule": trained,
           "lambda_b": {str(b): spec.colour_map_rate_weight(b) for b in BITS}}
    res["ssim_weight"] = args.ssim_weight
    if args.data_dir:
        from labkit.data import get_splits
        res["data_dir"] = args.data_dir
        res["weights_dir"] = args.weights_dir
        res["tiles"] = run(list(get_splits(args.data_dir, 0)["test"]), args.model, args.rules, trained,
                           args.ssim_weight, args.weights_dir)
    else:
        res["tiles"] = run(list(default_dataset("test")), args.model, args.rules, trained, args.ssim_weight)
        res["photos"] = run([photo(n) for n in COLOUR_PHOTOS], args.model, args.rules, trained, args.ssim_weight)
        res["photo_names"] = list(COLOUR_PHOTOS)
    res["seconds"] = time.perf_counter() - t0
    if not args.data_dir:
        res["encode_seconds"] = encode_times(args.model)
        print("encode seconds (best of 3, one thread):", res["encode_seconds"])
    for where in [k for k in ("tiles", "photos") if k in res]:
        r = res[where]
        print(where, "fixed rules vs trained:", {k: {m: round(v[m]["value"], 1) for m in v}
                                                 for k, v in r["bd_vs_trained"].items()})
        print(where, {m: (round(r[f"bd_{m}"]["value"], 2), r[f"bd_{m}"]["reason"]) for m in ("psnr", "ssim")},
              "wins", r["wins"], "dE b=2", {k: [round(v, 2) for v in vs] for k, vs in r["delta_e_b2"].items()})
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
        print("wrote", args.out, f"in {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
