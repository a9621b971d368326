"""Would a small learned post-filter after ``resae-rd-fast``'s decoder pay?

    python tools/exp_learned_post_filter.py pairs             # code the pool and the val tiles (~3 min, one thread)
    python tools/exp_learned_post_filter.py train --seconds 1800 [--width 24 --depth 4]
    python tools/exp_learned_post_filter.py evaluate          # BD-rates and time; writes the JSON below

The issue's item 5 lists "a learned post-filter".  A linear filter fitted by the encoder was
measured and rejected (``tools/exp_post_filter.py``: about -1 % on PSNR); this one is learned:
a small residual CNN ``out = x + f([x, (b-1)/4])`` on the decoded, colour-mapped pixels, one
network for every b (the decoder knows b from the header), applied by the decoder only.  The
encoder, the symbols and the file are unchanged, so the rate does not move and only the
pixels do; the encoder's colour-map choice is the codec's as shipped.

* pairs: every 192 x 192 window of the default training pool (``data.training_splits``, what the
  shipped weights trained on) and the 21 val tiles of ``data.HOLDOUT_PHOTO`` (in neither the
  pool nor the test split) are coded by the real codec at b = 1..5; decoded pixels are cached
  under ``--cache`` (not committed);
* train: random 64 x 64 crops of (decoded, original) pairs, b drawn per sample, quarter turns
  and flips, loss ``MSE + 0.05 (1 - SSIM)`` (the models' distortion), Adam, cosine schedule;
  the weights kept are the best of the validations on the held-out photo's tiles;
* evaluate: the 31 default test tiles and the two default test photos at full size, curves
  without and with the filter, BD-rates (``labkit.rd.bd_detail``), and the filter's time as a
  ratio to the codec's decode in the same run (one thread).

Writes benchmarks/results/experiments/learned_post_filter.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from labkit import rd  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import DEFAULT_SOURCES, _skimage_data_dir, default_dataset, holdout_tiles, training_splits  # noqa: E402
from labkit.distortion import ssim as ssim_torch  # noqa: E402
from labkit.metrics import psnr, ssim  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "learned_post_filter.json"
MODEL = "resae-rd-fast"
BITS = (1, 2, 3, 4, 5)
SSIM_WEIGHT = 0.05


class PostFilter(nn.Module):
    """``x + f([x, (b-1)/4])``: ``depth`` 3x3 convolutions of ``width`` channels, ReLU between."""

    def __init__(self, width: int = 24, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 4
        for _ in range(depth - 1):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        last = nn.Conv2d(cin, 3, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        level = ((b.float() - 1) / 4).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return x + self.body(torch.cat([x, level], dim=1))


def code_all(images: np.ndarray, b: int) -> np.ndarray:
    """Each image through the shipped codec at ``b`` (whole file, colour maps as shipped): decoded uint8."""
    codec = Codec.from_pretrained(MODEL, b=b)
    return np.stack([codec.decode(codec.encode(img)) for img in images])


def cmd_pairs(args: argparse.Namespace) -> None:
    """Code the training pool and the held-out photo's tiles at every b; cache (original, decoded)."""
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = {"train": training_splits()["train"], "val": holdout_tiles()}
    for name, images in sets.items():
        t0 = time.perf_counter()
        decoded = np.stack([code_all(images, b) for b in BITS])
        np.savez(args.cache / f"{name}.npz", original=images, decoded=decoded)
        print(f"{name}: {len(images)} images x {len(BITS)} b in {time.perf_counter() - t0:.0f} s", flush=True)


def to_t(a: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` to float ``[N, 3, H, W]`` in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div_(255)


def apply(net: PostFilter, decoded: np.ndarray, b: int) -> np.ndarray:
    """The filtered uint8 images (one batch; a decoder would run the same per image)."""
    with torch.inference_mode():
        x = to_t(decoded)
        y = net(x, torch.full((len(x),), b))
        return (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def val_gain(net: PostFilter, val: dict[str, np.ndarray]) -> tuple[float, list[float]]:
    """Mean PSNR gain (dB) over b on the val tiles, and the gain per b."""
    gains = []
    for i, b in enumerate(BITS):
        dec = val["decoded"][i]
        out = apply(net, dec, b)
        gains.append(float(np.mean([psnr(o, f) - psnr(o, d) for o, d, f in zip(val["original"], dec, out)])))
    return float(np.mean(gains)), gains


def cmd_train(args: argparse.Namespace) -> None:
    """Train one filter on random crops of the cached pairs; keep the best validation's weights."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train = dict(np.load(args.cache / "train.npz"))
    val = dict(np.load(args.cache / "val.npz"))
    net = PostFilter(args.width, args.depth)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    n, h, w = train["original"].shape[:3]
    crop, batch = 64, args.batch
    best, best_state, history = -math.inf, None, []
    t0, step, next_val = time.perf_counter(), 0, 0.0
    while True:
        elapsed = time.perf_counter() - t0
        frac = min(1.0, elapsed / args.seconds)
        if elapsed >= next_val or frac >= 1.0:
            net.eval()
            g, per_b = val_gain(net, val)
            history.append({"step": step, "seconds": round(elapsed, 1), "val_gain_db": round(g, 4),
                            "val_gain_db_per_b": [round(x, 4) for x in per_b]})
            print(f"step {step} {elapsed:.0f}s val +{g:.4f} dB {[round(x, 3) for x in per_b]}", flush=True)
            if g > best:
                best, best_state = g, {k: v.clone() for k, v in net.state_dict().items()}
            net.train()
            next_val += args.seconds / 12
            if frac >= 1.0:
                break
        for group in opt.param_groups:
            group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = rng.integers(0, n, batch)
        bi = rng.integers(0, len(BITS), batch)
        ys = rng.integers(0, h - crop + 1, batch)
        xs = rng.integers(0, w - crop + 1, batch)
        dec = np.stack([train["decoded"][bi[k], idx[k], ys[k]:ys[k] + crop, xs[k]:xs[k] + crop] for k in range(batch)])
        org = np.stack([train["original"][idx[k], ys[k]:ys[k] + crop, xs[k]:xs[k] + crop] for k in range(batch)])
        rot, flip = int(rng.integers(4)), bool(rng.integers(2))
        dec, org = np.rot90(dec, rot, axes=(1, 2)), np.rot90(org, rot, axes=(1, 2))
        if flip:
            dec, org = dec[:, :, ::-1], org[:, :, ::-1]
        x, target = to_t(dec), to_t(org)
        y = net(x, torch.from_numpy(np.asarray(BITS)[bi]))
        loss = torch.mean((y - target) ** 2) + SSIM_WEIGHT * (1 - ssim_torch(y.clamp(0, 1), target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    torch.save({"state": best_state, "width": args.width, "depth": args.depth, "steps": step,
                "seconds": args.seconds, "lr": args.lr, "batch": batch, "best_val_gain_db": best,
                "history": history, "seed": args.seed}, args.cache / f"filter_w{args.width}_d{args.depth}.pt")
    print(f"kept val +{best:.4f} dB; {step} steps", flush=True)


def curves(images: list[np.ndarray], nets: dict[str, PostFilter]) -> tuple[dict, dict]:
    """Mean bpp / PSNR / SSIM per b without and with each filter, and the filters' time beside the decode's."""
    out = {v: {"bpp": [], "psnr": [], "ssim": []} for v in ("none", *nets)}
    times = {"decode_s": 0.0, **{f"{v}_s": 0.0 for v in nets}}
    for b in BITS:
        codec = Codec.from_pretrained(MODEL, b=b)
        acc = {v: [[], [], []] for v in out}
        for img in images:
            data = codec.encode(img)
            t = time.perf_counter()
            dec = codec.decode(data)
            times["decode_s"] += time.perf_counter() - t
            bpp = len(data) * 8 / (img.shape[0] * img.shape[1])
            for v in out:
                pix = dec
                if v != "none":
                    t = time.perf_counter()
                    pix = apply(nets[v], dec[None], b)[0]
                    times[f"{v}_s"] += time.perf_counter() - t
                for lst, val in zip(acc[v], (bpp, psnr(img, pix), ssim(img, pix))):
                    lst.append(val)
        for v, (bpp, p, s) in acc.items():
            for key, vals in (("bpp", bpp), ("psnr", p), ("ssim", s)):
                out[v][key].append(float(np.mean(vals)))
        print(f"b={b}: " + ", ".join(f"{v} {out[v]['psnr'][-1]:.3f} dB {out[v]['ssim'][-1]:.4f}" for v in out), flush=True)
    return out, times


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Every trained filter in the cache through the codec on the test sets; write the JSON."""
    torch.set_num_threads(1)
    nets, meta = {}, {}
    found = sorted(args.cache.glob("filter_*.pt"))
    if not found:
        raise SystemExit(f"no trained filters (filter_*.pt) in {args.cache}: run the pairs and train steps first")
    for path in found:
        ck = torch.load(path, weights_only=True)
        net = PostFilter(ck["width"], ck["depth"])
        net.load_state_dict(ck["state"])
        net.eval()
        name = path.stem
        nets[name] = net
        meta[name] = {k: ck[k] for k in ("width", "depth", "steps", "seconds", "lr", "batch", "best_val_gain_db",
                                         "history", "seed")}
        meta[name]["parameters"] = sum(p.numel() for p in net.parameters())
        meta[name]["macs_per_pixel"] = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    photos = [np.asarray(Image.open(_skimage_data_dir() / f).convert("RGB")) for f in DEFAULT_SOURCES["test"]]
    result = {"cpu": cpu_name(), "model": MODEL, "ssim_weight": SSIM_WEIGHT, "filters": meta,
              "commands": ["python tools/exp_learned_post_filter.py pairs",
                           "python tools/exp_learned_post_filter.py train --seconds S --width W --depth D",
                           "python tools/exp_learned_post_filter.py evaluate"], "sets": {}}
    for name, images in (("default test tiles", list(default_dataset("test"))), ("default test photos, full size", photos)):
        print(name, flush=True)
        c, times = curves(images, nets)
        base = c["none"]
        bd = {v: {m: rd.bd_detail(base["bpp"], base[m], c[v]["bpp"], c[v][m]) for m in ("psnr", "ssim")} for v in nets}
        ratio = {v: round(times[f"{v}_s"] / times["decode_s"], 3) for v in nets}
        for v in nets:
            print(f"  {v}: BD-rate PSNR {bd[v]['psnr']['value']:+.2f} %, SSIM {bd[v]['ssim']['value']:+.2f} %; "
                  f"filter time / decode time {ratio[v]}")
        result["sets"][name] = {"curves": c, "bd_rate_vs_none": bd, "filter_time_over_decode": ratio,
                                "times_s": {k: round(v, 3) for k, v in times.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("pairs", "train", "evaluate"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/labkit_post_filter"))
    p.add_argument("--seconds", type=float, default=1800)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT, help="the evaluate step's JSON (default: the committed result)")
    args = p.parse_args(argv)
    {"pairs": cmd_pairs, "train": cmd_train, "evaluate": cmd_evaluate}[args.step](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
