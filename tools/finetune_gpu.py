"""Continue a run on a GPU with the training set held on the device: ``labkit.finetune``'s command line.

    python tools/finetune_gpu.py RUN_DIR OUT_DIR --seconds 200 [--data-dir DIR] [--lr 3e-4] [--batch 32]
        [--rules search] [--quant ste] [--augment strong] [--val-photos PHOTO ...] [--train-config RUN]

``labkit.train.fit`` spends most of a small model's time on the CPU side (per-sample crops,
per-epoch validation at every b); ``labkit.finetune.finetune`` keeps the uint8 training images
in GPU memory, builds each batch there and validates only a few times.  The loss is ``fit``'s;
the options choose what the decoder gets (``--quant``), the stored-scale rules (``--rules``) and
the augmentation (``--augment``), see ``labkit.finetune``.  The weights kept are those with the
best validation objective, written to OUT_DIR at every improvement.  RUN_DIR's config.json gives
the model and TrainConfig (a light-decoder checkpoint such as ``resae-rd-fast``'s first weights
has none: ``--train-config RUN`` takes that run's ``train`` section, with RUN_DIR's model).
``--val-photos`` validates on the 128x128 tiles of photos in neither the pool nor the test split:
the default val tiles overlap the pool, so they cannot show overfitting.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import data  # noqa: E402
from labkit.data import training_splits  # noqa: E402
from labkit import coder_prior  # noqa: E402
from labkit.finetune import AUGMENTS, PARTS, QUANTIZERS, FinetuneConfig, finetune, scale_rules  # noqa: E402
from labkit.rate import prior_in_symbols  # noqa: E402
from labkit.train import TrainConfig, load_checkpoint  # noqa: E402

PHOTOS_HELP = ("folder holding the default set's source photos (a copy of scikit-image's data/ files that "
               "labkit.data.DEFAULT_SOURCES names), for a machine whose scikit-image lacks some of them")


def use_photos_from(folder: str | None) -> None:
    """Build the default dataset from ``folder`` instead of the installed scikit-image's data/."""
    if folder is not None:
        data._skimage_data_dir = lambda: Path(folder).resolve()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--photos", default=None, help=PHOTOS_HELP)
    p.add_argument("--train-config", default=None,
                   help="run folder whose config.json 'train' section gives the TrainConfig (model and "
                        "model_cfg from RUN_DIR), for a checkpoint that has none (a decoder fit)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--validations", type=int, default=10)
    p.add_argument("--final-lr-frac", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.05,
                   help="fraction of the budget over which the learning rate rises linearly from 0 "
                        "(a warm restart without it jolts a trained model)")
    p.add_argument("--rules", default=None, help="'search' or a comma list of scale rules, drawn per sample")
    p.add_argument("--quant", choices=QUANTIZERS, default="noise", help="what the decoder gets")
    p.add_argument("--augment", choices=AUGMENTS, default="flip")
    p.add_argument("--val-photos", nargs="+", default=None, help="validate on these photos' tiles")
    p.add_argument("--part", choices=PARTS, default="all",
                   help="'encoder': train the encoder alone on the codec's objective, the decoder and the "
                        "coder prior frozen (files decode as before); see labkit.finetune")
    p.add_argument("--ssim-weight", type=float, default=None,
                   help="weight of 1 - SSIM in the loss and validation (default: --part all: the run's "
                        "config.json train.ssim_weight, which stays recorded; --part encoder: refinement's)")
    p.add_argument("--prior-from", default=None,
                   help="--part encoder: price the bits under this checkpoint's coder prior instead of RUN_DIR's "
                        "(RUN_DIR has none, e.g. a whole-model run just made from it); the output then ships no "
                        "table: refit one with tools/fit_coder_prior.py")
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="BATCHES",
                   help="whole-model runs: re-estimate every BatchNorm statistic over this many batches of the "
                        "codec's bins at mixed b before each validation (0: off); see labkit.finetune")
    p.add_argument("--freeze-bn", action="store_true",
                   help="whole-model runs: keep every BatchNorm's running statistics (eval mode); see labkit.finetune")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="judge and keep an exponential moving average of the weights with this decay per "
                        "step (e.g. 0.999; 0: off), see labkit.finetune.WeightAverage")
    p.add_argument("--ema-power", type=float, default=None, metavar="GAMMA",
                   help="instead of --ema: a power-function average of the weights, step t weighing t^GAMMA "
                        "(e.g. 4: its mean sits a sixth of the run back), see labkit.finetune.WeightAverage")
    p.add_argument("--crop", type=int, default=None,
                   help="side of the training crops (a multiple of 8; default: the run's own)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the fine-tune's batches, crops, flips and noise (default: the run's own seed); "
                        "the train/validation/test split always follows the run's seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (several runs share a machine)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    use_photos_from(args.photos)
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = torch.device(args.device)
    model, meta = load_checkpoint(args.run_dir, map_location=dev)
    if "train" in meta:
        train_cfg = meta["train"]
    elif args.train_config:
        src = json.loads((Path(args.train_config) / "config.json").read_text())["train"]
        train_cfg = {**src, "model": meta["model"], "model_cfg": meta.get("model_cfg", {})}
    else:
        raise SystemExit(f"{args.run_dir}/config.json has no 'train' section: name one with --train-config RUN")
    cfg = TrainConfig.from_dict({**train_cfg, "device": args.device})
    ft = FinetuneConfig(seconds=args.seconds, lr=args.lr, batch=args.batch, validations=args.validations,
                        warmup=args.warmup, final_lr_frac=args.final_lr_frac, rules=scale_rules(args.rules),
                        quantizer=args.quant, augment=args.augment, seed=cfg.seed if args.seed is None else args.seed,
                        part=args.part,
                        ssim_weight=args.ssim_weight, freeze_bn=args.freeze_bn,
                        recalibrate_bn=args.recalibrate_bn, ema_decay=args.ema, ema_power=args.ema_power,
                        crop=args.crop)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    splits = training_splits(args.data_dir, cfg.seed)
    images = torch.from_numpy(splits["train"]).to(dev).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W
    val = torch.from_numpy(data.photo_tiles(args.val_photos) if args.val_photos else splits["val"])
    val = val.permute(0, 3, 1, 2).float().div(255)
    extra = {"finetune": {"from": str(args.run_dir), "train_images": int(images.shape[0]),
                          "val": ([Path(v).name for v in args.val_photos] if args.val_photos else "val split"),
                          "val_tiles": int(val.shape[0]), "train_config_from": args.train_config,
                          "tool": "tools/finetune_gpu.py",
                          "command": "python tools/finetune_gpu.py " + " ".join(sys.argv[1:])},
             "previous": {k: meta.get(k) for k in ("train_seconds", "epochs_completed", "device", "best_epoch",
                                                   "finetune", "previous", "steps", "decoder_fit", "made_by")},
             "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)}
    out = Path(args.out_dir)
    priors = None
    prior_dir = args.prior_from or args.run_dir
    recorded = (json.loads((Path(prior_dir) / "config.json").read_text()) if args.prior_from else meta).get("coder_prior")
    if args.part == "encoder" and isinstance(recorded, dict):
        # the prior is part of the decoder's format: the encoder learns to price bits under it,
        # and the output folder ships the same file (same digest) when it is RUN_DIR's own
        tables = coder_prior.load(prior_dir, int(model.latent_channels), recorded.get("sha256"))
        priors = {b: prior_in_symbols(t).to(dev) for b, t in (tables or {}).items()}
        if args.prior_from:
            extra["finetune"]["priced_with"] = {"coder_prior_of": str(args.prior_from), "sha256": recorded.get("sha256")}
        else:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(args.run_dir) / coder_prior.FILE_NAME, out / coder_prior.FILE_NAME)
            extra["coder_prior"] = recorded
    history = finetune(model, images, val, cfg, ft, out, extra, log=lambda line: print(line, flush=True),
                       priors=priors, history_base={"previous": _previous(args.run_dir)})
    print(f"done: {history['steps']} steps in {history['elapsed_s']:.0f}s, best at step {history['best_step']} -> {out}")
    return 0


def _previous(run_dir: str) -> dict:
    path = Path(run_dir) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
