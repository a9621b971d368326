"""Fit ``resae-rd-fast``'s light decoder to a ``resae-rd`` checkpoint (``labkit.decoder_fit``), on any device.

    python tools/fit_decoder.py SOURCE_DIR OUT_DIR --budget-s 1300 [--stage2-s 1800] \
        [--batch 8] [--data-dir DIR] [--device cuda]

SOURCE_DIR is a ``resae-rd`` checkpoint folder (``model.pt`` + ``config.json``); OUT_DIR
receives ``model.pt``, ``config.json`` (with ``decoder_fit`` and ``made_by``) and
``history.json``: a ``resae-rd-fast`` checkpoint for SOURCE_DIR's encoder.  The recipe is
:class:`labkit.decoder_fit.DecoderFitConfig`'s defaults but for the options given; the training
images are the default pool, or ``--data-dir``'s train split (``labkit.data.training_splits``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_gpu import PHOTOS_HELP, use_photos_from  # noqa: E402
from labkit import checkpoint  # noqa: E402
from labkit.atomic import write_text  # noqa: E402
from labkit.data import training_splits  # noqa: E402
from labkit.decoder_fit import DecoderFitConfig, fit_decoder  # noqa: E402
from labkit.models import build_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source_dir", help="the resae-rd checkpoint folder whose encoder the decoder serves")
    p.add_argument("out_dir", help="where the resae-rd-fast checkpoint goes")
    p.add_argument("--budget-s", type=float, required=True, help="stage 1 wall-clock seconds")
    p.add_argument("--stage2-s", type=float, default=0.0, help="stage 2 wall-clock seconds (0: none)")
    p.add_argument("--batch", type=int, default=DecoderFitConfig.batch)
    p.add_argument("--data-dir", default=None, help="course-layout folder (default: the default pool)")
    p.add_argument("--photos", default=None, help=PHOTOS_HELP)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    use_photos_from(args.photos)

    source, meta = checkpoint.load(args.source_dir)
    if meta.get("model") != "resae-rd":
        raise SystemExit(f"{args.source_dir}: holds {meta.get('model')!r}; the light decoder is fitted to 'resae-rd'")
    cfg = DecoderFitConfig(budget_s=args.budget_s, stage2_s=args.stage2_s, batch=args.batch)
    splits = training_splits(args.data_dir, cfg.seed)
    model = build_model("resae-rd-fast", seed=cfg.seed)
    fit_decoder(model, source, splits["train"], cfg, out_dir=args.out_dir, val_images=splits["val"],
                device=args.device)
    out = Path(args.out_dir)
    conf = json.loads((out / "config.json").read_text())
    conf["made_by"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    conf["source_weights"] = {"dir": str(args.source_dir),
                              **{k: meta.get(k) for k in ("device", "finetune", "train_seconds")}}
    write_text(out / "config.json", json.dumps(conf, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
