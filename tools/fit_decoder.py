"""Fit ``resae-rd-fast``'s light decoder to a ``resae-rd`` checkpoint (``labkit.decoder_fit``), on any device.

    python tools/fit_decoder.py SOURCE_DIR OUT_DIR --budget-s 1300 [--stage2-s 1800] \
        [--batch 8] [--data-dir DIR] [--device cuda]
    python tools/fit_decoder.py SOURCE_DIR OUT_DIR --from FAST_DIR --stage2-s 2400 \
        [--max-steps N] [--rules search] [--lr-stage2 3e-5] [--threads 1]

The second form continues a fitted light decoder (``FAST_DIR``, a ``resae-rd-fast``
checkpoint for SOURCE_DIR's encoder) with every layer trained from the start
(``DecoderFitConfig.warm_start``); ``--rules`` draws the stored-scale rule per sample from a
comma-separated list (``search``: ``labkit.spec.SCALE_SEARCH_RULES``), so the decoder sees the
scales the encoder's scale search picks.

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

import numpy as np  # noqa: E402

from finetune_gpu import PHOTOS_HELP, use_photos_from  # noqa: E402
from labkit import checkpoint  # noqa: E402
from labkit.atomic import write_text  # noqa: E402
from labkit.data import pool_windows, training_splits  # noqa: E402
from labkit.decoder_fit import DecoderFitConfig, fit_decoder  # noqa: E402
from labkit.models import build_model  # noqa: E402
from labkit.spec import SCALE_SEARCH, SCALE_SEARCH_RULES, check_scale_rule  # noqa: E402


def _rules(text: str) -> list[str]:
    """``--rules``: ``search`` or a comma-separated list of scale rules."""
    if text == SCALE_SEARCH:
        return list(SCALE_SEARCH_RULES)
    try:
        return [check_scale_rule(r.strip()) for r in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source_dir", help="the resae-rd checkpoint folder whose encoder the decoder serves")
    p.add_argument("out_dir", help="where the resae-rd-fast checkpoint goes")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stage 1 wall-clock seconds (required unless --from; with --from it is 0)")
    p.add_argument("--stage2-s", type=float, default=0.0, help="stage 2 wall-clock seconds (0: none)")
    p.add_argument("--batch", type=int, default=DecoderFitConfig.batch)
    p.add_argument("--data-dir", default=None, help="course-layout folder (default: the default pool)")
    p.add_argument("--photos", default=None, help=PHOTOS_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--from", dest="warm", default=None, metavar="FAST_DIR",
                   help="continue this resae-rd-fast checkpoint's decoder (warm start) instead of a new head")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule by steps)")
    p.add_argument("--rules", type=_rules, default=None,
                   help=f"scale rules drawn per sample: '{SCALE_SEARCH}' or e.g. p99.5,p99.9,max")
    p.add_argument("--lr-stage2", type=float, default=DecoderFitConfig.lr_stage2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--extra-photos", nargs="+", default=[], metavar="IMAGE",
                   help="more training photos (e.g. ones other installed packages ship), cut into the pool's "
                        "192x192 windows like the default train photos; greyscale ones become grey RGB")
    args = p.parse_args()
    if args.warm is None and args.budget_s is None:
        p.error("--budget-s is required for a new decoder (or give --from FAST_DIR to continue one)")
    if args.warm is not None and args.budget_s not in (None, 0):
        p.error("--from continues a fitted decoder: give its time as --stage2-s, not --budget-s")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    use_photos_from(args.photos)

    source, meta = checkpoint.load(args.source_dir)
    if meta.get("model") != "resae-rd" and not args.warm:
        raise SystemExit(f"{args.source_dir}: holds {meta.get('model')!r}; a new light decoder is fitted to 'resae-rd' "
                         "(a continuation, --from, takes any source with the same encoder)")
    cfg = DecoderFitConfig(source=meta.get("model", "resae-rd"),
                           budget_s=0.0 if args.warm else args.budget_s, stage2_s=args.stage2_s,
                           batch=args.batch, max_steps=args.max_steps, rules=args.rules,
                           lr_stage2=args.lr_stage2, warm_start=args.warm is not None)
    splits = training_splits(args.data_dir, cfg.seed)
    if args.extra_photos:
        extra = [pool_windows(f) for f in args.extra_photos]
        print(f"extra photos: {sum(map(len, extra))} windows from {len(extra)} photos "
              f"beside {len(splits['train'])} of the pool", flush=True)
        splits["train"] = np.concatenate([splits["train"], *extra])
    if args.warm:
        model, warm_meta = checkpoint.load(args.warm)
        if warm_meta.get("model") != "resae-rd-fast":
            raise SystemExit(f"{args.warm}: holds {warm_meta.get('model')!r}; --from takes a 'resae-rd-fast' checkpoint")
    else:
        model = build_model("resae-rd-fast", seed=cfg.seed)
    fit_decoder(model, source, splits["train"], cfg, out_dir=args.out_dir, val_images=splits["val"],
                device=args.device)
    out = Path(args.out_dir)
    conf = json.loads((out / "config.json").read_text())
    conf["made_by"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    conf["source_weights"] = {"dir": str(args.source_dir),
                              **{k: meta.get(k) for k in ("device", "finetune", "train_seconds")}}
    if args.warm:
        conf["warm_start_from"] = {"dir": str(args.warm),
                                   **{k: warm_meta.get(k) for k in ("train_seconds", "steps", "made_by")}}
    write_text(out / "config.json", json.dumps(conf, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
