"""Train one shipped model from its recipe: the exact recipe the notebooks' `full` profile reruns.

    python tools/train_shipped.py resae --out labkit/weights/resae [--data-dir DIR] [--device cuda]

The recipe ends up in ``<out>/config.json["train"]``; ``labkit.workflow.train_models``
(profile ``full``) reads it back from the shipped weights and retrains with it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit.data import training_splits  # noqa: E402
from labkit.models import build_model  # noqa: E402
from labkit.train import TrainConfig, fit  # noqa: E402

COMMON = dict(b_train=3, batch_size=32, lr=2e-3, schedule="cosine", weight_decay=1e-4, seed=0, crop=128,
              augment=True, val_every=10)
RECIPES: dict[str, dict] = {
    # the course baseline, exactly: AE1 plain, AE2 with quantization noise, MSE loss
    "ae1": dict(model="ae1", model_cfg={}, loss="mse", **COMMON),
    "ae2": dict(model="ae2", model_cfg={}, loss="mse", **COMMON),
    # the proposed model (the seed's design) and its explored variants
    "resae": dict(model="resae", model_cfg={}, loss="mse", **COMMON),
    "resae-ssim": dict(model="resae", model_cfg={}, loss="mse+ssim", **COMMON),
    "resae-wide": dict(model="resae", model_cfg={"widths": [64, 96, 128], "blocks": 2}, loss="mse", **COMMON),
    "resae-wide-ssim": dict(model="resae", model_cfg={"widths": [64, 96, 128], "blocks": 2}, loss="mse+ssim", **COMMON),
    # the rate-distortion model: loss = MSE + 0.05 (1 - SSIM) + lambda * estimated bpp, b drawn
    # from 1..5 per batch, stored scale = 99.9th percentile of the latent (the codec's rule)
    "resae-rd": dict(model="resae-rd", model_cfg={}, loss="mse+ssim", rate_weight=0.015, bits=[1, 2, 3, 4, 5],
                     scale="p99.9", **{**COMMON, "val_every": 5}),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", default="{}", help="JSON overrides of the recipe")
    args = p.parse_args()
    recipe = dict(RECIPES[args.recipe], epochs=args.epochs, device=args.device, **json.loads(args.set))
    cfg = TrainConfig.from_dict(recipe)
    splits = training_splits(args.data_dir, seed=cfg.seed)
    model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
    fit(model, splits["train"], splits["val"], cfg, out_dir=args.out, progress=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
