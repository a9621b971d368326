"""Continue a run on a GPU with the training set held on the device (many more steps per second).

    python tools/finetune_gpu.py RUN_DIR OUT_DIR --seconds 200 [--data-dir DIR] [--lr 5e-4] [--batch 16]

``labkit.train.fit`` spends most of a small model's time on the CPU side (per-sample crops,
per-epoch validation at every b); on a GPU this loop keeps the uint8 training images in
GPU memory, crops (each sample at its own random offset) and flips a batch there, and
validates only a few times.  The loss is
exactly ``fit``'s (``labkit.train.distortion`` + ``rate_weight * labkit.train.rate_bpp``,
b drawn per batch, the run's scale rule), the learning rate a cosine over the wall-clock
budget, and the weights kept are those with the best validation objective
(``labkit.train.validate_rd``), written to OUT_DIR at every improvement (so a run stopped
early still leaves its best weights).  RUN_DIR's config.json gives the model and TrainConfig.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import data  # noqa: E402
from labkit.atomic import write_text  # noqa: E402
from labkit.data import training_splits  # noqa: E402
from labkit.train import (TrainConfig, distortion, load_checkpoint, rate_bpp,  # noqa: E402
                          save_checkpoint, validate_rd)

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
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--validations", type=int, default=8)
    p.add_argument("--final-lr-frac", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=0.0,
                   help="fraction of the budget over which the learning rate rises linearly from 0 "
                        "(a warm restart without it jolts a trained model)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    use_photos_from(args.photos)
    out = Path(args.out_dir)

    dev = torch.device(args.device)
    model, meta = load_checkpoint(args.run_dir, map_location=dev)
    cfg = TrainConfig.from_dict({**meta["train"], "device": args.device})
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    splits = training_splits(args.data_dir, cfg.seed)
    train = torch.from_numpy(splits["train"]).to(dev).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W
    val = torch.from_numpy(splits["val"]).permute(0, 3, 1, 2).float().div(255)
    n, _, h, w = train.shape
    c = cfg.crop
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    rows = torch.arange(c, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=cfg.weight_decay)
    best = {"objective": math.inf, "state": None, "step": 0}
    history = {"step": [], "objective": [], "psnr": [], "bpp": [], "elapsed": []}
    extra = {"finetune": {"from": str(args.run_dir), "lr": args.lr, "final_lr_frac": args.final_lr_frac,
                          "warmup": args.warmup,
                          "batch": args.batch, "tool": "tools/finetune_gpu.py"},
             "previous": {k: meta.get(k) for k in ("train_seconds", "epochs_completed", "device", "best_epoch",
                                                   "finetune", "previous")},
             "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)}

    def save_best(elapsed: float) -> None:
        """The best weights so far, with the run's record (atomic writes: a stopped run keeps the last)."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best["state"])
        extra["finetune"].update(seconds=round(elapsed, 1), steps=step, best_step=best["step"])
        save_checkpoint(model, out, cfg, extra)
        model.load_state_dict(state)
        write_text(out / "history.json", json.dumps({"finetune": history, "previous": _previous(args.run_dir)}) + "\n")

    model.train()
    t0, step, next_val = time.perf_counter(), 0, 0
    while True:
        frac = (time.perf_counter() - t0) / args.seconds
        if frac >= next_val / args.validations:
            vr = validate_rd(model, val, cfg, dev)
            for k, v in (("step", step), ("objective", vr["objective"]), ("psnr", vr["psnr"]), ("bpp", vr["bpp"]),
                         ("elapsed", time.perf_counter() - t0)):
                history[k].append(v)
            print(f"step {step} objective {vr['objective']:.5f} psnr {vr['psnr']} bpp {vr['bpp']}", flush=True)
            if vr["objective"] < best["objective"]:
                best = {"objective": vr["objective"], "step": step,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                save_best(time.perf_counter() - t0)
            next_val += 1
            if frac >= 1.0:
                break
        lr = args.lr * (args.final_lr_frac + (1 - args.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        if frac < args.warmup:
            lr *= frac / args.warmup
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (args.batch,), device=dev, generator=gen)
        top = torch.randint(0, h - c + 1, (args.batch, 1), device=dev, generator=gen) + rows  # [B, c]
        left = torch.randint(0, w - c + 1, (args.batch, 1), device=dev, generator=gen) + rows
        x = train[idx[:, None, None, None], torch.arange(3, device=dev)[None, :, None, None],
                  top[:, None, :, None], left[:, None, None, :]].float().div_(255)  # per-sample crops
        if random.random() < 0.5:
            x = x.flip(-1)
        if random.random() < 0.5:
            x = x.flip(-2)
        b = random.choice(cfg.train_bits)
        res = model(x, b=b, noise=True, scale=cfg.scale)
        loss = distortion(res["x_hat"], x, cfg) + cfg.rate_weight * rate_bpp(res, b, c * c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
    elapsed = time.perf_counter() - t0
    save_best(elapsed)
    print(f"done: {step} steps in {elapsed:.0f}s, best at step {best['step']} -> {out}")
    return 0


def _previous(run_dir: str) -> dict:
    path = Path(run_dir) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
