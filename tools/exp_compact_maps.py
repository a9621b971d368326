"""Compact colour maps (format version 5) against the 8-bit map codes (versions 3 and 4), through the codec.

    python tools/exp_compact_maps.py        # ~3 min on one core; writes the JSON below

``resae-rd-fast`` at b = 1..5 on the 31 default test tiles and on scikit-image's astronaut, camera,
chelsea and coffee at full size, each coded twice by the real codec:

* ``8-bit codes``: ``labkit.colour.CODE_STEP = 1``, every parameter in the code's full resolution,
  so the maps are stored as versions 3 and 4 and priced by those bytes (the codec before
  2026-11-27's change);
* ``compact``: the shipped ``CODE_STEP = 2`` (even codes, stored as version 5, priced by those bytes).

Prints mean whole-file bpp, PSNR, SSIM and map bytes per b, mean CIE76 colour error on the photos,
and the BD-rate (PSNR, SSIM) of ``compact`` against ``8-bit codes``.  Writes
benchmarks/results/experiments/compact_maps.json.  One thread.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import bitstream, colour, metrics, photos  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "compact_maps.json"
BITS = (1, 2, 3, 4, 5)
MODEL = "resae-rd-fast"


def curve(images: list[np.ndarray], code_step: int) -> dict[str, list[float]]:
    colour.CODE_STEP = code_step
    out: dict[str, list[float]] = {k: [] for k in ("bpp", "psnr", "ssim", "map_bytes", "delta_e")}
    for b in BITS:
        codec = Codec.from_pretrained(MODEL, b=b)
        rows = []
        for img in images:
            r = codec.compress(img)
            rows.append((r.bpp, metrics.psnr(img, r.recon), metrics.ssim(img, r.recon),
                         bitstream.stored_colour_map_bytes(r.header), photos.delta_e76(img, r.recon)))
        for k, v in zip(out, np.mean(rows, axis=0)):
            out[k].append(float(v))
    return out


def main() -> int:
    torch.set_num_threads(1)
    sets = {"tiles": list(default_dataset("test")), "photos": [photos.photo(p) for p in photos.COLOUR_PHOTOS]}
    result: dict = {"model": MODEL, "bits": list(BITS), "sets": {}}
    try:
        for name, images in sets.items():
            old, new = curve(images, 1), curve(images, 2)
            bd = {m: bd_detail(old["bpp"], old[m], new["bpp"], new[m]) for m in ("psnr", "ssim")}
            result["sets"][name] = {"8-bit codes": old, "compact": new, "bd_rate_compact_vs_8bit": bd}
            print(f"{name} ({len(images)} images)")
            for label, c in (("8-bit codes", old), ("compact", new)):
                print(f"  {label:12s} " + "  ".join(f"b{b} {c['bpp'][i]:.4f}/{c['psnr'][i]:.2f}/{c['ssim'][i]:.4f}/"
                                                    f"{c['map_bytes'][i]:.0f}B/dE {c['delta_e'][i]:.2f}"
                                                    for i, b in enumerate(BITS)))
            print("  BD-rate compact vs 8-bit codes: " + ", ".join(
                f"{m} {d['value']:+.2f} % (overlap {d['overlap_fraction'] * 100:.0f} %)" if d["reason"] is None
                else f"{m} left out ({d['reason']})" for m, d in bd.items()))
    finally:
        colour.CODE_STEP = 2
    OUT.write_text(json.dumps(jsonable(result), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
