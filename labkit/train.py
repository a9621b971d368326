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

import dataclasses
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

from . import __version__
from .atomic import atomic_path, write_text
from .models import MODEL_NAMES, build_model, count_parameters, default_noise

__all__ = [
    "TrainConfig",
    "CheckpointError",
    "fit",
    "validate",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_device",
]

SCHEDULES = ("cosine", "onecycle", "constant")
LOSSES = ("mse", "l1", "mse+ssim")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model it names."""


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able via ``to_dict``/``from_dict``).

    ``noise=None`` takes the model name's recipe (ae1: False, ae2/resae: True).
    ``schedule``: "cosine" (linear warm-up over ``warmup`` of the run, then cosine to
    ``lr * final_lr_frac``), "onecycle" (same shape, peak at 30 %, from lr/25) or
    "constant".  The schedule follows run progress = max(step fraction, time fraction of
    ``time_budget_s``), so a budget-limited run still anneals.
    ``checkpoint_every_s``: minimum seconds between ``last.pt`` writes (0: every epoch;
    the last epoch is always written) -- tiny epochs on a GPU should not wait on disk.
    ``max_steps`` caps the optimizer steps (the schedule is sized to the cap; smoke runs).
    ``loss``: "mse", "l1" or "mse+ssim" (``mse + ssim_weight * (1 - SSIM)``).
    Rate-distortion training: ``rate_weight`` (lambda) > 0 adds ``lambda * R``, R the
    estimated bits per pixel of the quantized latent (:mod:`labkit.rate`); ``bits`` lists
    the bit depths drawn (one per batch) instead of the fixed ``b_train`` (which stays the
    bit depth of the one-line validation PSNR); ``scale`` is the encoder's rule for the
    stored scale (:func:`labkit.quant.latent_scale`), trained as the codec uses it.
    With ``rate_weight > 0`` the weights kept are those of the epoch with the best
    validation objective ``D + lambda * R`` averaged over ``bits``.
    """

    model: str = "resae"
    model_cfg: dict[str, Any] = field(default_factory=dict)
    b_train: int = 3
    noise: bool | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup: float = 0.05
    final_lr_frac: float = 0.01
    weight_decay: float = 1e-4
    grad_clip: float | None = 1.0
    loss: str = "mse"
    ssim_weight: float = 0.05
    seed: int = 0
    crop: int = 128
    augment: bool = True
    num_workers: int = 0
    device: str = "auto"
    tf32: bool = False
    time_budget_s: float | None = None
    max_steps: int | None = None
    val_every: int = 1
    checkpoint_every_s: float = 30.0
    val_batch_size: int = 16
    max_val_images: int | None = None
    rate_weight: float = 0.0
    bits: list[int] | None = None
    scale: str = "max"

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(MODEL_NAMES)}")
        from .quant import check_bits

        self.b_train = check_bits(self.b_train)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "val_every", "val_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crop % 8:
            raise ValueError(f"crop must be divisible by 8, got {self.crop}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be positive, got {self.time_budget_s}")
        if self.rate_weight < 0:
            raise ValueError(f"rate_weight must be >= 0, got {self.rate_weight}")
        if self.bits is not None:
            self.bits = [check_bits(b) for b in self.bits]
            if not self.bits:
                raise ValueError("bits must list at least one bit depth (or be None for b_train)")
        from .quant import check_scale_rule

        check_scale_rule(self.scale)

    @property
    def train_bits(self) -> list[int]:
        """The bit depths drawn during training (``bits``, else ``[b_train]``)."""
        return list(self.bits) if self.bits else [self.b_train]

    @property
    def use_noise(self) -> bool:
        """Training noise actually used (explicit, or the model name's default)."""
        if self.noise is not None:
            return bool(self.noise)
        return default_noise(self.model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys are an error (typos should not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        return cls(**d)


# --------------------------------------------------------------------------- helpers
def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> CUDA if available else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
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


class _Tiles(torch.utils.data.Dataset):
    """Fallback for ``labkit.data.TileDataset``: one random crop (+ flips) per image."""

    def __init__(self, images: np.ndarray, augment: bool = True, crop: int = 128) -> None:
        self.x = _images_to_tensor(images)
        h, w = self.x.shape[-2:]
        if h < crop or w < crop:
            raise ValueError(f"images ({h}x{w}) are smaller than the crop ({crop})")
        self.augment, self.crop = augment, crop

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        img = self.x[i]
        h, w = img.shape[-2:]
        c = self.crop
        if self.augment:
            top = int(torch.randint(0, h - c + 1, ()))
            left = int(torch.randint(0, w - c + 1, ()))
        else:
            top, left = (h - c) // 2, (w - c) // 2
        t = img[:, top : top + c, left : left + c]
        if self.augment:
            if torch.rand(()) < 0.5:
                t = t.flip(-1)
            if torch.rand(()) < 0.5:
                t = t.flip(-2)
        return t.contiguous()


def _tile_dataset(images: np.ndarray, augment: bool, crop: int) -> torch.utils.data.Dataset:
    """``labkit.data.TileDataset`` when available, else the internal fallback."""
    try:
        from .data import TileDataset  # imported lazily: data.py is developed separately
    except ImportError:
        return _Tiles(images, augment=augment, crop=crop)
    return TileDataset(images, augment=augment, crop=crop)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    g = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (Gaussian 11x11, sigma 1.5, per channel), differentiable; for the loss."""
    c = x.shape[1]
    w = _gaussian_window().to(x)[None, None].expand(c, 1, -1, -1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


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
    """(name, constructor config) to rebuild ``model``; prefers ``model.config``."""
    mc = dict(getattr(model, "config", None) or {})
    name = mc.pop("name", cfg.model)
    mc.pop("noise", None)
    if name != cfg.model:
        raise ValueError(f"model is {name!r} but TrainConfig.model is {cfg.model!r}")
    return name, mc or dict(cfg.model_cfg)


def save_checkpoint(
    model: nn.Module, out_dir: str | Path, cfg: TrainConfig, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model.pt`` (state_dict) and ``config.json`` atomically; returns ``out_dir``."""
    out = Path(out_dir)
    name, mcfg = _model_identity(model, cfg)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _torch_save(out / "model.pt", state)
    meta = {
        "model": name,
        "model_cfg": mcfg,
        "train": {**cfg.to_dict(), "model_cfg": mcfg},  # resolved: retraining rebuilds this exact net
        "labkit_version": __version__,
        "torch_version": torch.__version__,
        "param_count": count_parameters(model),
        **(extra or {}),
    }
    _write_json(out / "config.json", meta)
    return out


def _resolve_ckpt(path_or_dir: str | Path) -> tuple[Path, Path]:
    p = Path(path_or_dir)
    if p.is_dir():
        return p / "model.pt", p / "config.json"
    return p, p.with_name("config.json")


def load_checkpoint(
    path_or_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named in ``config.json`` and load ``model.pt`` into it.

    Accepts the run directory or the ``.pt`` path (``config.json`` sits next to it).
    Returns ``(model in eval mode, config dict)``.  Raises ``CheckpointError`` with the
    missing/unexpected keys and shape mismatches when the weights do not fit.
    """
    weights, cfg_path = _resolve_ckpt(path_or_dir)
    if not weights.is_file():
        raise CheckpointError(f"no checkpoint weights at {weights}")
    if not cfg_path.is_file():
        raise CheckpointError(f"no config.json next to {weights}; it records which model to build")
    try:
        config = json.loads(cfg_path.read_text())
        name, mcfg = config["model"], config.get("model_cfg", {})
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"unreadable checkpoint config {cfg_path}: {e}") from None
    try:
        model = build_model(name, **mcfg)
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: cannot build model: {e}") from None
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated file, non-weights content
        raise CheckpointError(f"cannot read {weights} as a weights-only state_dict: {e}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # also accept last.pt
    _check_state(model, state, name, mcfg, weights)
    model.load_state_dict(state)
    model.to(map_location).eval()
    return model, config


def _check_state(model: nn.Module, state: Any, name: str, mcfg: dict, where: Path) -> None:
    """Raise ``CheckpointError`` listing every key/shape difference."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} does not hold a state_dict (got {type(state).__name__})")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def head(items: list[str], n: int = 8) -> str:
        more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
        return ", ".join(items[:n]) + more

    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {head(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {head(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {head(shapes, 5)}")
    raise CheckpointError(
        f"checkpoint {where} does not fit model {name!r} with config {mcfg}: "
        + "; ".join(parts)
        + ". The weights were probably written by a different model or config: fix "
        "'model'/'model_cfg' in config.json to match the run that produced them, or retrain."
    )


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

    ``train_images``/``val_images``: uint8 [N, H, W, 3].  Per epoch: mean train loss,
    val MSE/PSNR at ``cfg.b_train`` with hard quantization, lr, seconds.  With
    ``resume=True`` and ``out_dir/last.pt`` present, continues that run exactly.
    ``log`` receives the one-line epoch summaries (default: print / tqdm.write).
    """
    device = resolve_device(cfg.device)
    prev_det = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    _set_determinism(cfg.seed, device, cfg.tf32)
    try:
        return _fit(model, train_images, val_images, cfg, device, out_dir, progress, resume, log)
    finally:
        torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])


def _fit(
    model: nn.Module,
    train_images: np.ndarray,
    val_images: np.ndarray | None,
    cfg: TrainConfig,
    device: torch.device,
    out_dir: str | Path | None,
    progress: bool,
    resume: bool,
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    out = Path(out_dir) if out_dir is not None else None
    noise = cfg.use_noise
    _model_identity(model, cfg)  # fail early on a name mismatch

    ds = _tile_dataset(train_images, augment=cfg.augment, crop=cfg.crop)
    if len(ds) == 0:
        raise ValueError("no training images")
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(ds) >= cfg.batch_size,
        num_workers=cfg.num_workers,
        generator=gen,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    val = None
    if val_images is not None and len(val_images):
        val = _images_to_tensor(val_images[: cfg.max_val_images] if cfg.max_val_images else val_images)

    model.to(device)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.dim() <= 1 else decay).append(p)  # no decay on biases / BN
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_at(cfg, 0.0),
    )
    loss_fn = _loss_fn(cfg.loss, cfg.ssim_weight)
    rd, train_bits = cfg.rate_weight > 0, cfg.train_bits
    best: dict[str, Any] = {"objective": math.inf, "epoch": None, "state": None}
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    history = _empty_history()
    start_epoch, step, elapsed = 0, 0, 0.0

    if resume and out is not None and (out / "last.pt").is_file():
        st = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        if st.get("config") != cfg.to_dict():
            diff = sorted(k for k, v in cfg.to_dict().items() if st.get("config", {}).get(k) != v)
            raise ValueError(f"cannot resume {out}: TrainConfig differs from the saved run in {diff}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        start_epoch, step, elapsed = st["epoch"], st["step"], st["elapsed"]
        history = st["history"]
        best = st.get("best", best)
        _set_rng_state(st["rng"], gen)
    say = log or (tqdm.write if progress else lambda s: print(s, flush=True))
    n_params = count_parameters(model)
    if start_epoch == 0:
        say(
            f"train {cfg.model} ({n_params:,} params) on {device} | {len(ds)} train / "
            f"{0 if val is None else len(val)} val images | b={cfg.b_train} noise={noise} "
            f"| {cfg.epochs} epochs x {steps_per_epoch} steps"
        )
    else:
        say(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")

    def progress_frac() -> float:
        p = step / max(total_steps, 1)
        if cfg.time_budget_s:
            p = max(p, (elapsed + time.perf_counter() - t_epoch) / cfg.time_budget_s)
        return p

    def out_of_time() -> bool:
        """Another epoch (at the mean epoch time so far) would overrun the time budget."""
        n = len(history["epoch"])
        return bool(cfg.time_budget_s) and n > 0 and elapsed + elapsed / n > cfg.time_budget_s

    budget_msg = f"time budget {cfg.time_budget_s or 0:g}s reached"
    stop_reason = budget_msg if out_of_time() else None  # a resumed run may already be done
    t_epoch = last_save = time.perf_counter()
    lr = lr_at(cfg, progress_frac())
    for epoch in range(start_epoch, cfg.epochs if stop_reason is None else start_epoch):
        t_epoch = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        for x in bar:
            if step >= total_steps:
                break
            if isinstance(x, (list, tuple)):
                x = x[0]
            x = x.to(device, non_blocking=True)
            lr = lr_at(cfg, progress_frac())
            for g in opt.param_groups:
                g["lr"] = lr
            b = random.choice(train_bits)
            out_d = model(x, b=b if (noise or rd) else None, noise=noise, scale=cfg.scale)
            loss = loss_fn(out_d["x_hat"], x)
            if rd:
                loss = loss + cfg.rate_weight * rate_bpp(out_d, b, x.shape[-2] * x.shape[-1])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            li = loss.item()
            total += li * x.shape[0]
            count += x.shape[0]
            bar.set_postfix(loss=f"{li:.5f}", lr=f"{lr:.2e}")
        bar.close()

        vm = None
        if val is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            vm = validate(model, val, cfg.b_train, device, cfg.val_batch_size, cfg.scale)
            if rd:
                vr = validate_rd(model, val, cfg, device)
                history.setdefault("val_rd", []).append({"epoch": epoch + 1, **vr})
                if vr["objective"] < best["objective"]:
                    best = {"objective": vr["objective"], "epoch": epoch + 1,
                            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        seconds = time.perf_counter() - t_epoch
        elapsed += seconds
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(total / max(count, 1))
        history["val_mse"].append(None if vm is None else vm["mse"])
        history["val_psnr"].append(None if vm is None else vm["psnr"])
        history["lr"].append(lr)
        history["seconds"].append(seconds)
        history["elapsed"].append(elapsed)
        if epoch + 1 < cfg.epochs and step >= total_steps:
            stop_reason = f"max_steps={cfg.max_steps} reached"
        elif epoch + 1 < cfg.epochs and out_of_time():
            stop_reason = budget_msg
        final_epoch = bool(stop_reason) or epoch + 1 == cfg.epochs
        if final_epoch and vm is None and val is not None:  # always end on a validated epoch
            vm = validate(model, val, cfg.b_train, device, cfg.val_batch_size, cfg.scale)
            history["val_mse"][-1], history["val_psnr"][-1] = vm["mse"], vm["psnr"]
        if out is not None and (final_epoch or time.perf_counter() - last_save >= cfg.checkpoint_every_s):
            last_save = time.perf_counter()
            _torch_save(out / "last.pt", {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "elapsed": elapsed,
                "history": history,
                "config": cfg.to_dict(),
                "rng": _rng_state(gen),
                "best": best,
            })
            _write_json(out / "history.json", history)
        val_s = "" if vm is None else f" | val(b={cfg.b_train}) mse {vm['mse']:.5f} psnr {vm['psnr']:.2f} dB"
        say(
            f"epoch {epoch + 1:3d}/{cfg.epochs} | loss {history['train_loss'][-1]:.5f}{val_s}"
            f" | lr {lr:.2e} | {seconds:.1f}s"
        )
        if stop_reason:
            break

    history["stopped"] = stop_reason or "epochs done"
    if best["state"] is not None:  # RD runs keep the epoch with the best validation objective
        model.load_state_dict(best["state"])
        history["best_epoch"] = best["epoch"]
        history["best_objective"] = best["objective"]
    last = None
    if val is not None:
        if best["state"] is None and history["val_psnr"] and history["val_psnr"][-1] is not None:
            last = {"mse": history["val_mse"][-1], "psnr": history["val_psnr"][-1]}
        else:
            last = validate(model, val, cfg.b_train, device, cfg.val_batch_size, cfg.scale)
    final = {"final_val_mse": None if last is None else last["mse"],
             "final_val_psnr": None if last is None else last["psnr"]}
    history.update(final)
    if out is not None:
        save_checkpoint(model, out, cfg, {
            "train_seconds": round(elapsed, 3),
            "epochs_completed": len(history["epoch"]),
            "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
            "python": platform.python_version(),
            "noise": noise,
            "best_epoch": history.get("best_epoch"),
            **final,
        })
        _write_json(out / "history.json", history)
    say(
        f"done: {len(history['epoch'])} epochs, {elapsed:.1f}s, {history['stopped']}"
        + ("" if last is None else f", val psnr(b={cfg.b_train}) {last['psnr']:.2f} dB")
        + ("" if out is None else f" -> {out}")
    )
    return history


if __name__ == "__main__":  # the old entry point: say where the command went
    raise SystemExit("labkit.train has no command line of its own any more; run `labkit train` "
                     "(or `python -m labkit train`)")
