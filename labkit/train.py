"""Training loop and checkpoints (the command line is ``labkit train``).

``fit(model, train_images, val_images, cfg, out_dir)`` trains on random 128x128 tiles,
validates every ``val_every`` epochs on whole validation images at the training bit depth
with *hard* quantization, and writes into ``out_dir``:

- ``model.pt``     the ``state_dict`` only (tensors; loads with ``weights_only=True``)
- ``config.json``  model name + config, TrainConfig, version, params, device, final PSNR
- ``history.json`` per-epoch records (columnar lists, ready to plot)
- ``last.pt``      optimizer/schedule/RNG state for ``resume=True``

All writes are atomic (temp file + ``os.replace``).  Runs are seeded and use
deterministic algorithms where torch has them; a ``time_budget_s`` run is only as
reproducible as the number of epochs it manages.

Command line: ``labkit train --model resae --b 3 --epochs 30 --out runs/resae`` (:mod:`labkit.cli`).
This module (and models/quant/data) must import without the compiled ``labkit._arith``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint
from .atomic import atomic_path, write_text
from .checkpoint import CheckpointError, load as load_checkpoint
from .distortion import ssim  # the loss's SSIM (also importable as labkit.train.ssim)
from .models import count_parameters
from .trainconfig import LOSSES, SCHEDULES, TrainConfig

__all__ = [
    "TrainConfig",
    "CheckpointError",
    "fit",
    "validate",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_device",
]

# --------------------------------------------------------------------------- helpers
def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> CUDA if available else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def _set_determinism(seed: int, device: torch.device, tf32: bool) -> None:
    """Seed every RNG and ask torch for deterministic kernels (warn, don't fail)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def _torch_save(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _images_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected images as uint8 [N, H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


def _loss_fn(name: str, ssim_weight: float) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "mse":
        return F.mse_loss
    if name == "l1":
        return F.l1_loss
    return lambda a, b: F.mse_loss(a, b) + ssim_weight * (1.0 - ssim(a, b))


def distortion(x_hat: Tensor, x: Tensor, cfg: "TrainConfig") -> Tensor:
    """The distortion term of the training loss (``cfg.loss``)."""
    return _loss_fn(cfg.loss, cfg.ssim_weight)(x_hat, x)


def rate_bpp(out: dict[str, Tensor], b: int, pixels: int) -> Tensor:
    """Estimated bits per pixel of a forward pass's latent at bit depth ``b`` (mean over the batch)."""
    from .rate import estimate_bits

    return estimate_bits(out["y"], out["ymax"], b).sum() / (out["y"].shape[0] * pixels)


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Learning rate at run progress in [0, 1] (see ``TrainConfig.schedule``)."""
    p = min(max(progress, 0.0), 1.0)
    lo = cfg.lr * cfg.final_lr_frac
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "onecycle":
        start, peak = cfg.lr / 25.0, 0.3
    else:
        start, peak = 0.0, cfg.warmup
    if p < peak:
        return start + (cfg.lr - start) * p / peak
    t = (p - peak) / max(1.0 - peak, 1e-12)
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def validate(
    model: nn.Module,
    images: np.ndarray | Tensor,
    b: int | None,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    scale: str = "max",
    cfg: "TrainConfig | None" = None,
) -> dict[str, float]:
    """Mean per-image MSE and PSNR (8-bit-rounded reconstructions) with hard quantization.

    ``images``: uint8 [N, H, W, 3] (cropped to a multiple of 8 from the top-left) or a
    float tensor [N, 3, H, W].  Restores the model's train/eval mode afterwards.
    With ``cfg`` (and ``b``), also the estimated rate ``bpp`` and the objective
    ``loss = D + cfg.rate_weight * bpp`` of the training loss at that ``b``.
    """
    x_all = images if isinstance(images, Tensor) else _images_to_tensor(images)
    h, w = x_all.shape[-2:]
    x_all = x_all[..., : h - h % 8, : w - w % 8]
    was_training = model.training
    model.eval()
    mses, objective, rate, n = [], 0.0, 0.0, 0
    try:
        for i in range(0, x_all.shape[0], batch_size):
            x = x_all[i : i + batch_size].to(device, non_blocking=True)
            out = model(x, b=b, noise=False, scale=scale)
            x_hat = torch.round(out["x_hat"].clamp(0, 1) * 255) / 255
            x = torch.round(x * 255) / 255
            mses.append(((x_hat - x) ** 2).flatten(1).mean(1).double().cpu())
            if cfg is not None and b is not None:
                r = float(rate_bpp(out, b, x.shape[-2] * x.shape[-1]))
                objective += (float(distortion(x_hat, x, cfg)) + cfg.rate_weight * r) * x.shape[0]
                rate += r * x.shape[0]
                n += x.shape[0]
    finally:
        model.train(was_training)
    mse = torch.cat(mses)
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-12))
    res = {"mse": float(mse.mean()), "psnr": float(psnr.mean())}
    if n:
        res.update(bpp=rate / n, loss=objective / n)
    return res


def validate_rd(model: nn.Module, val: Tensor, cfg: "TrainConfig", device: torch.device) -> dict[str, Any]:
    """Validation of a rate-distortion run: per-b PSNR / estimated bpp and the mean objective."""
    per_b = {b: validate(model, val, b, device, cfg.val_batch_size, cfg.scale, cfg) for b in cfg.train_bits}
    return {"objective": sum(v["loss"] for v in per_b.values()) / len(per_b),
            "psnr": {str(b): v["psnr"] for b, v in per_b.items()},
            "bpp": {str(b): v["bpp"] for b, v in per_b.items()}}


# --------------------------------------------------------------------------- checkpoints
def _model_identity(model: nn.Module, cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """(name, constructor config) of ``model``; it must be the model ``cfg`` trains."""
    name, mc = checkpoint.model_identity(model, cfg.model)
    if name != cfg.model:
        raise ValueError(f"model is {name!r} but TrainConfig.model is {cfg.model!r}")
    return name, mc or dict(cfg.model_cfg)


def save_checkpoint(
    model: nn.Module, out_dir: str | Path, cfg: TrainConfig, extra: dict[str, Any] | None = None
) -> Path:
    """``labkit.checkpoint.save`` with the run's TrainConfig (checked against the model)."""
    _model_identity(model, cfg)
    return checkpoint.save(model, out_dir, cfg.to_dict(), {"scale": cfg.scale, **(extra or {})})


def _rng_state(loader_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    st = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "loader": loader_gen.get_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any], loader_gen: torch.Generator) -> None:
    random.setstate((st["python_version"], tuple(st["python"]), st["python_gauss"]))
    keys = st["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, st["numpy_pos"], *st["numpy_gauss"]))
    torch.set_rng_state(st["torch"])
    loader_gen.set_state(st["loader"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --------------------------------------------------------------------------- training
def _empty_history() -> dict[str, list]:
    return {k: [] for k in ("epoch", "train_loss", "val_mse", "val_psnr", "lr", "seconds", "elapsed")}


@dataclass
class _Run:
    """The mutable state of one training run (what ``last.pt`` saves and resume restores)."""

    cfg: TrainConfig
    device: torch.device
    out: Path | None
    total_steps: int
    epoch: int = 0
    step: int = 0
    elapsed: float = 0.0
    history: dict[str, Any] = field(default_factory=_empty_history)
    best: dict[str, Any] = field(default_factory=lambda: {"objective": math.inf, "epoch": None, "state": None})
    stop_reason: str | None = None

    def out_of_time(self) -> bool:
        """Another epoch (at the mean epoch time so far) would overrun the time budget."""
        n = len(self.history["epoch"])
        return bool(self.cfg.time_budget_s) and n > 0 and self.elapsed + self.elapsed / n > self.cfg.time_budget_s

    def progress(self, epoch_seconds: float) -> float:
        """Run progress in [0, 1]: the step fraction, or the budget's time fraction if larger."""
        p = self.step / max(self.total_steps, 1)
        if self.cfg.time_budget_s:
            p = max(p, (self.elapsed + epoch_seconds) / self.cfg.time_budget_s)
        return p


def fit(
    model: nn.Module,
    train_images: np.ndarray,
    val_images: np.ndarray | None,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; returns the history dict (also ``out_dir/history.json``).

    Parameters
    ----------
    model : nn.Module
        A model from ``labkit.models.build_model`` named as ``cfg.model``.
    train_images, val_images : ndarray
        uint8 ``[N, H, W, 3]``; training takes random ``cfg.crop`` crops of ``train_images``.
    cfg : TrainConfig
        The run's settings.
    out_dir : path, optional
        Where ``model.pt``, ``config.json``, ``history.json`` and ``last.pt`` go.
    progress : bool
        Show a tqdm bar per epoch.
    resume : bool
        Continue the run saved in ``out_dir/last.pt`` exactly (same TrainConfig).
    log : callable, optional
        Receives the one-line epoch summaries (default: print, or above the bar when one shows).

    Returns
    -------
    dict
        Per epoch: mean train loss, val MSE/PSNR at ``cfg.b_train`` with hard quantization,
        lr, seconds; ``val_rd`` and ``best_epoch`` for rate-distortion runs.
    """
    device = resolve_device(cfg.device)
    prev_det = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    _set_determinism(cfg.seed, device, cfg.tf32)
    try:
        return _fit(model, train_images, val_images, cfg, device, out_dir, progress, resume, log)
    finally:
        torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])


def _make_loader(train_images: np.ndarray, cfg: TrainConfig,
                 device: torch.device) -> tuple[torch.utils.data.DataLoader, torch.Generator]:
    """Seeded loader of random augmented crops, and the generator that drives its order."""
    from .data import TileDataset

    ds = TileDataset(train_images, augment=cfg.augment, crop=cfg.crop)
    if len(ds) == 0:
        raise ValueError("no training images")
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(ds) >= cfg.batch_size,
        num_workers=cfg.num_workers, generator=gen, pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    return loader, gen


def _available_memory() -> int | None:
    """Bytes a new allocation can use: the kernel's ``MemAvailable``, or less under a container's
    memory limit (cgroup v2 ``memory.max`` less ``memory.current``); None off Linux."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = room if free is None else min(free, room)
    except (OSError, ValueError):
        pass
    return free


#: A training step may take this share of the memory available when it starts.
TRAIN_MEMORY_SHARE = 0.8
#: Measured peak growth of a CPU training step over ``inference.training_bytes_per_pixel``'s working set:
#: ``/usr/bin/time -v labkit train --model ae1 --max-steps 1 --epochs 1 --batch-size 33 --out X`` against
#: ``--batch-size 1`` grew by 1.19 GiB for 32 crops of 128x128 (2026-11-28, 2-core AMD EPYC), 0.47 of the
#: 2.51 GiB the working set predicts (the review measured 0.46 for resae-rd): backward frees as it goes.
TRAIN_MEMORY_FACTOR = 0.5


def _check_batch_memory(model: nn.Module, cfg: TrainConfig, n_images: int, device: torch.device) -> None:
    """Refuse, before the first step, a CPU batch whose forward + backward would not fit in free memory.

    The batch is ``min(batch_size, n_images)`` crops (a batch larger than the data set is the whole
    set); its memory is :data:`TRAIN_MEMORY_FACTOR` times :func:`labkit.inference.training_bytes_per_pixel`
    of the encoder and the decoder, measured on one crop in eval mode (no statistics change). A GPU
    run is left to torch, whose out-of-memory error names the device.
    """
    from .inference import training_bytes_per_pixel

    free = _available_memory()
    if device.type != "cpu" or free is None or not hasattr(model, "encoder"):
        return
    side, batch = cfg.crop, min(cfg.batch_size, n_images)
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros((1, 3, side, side))
        with torch.inference_mode():
            y = model.encoder(x)
        per_pixel = (training_bytes_per_pixel(model.encoder, x, side * side)
                     + training_bytes_per_pixel(model.decoder, y, side * side))
    finally:
        model.train(was_training)
    per_crop = TRAIN_MEMORY_FACTOR * per_pixel * side * side
    need = per_crop * batch
    if need > TRAIN_MEMORY_SHARE * free:
        fits = max(1, int(TRAIN_MEMORY_SHARE * free / per_crop))
        raise ValueError(f"a batch of {batch} crops of {side}x{side} needs about {need / 2**30:.1f} GiB for "
                         f"{cfg.model}'s training step (forward and backward), but this machine has "
                         f"{free / 2**30:.1f} GiB available; pass a smaller batch size (--batch-size; at most about {fits})")


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on weights only (not on biases or BatchNorm)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.dim() <= 1 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_at(cfg, 0.0),
    )


def _resume(run: _Run, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """Load ``last.pt`` into the model, optimizer, RNGs and ``run`` (the TrainConfig must match)."""
    st = torch.load(run.out / "last.pt", map_location="cpu", weights_only=True)
    if st.get("config") != run.cfg.to_dict():
        saved = st.get("config", {})
        diff = [f"{k} (saved {saved.get(k)!r}, given {v!r})" for k, v in sorted(run.cfg.to_dict().items())
                if saved.get(k) != v]
        raise ValueError(f"cannot resume {run.out}: the options differ from the saved run's in {'; '.join(diff)}; "
                         "repeat the run's own options (its config.json, \"train\") with --resume")
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    run.epoch, run.step, run.elapsed, run.history = st["epoch"], st["step"], st["elapsed"], st["history"]
    run.best = st.get("best", run.best)
    _set_rng_state(st["rng"], gen)


def _train_step(model: nn.Module, x: Tensor, opt: torch.optim.Optimizer, cfg: TrainConfig) -> float:
    """One optimizer step on batch ``x``: distortion (+ lambda * estimated bpp), b drawn per batch."""
    b = random.choice(cfg.train_bits)
    rd = cfg.rate_weight > 0
    out = model(x, b=b if (cfg.use_noise or rd) else None, noise=cfg.use_noise, scale=cfg.scale)
    loss = distortion(out["x_hat"], x, cfg)
    if rd:
        loss = loss + cfg.rate_weight * rate_bpp(out, b, x.shape[-2] * x.shape[-1])
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item()


def _train_epoch(run: _Run, model: nn.Module, loader: torch.utils.data.DataLoader,
                 opt: torch.optim.Optimizer, t_epoch: float, progress: bool) -> tuple[float, float]:
    """One pass over the loader (stops at ``total_steps``); returns (mean loss, last lr)."""
    from .progress import bar as progress_bar

    model.train()
    total, count, lr = 0.0, 0, lr_at(run.cfg, run.progress(0.0))
    # The bar counts the steps this epoch will take (a run stopping at max_steps mid-epoch ends its
    # bar full, not at 3/4 -- which a notebook's widget draws red, as if it had failed), and is
    # advanced by hand, so no bar flavour touches the loader.  The data stream stays the one of runs
    # recorded before 2026-11-28: their bar (tqdm.auto's asyncio mixin) opened one iterator of the
    # loader it never used, which draws a seed from the loader's generator -- kept here on purpose.
    steps = max(0, min(len(loader), run.total_steps - run.step))
    bar = progress_bar(desc=f"epoch {run.epoch + 1}/{run.cfg.epochs}", total=steps, leave=False, enabled=progress)
    iter(loader)
    for x in loader:
        if run.step >= run.total_steps:
            break
        x = (x[0] if isinstance(x, (list, tuple)) else x).to(run.device, non_blocking=True)
        lr = lr_at(run.cfg, run.progress(time.perf_counter() - t_epoch))
        for g in opt.param_groups:
            g["lr"] = lr
        try:
            li = _train_step(model, x, opt, run.cfg)
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} at epoch {run.epoch + 1}, step {run.step}") from None
        run.step += 1
        total, count = total + li * x.shape[0], count + x.shape[0]
        bar.update(1)
        bar.set_postfix(loss=f"{li:.5f}", lr=f"{lr:.2e}")
    bar.close()
    return total / max(count, 1), lr


def _validate_epoch(run: _Run, model: nn.Module, val: Tensor | None, final: bool) -> dict[str, float] | None:
    """Validation when due (every ``val_every`` epochs and at the end); tracks an RD run's best weights."""
    cfg = run.cfg
    if val is None or not (final or (run.epoch + 1) % cfg.val_every == 0):
        return None
    vm = validate(model, val, cfg.b_train, run.device, cfg.val_batch_size, cfg.scale)
    if cfg.rate_weight > 0:
        vr = validate_rd(model, val, cfg, run.device)
        run.history.setdefault("val_rd", []).append({"epoch": run.epoch + 1, **vr})
        if vr["objective"] < run.best["objective"]:
            run.best = {"objective": vr["objective"], "epoch": run.epoch + 1,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    return vm


def _record_epoch(run: _Run, loss: float, vm: dict[str, float] | None, lr: float, seconds: float) -> None:
    run.elapsed += seconds
    h = run.history
    for key, value in (("epoch", run.epoch + 1), ("train_loss", loss), ("val_mse", vm and vm["mse"]),
                       ("val_psnr", vm and vm["psnr"]), ("lr", lr), ("seconds", seconds), ("elapsed", run.elapsed)):
        h[key].append(value)


def _save_last(run: _Run, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """Everything resume needs, in ``last.pt``, and the history so far."""
    _torch_save(run.out / "last.pt", {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(), "epoch": run.epoch + 1, "step": run.step, "elapsed": run.elapsed,
        "history": run.history, "config": run.cfg.to_dict(), "rng": _rng_state(gen), "best": run.best,
    })
    _write_json(run.out / "history.json", run.history)


def _finish(run: _Run, model: nn.Module, val: Tensor | None) -> dict[str, float] | None:
    """Keep an RD run's best weights, measure the final validation, write the checkpoint."""
    cfg, h = run.cfg, run.history
    h["stopped"] = run.stop_reason or "epochs done"
    if run.best["state"] is not None:
        model.load_state_dict(run.best["state"])
        h["best_epoch"], h["best_objective"] = run.best["epoch"], run.best["objective"]
    last = None
    if val is not None:
        if run.best["state"] is None and h["val_psnr"] and h["val_psnr"][-1] is not None:
            last = {"mse": h["val_mse"][-1], "psnr": h["val_psnr"][-1]}
        else:
            last = validate(model, val, cfg.b_train, run.device, cfg.val_batch_size, cfg.scale)
    final = {"final_val_mse": last and last["mse"], "final_val_psnr": last and last["psnr"]}
    h.update(final)
    if run.out is not None:
        dev = run.device
        save_checkpoint(model, run.out, cfg, {
            "train_seconds": round(run.elapsed, 3), "epochs_completed": len(h["epoch"]),
            "device": str(dev) if dev.type != "cuda" else f"cuda ({torch.cuda.get_device_name(dev)})",
            "python": platform.python_version(), "noise": cfg.use_noise, "best_epoch": h.get("best_epoch"),
            **final,
        })
        _write_json(run.out / "history.json", h)
    return last


def _fit(model: nn.Module, train_images: np.ndarray, val_images: np.ndarray | None, cfg: TrainConfig,
         device: torch.device, out_dir: str | Path | None, progress: bool, resume: bool,
         log: Callable[[str], None] | None) -> dict[str, Any]:
    from . import progress as bars

    _model_identity(model, cfg)  # fail early on a name mismatch
    loader, gen = _make_loader(train_images, cfg, device)
    _check_batch_memory(model, cfg, len(loader.dataset), device)
    val = None
    if val_images is not None and len(val_images):
        val = _images_to_tensor(val_images[: cfg.max_val_images] if cfg.max_val_images else val_images)
    model.to(device)
    opt = _make_optimizer(model, cfg)
    total_steps = cfg.epochs * len(loader) if cfg.max_steps is None else min(cfg.epochs * len(loader), cfg.max_steps)
    run = _Run(cfg, device, Path(out_dir) if out_dir is not None else None, total_steps)
    resumed = bool(resume and run.out is not None and (run.out / "last.pt").is_file())
    if resumed:
        _resume(run, model, opt, gen)
    say = log or (bars.write if progress else lambda s: print(s, flush=True))
    if resumed and (run.epoch >= cfg.epochs or run.step >= run.total_steps):
        # finished before: another pass would record an epoch of no steps; nothing is written
        say(f"{run.out}: this run is already complete ({run.history.get('stopped') or 'all epochs done'}, "
            f"{run.step} steps); nothing to do")
        return run.history
    say(f"resuming {run.out} at epoch {run.epoch + 1}/{cfg.epochs}" if run.epoch else
        f"train {cfg.model} ({count_parameters(model):,} params) on {device} | {len(loader.dataset)} train / "
        f"{0 if val is None else len(val)} val images | b={cfg.train_bits} noise={cfg.use_noise} "
        f"| {cfg.epochs} epochs x {len(loader)} steps"
        + (f", stopping at step {total_steps}" if total_steps < cfg.epochs * len(loader) else ""))
    budget_msg = f"time budget {cfg.time_budget_s or 0:g}s reached"
    run.stop_reason = budget_msg if run.out_of_time() else None  # a resumed run may already be done
    last_save = time.perf_counter()
    while run.stop_reason is None and run.epoch < cfg.epochs:
        t_epoch = time.perf_counter()
        loss, lr = _train_epoch(run, model, loader, opt, t_epoch, progress)
        vm = _validate_epoch(run, model, val, final=run.epoch + 1 == cfg.epochs)
        _record_epoch(run, loss, vm, lr, time.perf_counter() - t_epoch)
        if run.epoch + 1 < cfg.epochs and run.step >= run.total_steps:
            run.stop_reason = f"max_steps={cfg.max_steps} reached"
        elif run.epoch + 1 < cfg.epochs and run.out_of_time():
            run.stop_reason = budget_msg
        final = bool(run.stop_reason) or run.epoch + 1 == cfg.epochs
        if final and vm is None and val is not None:  # always end on a validated epoch
            vm = _validate_epoch(run, model, val, final=True)
            run.history["val_mse"][-1], run.history["val_psnr"][-1] = vm["mse"], vm["psnr"]
        if run.out is not None and (final or time.perf_counter() - last_save >= cfg.checkpoint_every_s):
            last_save = time.perf_counter()
            _save_last(run, model, opt, gen)
        val_s = "" if vm is None else f" | val(b={cfg.b_train}) mse {vm['mse']:.5f} psnr {vm['psnr']:.2f} dB"
        say(f"epoch {run.epoch + 1:3d}/{cfg.epochs} | loss {loss:.5f}{val_s} | lr {lr:.2e} "
            f"| {run.history['seconds'][-1]:.1f}s")
        run.epoch += 1
    last = _finish(run, model, val)
    say(f"done: {len(run.history['epoch'])} epochs, {run.elapsed:.1f}s, {run.history['stopped']}"
        + ("" if last is None else f", val psnr(b={cfg.b_train}) {last['psnr']:.2f} dB")
        + ("" if run.out is None else f" -> {run.out}"))
    return run.history


if __name__ == "__main__":  # the old entry point: say where the command went
    raise SystemExit("labkit.train has no command line of its own any more; run `labkit train` "
                     "(or `python -m labkit train`)")
