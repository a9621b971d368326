"""Train a lighter decoder for a trained model's frozen encoder (how ``resae-rd-fast`` starts).

A decoder fit gives ``resae-rd``'s encoder a decoder that runs no slower than it
(``labkit.models``: one residual block less at 1/4, a pixel-shuffle head at 1/2); its symbols
and file bytes are ``resae-rd``'s, only the decoder is new.  ``resae-rd-fast-v1`` is exactly
that; the shipped ``resae-rd-fast`` then had its whole model fine-tuned (``labkit.finetune``), and
the profiles replay the decoder fit.  :func:`fit_decoder` trains that decoder:

* every layer the two decoders share starts from the source's weights, the new head by
  ridge regression onto the source decoder's pre-sigmoid output (pixel-unshuffled);
* the encoder is frozen; the decoder sees what the codec gives it: the source's scale
  rule (or, with ``rules``, one of them drawn per sample, as the encoder's scale search
  chooses per image), values clipped at the scale, hard quantize/dequantize at a ``b``
  drawn from ``bits`` per batch;
* loss ``MSE + ssim_weight * (1 - SSIM)`` (the source's distortion; the rate is fixed by the
  frozen encoder); the shared layers' BatchNorm keeps its statistics (eval mode);
* stage 1 (``budget_s``): the first ``phase1`` of it trains the head alone, then every
  decoder layer, cosine-decayed; stage 2 (``stage2_s``, optional): a warm restart of every
  layer at ``lr_stage2``, cosine-decayed.  Schedules follow the wall clock (or the step
  count when ``max_steps`` is set), batches and ``b`` come from ``(seed, step)``, so a
  resumed run continues exactly; ``last.pt`` is written every ``checkpoint_every_s``;
* ``warm_start``: ``model`` already holds a light decoder fitted to this encoder (e.g. the
  ``resae-rd-fast-v1``), so there is no transfer, no ridge init and no head-only phase:
  set ``budget_s=0`` and train every layer for ``stage2_s`` (a continuation).

``tools/exp_light_decoder.py`` (the experiment that chose the architecture) calls this.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint, inference, quant
from .atomic import atomic_path, write_text
from .data import TileDataset
from .distortion import ssim as ssim_index
from .train import validate
from .trainconfig import strict_from_dict

__all__ = ["DecoderFitConfig", "fit_decoder", "transfer", "HEAD_MODULES"]

#: The new head at the end of a ``head="shuffle"`` decoder: Conv2d, PixelShuffle, Sigmoid.
HEAD_MODULES = 3


@dataclass
class DecoderFitConfig:
    """Everything that defines a decoder fit (JSON-able; stored as ``config.json["decoder_fit"]``)."""

    source: str = "resae-rd"
    budget_s: float = 1300.0
    stage2_s: float = 0.0
    max_steps: int | None = None
    batch: int = 8
    crop: int = 128
    bits: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    ssim_weight: float = 0.05
    seed: int = 0
    phase1: float = 0.2
    lr_new1: float = 1e-3
    lr_reused: float = 1e-4
    lr_new2: float = 3e-4
    lr_stage2: float = 4e-5
    final_lr_frac: float = 0.1
    grad_clip: float = 1.0
    ridge_batches: int = 6
    ridge_lambda: float = 1e-2
    checkpoint_every_s: float = 180.0
    val_b: int = 3
    rules: list[str] | None = None
    warm_start: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderFitConfig:
        """Inverse of ``to_dict``; unknown keys are an error (typos should not pass)."""
        return strict_from_dict(cls, d)


def transfer(model: nn.Module, source: nn.Module) -> list[str]:
    """Copy ``source``'s encoder and every decoder layer the two share into ``model``; return the new keys.

    The decoders are matched module by module in order, skipping source residual blocks the
    new decoder does not have; what is left at the end of ``model.decoder`` (the new head)
    keeps its initialisation.
    """
    model.encoder.load_state_dict(source.encoder.state_dict())
    src = list(source.decoder.children())
    dst = list(model.decoder.children())[:-HEAD_MODULES]
    i = 0
    for mod in dst:  # in order; a source layer with no counterpart (an extra ResBlock) is skipped
        while i < len(src) and type(src[i]) is not type(mod):
            i += 1
        if i >= len(src):
            raise ValueError("the source decoder has no layer for every layer of the new one")
        mod.load_state_dict(src[i].state_dict())
        i += 1
    n = len(dst)
    return [f"decoder.{n + k}" for k in range(HEAD_MODULES)]


def _latents(encoder: nn.Module, x: Tensor, b: int, rule: str | list[str]) -> Tensor:
    """Hard-quantized latent of ``x`` as the codec makes it: scale by ``rule``, clip, quantize/dequantize.

    ``rule`` is one scale rule for the batch or one per sample (``len(rule) == len(x)``).
    """
    with torch.no_grad():
        y = encoder(x)
        if isinstance(rule, str):
            ymax = quant.latent_scale(y, rule)
        else:
            if len(rule) != y.shape[0]:
                raise ValueError(f"{len(rule)} scale rules for a batch of {y.shape[0]}")
            ymax = torch.stack([quant.latent_scale(y[i:i + 1], r)[0] for i, r in enumerate(rule)])
        ymax = quant.to_float32(ymax)
        y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1).to(y.device))
        return quant.quantize_dequantize(y, b, ymax).contiguous()


def _batch_at(ds: TileDataset, step: int, cfg: DecoderFitConfig) -> tuple[Tensor, int]:
    """The batch and b of ``step`` (from ``(seed, step)`` alone, so resuming continues exactly)."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = rng.choice(len(ds), size=min(cfg.batch, len(ds)), replace=False)
    b = int(rng.choice(cfg.bits))
    ds.set_epoch(step)
    return ds.batch(idx), b


def _rules_at(step: int, n: int, rule: str, cfg: DecoderFitConfig) -> str | list[str]:
    """The scale rule of ``step``'s batch: ``rule`` (the source's), or with ``cfg.rules`` one per
    sample drawn from ``(seed, step)`` on its own stream (so the batches equal a fit without it)."""
    if not cfg.rules:
        return rule
    rng = np.random.default_rng([cfg.seed, step, 1])
    return [cfg.rules[i] for i in rng.integers(0, len(cfg.rules), size=n)]


def _ridge_init(model: nn.Module, source: nn.Module, enc: nn.Module, ds: TileDataset, rule: str,
                cfg: DecoderFitConfig, device: torch.device | str = "cpu") -> None:
    """Least-squares init of the head conv: half-resolution features -> the source decoder's
    pre-sigmoid output, pixel-unshuffled (a distillation start; training then uses the real loss)."""
    conv = model.decoder[-HEAD_MODULES]
    body = model.decoder[:-HEAD_MODULES]
    teacher = source.decoder[:-1]  # without the final sigmoid
    cin, cout = conv.in_channels, conv.out_channels
    n_in = cin * 9 + 1
    xtx = torch.zeros(n_in, n_in, dtype=torch.float64, device=device)
    xty = torch.zeros(n_in, cout, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for i in range(cfg.ridge_batches):
            x, b = _batch_at(ds, -1 - i + 10**9, cfg)  # batches outside the training stream
            yq = _latents(enc, x.to(device), b, rule)
            cols = F.unfold(body(yq), 3, padding=1).transpose(1, 2).reshape(-1, cin * 9).double()
            cols = torch.cat([cols, cols.new_ones(cols.shape[0], 1)], 1)
            t = F.pixel_unshuffle(teacher(yq), 2).permute(0, 2, 3, 1).reshape(-1, cout).double()
            xtx += cols.T @ cols
            xty += cols.T @ t
        reg = cfg.ridge_lambda * xtx[-1, -1] * torch.eye(n_in, dtype=torch.float64, device=device)
        reg[-1, -1] = 0
        sol = torch.linalg.solve(xtx + reg, xty)
        conv.weight.copy_(sol[:-1].T.reshape(cout, cin, 3, 3).float())
        conv.bias.copy_(sol[-1].float())


def _lrs_at(cfg: DecoderFitConfig, elapsed: float) -> tuple[float, float, int]:
    """(lr of the shared layers, lr of the head, phase 1/2/3) at ``elapsed`` seconds (or steps)."""
    def cosine(p: float) -> float:
        return cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    if elapsed >= cfg.budget_s and cfg.stage2_s > 0:
        c = cosine((elapsed - cfg.budget_s) / cfg.stage2_s)
        return cfg.lr_stage2 * c, 3 * cfg.lr_stage2 * c, 3
    frac = elapsed / cfg.budget_s
    if frac < cfg.phase1:
        return 0.0, cfg.lr_new1, 1
    c = cosine((frac - cfg.phase1) / (1.0 - cfg.phase1))
    return cfg.lr_reused * c, cfg.lr_new2 * c, 2


def fit_decoder(model: nn.Module, source: nn.Module, train_images: np.ndarray, cfg: DecoderFitConfig,
                out_dir: str | os.PathLike[str] | None = None, val_images: np.ndarray | None = None,
                log: Callable[[str], None] | None = None, resume: bool = False,
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train ``model``'s decoder for ``source``'s frozen encoder, in place; return the history.

    Parameters
    ----------
    model : nn.Module
        A ``head="shuffle"`` model (e.g. ``build_model("resae-rd-fast")``) whose encoder has
        ``source``'s architecture; its encoder and shared decoder layers are overwritten.
    source : nn.Module
        The trained model (``resae-rd``); left untouched.  Its ``scale_rule`` is the codec's.
    train_images : ndarray
        uint8 ``[N, H, W, 3]``; batches are random ``cfg.crop`` crops.
    cfg : DecoderFitConfig
        The recipe.
    out_dir : path, optional
        ``model.pt``, ``config.json`` (with ``decoder_fit``), ``history.json``, and
        ``last.pt`` for resuming.
    val_images : ndarray, optional
        Validation images: the final PSNR at ``cfg.val_b`` is stored as ``final_val_psnr``.
    log : callable, optional
        Receives progress lines (default ``print``).
    resume : bool
        Continue the fit saved in ``out_dir/last.pt`` (same config; an interrupted run goes on
        where it stopped).  Without it an existing ``last.pt`` is replaced, as ``labkit.train.fit``
        does: the source may have changed since.
    device : torch.device or str
        Where to train (``"cuda"`` on a GPU); ``model`` is returned on the CPU either way.

    Returns
    -------
    dict
        ``step``, ``elapsed``, ``train_loss``, ``phase``, ``lr`` (one entry per 50 steps).
    """
    say = log or (lambda s: print(s, flush=True))
    for r in cfg.rules or ():
        quant.check_scale_rule(r)
    if cfg.warm_start and cfg.budget_s != 0:
        raise ValueError("warm_start continues a fitted decoder: set budget_s=0 and give the time as stage2_s")
    if cfg.warm_start and cfg.max_steps is None and cfg.stage2_s <= 0:
        raise ValueError("warm_start needs stage2_s > 0 (or max_steps)")
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rule = getattr(source, "scale_rule", "max")
    source = copy.deepcopy(source).eval().to(dev)
    enc = inference.optimize_for_inference(source).encoder  # frozen; same function, faster
    model.to(dev)
    if cfg.warm_start:
        for (k, a), b_ in zip(model.encoder.state_dict().items(), source.encoder.state_dict().values()):
            if a.shape != b_.shape or not torch.equal(a, b_.to(a.device)):
                raise ValueError(f"warm_start: the model's encoder differs from the source's at {k!r}; "
                                 "a warm start continues a decoder fitted to this very encoder")
    else:
        transfer(model, source)
    model.scale_rule = rule
    model.eval()
    dec = model.decoder
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    new_params = list(dec[-HEAD_MODULES:].parameters())
    new_ids = {id(p) for p in new_params}
    reused = [p for p in dec.parameters() if id(p) not in new_ids]
    opt = torch.optim.Adam([{"params": reused, "lr": 0.0}, {"params": new_params, "lr": cfg.lr_new1}])
    ds = TileDataset(train_images, crop=cfg.crop, augment=True, seed=cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / "last.pt" if out is not None else None
    state: dict[str, Any] = {"step": 0, "elapsed": 0.0,
                             "history": {k: [] for k in ("step", "elapsed", "train_loss", "phase", "lr")}}
    if resume and ckpt is not None and ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        if st.get("config") != cfg.to_dict():
            raise ValueError(f"{ckpt} was written with another DecoderFitConfig; use another out_dir "
                             "or delete last.pt to start over")
        dec.load_state_dict(st["decoder"])  # onto the decoder's device
        opt.load_state_dict(st["optimizer"])
        state = {k: st[k] for k in ("step", "elapsed", "history")}
        say(f"resumed the decoder fit at step {state['step']}, {state['elapsed']:.0f} s")
    elif cfg.warm_start:
        say(f"decoder fit from {cfg.source}: warm start from the given decoder; {cfg.stage2_s:g} s, batch {cfg.batch}"
            + (f", scale rules {cfg.rules} per sample" if cfg.rules else ""))
    else:
        t0 = time.perf_counter()
        _ridge_init(model, source, enc, ds, rule, cfg, dev)
        say(f"decoder fit from {cfg.source}: ridge init of the head in {time.perf_counter() - t0:.1f} s; "
            f"budget {cfg.budget_s:g} s + {cfg.stage2_s:g} s, batch {cfg.batch}")

    def save_last() -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(ckpt) as tmp:
            torch.save({"decoder": dec.state_dict(), "optimizer": opt.state_dict(),
                        "config": cfg.to_dict(), **state}, tmp)

    by_steps = cfg.max_steps is not None
    total = float(cfg.max_steps) if by_steps else cfg.budget_s + cfg.stage2_s
    scale = (cfg.budget_s + cfg.stage2_s) / total if by_steps else 1.0  # steps -> schedule seconds
    t_start = time.perf_counter() - state["elapsed"]
    last_ckpt, run_loss, run_n = time.perf_counter(), 0.0, 0
    h = state["history"]
    while True:
        elapsed = time.perf_counter() - t_start
        clock = state["step"] * scale if by_steps else elapsed
        if (state["step"] if by_steps else elapsed) >= total:
            break
        lr_r, lr_n, phase = _lrs_at(cfg, clock)
        for p in reused:
            p.requires_grad_(phase >= 2)
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_r, lr_n
        x, b = _batch_at(ds, state["step"], cfg)
        x = x.to(dev, non_blocking=True)
        x_hat = dec(_latents(enc, x, b, _rules_at(state["step"], x.shape[0], rule, cfg)))
        loss = F.mse_loss(x_hat, x) + cfg.ssim_weight * (1.0 - ssim_index(x_hat, x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in dec.parameters() if p.grad is not None], cfg.grad_clip)
        opt.step()
        state["step"] += 1
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        if state["step"] % 50 == 0 or (by_steps and state["step"] >= total):
            for k, v in (("step", state["step"]), ("elapsed", time.perf_counter() - t_start),
                         ("train_loss", run_loss / run_n), ("phase", phase), ("lr", lr_n)):
                h[k].append(v)
            say(f"step {state['step']:5d}  {h['elapsed'][-1]:6.0f} s  phase {phase}  "
                f"loss {h['train_loss'][-1]:.5f}  lr {lr_r:.1e}/{lr_n:.1e}")
            run_loss, run_n = 0.0, 0
        if time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
            state["elapsed"] = time.perf_counter() - t_start
            save_last()
            last_ckpt = time.perf_counter()
    state["elapsed"] = time.perf_counter() - t_start
    save_last()
    final = validate(model, val_images, cfg.val_b, dev, 16, rule) if val_images is not None and len(val_images) else None
    model.cpu()
    where = (f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
             f"cpu ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})")
    if out is not None:
        checkpoint.save(model, out, None, {
            "decoder_fit": cfg.to_dict(), "scale": rule, "noise": True,
            "train_seconds": round(state["elapsed"], 3), "steps": state["step"],
            "device": where,
            "python": platform.python_version(),
            "final_val_psnr": final and final["psnr"], "final_val_mse": final and final["mse"]})
        write_text(out / "history.json", json.dumps(h, indent=1) + "\n")
    say(f"done: {state['step']} steps in {state['elapsed']:.0f} s"
        + ("" if final is None else f", val psnr(b={cfg.val_b}) {final['psnr']:.2f} dB"))
    return h
