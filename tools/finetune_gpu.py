"""Continue a run on a GPU with the training set held on the device (many more steps per second).

    python tools/finetune_gpu.py RUN_DIR OUT_DIR --seconds 200 [--data-dir DIR] [--lr 5e-4]

``labkit.train.fit`` spends most of a small model's time on the CPU side (per-sample crops,
per-epoch validation at every b); on a GPU this loop keeps the uint8 training images in
GPU memory, crops and flips a batch there, and validates only a few times.  The loss is
exactly ``fit``'s (``labkit.train.distortion`` + ``rate_weight * labkit.train.rate_bpp``,
b drawn per batch, the run's scale rule), the learning rate a cosine over the wall-clock
budget, and the weights kept are those with the best validation objective
(``labkit.train.validate_rd``).  RUN_DIR's config.json gives the model and TrainConfig.
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

from labkit.data import training_splits  # noqa: E402
from labkit.train import (TrainConfig, distortion, load_checkpoint, rate_bpp,  # noqa: E402
                          save_checkpoint, validate_rd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--validations", type=int, default=8)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()

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
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=cfg.weight_decay)
    best = {"objective": math.inf, "state": None, "step": 0}
    history = {"step": [], "objective": [], "psnr": [], "bpp": [], "elapsed": []}
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
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            next_val += 1
            if frac >= 1.0:
                break
        lr = 0.5 * args.lr * (1 + math.cos(math.pi * min(frac, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (args.batch,), device=dev)
        top = random.randrange(h - c + 1)
        left = random.randrange(w - c + 1)
        x = train[idx, :, top:top + c, left:left + c].float().div_(255)
        if random.random() < 0.5:
            x = x.flip(-1)
        if random.random() < 0.5:
            x = x.flip(-2)
        b = random.choice(cfg.train_bits)
        out = model(x, b=b, noise=True, scale=cfg.scale)
        loss = distortion(out["x_hat"], x, cfg) + cfg.rate_weight * rate_bpp(out, b, c * c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
    model.load_state_dict(best["state"])
    elapsed = time.perf_counter() - t0
    out = Path(args.out_dir)
    save_checkpoint(model.cpu(), out, cfg, {
        "finetune": {"from": str(args.run_dir), "seconds": round(elapsed, 1), "steps": step, "lr": args.lr,
                     "batch": args.batch, "best_step": best["step"], "tool": "tools/finetune_gpu.py"},
        "previous": {k: meta.get(k) for k in ("train_seconds", "epochs_completed", "device", "best_epoch")},
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev),
    })
    (out / "history.json").write_text(json.dumps({"finetune": history, "previous": _previous(args.run_dir)}) + "\n")
    print(f"done: {step} steps in {elapsed:.0f}s, best at step {best['step']} -> {out}")
    return 0


def _previous(run_dir: str) -> dict:
    path = Path(run_dir) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
