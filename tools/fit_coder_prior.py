"""Fit a model's coder prior (``labkit.coder_prior``) from the symbols its codec writes for its training images.

    python tools/fit_coder_prior.py labkit/weights/resae-rd-fast            # the shipped tables (~25 s)
    python tools/fit_coder_prior.py RUN/resae-rd-fast --data-dir DIR         # weights trained on DIR/train
    python tools/fit_coder_prior.py labkit/weights/resae-rd-fast --check     # refit, compare, write nothing

The images are the ones the model was trained on (``labkit.data.training_splits``: the default
pool of 192 x 192 windows, or the train split of ``--data-dir``), never a test split.  Each is
encoded once, one thread, with the checkpoint's own scale rule; its latent is quantized at every
b of ``labkit.coder_prior.BITS`` exactly as the codec does, and the symbols are counted
(``labkit.coder_prior.fit_checkpoint``).  Writes ``coder_prior.npz`` into the checkpoint folder
and records its SHA-256 and how it was made in ``config.json["coder_prior"]``.  The profiles that
retrain a model with a shipped prior fit its prior the same way (``labkit.workflow.train_models``).

A shipped table is part of the model's file format.  Refitting it on another CPU could move a few
counts (float rounding can move a latent value across a bin edge), so ``--check`` reports how far
a refit lands from the recorded table instead of replacing it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from labkit import coder_prior  # noqa: E402
from labkit.data import training_splits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path, help="a checkpoint folder (model.pt + config.json)")
    ap.add_argument("--data-dir", default=None, help="the folder the weights were trained on (default: the embedded data)")
    ap.add_argument("--check", action="store_true", help="refit and compare with the recorded table; write nothing")
    args = ap.parse_args(argv)
    images = training_splits(args.data_dir)["train"]
    facts = {"made_by": "python tools/fit_coder_prior.py " + " ".join(a for a in (argv or sys.argv[1:]) if a != "--check"),
             "data": args.data_dir or "default training pool (labkit.data.default_train_pool)"}
    tables, sha = coder_prior.fit_checkpoint(args.checkpoint, images, facts, write=not args.check)
    if args.check:
        recorded = json.loads((args.checkpoint / "config.json").read_text()).get("coder_prior") or {}
        shipped = coder_prior.load(args.checkpoint, next(iter(tables.values())).shape[0], recorded.get("sha256"))
        if shipped is None:
            print(f"{args.checkpoint} ships no coder prior")
            return 1
        print(f"refit digest {sha[:16]}..., recorded {str(recorded.get('sha256'))[:16]}...")
        for b in sorted(tables):
            diff = np.abs(tables[b].astype(int) - shipped[b].astype(int))
            print(f"b={b}: {int((diff > 0).sum())} of {diff.size} counts differ, by at most {int(diff.max())}")
        return 0
    size = (args.checkpoint / coder_prior.FILE_NAME).stat().st_size
    print(f"wrote {args.checkpoint / coder_prior.FILE_NAME} ({size} bytes, sha256 {sha[:16]}...) from "
          f"{len(images)} images; recorded in {args.checkpoint / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
