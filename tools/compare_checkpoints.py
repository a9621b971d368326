"""Codec curves of checkpoints on the embedded test tiles, and BD-rates against the first one.

    python tools/compare_checkpoints.py labkit/weights/resae-rd /work/runs/cpu60/resae-rd [--out FILE.json]
    python tools/compare_checkpoints.py labkit/weights/resae-rd-fast@search RUN@search RUN

Each checkpoint (folder with model.pt + config.json, or a .pt) is run through the real codec
(``Codec.from_checkpoint`` with its defaults: the checkpoint's scale rule, the model's colour-map
default, the model's coder context: ``learned`` where it ships a coder prior) at b = 1..5: mean
whole-file bpp, PSNR and SSIM over the 31 default test tiles (or a course folder's test split,
``--data-dir``), and the BD-rate (PSNR, SSIM) of every later checkpoint against the first, with
its overlap.  ``PATH@SCALE`` codes with that stored-scale rule instead of the checkpoint's
(``search``: the encoder's scale search, ``labkit.spec.SCALE_SEARCH``).  One thread, deterministic.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import metrics  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset, get_splits  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

BITS = (1, 2, 3, 4, 5)


def curve(spec: str, tiles: np.ndarray) -> dict[int, dict[str, float]]:
    """Mean bpp / PSNR / SSIM at every b of checkpoint ``spec`` (``PATH`` or ``PATH@SCALE``)."""
    path, _, scale = spec.partition("@")
    out = {}
    for b in BITS:
        codec = Codec.from_checkpoint(path, b=b, **({"scale": scale} if scale else {}))
        rs = [codec.compress(t) for t in tiles]
        out[b] = {"bpp": float(np.mean([r.bpp for r in rs])),
                  "psnr": float(np.mean([metrics.psnr(t, r.recon) for t, r in zip(tiles, rs)])),
                  "ssim": float(np.mean([metrics.ssim(t, r.recon) for t, r in zip(tiles, rs)]))}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None,
                   help="course-layout folder: compare on its test split (labkit.data.get_splits) instead of "
                        "the default test tiles")
    args = p.parse_args()
    torch.set_num_threads(1)
    tiles = default_dataset("test") if args.data_dir is None else get_splits(args.data_dir)["test"]
    result: dict = {"curves": {}, "bd_rate_vs_first": {}}
    for path in args.checkpoints:
        result["curves"][path] = c = curve(path, tiles)
        print(path, "  ".join(f"b={b}: {v['bpp']:.3f} bpp {v['psnr']:.2f} dB {v['ssim']:.3f}" for b, v in c.items()))
    first = result["curves"][args.checkpoints[0]]
    for path in args.checkpoints[1:]:
        c = result["curves"][path]
        result["bd_rate_vs_first"][path] = {}
        for metric in ("psnr", "ssim"):
            d = bd_detail([first[b]["bpp"] for b in BITS], [first[b][metric] for b in BITS],
                          [c[b]["bpp"] for b in BITS], [c[b][metric] for b in BITS], kind="rate")
            result["bd_rate_vs_first"][path][metric] = d
            print(f"  BD-rate of {path} vs {args.checkpoints[0]} on {metric}: "
                  + (f"{d['value']:+.1f} % over {[round(v, 3) for v in d['overlap']]}" if d["reason"] is None
                     else d["reason"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(jsonable(result), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
