"""Continue training a whole model as the codec uses it (how the shipped ``resae-rd-fast`` was finished).

``labkit.train.fit`` trains with the course's training model of quantization (uniform noise)
and one stored-scale rule.  A model that is already trained can then be fine-tuned closer to
what the codec does, on a GPU with the training images held on the device:

* **the codec's quantization for the decoder** (``quantizer="ste"``): the decoder gets the hard
  ``quant.quantize_dequantize`` values, and the gradient passes straight through to the
  encoder.  The rate term still reads the unquantized latent (``labkit.train.rate_bpp``), as in
  ``fit``.  With noise instead (``"noise"``, ``fit``'s model) the decoder never sees the real bins,
  which costs most at b = 1..2;
* **the scale search's rules** (``rules``): each sample's stored scale is drawn from them, so the
  network sees every scale the encoder's search (``labkit.spec.SCALE_SEARCH``) may pick;
* **the encoder alone, on the codec's own objective** (``part="encoder"``): the decoder (and every
  BatchNorm statistic) stays frozen, so the decoder's pixels for any given file do not change, and
  the encoder learns what the latent refinement (``labkit.refine``) finds per image: the loss is
  refinement's, ``MSE + REFINE_SSIM_WEIGHT * (1 - SSIM) + REFINE_RATE_SCALE * colour_map_rate_weight(b)
  * bits / pixels``, with the codec's hard bins (straight-through) and the bits priced by the
  coder the file uses (the model's ``learned`` coder prior where it has one,
  ``labkit.rate.estimate_bits``), b drawn per batch and each b's cost divided by its value at the
  start on the validation images (so every b counts by its relative gain, as a BD-rate does);
* **frozen BatchNorm statistics** (``freeze_bn``, whole-model runs): every BatchNorm layer normalises
  with its running statistics (eval mode) while its scale and shift still train, so the network
  learns for the statistics the codec uses rather than for one b's batch statistics (a GPU run in
  train mode with one b per batch needed a CPU decoder fit afterwards to undo that). Measured once
  from the shipped weights, on the default pool and on course images: it never beat its start
  (NOTES.md, "Tried and rejected"); kept as an option;
* **BatchNorm statistics re-estimated before each validation** (``recalibrate_bn``, whole-model
  runs; :func:`recalibrate_bn`): the running averages of a train-mode run are the last batches',
  each at one b, so validating with them judges the weights by statistics the codec never has
  (the objective swung by ±4 % from one check to the next on the CPU recipes); re-estimated over
  the codec's bins at mixed b, the weights are judged, and kept, with the statistics they will
  decode with. Measured once, in the 60-minute CPU recipe: the swings stayed and the weights kept
  were no better (NOTES.md); re-estimating once after a run (:func:`recalibrate_bn`,
  ``tools/recalibrate_bn.py``) is what paid;
* **an average of the weights** (``ema_decay`` or ``ema_power``): a moving average of every weight
  and BatchNorm statistic, updated after each step (:class:`WeightAverage`); validation judges the
  average and the run keeps the best average, so the last steps' noise (a short CPU run's
  objective swung by ±5 % between checks) is averaged out rather than picked from;
* **more varied crops** (``augment="strong"``): besides the flips, a random quarter turn, a random
  channel order for half the samples and, for half the batches, a zoom-out (a larger crop shrunk
  to the crop size), so a long run on the dozen default photos does not learn their windows by heart.

:func:`finetune` runs the loop: the loss is ``fit``'s (``distortion + rate_weight * rate_bpp``,
b drawn per batch), the learning rate a warm-up and cosine over the wall-clock budget, and the
weights kept are those with the best validation objective (``labkit.train.validate_rd``), written
at every improvement so a run stopped early keeps its best.  ``tools/finetune_gpu.py`` is its
command line; ``tools/gpu_round.sh`` runs several recipes side by side on one GPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import quant, spec
from .atomic import write_text
from .trainconfig import strict_from_dict

__all__ = ["FinetuneConfig", "WeightAverage", "finetune", "recalibrate_bn", "rd_forward", "codec_objective", "validate_codec", "crop_batch", "scale_rules",
           "QUANTIZERS", "AUGMENTS", "PARTS"]

#: What the decoder gets in training: the course's uniform noise, or the codec's bins (straight-through).
QUANTIZERS = ("noise", "ste")
#: ``flip``: random flips (``fit``'s augmentation); ``strong``: see the module docstring.
AUGMENTS = ("flip", "strong")
#: What a fine-tune trains: the whole model on ``fit``'s loss, or the encoder alone on the codec's objective.
PARTS = ("all", "encoder")


@dataclass
class FinetuneConfig:
    """One fine-tune's settings (JSON-able; recorded as ``config.json["finetune"]``)."""

    seconds: float = 200.0
    lr: float = 3e-4
    batch: int = 32
    validations: int = 10
    warmup: float = 0.05
    final_lr_frac: float = 0.05
    rules: list[str] | None = None
    quantizer: str = "ste"
    augment: str = "strong"
    seed: int = 0
    part: str = "all"
    #: the weight of ``1 - SSIM`` in the loss and the validation objective. ``part="all"``: None keeps
    #: the run's own (``TrainConfig.ssim_weight``, which ``config.json["train"]`` keeps recording);
    #: ``part="encoder"``: None is refinement's, :data:`labkit.spec.REFINE_SSIM_WEIGHT`
    ssim_weight: float | None = None
    #: ``part="all"``: keep every BatchNorm layer in eval mode (its running statistics frozen; its
    #: affine parameters still train). The encoder-only part always does.
    freeze_bn: bool = False
    #: ``part="all"``: before each validation, re-estimate every BatchNorm layer's statistics over
    #: this many batches of the codec's hard bins at mixed b (:func:`recalibrate_bn`; 0: off), so the
    #: weights kept are judged, and saved, with the statistics the codec will use
    recalibrate_bn: int = 0
    #: keep an exponential moving average of the weights (and BatchNorm statistics) with this decay
    #: per step (0: off); validation judges, and the run keeps, the averaged weights (:class:`WeightAverage`)
    ema_decay: float = 0.0
    #: instead of ``ema_decay``: the power γ of a power-function average (``WeightAverage``'s
    #: ``power``), which spans the same share of any run; None: off
    ema_power: float | None = None
    #: side of the training crops (a multiple of 8); None: the run's own (``TrainConfig.crop``)
    crop: int | None = None

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")
        if self.rules is not None:
            self.rules = [spec.check_scale_rule(r) for r in self.rules]
            if not self.rules:
                raise ValueError("rules must name at least one scale rule (or be None: the run's rule)")
        if self.recalibrate_bn < 0:
            raise ValueError(f"recalibrate_bn must be >= 0 (batches; 0: off), got {self.recalibrate_bn}")
        if self.recalibrate_bn and (self.part != "all" or self.freeze_bn):
            raise ValueError("recalibrate_bn needs a whole-model run whose BatchNorm statistics move "
                             "(part='all', freeze_bn=False)")
        if self.ssim_weight is not None and not (math.isfinite(self.ssim_weight) and self.ssim_weight >= 0):
            raise ValueError(f"ssim_weight must be a finite number >= 0 (or None), got {self.ssim_weight}")
        if self.crop is not None and (self.crop < 8 or self.crop % 8):
            raise ValueError(f"crop must be a positive multiple of 8 (or None: the run's), got {self.crop}")
        if not (math.isfinite(self.ema_decay) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1) (0: off; 0.999 averages about the last 1,000 steps), "
                             f"got {self.ema_decay}")
        if self.ema_power is not None:
            if not (math.isfinite(self.ema_power) and self.ema_power >= 0):
                raise ValueError(f"ema_power must be a finite number >= 0 (or None: off), got {self.ema_power}")
            if self.ema_decay:
                raise ValueError("ema_decay and ema_power both ask for an average: give one of them")
        if not self.seconds > 0 or self.batch < 1 or self.validations < 1:
            raise ValueError(f"seconds, batch and validations must be positive, got {self.seconds}, "
                             f"{self.batch}, {self.validations}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneConfig":
        return strict_from_dict(cls, d)


def _state_copy(model: nn.Module) -> dict[str, Tensor]:
    """A copy of ``model``'s state (weights and buffers) that later steps leave alone."""
    return {k: v.clone() for k, v in model.state_dict().items()}


class WeightAverage:
    """A moving average of a model's state (weights and BatchNorm statistics).

    After each optimiser step, :meth:`update` moves every floating-point entry of the average
    towards the model's by ``1 - d``. Integer entries (BatchNorm's ``num_batches_tracked``) are
    copied. :meth:`swapped_in` lends the average to the model for a validation and puts the
    trained weights back after it. Two schedules for ``d`` at the ``t``-th update (``t = 1, 2, ...``):

    * ``decay``: ``d = min(decay, t / (9 + t))``, an exponential average with the warm-up of
      TensorFlow's ``ExponentialMovingAverage``, so a short run's average is not held back by its
      starting weights. Until the cap is reached (``t`` about ``9 / (1 - decay)``: 9,000 updates
      for 0.999, 30,000 for 0.9997) the warm-up rules, and it weighs update ``t`` about as ``t^8``;
    * ``power`` (γ): ``d = (1 - 1/t)^(γ + 1)``, the power-function average of Karras et al. (2024,
      "Analyzing and improving the training dynamics of diffusion models"): after ``T`` updates,
      update ``t`` weighs ``(γ + 1) t^γ / T^(γ + 1)``, so the average spans the same share of any
      run (its mean sits ``T / (γ + 2)`` updates back; relative width
      ``sqrt((γ + 1) / ((γ + 2)^2 (γ + 3)))``: 0.09 at γ = 8, 0.14 at γ = 4). γ = 0 is the plain
      mean of every step.

    Parameters
    ----------
    model : nn.Module
        The model being trained; the average starts as a copy of its state.
    decay : float, optional
        In (0, 1): the weight of the old average per update, once the warm-up is over.
    power : float, optional
        γ >= 0 of the power-function average. Give ``decay`` or ``power``, not both.
    """

    def __init__(self, model: nn.Module, decay: float | None = None, power: float | None = None) -> None:
        if (decay is None) == (power is None):
            raise ValueError("give the average a decay or a power, not both or neither")
        if decay is not None and not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if power is not None and not (math.isfinite(power) and power >= 0.0):
            raise ValueError(f"power must be a finite number >= 0, got {power}")
        self.model, self.decay, self.power, self.updates = model, decay, power, 0
        self.state = _state_copy(model)
        self._floats = [k for k, v in self.state.items() if v.is_floating_point()]
        self._others = [k for k, v in self.state.items() if not v.is_floating_point()]  # num_batches_tracked

    def weight_of_old(self) -> float:
        """``d`` for the next update: the share of the old average it keeps."""
        t = self.updates + 1
        if self.power is not None:
            return (1.0 - 1.0 / t) ** (self.power + 1.0)
        return min(self.decay, t / (9 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current state (call after each step)."""
        d = self.weight_of_old()
        self.updates += 1
        live = self.model.state_dict()  # detached views of the model's tensors
        torch._foreach_lerp_([self.state[k] for k in self._floats], [live[k] for k in self._floats], 1.0 - d)
        for k in self._others:
            self.state[k].copy_(live[k])

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the average inside the block and its trained state after it."""
        trained = _state_copy(self.model)
        self.model.load_state_dict(self.state)
        try:
            yield
        finally:
            self.model.load_state_dict(trained)


def scale_rules(arg: str | None) -> list[str] | None:
    """A ``--rules`` value as a rule list: None/"" (the run's rule), ``"search"`` or ``"p99.5,max"``."""
    if not arg:
        return None
    rules = list(spec.SCALE_SEARCH_RULES) if arg == spec.SCALE_SEARCH else [r.strip() for r in arg.split(",")]
    return [spec.check_scale_rule(r) for r in rules]


def rd_forward(model: nn.Module, x: Tensor, b: int, rule: str, rules: list[str] | None = None,
               quantizer: str = "noise", generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The training forward pass, with the codec's choices.

    Parameters
    ----------
    model : nn.Module
        A ``labkit.models`` autoencoder.
    x : Tensor
        Images in [0, 1], ``[N, 3, H, W]``.
    b : int
        Bit depth of this batch.
    rule : str
        The stored-scale rule when ``rules`` is None.
    rules : list of str, optional
        Draw each sample's rule from these (uniformly, from ``generator``).
    quantizer : {"noise", "ste"}
        ``"noise"``: the course's uniform noise; ``"ste"``: the codec's hard quantize/dequantize,
        with the identity as its gradient.
    generator : torch.Generator, optional
        On ``x``'s device; draws the rules.

    Returns
    -------
    dict
        ``x_hat``, ``y`` (clipped at the scale: what the rate term reads), ``y_hat``, ``ymax``:
        the keys of ``model(x, b, noise=True, scale=rule)``, which this equals (same noise draw)
        when ``rules`` is None and ``quantizer == "noise"``.
    """
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
    if rules is None and quantizer == "noise":
        return model(x, b=b, noise=True, scale=rule)
    y = model.encode(x)
    if rules is None:
        ymax = quant.latent_scale(y.detach(), rule)
    else:
        every = torch.stack([quant.latent_scale(y.detach(), r) for r in rules])  # [R, N]
        pick = torch.randint(0, len(rules), (1, y.shape[0]), device=y.device, generator=generator)
        ymax = every.gather(0, pick)[0]
    ymax = quant.to_float32(ymax).to(y.device)
    y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1).to(y.dtype))
    if quantizer == "noise":
        y_hat = quant.add_noise(y, b, ymax)
    else:
        y_hat = y + (quant.quantize_dequantize(y, b, ymax) - y).detach()
    return {"x_hat": model.decode(y_hat), "y": y, "y_hat": y_hat, "ymax": ymax}


def codec_objective(model: nn.Module, x: Tensor, b: int, rule: str,
                    priors: dict[int, Tensor] | None = None, ssim_weight: float | None = None) -> Tensor:
    """The codec's own rate-distortion cost of coding ``x`` at bit depth ``b``, differentiable in the encoder.

    ``MSE + REFINE_SSIM_WEIGHT * (1 - SSIM) + REFINE_RATE_SCALE * colour_map_rate_weight(b) * bits / pixels``
    averaged over the batch (:func:`labkit.refine.rd_cost`): the objective :mod:`labkit.refine`
    minimises per image (:func:`labkit.spec.refine_settings`), here for the encoder's weights.  The stored scale is
    ``rule``'s (from the detached latent, as the codec picks it), the decoder gets the hard bins
    with the identity as their gradient, and ``bits`` is :func:`labkit.rate.estimate_bits` in
    the coder's context: ``"learned"`` under ``priors[b]`` (in symbols) where given, else
    ``"neighbor"``.

    Parameters
    ----------
    model : nn.Module
        A ``labkit.models`` autoencoder.
    x : Tensor
        Images in [0, 1], ``[N, 3, H, W]`` (H and W at least 11 for SSIM).
    b : int
        Bit depth.
    rule : str
        The stored-scale rule (``labkit.quant.latent_scale``).
    priors : dict of int to Tensor, optional
        The model's coder prior per bit depth, in symbols (``labkit.rate.prior_in_symbols``).
    ssim_weight : float, optional
        Overrides refinement's weight of ``1 - SSIM``.

    Returns
    -------
    Tensor
        The scalar cost.
    """
    from .refine import rd_cost

    settings = spec.refine_settings(b)
    if ssim_weight is not None:
        settings = dataclasses.replace(settings, ssim_weight=float(ssim_weight))
    y = model.encode(x)
    ymax = quant.to_float32(quant.latent_scale(y.detach(), rule)).to(y.device)
    y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1).to(y.dtype))
    y_hat = y + (quant.quantize_dequantize(y, b, ymax) - y).detach()
    x_hat = model.decode(y_hat)[..., : x.shape[-2], : x.shape[-1]]
    return rd_cost(x_hat, x, y, ymax, b, settings, None if priors is None else priors.get(b))


def validate_codec(model: nn.Module, val: Tensor, bits: list[int], rule: str,
                   priors: dict[int, Tensor] | None, device: torch.device, batch: int = 16,
                   ssim_weight: float | None = None) -> dict[str, Any]:
    """:func:`codec_objective` on ``val`` at every b (no gradient): its mean (``objective``) and per-b values."""
    was_training = model.training
    model.eval()
    per_b = {}
    with torch.no_grad():
        for b in bits:
            total = 0.0
            for i in range(0, len(val), batch):
                x = val[i: i + batch].to(device)
                total += float(codec_objective(model, x, b, rule, priors, ssim_weight)) * len(x)
            per_b[str(b)] = total / len(val)
    model.train(was_training)
    return {"objective": sum(per_b.values()) / len(per_b), "per_b": per_b}


def crop_batch(images: Tensor, batch: int, crop: int, augment: str = "flip",
               generator: torch.Generator | None = None) -> Tensor:
    """Random ``crop`` x ``crop`` crops of uint8 images ``[N, 3, H, W]``, as floats in [0, 1].

    Every sample is its own image and offset; the flips (and, with ``augment="strong"``, the
    quarter turn and the zoom) are per batch, the channel order per sample.  Everything is drawn
    from ``generator`` on ``images``' device, so a GPU builds its batches without the CPU.
    """
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    dev = images.device
    n, _, h, w = images.shape
    if min(h, w) < crop:
        raise ValueError(f"images of {h}x{w} are smaller than the {crop}x{crop} crop")

    def coin() -> bool:
        return bool(torch.rand((), device=dev, generator=generator) < 0.5)

    size = crop
    if augment == "strong" and min(h, w) > crop and coin():
        size = int(torch.randint(crop + 1, min(h, w) + 1, (), device=dev, generator=generator))
    rows = torch.arange(size, device=dev)
    idx = torch.randint(0, n, (batch,), device=dev, generator=generator)
    top = torch.randint(0, h - size + 1, (batch, 1), device=dev, generator=generator) + rows
    left = torch.randint(0, w - size + 1, (batch, 1), device=dev, generator=generator) + rows
    x = images[idx[:, None, None, None], torch.arange(3, device=dev)[None, :, None, None],
               top[:, None, :, None], left[:, None, None, :]].float().div_(255)
    if size != crop:
        x = F.interpolate(x, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    if coin():
        x = x.flip(-1)
    if coin():
        x = x.flip(-2)
    if augment == "strong":
        k = int(torch.randint(0, 4, (), device=dev, generator=generator))
        if k:
            x = torch.rot90(x, k, dims=(-2, -1))
        order = torch.argsort(torch.rand(batch, 3, device=dev, generator=generator), dim=1)
        keep = torch.rand(batch, device=dev, generator=generator) < 0.5
        order[keep] = torch.arange(3, device=dev)
        x = x.gather(1, order[:, :, None, None].expand_as(x))
    return x.contiguous()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: Tensor, cfg: Any, *, batches: int = 200, batch: int = 16,
                   rules: list[str] | None = None, part: str = "decoder", seed: int = 0,
                   crop: int | None = None) -> int:
    """Re-estimate BatchNorm running statistics for the latents the codec decodes.

    A run in train mode leaves each BatchNorm with an exponential average of its last batches'
    statistics, each batch at one b; the codec then decodes every b with those averages.  This
    resets the statistics and averages them, with equal weight (``momentum=None``, as
    ``torch.optim.swa_utils.update_bn`` does), over ``batches`` forward passes of the codec's hard
    bins (:func:`rd_forward` with ``quantizer="ste"``), b drawn per batch from
    ``cfg.train_bits`` and each sample's stored scale from ``rules``.  With ``part="all"`` every layer
    is estimated in the same passes, the encoder's in train mode as in training (a pass for the
    encoder first, then one for the decoder behind the encoder in eval mode, measured worse once:
    NOTES.md).  No weight changes.

    Parameters
    ----------
    model : nn.Module
        A ``labkit.models`` autoencoder, on ``images``' device.
    images : Tensor
        uint8 training images ``[N, 3, H, W]`` (crops from :func:`crop_batch`, flips only).
    cfg : labkit.train.TrainConfig
        Gives ``train_bits``, ``crop`` and ``scale`` (the rule when ``rules`` is None).
    batches, batch : int
        How many forward passes, of how many crops.
    rules : list of str, optional
        Stored-scale rules drawn per sample (``scale_rules("search")``: the scale search's).
    part : {"decoder", "all"}
        ``"decoder"``: only the decoder's statistics (the encoder's symbols, hence the files and
        the coder prior, stay as they are); ``"all"``: every BatchNorm layer.
    seed : int
        Seeds the crops, the b and the rules.
    crop : int, optional
        Side of the crops (a multiple of 8, at most the images' side); None: ``cfg.crop``.  The
        latent of a 64-pixel crop is 8 x 8, so 28 of its 64 positions touch the border, where
        the convolutions' zero padding shifts the statistics that whole photos hardly see.

    Returns
    -------
    int
        The number of BatchNorm layers re-estimated.  ``model`` is left in eval mode.
    """
    if part not in ("decoder", "all"):
        raise ValueError(f"part must be 'decoder' or 'all', got {part!r}")
    if batches < 1 or batch < 1:
        raise ValueError(f"batches and batch must be >= 1, got {batches} and {batch}")
    side = cfg.crop if crop is None else crop
    # checked here, before any statistic is reset, so a bad side leaves the model as it was
    if side < 8 or side % 8 or side > min(images.shape[-2:]):
        raise ValueError(f"crop must be a multiple of 8 between 8 and the images' side "
                         f"{min(images.shape[-2:])}, got {side}")
    scope = model.decoder if part == "decoder" else model
    layers = [m for m in scope.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    gen = torch.Generator(device=images.device).manual_seed(seed)
    py_rng = random.Random(seed)
    try:
        for _ in range(batches):
            x = crop_batch(images, batch, side, "flip", gen)
            rd_forward(model, x, py_rng.choice(list(cfg.train_bits)), cfg.scale, rules, "ste", gen)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()
    return len(layers)


def finetune(model: nn.Module, images: Tensor, val: Tensor, cfg: Any, ft: FinetuneConfig,
             out_dir: str | Path, extra: dict[str, Any] | None = None, log: Any = print,
             priors: dict[int, Tensor] | None = None,
             history_base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` (in place) for ``ft.seconds`` of wall clock; keep the best weights.

    Parameters
    ----------
    model : nn.Module
        A trained model, on the device the run uses.
    images : Tensor
        uint8 training images ``[N, 3, H, W]`` on that device (crops come from :func:`crop_batch`).
    val : Tensor
        float validation images ``[M, 3, h, w]`` (any device).
    cfg : labkit.train.TrainConfig
        The loss (``distortion``, ``rate_weight``), ``train_bits``, ``crop``, ``scale``,
        ``weight_decay`` and ``grad_clip``; ``device`` is where validation runs.
    ft : FinetuneConfig
        This fine-tune's settings.
    out_dir : path
        Gets ``model.pt``/``config.json`` (``labkit.train.save_checkpoint``, with ``extra`` and
        ``finetune`` recorded) at every new best, and ``history.json``.
    extra : dict, optional
        More entries for ``config.json``.
    log : callable
        Gets one line per validation.
    priors : dict of int to Tensor, optional
        ``part="encoder"`` only: the model's coder prior per bit depth, in symbols, on the device
        (what :func:`codec_objective` prices bits with).
    history_base : dict, optional
        Entries ``history.json`` keeps beside this run's ``finetune`` entry (the training
        history of the run it continues, so that folder's curves survive).

    Returns
    -------
    dict
        The history: ``step``, ``objective``, ``psnr``, ``bpp``, ``elapsed`` per validation,
        and ``steps``, ``best_step``, ``elapsed_s``.  ``model`` ends holding the best weights.
    """
    from .train import distortion, rate_bpp, save_checkpoint, validate_rd

    out = Path(out_dir)
    dev = images.device
    torch.manual_seed(ft.seed)
    py_rng = random.Random(ft.seed)
    gen = torch.Generator(device=dev).manual_seed(ft.seed)
    encoder_only = ft.part == "encoder"
    trainable = {name: prm.requires_grad for name, prm in model.named_parameters()}  # restored at the end
    was_training = model.training
    if encoder_only:  # the decoder and every BatchNorm statistic stay as they are
        for prm in model.parameters():
            prm.requires_grad_(False)
        for prm in model.encoder.parameters():
            prm.requires_grad_(True)
    params = [prm for prm in model.parameters() if prm.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft.lr, weight_decay=cfg.weight_decay)
    # the whole model's loss and validation with this fine-tune's SSIM weight; the checkpoint keeps ``cfg``
    loss_cfg = cfg if encoder_only or ft.ssim_weight is None else dataclasses.replace(cfg, ssim_weight=ft.ssim_weight)
    crop = ft.crop or cfg.crop  # the checkpoint keeps the run's own crop in ``cfg``

    #: part="encoder": each b's cost is divided by its value at the start on ``val``, so every b
    #: weighs by its relative gain (what a BD-rate counts) rather than b = 1's larger MSE dominating
    start_cost: dict[str, float] = {}

    def validation() -> dict[str, Any]:
        if encoder_only:
            vc = validate_codec(model, val, list(cfg.train_bits), cfg.scale, priors, torch.device(cfg.device),
                                ssim_weight=ft.ssim_weight)
            start_cost.update({k: v for k, v in vc["per_b"].items() if k not in start_cost})
            rel = {k: v / start_cost[k] for k, v in vc["per_b"].items()}
            return {"objective": sum(rel.values()) / len(rel), "psnr": None, "bpp": None, "per_b": vc["per_b"]}
        if ft.recalibrate_bn:  # train mode left each layer the statistics of its last batches, each at one b
            recalibrate_bn(model, images, cfg, batches=ft.recalibrate_bn, batch=ft.batch, rules=ft.rules,
                           part="all", seed=ft.seed + len(history["step"]), crop=crop)
        return validate_rd(model, val, loss_cfg, torch.device(cfg.device))

    history: dict[str, Any] = {"step": [], "objective": [], "psnr": [], "bpp": [], "elapsed": []}
    best: dict[str, Any] = {"objective": math.inf, "state": None, "step": 0}
    average = None
    if ft.ema_power is not None:
        average = WeightAverage(model, power=ft.ema_power)
    elif ft.ema_decay:
        average = WeightAverage(model, decay=ft.ema_decay)
    record = dict(extra or {})
    step = 0

    def save_best(elapsed: float) -> None:
        """Write the model, which holds the best weights when this is called, and the history."""
        record["finetune"] = {**ft.to_dict(), **record.get("finetune", {}), "elapsed_s": round(elapsed, 1),
                              "steps": step, "best_step": best["step"], "best_objective": best["objective"]}
        save_checkpoint(model, out, cfg, record)
        write_text(out / "history.json", json.dumps({**(history_base or {}), "finetune": history}) + "\n")

    def training_mode() -> None:
        """The modes the steps run in (validation switches the model to eval and back to train)."""
        model.train(not encoder_only)
        if ft.freeze_bn:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    training_mode()
    t0, next_val = time.perf_counter(), 0
    while True:
        frac = (time.perf_counter() - t0) / ft.seconds
        if frac >= next_val / ft.validations:
            judged = average.swapped_in() if average else contextlib.nullcontext()
            with judged:  # with an average, the average is what is judged and kept
                vr = validation()
                for k, v in (("step", step), ("objective", vr["objective"]), ("psnr", vr["psnr"]),
                             ("bpp", vr["bpp"]), ("elapsed", time.perf_counter() - t0)):
                    history[k].append(v)
                if encoder_only:
                    history.setdefault("objective_per_b", []).append(vr["per_b"])
                log(f"step {step} t {time.perf_counter() - t0:.0f}s objective {vr['objective']:.5f} "
                    + (f"per b {vr['per_b']}" if encoder_only else f"psnr {vr['psnr']} bpp {vr['bpp']}"))
                if vr["objective"] < best["objective"]:
                    best = {"objective": vr["objective"], "step": step, "state": _state_copy(model)}
                    save_best(time.perf_counter() - t0)
            next_val += 1
            if frac >= 1.0:
                break
            training_mode()
        lr = ft.lr * (ft.final_lr_frac + (1 - ft.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        if frac < ft.warmup:
            lr *= frac / ft.warmup
        for g in opt.param_groups:
            g["lr"] = lr
        x = crop_batch(images, ft.batch, crop, ft.augment, gen)
        b = py_rng.choice(list(cfg.train_bits))
        if encoder_only:
            loss = codec_objective(model, x, b, cfg.scale, priors, ft.ssim_weight) / start_cost[str(b)]
        else:
            res = rd_forward(model, x, b, cfg.scale, ft.rules, ft.quantizer, gen)
            loss = distortion(res["x_hat"], x, loss_cfg) + cfg.rate_weight * rate_bpp(res, b, crop * crop)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if average:
            average.update()
        step += 1
    elapsed = time.perf_counter() - t0
    model.load_state_dict(best["state"])
    for name, prm in model.named_parameters():  # the caller's model as it came, but for its weights
        prm.requires_grad_(trainable[name])
    model.train(was_training)
    history.update(steps=step, best_step=best["step"], elapsed_s=round(elapsed, 1))
    save_best(elapsed)
    return history
