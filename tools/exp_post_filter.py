"""Would an encoder-fitted restoration filter pay?  (A Wiener / adaptive-loop-filter post-filter.)

    python tools/exp_post_filter.py        # ~30 s on one core (2-core AMD EPYC, AVX-512); writes the JSON below

Video codecs (VVC's adaptive loop filter) send a small linear filter that the encoder fits by
least squares between the decoded and the original picture.  This measures what such a filter
would buy after ``resae-rd-fast``'s decoder and colour map, without building it into the format:

* each image is coded by the real codec at b = 1..5 (the report's range) (its whole-file bytes, its decoded pixels);
* the encoder fits, by least squares on that image, a point-symmetric zero-DC filter
  ``out = x + sum_i w_i (x[p + t_i] + x[p - t_i] - 2 x[p])`` (3x3: 4 taps, 5x5: 12, 7x7: 24), one for
  all three channels (``s``) or one per channel (``c``); the weights are rounded to 1/256 and each
  costs one byte (+ one byte saying a filter follows);
* the filter is sent when it lowers ``MSE + colour_map_rate_weight(b) * bpp`` (the colour map's
  own rule), and the curve takes the filtered pixels and the larger file where it is sent.

Sets: the 31 default test tiles and the two default test photos at full size (coffee, rocket).
BD-rates (``labkit.rd.bd_detail``) of each variant against the codec without the filter.

Writes benchmarks/results/experiments/post_filter.json.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from labkit import rd, spec  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import DEFAULT_SOURCES, _skimage_data_dir, default_dataset  # noqa: E402
from labkit.metrics import psnr, ssim  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "post_filter.json"
MODEL = "resae-rd-fast"
STEP = 1 / 256
#: name -> (kernel side, one filter shared by the three channels)
VARIANTS = {"3x3 shared": (3, True), "5x5 shared": (5, True), "5x5 per channel": (5, False), "7x7 shared": (7, True)}


def symmetric_differences(x: np.ndarray, k: int) -> np.ndarray:
    """``[H, W, taps, 3]``: ``x[p + t] + x[p - t] - 2 x[p]`` for the half-plane of offsets ``t`` (edge-padded)."""
    r = k // 2
    p = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    taps = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) > (0, 0)]
    return np.stack([p[r + dy:r + dy + h, r + dx:r + dx + w] + p[r - dy:r - dy + h, r - dx:r - dx + w] - 2 * x
                     for dy, dx in taps], axis=-2)


def filtered(decoded: np.ndarray, original: np.ndarray, k: int, shared: bool) -> tuple[np.ndarray, int]:
    """The decoded image after its least-squares filter (weights rounded to STEP), and the filter's bytes."""
    x = decoded.astype(np.float32) / 255
    target = original.astype(np.float32) / 255 - x
    feats = symmetric_differences(x, k)
    taps = feats.shape[-2]
    groups = [slice(0, 3)] if shared else [slice(c, c + 1) for c in range(3)]
    out = x.copy()
    for g in groups:
        a = feats[..., g].transpose(0, 1, 3, 2).reshape(-1, taps).astype(np.float64)
        w = np.linalg.solve(a.T @ a + 1e-9 * np.eye(taps), a.T @ target[..., g].reshape(-1).astype(np.float64))
        w = (np.round(w / STEP) * STEP).astype(np.float32)
        out[..., g] = x[..., g] + np.einsum("hwtc,t->hwc", feats[..., g], w)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), 1 + taps * len(groups)


def curves(images: list[np.ndarray]) -> dict[str, dict[str, list[float]]]:
    out = {v: {"bpp": [], "psnr": [], "ssim": [], "sent": []} for v in ("none", *VARIANTS)}
    for b in (1, 2, 3, 4, 5):  # the report's bit depths
        codec = Codec.from_pretrained(MODEL, b=b)
        lam = spec.colour_map_rate_weight(b)
        acc: dict[str, list[list[float]]] = {v: [[], [], [], []] for v in out}
        for img in images:
            data = codec.encode(img)
            dec = codec.decode(data)
            n = img.shape[0] * img.shape[1]
            base_bpp = len(data) * 8 / n
            base_cost = float(np.mean((dec / 255.0 - img / 255.0) ** 2)) + lam * base_bpp
            for v in out:
                pix, bpp, sent = dec, base_bpp, 0.0
                if v != "none":
                    cand, nbytes = filtered(dec, img, *VARIANTS[v])
                    cand_bpp = (len(data) + nbytes) * 8 / n
                    if float(np.mean((cand / 255.0 - img / 255.0) ** 2)) + lam * cand_bpp < base_cost:
                        pix, bpp, sent = cand, cand_bpp, 1.0
                for lst, val in zip(acc[v], (bpp, psnr(img, pix), ssim(img, pix), sent)):
                    lst.append(val)
        for v, (bpp, p, s, sent) in acc.items():
            for key, vals in (("bpp", bpp), ("psnr", p), ("ssim", s), ("sent", sent)):
                out[v][key].append(float(np.mean(vals)))
        print(f"b={b}: " + ", ".join(f"{v} {out[v]['bpp'][-1]:.4f} bpp {out[v]['psnr'][-1]:.3f} dB "
                                     f"{out[v]['ssim'][-1]:.4f}" for v in out), flush=True)
    return out


def main() -> int:
    torch.set_num_threads(1)
    photos = [np.asarray(Image.open(_skimage_data_dir() / f).convert("RGB")) for f in DEFAULT_SOURCES["test"]]
    result = {"cpu": cpu_name(), "model": MODEL, "weight_step": STEP, "variants": {k: list(v) for k, v in VARIANTS.items()},
              "command": "python tools/exp_post_filter.py", "sets": {}}
    for name, images in (("default test tiles", list(default_dataset("test"))), ("default test photos, full size", photos)):
        print(name, flush=True)
        c = curves(images)
        base = c["none"]
        bd = {v: {m: rd.bd_detail(base["bpp"], base[m], c[v]["bpp"], c[v][m]) for m in ("psnr", "ssim")} for v in VARIANTS}
        for v in VARIANTS:
            print(f"  {v}: BD-rate PSNR {bd[v]['psnr']['value']:+.2f} %, SSIM {bd[v]['ssim']['value']:+.2f} %")
        result["sets"][name] = {"curves": c, "bd_rate_vs_none": bd}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
