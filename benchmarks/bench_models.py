"""Model benchmark: size, CPU speed, and the decoder upsampling comparison.

1. Parameters and forward / forward+backward+step time per batch of 16 128x128 images
   for every architecture (best of 7 and median, ``--threads`` torch threads; the
   machine is shared, so the best time is the stable number).
2. Upsampling modes of ResAE (transpose k4s2 / pixelshuffle+ICNR / nearest resize+conv),
   plus the course BaseAE as reference: equal short training (same seed, same steps,
   same data = the embedded default set), then on the validation tiles
   - PSNR at the training bit depth with hard quantization, and without quantization;
   - ripple: RMS (8-bit levels) of the error's component that repeats with the decoder's
     8-pixel grid (error averaged over all positions with the same (row mod 8, col mod 8)),
     on the validation tiles (``grid_ripple_*``) and on flat grey probes (25/50/75 %),
     16-px border excluded (``probe_grid_ripple``); plus the std of the probes'
     interior (``flat_std``: ripple and any other non-uniformity).
   A checkerboard / grid artefact raises the ripple numbers; natural image content
   averages out of the periodic component.

Writes ``benchmarks/results/bench_models.json`` and prints tables.
``python benchmarks/bench_models.py [--steps 150] [--threads 2] [--device cpu] [--quick]``
(``--skip-speed`` or ``--steps 0`` rerun one section and keep the other's saved results).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit.models import UPSAMPLE_MODES, build_model, count_parameters  # noqa: E402
from labkit.train import TrainConfig, _images_to_tensor, fit, validate, resolve_device  # noqa: E402

SPEED_MODELS = [("ae1/ae2 (BaseAE)", "ae1", {})] + [
    (f"resae[{m}]", "resae", {"upsample": m}) for m in UPSAMPLE_MODES
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Timer:
    """One model's inference forward and full training step on a fixed batch."""

    def __init__(self, name: str, cfg: dict, device: torch.device, batch: int) -> None:
        self.model = build_model(name, seed=0, **cfg).to(device)
        self.x = torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(0)).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.device = device
        self.times: dict[str, list[float]] = {"forward_s": [], "train_step_s": []}

    def _step(self) -> None:
        out = self.model(self.x, b=3, noise=True)
        loss = torch.nn.functional.mse_loss(out["x_hat"], self.x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def _fwd(self) -> None:
        with torch.no_grad():
            self.model(self.x, b=3)

    def run(self, record: bool = True) -> None:
        for key, fn, train in (("forward_s", self._fwd, False), ("train_step_s", self._step, True)):
            self.model.train(train)
            _sync(self.device)
            t = time.perf_counter()
            fn()
            _sync(self.device)
            if record:
                self.times[key].append(time.perf_counter() - t)


def time_models(specs: list[tuple[str, str, dict]], device: torch.device, batch: int = 16,
                repeats: int = 7) -> dict[str, dict]:
    """Best-of-N (and median) seconds per batch: inference forward and a training step.

    Models are timed round-robin, so a burst of load from other processes on this shared
    machine hits every model alike; the best time is the stable number.
    """
    timers = {label: _Timer(name, cfg, device, batch) for label, name, cfg in specs}
    for t in timers.values():
        t.run(record=False)  # warm-up
    for _ in range(repeats):
        for t in timers.values():
            t.run()
    out = {}
    for label, t in timers.items():
        best = {k: min(v) for k, v in t.times.items()}
        out[label] = {
            "params": count_parameters(t.model), "batch": batch, **best,
            **{k.replace("_s", "_median_s"): statistics.median(v) for k, v in t.times.items()},
            "train_img_per_s": batch / best["train_step_s"],
            "forward_img_per_s": batch / best["forward_s"],
        }
    return out


def grid_ripple(x: torch.Tensor, x_hat: torch.Tensor, period: int = 8, border: int = 0) -> float:
    """RMS (8-bit levels) of the error component periodic with the decoder grid.

    ``border`` pixels are cut off first (zero-padding effects are not ripple).
    """
    e = (x_hat - x) * 255.0
    if border:
        e = e[..., border:-border, border:-border]
    n, c, h, w = e.shape
    blocks = e.reshape(n, c, h // period, period, w // period, period)
    pattern = blocks.mean(dim=(2, 4))  # [n, c, period, period]
    pattern = pattern - pattern.mean(dim=(2, 3), keepdim=True)
    return float(pattern.pow(2).mean(dim=(1, 2, 3)).sqrt().mean())


@torch.no_grad()
def ripple_metrics(model: torch.nn.Module, val: torch.Tensor, b: int, device: torch.device) -> dict:
    model.eval()
    out = {}
    for tag, bb in (("hard", b), ("noq", None)):
        rs = []
        for i in range(0, len(val), 16):
            x = val[i : i + 16].to(device)
            rs.append(grid_ripple(x, model(x, b=bb)["x_hat"]) * len(x))
        out[f"grid_ripple_{tag}"] = sum(rs) / len(val)
    # Flat grey probes: any grid-periodic pattern in the output is ripple.
    probes = torch.stack([torch.full((3, 128, 128), v, device=device) for v in (0.25, 0.5, 0.75)])
    x_hat = model(probes)["x_hat"]
    out["probe_grid_ripple"] = grid_ripple(probes, x_hat, border=16)
    out["flat_std"] = float((x_hat[..., 16:-16, 16:-16] * 255).std(dim=(2, 3)).mean())
    return out


def compare_upsampling(steps: int, batch: int, device: str, b: int, seed: int, with_base: bool) -> list[dict]:
    """Equal-steps training of each upsampling mode on the embedded default set."""
    from labkit.data import get_splits

    splits = get_splits(None, seed=seed)
    val = _images_to_tensor(splits["val"])
    dev = resolve_device(device)
    runs = [(f"resae[{m}]", "resae", {"upsample": m}) for m in UPSAMPLE_MODES]
    if with_base:
        runs.append(("ae2 (BaseAE)", "ae2", {}))
    rows = []
    for label, name, mcfg in runs:
        cfg = TrainConfig(model=name, model_cfg=mcfg, b_train=b, epochs=10_000, max_steps=steps,
                          batch_size=batch, lr=2e-3, seed=seed, device=device, val_every=10_000)
        model = build_model(name, seed=seed, **mcfg)
        t = time.perf_counter()
        hist = fit(model, splits["train"], None, cfg, progress=False, log=lambda s: None)
        seconds = time.perf_counter() - t
        hard = validate(model, val, b, dev)
        noq = validate(model, val, None, dev)
        row = {"model": label, "steps": steps, "batch": batch, "seconds": round(seconds, 1),
               "final_train_loss": hist["train_loss"][-1],
               f"val_psnr_b{b}": hard["psnr"], "val_psnr_noq": noq["psnr"],
               **ripple_metrics(model, val, b, dev)}
        rows.append(row)
        print(f"  {label:16s} psnr(b={b}) {hard['psnr']:6.2f}  noq {noq['psnr']:6.2f}  "
              f"ripple {row['grid_ripple_hard']:.3f}  probe {row['probe_grid_ripple']:.3f}  "
              f"flat_std {row['flat_std']:.3f}  {seconds:.0f}s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="device for the training comparison (timing is always CPU)")
    p.add_argument("--steps", type=int, default=150, help="training steps per model in the comparison (0: skip it)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--b", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--no-base", action="store_true", help="skip BaseAE in the training comparison")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test of the script)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_models.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 3, [0]
    torch.set_num_threads(args.threads)

    result: dict = {
        "env": {"torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "threads": args.threads},
        "speed_cpu": {},
        "upsampling": {"device": str(resolve_device(args.device)), "b": args.b, "runs": []},
    }
    out = Path(args.out)
    if out.is_file():  # a section that is not rerun keeps its previous results
        prev = json.loads(out.read_text())
        if args.skip_speed:
            result["speed_cpu"] = prev.get("speed_cpu", {})
        if args.steps <= 0:
            result["upsampling"] = prev.get("upsampling", result["upsampling"])
    if not args.skip_speed:
        print(f"CPU speed, batch 16 of 128x128, {args.threads} threads (best of 7, round-robin)")
        print(f"  {'model':20s} {'params':>9s} {'fwd s':>7s} {'train s':>8s} {'train img/s':>12s}")
        result["speed_cpu"] = time_models(SPEED_MODELS, torch.device("cpu"), repeats=2 if args.quick else 7)
        for label, r in result["speed_cpu"].items():
            print(f"  {label:20s} {r['params']:9,d} {r['forward_s']:7.3f} {r['train_step_s']:8.3f} "
                  f"{r['train_img_per_s']:12.1f}", flush=True)

    print(f"Upsampling comparison: {args.steps} steps x batch {args.batch}, b={args.b}, "
          f"device {result['upsampling']['device']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds if args.steps > 0 else []:
        print(f" seed {seed}")
        for row in compare_upsampling(args.steps, args.batch, args.device, args.b, seed, not args.no_base):
            result["upsampling"]["runs"].append({"seed": seed, **row})
        out.write_text(json.dumps(result, indent=2) + "\n")  # partial results survive a timeout

    # mean over seeds per model
    summary: dict[str, list] = {}
    for row in result["upsampling"]["runs"]:
        summary.setdefault(row["model"], []).append(row)
    keys = [f"val_psnr_b{result['upsampling']['b']}", "val_psnr_noq", "grid_ripple_hard", "grid_ripple_noq",
            "probe_grid_ripple", "flat_std"]
    result["upsampling"]["mean"] = {m: {k: float(np.mean([r[k] for r in rs])) for k in keys}
                                    for m, rs in summary.items()}
    print(f"\n  {'model':20s} " + " ".join(f"{k:>17s}" for k in keys))
    for m, v in result["upsampling"]["mean"].items():
        print(f"  {m:20s} " + " ".join(f"{v[k]:17.3f}" for k in keys))

    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
