"""Experiment: BatchNorm statistics re-estimated for the decoder, once for all b or once per b.

    python tools/exp_per_b_bn.py labkit/weights/resae-rd OUT_DIR [--batches 64]

``labkit.finetune.recalibrate_bn`` re-estimates a decoder's BatchNorm statistics over the codec's
hard bins.  This measures, on the 31 default test tiles through the real codec (whole-file bpp,
PSNR, SSIM), the checkpoint as it is against the same weights with the decoder's statistics
estimated for each b on that b's bins alone: what a decoder that picks its statistics by the
header's b would give (a format change; nothing here ships it).  The encoder and its symbols do
not change, so the checkpoint's coder prior stays valid.  Writes ``OUT_DIR/b<b>/`` (one checkpoint
per b) and ``OUT_DIR/result.json`` (curves and BD-rates against the checkpoint as it is).  One thread.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labkit import checkpoint, metrics  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset, training_splits  # noqa: E402
from labkit.finetune import recalibrate_bn, scale_rules  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402
from labkit.trainconfig import TrainConfig  # noqa: E402

BITS = (1, 2, 3, 4, 5)


def point(path: Path | str, b: int, tiles: np.ndarray) -> list[float]:
    """Mean whole-file bpp, PSNR and SSIM of the codec at ``b`` over ``tiles``."""
    codec = Codec.from_checkpoint(path, b=b)
    rs = [codec.compress(t) for t in tiles]
    return [float(np.mean([r.bpp for r in rs])), float(np.mean([metrics.psnr(t, r.recon) for t, r in zip(tiles, rs)])),
            float(np.mean([metrics.ssim(t, r.recon) for t, r in zip(tiles, rs)]))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--batches", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    tiles = default_dataset("test")
    _, meta = checkpoint.load(a.checkpoint, coder_prior=False)
    train = meta.get("train") or json.loads((ROOT / "labkit/weights/resae-rd/config.json").read_text())["train"]
    images = torch.from_numpy(training_splits(None, 0)["train"]).permute(0, 3, 1, 2).contiguous()
    base, per_b = {}, {}
    for b in BITS:
        base[b] = point(a.checkpoint, b, tiles)
        cfg = TrainConfig.from_dict({**train, "model": meta["model"], "model_cfg": meta.get("model_cfg", {}),
                                     "device": "cpu", "bits": [b]})
        model, _ = checkpoint.load(a.checkpoint, coder_prior=False)
        recalibrate_bn(model, images, cfg, batches=a.batches, batch=16, rules=scale_rules("search"), part="decoder")
        checkpoint.save(model, out / f"b{b}", cfg.to_dict(), checkpoint.run_facts(meta))
        if (Path(a.checkpoint) / "coder_prior.npz").is_file():
            shutil.copy(Path(a.checkpoint) / "coder_prior.npz", out / f"b{b}" / "coder_prior.npz")
        per_b[b] = point(out / f"b{b}", b, tiles)
        print(f"b={b}: as it is {base[b][0]:.4f} bpp {base[b][1]:.2f} dB {base[b][2]:.4f}; "
              f"statistics for b={b} {per_b[b][0]:.4f} bpp {per_b[b][1]:.2f} dB {per_b[b][2]:.4f}", flush=True)
    result = {"checkpoint": a.checkpoint, "batches": a.batches, "as_it_is": base, "per_b_statistics": per_b}
    for i, metric in ((1, "psnr"), (2, "ssim")):
        result[f"bd_rate_{metric}"] = d = bd_detail([base[b][0] for b in BITS], [base[b][i] for b in BITS],
                                                    [per_b[b][0] for b in BITS], [per_b[b][i] for b in BITS])
        print(f"BD-rate of per-b statistics on {metric}: {d['value']:+.1f} % over {[round(v, 3) for v in d['overlap']]}")
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
