"""What defines a training run: ``TrainConfig``, the schedules and the losses (torch-free).

Kept apart from ``labkit.train`` (the loop, which needs torch) so that the command line can
offer every option and default of ``labkit train`` without importing torch.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from .spec import MODEL_NAMES, MODEL_NOISE, check_bits, check_scale_rule

__all__ = ["SCHEDULES", "LOSSES", "TrainConfig", "trained_bits"]

SCHEDULES = ("cosine", "onecycle", "constant")
LOSSES = ("mse", "l1", "mse+ssim")


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
        if self.time_budget_s is not None and not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise ValueError(f"time_budget_s must be a positive finite number, got {self.time_budget_s}")
        if not (math.isfinite(self.checkpoint_every_s) and self.checkpoint_every_s >= 0):
            raise ValueError(f"checkpoint_every_s must be a finite number >= 0, got {self.checkpoint_every_s}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        if not (math.isfinite(self.rate_weight) and self.rate_weight >= 0):
            raise ValueError(f"rate_weight must be a finite number >= 0, got {self.rate_weight}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        for name in ("weight_decay", "ssim_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.bits is not None:
            self.bits = [check_bits(b) for b in self.bits]
            if not self.bits:
                raise ValueError("bits must list at least one bit depth (or be None for b_train)")
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
        return MODEL_NOISE[self.model]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error (typos should not pass)."""
        return strict_from_dict(cls, d)


def trained_bits(train: dict[str, Any]) -> int | str | None:
    """The bit depths a recorded ``config.json["train"]`` section trained at: ``"1..5"`` when b was drawn
    from several per batch (``bits``), else the one b (``b_train``), None when neither is recorded."""
    bits = train.get("bits")
    if bits and len(set(bits)) > 1:
        return f"{min(bits)}..{max(bits)}"
    return bits[0] if bits else train.get("b_train")


def strict_from_dict(cls: type[Any], d: dict[str, Any]) -> Any:
    """``cls(**d)`` for a dataclass, refusing keys it does not have (typos should not pass)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
    return cls(**d)
