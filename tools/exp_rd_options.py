"""Measure the decoder-free and cheap options of issue 9 item 5 on a model's shipped weights.

    python tools/exp_rd_options.py [--model resae-rd] [--out benchmarks/results/experiments/rd_options.json]

Against the plain course chain (per-image scale by the model's rule, neighbour context, no
colour map), on the
embedded test tiles (128x128) and on scikit-image's four full-size photos, at b = 1..5, with
real coder bytes and the whole file counted (22-byte header + payload + any side information):

- ``per-channel scale``: one scale per latent channel, each the model's percentile rule
  applied to that channel, sent as one byte per channel (log2 of its ratio to the image
  scale in 1/16 steps, so ``C`` extra bytes); dequantized with the decoded scale.
- ``colour map``: the codec with ``labkit.colour``'s map (fitted by the encoder on the decoded
  image, 12 extra bytes, sent only when it pays), real ``.lkc`` version-3 files.
- ``contexts``: real payload bits per symbol of every coder context mode (``neighbor+channel``
  is the joint channel + spatial context).

Prints and stores mean bpp / PSNR / SSIM / CIE76 dE per option and b, and each option's
BD-rate (PSNR and SSIM) against the plain chain with its overlap. Deterministic (one thread).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import coder, metrics, quant, spec  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.inference import decode_tiled  # noqa: E402
from labkit.photos import delta_e76, photo  # noqa: E402
from labkit.profiles import PHOTOS  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402

BITS = (1, 2, 3, 4, 5)  # the report's bit depths
LOG_STEP = 16  # per-channel ratio = 2 ** (-k / LOG_STEP), k in 0..255


def per_channel_scales(y: torch.Tensor, rule: str, image_scale: float) -> tuple[torch.Tensor, int]:
    """Per-channel scales by ``rule``, coded as one byte each relative to ``image_scale``."""
    c = y.shape[1]
    s = quant.latent_scale(y[0].reshape(c, 1, -1), rule)  # [C]: the rule per channel
    ratio = (s / image_scale).clamp(2.0 ** (-255 / LOG_STEP), 1.0)
    k = torch.round(-torch.log2(ratio) * LOG_STEP).clamp(0, 255)
    return image_scale * 2.0 ** (-k / LOG_STEP), c


@torch.inference_mode()
def run_image(codec: Codec, mapped: Codec, img: np.ndarray) -> dict[str, dict[str, float]]:
    """One image at the codec's b: every option's bytes and quality (``mapped``: with colour maps)."""
    h, w = img.shape[:2]
    res = codec.compress(img)
    data = res.data
    out = {"plain": dict(bytes=len(data), recon=res.recon)}
    with_map = mapped.compress(img)
    out["colour map"] = dict(bytes=len(with_map.data), recon=with_map.recon)
    # per-channel scale: same latent, own scales and symbols, same decoder
    from labkit.inference import encode_tiled

    y = encode_tiled(codec.model, img, codec.tiles[0])
    s_img = float(quant.to_float32(quant.latent_scale(y, codec.scale))[0])
    s_ch, extra = per_channel_scales(y, codec.scale, s_img)
    levels = 2**codec.b
    u = (y[0] / s_ch.reshape(-1, 1, 1)).clamp(0.0, 1.0 - quant.EPS)
    q = torch.floor(u * levels).clamp(0, levels - 1).to(torch.uint8)
    payload = coder.encode(q.numpy(), levels, codec.context)
    header_and_rest = len(data) - len(coder.encode(res.symbols, levels, codec.context))  # v2: 22 bytes

    def latent_of(rows: slice, cols: slice) -> torch.Tensor:
        qq = q[:, rows, cols].to(torch.float32)
        return (s_ch.reshape(-1, 1, 1) * (qq / levels + 1.0 / (2 * levels))).unsqueeze(0)

    recon = decode_tiled(codec.model, latent_of, tuple(q.shape[1:]), (h, w), codec.tiles[1])
    out["per-channel scale"] = dict(bytes=header_and_rest + len(payload) + extra, recon=recon)
    for r in out.values():
        rec = r.pop("recon")
        r.update(bpp=spec.bits_per_pixel(r["bytes"], h, w), psnr=metrics.psnr(img, rec),
                 ssim=metrics.ssim(img, rec), delta_e=delta_e76(img, rec))
    return out


def summarise(per_b: dict[int, list[dict]]) -> dict:
    """Mean bpp/PSNR/SSIM/dE per option and b, and BD-rates vs the plain chain."""
    options = list(next(iter(per_b.values()))[0])
    curves = {o: {b: {k: float(np.mean([r[o][k] for r in rows])) for k in ("bpp", "psnr", "ssim", "delta_e")}
                  for b, rows in per_b.items()} for o in options}
    bd = {}
    for o in options[1:]:
        bd[o] = {}
        for metric in ("psnr", "ssim"):
            a, t = curves["plain"], curves[o]
            d = bd_detail([a[b]["bpp"] for b in a], [a[b][metric] for b in a],
                          [t[b]["bpp"] for b in t], [t[b][metric] for b in t], kind="rate")
            bd[o][metric] = {"bd_rate_pct": d["value"], "overlap": d.get("overlap"), "reason": d["reason"]}
    return {"curves": curves, "bd_rate_vs_plain": bd}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=spec.DEFAULT_MODEL)
    p.add_argument("--out", default="benchmarks/results/experiments/rd_options.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    sets = {"default test tiles": list(default_dataset("test")), "full-size photos": [photo(n) for n in PHOTOS]}
    result: dict = {"model": args.model, "bits": list(BITS)}
    for name, images in sets.items():
        per_b = {}
        for b in BITS:
            plain = Codec.from_pretrained(args.model, b=b, colour_map=False)
            mapped = Codec.from_pretrained(args.model, b=b, colour_map=True)
            per_b[b] = [run_image(plain, mapped, img) for img in images]
        result[name] = summarise(per_b)
        print(f"\n{name} ({len(images)} images), model {args.model}")
        for o, curve in result[name]["curves"].items():
            print(f"  {o:18s} " + "  ".join(f"b={b}: {c['bpp']:.3f} bpp {c['psnr']:.2f} dB {c['ssim']:.3f} "
                                             f"dE {c['delta_e']:.2f}" for b, c in curve.items()))
        for o, d in result[name]["bd_rate_vs_plain"].items():
            print(f"  BD-rate of {o} vs the plain chain: " + ", ".join(
                f"{m} {v['bd_rate_pct']:+.1f} % (overlap {v['overlap']})" if v["reason"] is None
                else f"{m}: {v['reason']}" for m, v in d.items()))
    symbols = {b: np.stack([Codec.from_pretrained(args.model, b=b).analyse(img)[0] for img in sets["default test tiles"]])
               for b in BITS}
    from labkit.evaluate import coding_table

    result["contexts_bits_per_symbol"] = {b: coding_table(s, b) for b, s in symbols.items()}
    print("\nreal payload bits per latent symbol per context mode (default test tiles)")
    for b, t in result["contexts_bits_per_symbol"].items():
        print(f"  b={b}: " + "  ".join(f"{k.removeprefix('coded ')} {v:.4f}" for k, v in t.items() if k.startswith("coded")))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
