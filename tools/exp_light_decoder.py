"""A lighter resae-rd decoder, fine-tuned on one CPU thread with the encoder frozen (issue 10).

    python tools/exp_light_decoder.py time                          # decoder/encoder time + MACs per pixel
    python tools/exp_light_decoder.py train tail-1block --budget-s 1200   # resumable; rerun to continue
    python tools/exp_light_decoder.py eval [--variants tail-1block ...]   # writes the JSON below
    python tools/exp_light_decoder.py train tail-1block --budget-s 1300 --stage2-s 1800 --runs DIR
    python tools/exp_light_decoder.py export --runs DIR --out labkit/weights/resae-rd-fast-v1

The shipped ``resae-rd-fast`` is ``tail-1block`` trained 1300 s + a second stage of 1800 s
(``--stage2-s``: every decoder layer, warm restart at LR_STAGE2, cosine to 10 %), written as
labkit weights by ``export``.  ``labkit.decoder_fit`` is the package's port of ``train``
(same batches, init and schedule; its loss at step 50 equals this tool's to the printed
5 digits) and is what ``labkit.workflow`` runs to retrain ``resae-rd-fast`` in a profile.
``--weights`` / ``--data-dir`` train for another ``resae-rd`` (e.g. the course128 comparison
weights) on another folder.

Issue 10 asks for a decoder network no slower than the encoder per pixel.  The shipped
``resae-rd`` decoder takes ~1.3x the encoder's time at 768x512 on one thread, most of it in
the 32-channel full-resolution upsampling layer and in the two residual blocks at 1/4.

Variants (every kept module keeps its shipped weights; ``model.decoder`` indices):

* ``tail``: modules [0..10] (through the 1/2-resolution upsampling + BN + ReLU), then a new
  ``Conv2d(32, 12, 3) + PixelShuffle(2) + Sigmoid``: the last layer runs at half resolution;
* ``tail-1block``: ``tail`` without the second residual block at 1/4 (module [7]);
* ``tail-1block8``: ``tail`` without the second residual block at 1/8 (module [2]) instead;
* ``full``: the CONTROL: the shipped decoder unchanged (all modules, shipped weights, no new
  layer), fine-tuned with the same recipe and budget, so the recipe's own effect can be told
  from the architecture's.

``time`` measures, as ``benchmarks/bench_codec.py``'s ``network_split`` does (768x512 mosaic
of the embedded test tiles, ``labkit.inference.optimize_for_inference``, one thread, best of
5), each variant's decoder time per pixel over the encoder's, and the multiply-adds per pixel.

``train VARIANT`` fine-tunes only the decoder: frozen shipped encoder in eval mode, the
model's scale rule (p99.9) with values clipped at the scale, hard quantize/dequantize at a
b drawn from 1..5 per batch (what the decoder sees in the codec), loss MSE + 0.05 (1 - SSIM)
(the resae-rd recipe without its rate term), random 128x128 crops (the project's
``TileDataset`` augmentation) of the default training pool, batch 8.  The new layer is
initialised by ridge regression onto the shipped decoder's pre-sigmoid output (pixel-
unshuffled), then Adam: the first 20 % of the wall-clock budget trains the new layer alone
at lr 1e-3, the rest all decoder layers (reused 1e-4, new 3e-4, cosine-decayed to 10 % by
the end of the budget).  ``full`` has no new layer, hence no ridge init and no phase 1: all
decoder layers train from step 0 at 1e-4, cosine-decayed to 10 % by the end of the budget.
The reused layers' BatchNorm stays in eval mode (frozen statistics).
Batches, b and augmentation are drawn from ``(seed, step)``, so a resumed run continues
exactly; checkpoints go to ``/work/runs/light-decoder/VARIANT/last.pt`` every 3 minutes.

``eval`` codes the embedded test tiles and scikit-image's astronaut, camera, chelsea, coffee
(full size) at b = 1..5 with the shipped encoder through the real codec path
(``Codec.analyse``, colour map off: the symbols and bytes are the shipped model's for every
decoder), decodes them with the shipped decoder and each trained variant
(``Codec.synthesise``: same tiling, padding and crop), and reports PSNR, SSIM and mean CIE76
dE, without and with the per-image colour map (``labkit.colour.fit`` + ``apply``, applied
always, ``*_cm``), and with the codec's real colour-map choice (``*_ch``: ``labkit.colour.choose``
at ``spec.colour_map_rate_weight(b)``, global map, grid or none, its bytes added to the no-map
file in ``bpp_ch``; for the shipped decoder the real ``Codec.compress`` file and image), and
per-b mean differences against the shipped decoder and (``diff_vs_control``) against ``full``.
``eval --smoke`` is a few-second check (2 tiles, 1 photo, b = 1) that writes no JSON.  It re-times the trained
variants and writes ``benchmarks/results/experiments/light_decoder.json``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)

from labkit import colour, decoder_fit, inference, metrics, spec  # noqa: E402
from labkit.decoder_fit import DecoderFitConfig  # noqa: E402
from labkit.codec import Codec, load_checkpoint_file, load_pretrained  # noqa: E402
from labkit.data import TileDataset, default_dataset, default_train_pool, training_splits  # noqa: E402
from labkit.photos import delta_e76, photo  # noqa: E402
from labkit.profiles import PHOTOS  # noqa: E402
from labkit.speed import best_time, cpu_name  # noqa: E402
from labkit.train import ssim as ssim_loss  # noqa: E402

from bench_codec import _images, multiply_adds  # noqa: E402

MODEL = "resae-rd"
RUNS = Path("/work/runs/light-decoder")
OUT_JSON = ROOT / "benchmarks" / "results" / "experiments" / "light_decoder.json"
BITS = (1, 2, 3, 4, 5)
VARIANTS = ("tail", "tail-1block", "tail-1block8", "full")
CONTROL = "full"        # the shipped decoder architecture, fine-tuned with the same recipe
SEED = 0
BATCH = 8
CROP = 128
SSIM_WEIGHT = 0.05
PHASE1 = 0.2            # fraction of the budget that trains the new layer alone
LR_NEW1, LR_REUSED, LR_NEW2, LR_FINAL_FRAC = 1e-3, 1e-4, 3e-4, 0.1
GRAD_CLIP = 1.0
CKPT_EVERY_S = 180.0
LR_STAGE2 = 4e-5        # second stage (--stage2-s): reused layers; new ones 3x
REPEATS = 5


# --------------------------------------------------------------------------- variants
def kept_indices(variant: str) -> list[int]:
    """Indices of ``model.decoder`` kept (with shipped weights) before the new tail."""
    base = list(range(11))
    if variant == "tail":
        return base
    if variant == "tail-1block":
        return [i for i in base if i != 7]
    if variant == "tail-1block8":
        return [i for i in base if i != 2]
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def new_tail() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(32, 12, 3, padding=1), nn.PixelShuffle(2), nn.Sigmoid())


def build(variant: str, shipped: nn.Module | None = None) -> nn.Module:
    """The shipped model (eval) with its decoder replaced by ``variant``'s; ``shipped`` is not changed."""
    model = copy.deepcopy(shipped if shipped is not None else load_pretrained(MODEL)[0])
    model.scale_rule = getattr(shipped if shipped is not None else model, "scale_rule", "max")
    if variant in ("shipped", CONTROL):
        return model.eval()
    mods = list(model.decoder.children())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        tail = new_tail()
    model.decoder = nn.Sequential(*[mods[i] for i in kept_indices(variant)], *tail)
    return model.eval()


def n_new_modules() -> int:
    return len(new_tail())


def load_trained(variant: str, shipped: nn.Module) -> tuple[nn.Module, dict]:
    st = torch.load(RUNS / variant / "last.pt", map_location="cpu", weights_only=False)
    model = build(variant, shipped)
    model.decoder.load_state_dict(st["decoder"])
    return model.eval(), st


# --------------------------------------------------------------------------- timing
def time_models(models: dict[str, nn.Module], repeats: int = REPEATS) -> dict:
    """Decoder/encoder ns per pixel and MACs per pixel at 768x512, one thread, optimised, best of N."""
    h, w = 512, 768
    x = torch.from_numpy(np.array(_images()[f"{w}x{h}"], dtype=np.float32)).permute(2, 0, 1)[None].div(255.0)
    px = h * w
    fast = {k: inference.optimize_for_inference(m) for k, m in models.items()}
    out = {}
    with torch.inference_mode():
        y = fast["shipped"].encode(x).contiguous(memory_format=torch.channels_last)
        enc_macs = multiply_adds(fast["shipped"].encoder, x)
        # interleave the measurements so slow phases of the machine hit every model alike
        best = {k: [math.inf, math.inf] for k in fast}
        for k, f in fast.items():
            f.encode(x), f.decode(y)  # warm-up
        for _ in range(repeats):
            for k, f in fast.items():
                best[k][0] = min(best[k][0], best_time(lambda: f.encode(x), 1, warmup=False))
                best[k][1] = min(best[k][1], best_time(lambda: f.decode(y), 1, warmup=False))
        enc_best = min(v[0] for v in best.values())  # every model has the same encoder
        for k, f in fast.items():
            dec_macs = multiply_adds(f.decoder, y)
            out[k] = {"decoder_ms": best[k][1] * 1e3, "encoder_ms": best[k][0] * 1e3,
                      "encoder_ms_best_all": enc_best * 1e3,
                      "decoder_ns_per_px": best[k][1] / px * 1e9, "encoder_ns_per_px": enc_best / px * 1e9,
                      "decoder_over_encoder": best[k][1] / enc_best,
                      "decoder_over_encoder_same_model": best[k][1] / best[k][0],
                      "decoder_macs_per_px": dec_macs / px, "encoder_macs_per_px": enc_macs / px,
                      "decoder_over_encoder_macs": dec_macs / enc_macs,
                      "decoder_params": sum(p.numel() for p in models[k].decoder.parameters())}
    return {"size": f"{w}x{h}", "repeats": repeats, "threads": torch.get_num_threads(), "cpu": cpu_name(),
            "models": out}


def cmd_time(args: argparse.Namespace) -> None:
    shipped = load_pretrained(MODEL)[0]
    models = {"shipped": shipped, **{v: build(v, shipped) for v in args.variants}}
    res = time_models(models, args.repeats)
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "timing.json").write_text(json.dumps(res, indent=1))
    for k, r in res["models"].items():
        print(f"{k:14s} dec {r['decoder_ms']:6.1f} ms  enc {r['encoder_ms_best_all']:6.1f} ms  "
              f"ratio {r['decoder_over_encoder']:.3f}  MACs/px dec {r['decoder_macs_per_px']:.0f} "
              f"enc {r['encoder_macs_per_px']:.0f}  ({res['cpu']})")


# --------------------------------------------------------------------------- training
# The helpers are the package's (labkit.decoder_fit ports this tool's recipe); the tool keeps its
# own loop for the variants the package does not make (tail, tail-1block8, the control).
_RECIPE = DecoderFitConfig(batch=BATCH, crop=CROP, bits=list(BITS), ssim_weight=SSIM_WEIGHT, seed=SEED)


def latents(encoder: nn.Module, x: torch.Tensor, b: int, rule: str) -> torch.Tensor:
    """Hard-quantized latent of ``x`` as the codec makes it (``labkit.decoder_fit._latents``)."""
    return decoder_fit._latents(encoder, x, b, rule)


def batch_at(ds: TileDataset, step: int) -> tuple[torch.Tensor, int]:
    """The batch and b of ``step``, from ``(SEED, step)`` alone (``labkit.decoder_fit._batch_at``)."""
    return decoder_fit._batch_at(ds, step, _RECIPE)


def loss_fn(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x_hat, x) + SSIM_WEIGHT * (1.0 - ssim_loss(x_hat, x))


def ridge_init(model: nn.Module, shipped: nn.Module, enc: nn.Module, ds: TileDataset, rule: str) -> dict:
    """Least-squares init of the new head (``labkit.decoder_fit._ridge_init``)."""
    decoder_fit._ridge_init(model, shipped, enc, ds, rule, _RECIPE)
    return {"batches": _RECIPE.ridge_batches, "ridge_lambda_per_sample": _RECIPE.ridge_lambda}


def lrs_at(frac: float, variant: str = "") -> tuple[float, float, int]:
    """(lr reused, lr new, phase) at budget fraction ``frac``.

    The control (``full``) has no new layer: phase 2 from the start, cosine over the whole budget."""
    if variant == CONTROL:
        c = LR_FINAL_FRAC + (1 - LR_FINAL_FRAC) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return LR_REUSED * c, 0.0, 2
    if frac < PHASE1:
        return 0.0, LR_NEW1, 1
    p = min(1.0, (frac - PHASE1) / (1.0 - PHASE1))
    c = LR_FINAL_FRAC + (1 - LR_FINAL_FRAC) * 0.5 * (1 + math.cos(math.pi * p))
    return LR_REUSED * c, LR_NEW2 * c, 2


def stage2_lrs_at(frac: float) -> tuple[float, float, int]:
    """(lr reused, lr new, phase 3) at fraction ``frac`` of the second stage (``--stage2-s``):
    a warm restart of every decoder layer at LR_STAGE2 (new layers 3x), cosine-decayed to 10 %."""
    c = LR_FINAL_FRAC + (1 - LR_FINAL_FRAC) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return LR_STAGE2 * c, 3 * LR_STAGE2 * c, 3


def cmd_train(args: argparse.Namespace) -> None:
    variant, budget, stage2 = args.variant, float(args.budget_s), float(args.stage2_s)
    out = Path(args.runs) / variant
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "train.log", "a")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    shipped = load_checkpoint_file(args.weights)[0] if args.weights else load_pretrained(MODEL)[0]
    rule = shipped.scale_rule
    enc = inference.optimize_for_inference(shipped).encoder  # frozen; same function, faster
    model = build(variant, shipped)
    dec = model.decoder
    dec.eval()  # reused BatchNorm keeps its statistics; the new layers have none
    if variant == CONTROL:  # no new layer: all (reused) decoder layers train from the start
        new_params = []
        reused_params = list(dec.parameters())
        opt = torch.optim.Adam([{"params": reused_params, "lr": LR_REUSED}])
    else:
        k_new = n_new_modules()
        new_params = list(dec[-k_new:].parameters())
        new_ids = {id(p) for p in new_params}
        reused_params = [p for p in dec.parameters() if id(p) not in new_ids]
        opt = torch.optim.Adam([{"params": reused_params, "lr": 0.0}, {"params": new_params, "lr": LR_NEW1}])
    pool = default_train_pool() if args.data_dir is None else training_splits(args.data_dir, SEED)["train"]
    ds = TileDataset(pool, crop=CROP, augment=True, seed=SEED)
    ckpt = out / "last.pt"
    state = {"step": 0, "elapsed": 0.0, "history": [], "init": None, "budget_s": budget, "stage2_s": stage2,
             "weights": str(args.weights or "shipped"), "data_dir": args.data_dir}
    if ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        dec.load_state_dict(st["decoder"])
        opt.load_state_dict(st["optimizer"])
        state = {k: st[k] for k in ("step", "elapsed", "history", "init")}
        state["weights"], state["data_dir"] = st.get("weights", "shipped"), st.get("data_dir")
        state["budget_s"], state["stage2_s"] = budget, stage2
        log(f"resumed {variant} at step {state['step']}, {state['elapsed']:.0f} s of {budget:.0f} s")
    elif variant == CONTROL:
        state["init"] = {"shipped_weights": True, "ridge": False, "phase1": False}
        log(f"{variant}: control, shipped decoder weights, no phase 1; budget {budget:.0f} s, batch {BATCH}")
    else:
        t0 = time.perf_counter()
        state["init"] = ridge_init(model, shipped, enc, ds, rule)
        state["init"]["seconds"] = time.perf_counter() - t0
        log(f"{variant}: ridge init in {state['init']['seconds']:.1f} s; budget {budget:.0f} s, batch {BATCH}")

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"variant": variant, "decoder": dec.state_dict(), "optimizer": opt.state_dict(),
                    "config": train_config(variant), **state}, tmp)
        os.replace(tmp, ckpt)

    t_start = time.perf_counter() - state["elapsed"]
    last_ckpt, run_loss, run_n = time.perf_counter(), 0.0, 0
    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= budget + stage2:
            break
        if elapsed < budget:
            lr_r, lr_n, phase = lrs_at(elapsed / budget, variant)
        else:
            lr_r, lr_n, phase = stage2_lrs_at((elapsed - budget) / stage2)
        for p in reused_params:
            p.requires_grad_(phase >= 2)
        opt.param_groups[0]["lr"] = lr_r
        if len(opt.param_groups) > 1:
            opt.param_groups[1]["lr"] = lr_n
        x, b = batch_at(ds, state["step"])
        yq = latents(enc, x, b, rule)
        loss = loss_fn(dec(yq), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in dec.parameters() if p.grad is not None], GRAD_CLIP)
        opt.step()
        state["step"] += 1
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        if state["step"] % 50 == 0:
            state["history"].append({"step": state["step"], "elapsed": time.perf_counter() - t_start,
                                     "loss": run_loss / run_n, "phase": phase, "lr_new": lr_n})
            log(f"step {state['step']:5d}  {time.perf_counter() - t_start:6.0f} s  phase {phase}  "
                f"loss {run_loss / run_n:.5f}  lr {lr_r:.1e}/{lr_n:.1e}")
            run_loss, run_n = 0.0, 0
        if time.perf_counter() - last_ckpt >= CKPT_EVERY_S:
            state["elapsed"] = time.perf_counter() - t_start
            save()
            last_ckpt = time.perf_counter()
    state["elapsed"] = time.perf_counter() - t_start
    state["done"] = True
    save()
    log(f"done {variant}: {state['step']} steps in {state['elapsed']:.0f} s")


def train_config(variant: str = "") -> dict:
    if variant == CONTROL:
        return {"batch": BATCH, "crop": CROP, "bits": list(BITS), "loss": f"mse + {SSIM_WEIGHT} * (1 - SSIM)",
                "seed": SEED, "data": "labkit.data.default_train_pool(), TileDataset(augment=True) crops",
                "latents": "frozen shipped encoder (optimised copy), scale rule of the checkpoint, clip, "
                           "hard quantize_dequantize at b drawn uniformly per batch",
                "init": "shipped decoder weights, architecture unchanged (control: no new layer, no ridge init)",
                "optimizer": "Adam", "phase1_fraction": 0.0, "lr_reused_phase2": LR_REUSED,
                "phase2_schedule": f"all decoder layers from step 0, cosine to {LR_FINAL_FRAC} of the lr "
                                   "at the end of the budget",
                "batchnorm": "eval mode (frozen statistics)", "grad_clip": GRAD_CLIP, "threads": 1}
    return {"batch": BATCH, "crop": CROP, "bits": list(BITS), "loss": f"mse + {SSIM_WEIGHT} * (1 - SSIM)",
            "seed": SEED, "data": "labkit.data.default_train_pool(), TileDataset(augment=True) crops",
            "latents": "frozen shipped encoder (optimised copy), scale rule of the checkpoint, clip, "
                       "hard quantize_dequantize at b drawn uniformly per batch",
            "init": "ridge regression of the new conv onto the shipped decoder's pre-sigmoid output",
            "optimizer": "Adam", "phase1_fraction": PHASE1, "lr_new_phase1": LR_NEW1,
            "lr_reused_phase2": LR_REUSED, "lr_new_phase2": LR_NEW2,
            "phase2_schedule": f"cosine to {LR_FINAL_FRAC} of the phase-2 lr at the end of the budget",
            "stage2": f"(--stage2-s S) then every decoder layer for S more seconds, warm restart at lr "
                      f"{LR_STAGE2} (new layers {3 * LR_STAGE2:g}), cosine to {LR_FINAL_FRAC} of it",
            "batchnorm": "eval mode (frozen statistics)", "grad_clip": GRAD_CLIP, "threads": 1}


# --------------------------------------------------------------------------- evaluation
def _map_rate_weight(b: int) -> float:
    """The codec's rate weight for deciding whether a colour map pays (per-b where the spec has it)."""
    if hasattr(spec, "colour_map_rate_weight"):
        return float(spec.colour_map_rate_weight(b))
    return float(spec.COLOUR_MAP_RATE_WEIGHT)


def _metrics(ref: np.ndarray, rec: np.ndarray, b: int) -> dict:
    code = colour.fit(rec, ref)
    cm = colour.apply(rec, code)
    without, with_map = colour.squared_errors(rec, ref, code)
    return {"psnr": metrics.psnr(ref, rec), "ssim": metrics.ssim(ref, rec), "delta_e": delta_e76(ref, rec),
            "psnr_cm": metrics.psnr(ref, cm), "ssim_cm": metrics.ssim(ref, cm), "delta_e_cm": delta_e76(ref, cm),
            "map_pays": bool(colour.pays(without, with_map, ref.shape[0] * ref.shape[1], _map_rate_weight(b)))}


def _chosen(ref: np.ndarray, rec: np.ndarray, b: int, nomap_bytes: int) -> tuple[dict, np.ndarray, int]:
    """The codec's real colour-map choice for ``rec``: metrics after it, its bytes and the file's bpp."""
    code = colour.choose(rec, ref, spec.colour_map_rate_weight(b))
    out = rec if code is None else colour.apply(rec, code)
    nbytes = nomap_bytes + (0 if code is None else len(code))
    return ({"psnr_ch": metrics.psnr(ref, out), "ssim_ch": metrics.ssim(ref, out), "delta_e_ch": delta_e76(ref, out),
             "bpp_ch": spec.bits_per_pixel(nbytes, ref.shape[0], ref.shape[1]),
             "map_bytes": 0 if code is None else len(code), "map_sent": code is not None,
             "map_grid": code is not None and len(code) != colour.MAP_BYTES}, out, nbytes)


CH_KEYS = ("psnr_ch", "ssim_ch", "delta_e_ch", "bpp_ch", "map_bytes")


def evaluate(models: dict[str, nn.Module], images: dict[str, list[np.ndarray]], bits=BITS) -> dict:
    """Per set, per b, per decoder: mean metrics over images (same shipped symbols for every decoder).

    ``*_ch`` columns: after the codec's real colour-map choice (``labkit.colour.choose`` at
    ``spec.colour_map_rate_weight(b)``); ``bpp_ch`` = no-map ``.lkc`` bytes + the chosen map's bytes.
    For the shipped decoder they are the real codec's (``Codec.from_pretrained(MODEL, b).compress``),
    checked against the same computation done here."""
    keys = ("psnr", "ssim", "delta_e", "psnr_cm", "ssim_cm", "delta_e_cm") + CH_KEYS
    res: dict = {}
    for b in bits:
        codecs = {k: Codec(m, b, "neighbor", model_name=MODEL, colour_map=False) for k, m in models.items()}
        enc = codecs["shipped"]
        real = Codec.from_pretrained(MODEL, b=b)
        assert real.colour_map and real.context == enc.context and real.scale == enc.scale
        for set_name, imgs in images.items():
            rows = {k: [] for k in models}
            bpp, agree = [], []
            for img in imgs:
                symbols, ymax, size = enc.analyse(img)
                nomap = len(enc.encode(img))
                bpp.append(nomap * 8 / (img.shape[0] * img.shape[1]))
                for k, c in codecs.items():
                    rec = c.synthesise(symbols, ymax, size)
                    row = _metrics(img, rec, b)
                    ch, out, nbytes = _chosen(img, rec, b, nomap)
                    if k == "shipped":  # the real codec's file and reconstruction
                        r = real.compress(img)
                        agree.append(bool(len(r.data) == nbytes and np.array_equal(r.recon, out)))
                        code = r.header.colour_map
                        ch = {"psnr_ch": metrics.psnr(img, r.recon), "ssim_ch": metrics.ssim(img, r.recon),
                              "delta_e_ch": delta_e76(img, r.recon), "bpp_ch": float(r.bpp),
                              "map_bytes": 0 if code is None else len(code), "map_sent": code is not None,
                              "map_grid": code is not None and len(code) != colour.MAP_BYTES}
                    row.update(ch)
                    rows[k].append(row)
            per = {"bpp": float(np.mean(bpp)), "n": len(imgs),
                   "shipped_codec_matches_recomputed_choice": float(np.mean(agree))}
            for k in models:
                per[k] = {m: float(np.mean([r[m] for r in rows[k]])) for m in keys}
                per[k]["map_pays_fraction"] = float(np.mean([r["map_pays"] for r in rows[k]]))
                per[k]["map_sent_fraction"] = float(np.mean([r["map_sent"] for r in rows[k]]))
                per[k]["map_grid_fraction"] = float(np.mean([r["map_grid"] for r in rows[k]]))
                if k != "shipped":
                    per[k]["diff_vs_shipped"] = {
                        m: float(np.mean([a[m] - s[m] for a, s in zip(rows[k], rows["shipped"])])) for m in keys}
                    if set_name == "photos":
                        per[k]["per_photo_psnr_diff"] = {
                            p: a["psnr"] - s["psnr"] for p, a, s in zip(PHOTOS, rows[k], rows["shipped"])}
                        per[k]["per_photo_psnr_ch_diff"] = {
                            p: a["psnr_ch"] - s["psnr_ch"] for p, a, s in zip(PHOTOS, rows[k], rows["shipped"])}
                    if k != CONTROL and CONTROL in models:
                        per[k]["diff_vs_control"] = {
                            m: float(np.mean([a[m] - s[m] for a, s in zip(rows[k], rows[CONTROL])])) for m in CH_KEYS}
            res.setdefault(set_name, {})[str(b)] = per
            print(f"b={b} {set_name}: " + "  ".join(
                f"{k} {per[k]['psnr']:.2f}/{per[k]['ssim']:.4f}/{per[k]['delta_e']:.2f} "
                f"ch {per[k]['psnr_ch']:.2f}/{per[k]['ssim_ch']:.4f}/{per[k]['delta_e_ch']:.2f}@{per[k]['bpp_ch']:.4f}"
                for k in models) + f"  codec==recomputed {per['shipped_codec_matches_recomputed_choice']:.2f}",
                flush=True)
    return res


def _control_summary(results: dict, training: dict) -> str:
    """One sentence of numbers: each variant minus the control on the chosen-map columns, per set and b."""
    if CONTROL not in training:
        return "The control was not evaluated in this run."
    parts = [f"Control: {training[CONTROL]['steps']} steps in {training[CONTROL]['wall_s']:.0f} s"]
    parts += [f"{v}: {training[v]['steps']} steps in {training[v]['wall_s']:.0f} s" for v in training if v != CONTROL]
    out = "; ".join(parts) + ". Variant minus control with the chosen map (PSNR dB / SSIM / dE / bpp) at b=1..5: "
    rows = []
    for v in training:
        if v == CONTROL:
            continue
        for set_name, per_b in results.items():
            cells = []
            for b, per in per_b.items():
                d = per[v]["diff_vs_control"]
                cells.append(f"b{b} {d['psnr_ch']:+.2f}/{d['ssim_ch']:+.4f}/{d['delta_e_ch']:+.2f}/{d['bpp_ch']:+.4f}")
            rows.append(f"{v} {set_name}: " + ", ".join(cells))
    return out + "; ".join(rows) + "."


def cmd_eval(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    shipped = load_pretrained(MODEL)[0]
    models = {"shipped": build("shipped", shipped)}
    training = {}
    for v in args.variants:
        if not (RUNS / v / "last.pt").is_file():
            print(f"no checkpoint for {v}; skipped")
            continue
        models[v], st = load_trained(v, shipped)
        training[v] = {"steps": st["step"], "wall_s": st["elapsed"], "budget_s": st["budget_s"],
                       "done": bool(st.get("done", False)), "init": st["init"],
                       "final_loss": st["history"][-1]["loss"] if st["history"] else None,
                       "loss_history": st["history"][::4], "config": st["config"]}
    tiles = list(default_dataset("test"))
    images = {"tiles": tiles, "photos": [photo(p) for p in PHOTOS]}
    if args.smoke:  # a few seconds: 2 tiles, 1 photo, b = 1; no timing, no JSON
        res = evaluate(models, {"tiles": tiles[:2], "photos": images["photos"][:1]}, bits=(1,))
        (RUNS / "eval_smoke.json").write_text(json.dumps(res, indent=1))
        print(f"smoke eval in {time.perf_counter() - t0:.0f} s")
        return
    timing_trained = time_models(models, args.repeats)
    results = evaluate(models, images)
    pre = json.loads((RUNS / "timing.json").read_text()) if (RUNS / "timing.json").is_file() else None
    # keep earlier numbers of variants not re-evaluated now (same code path, without the newer columns)
    earlier: dict = {}
    if OUT_JSON.is_file():
        old = json.loads(OUT_JSON.read_text())
        old_train = old.get("training", {})
        old_res = old.get("eval", {}).get("results", {})
        old_timing = old.get("timing_trained", {}).get("models", {})
        for v in set(old_train) - set(training):
            earlier[v] = {"training": old_train[v], "timing_trained": old_timing.get(v),
                          "results": {sn: {bb: {"bpp": per["bpp"], "n": per["n"], v: per[v]}
                                           for bb, per in per_b.items() if v in per}
                                      for sn, per_b in old_res.items()}}
        earlier.update(old.get("earlier_variants", {}))
        for v in training:
            earlier.pop(v, None)
    out = {
        "experiment": "lighter resae-rd decoder, fine-tuned on CPU with the encoder frozen (issue 10)",
        "script": "tools/exp_light_decoder.py",
        "cpu": cpu_name(), "threads": 1, "torch": torch.__version__, "python": platform.python_version(),
        "variants": {"tail": "decoder[0..10] + Conv2d(32,12,3) + PixelShuffle(2) + Sigmoid",
                     "tail-1block": "tail without decoder[7] (2nd ResBlock at 1/4)",
                     "tail-1block8": "tail without decoder[2] (2nd ResBlock at 1/8)",
                     "full": "CONTROL: the shipped decoder, architecture and initial weights unchanged, fine-tuned "
                             "with the same recipe (data, batch, b sampling, loss, frozen BN, seed, budget) but "
                             "no ridge init / phase 1: all layers from step 0 at lr 1e-4, cosine to 10 %"},
        "timing_untrained_all_variants": pre,
        "timing_trained": timing_trained,
        "training": training,
        "earlier_variants": earlier,
        "eval": {"note": "encoder, symbols and bytes are the shipped model's (colour map off in the codec); "
                         "*_cm = after labkit.colour.fit + apply on each reconstruction (always applied); "
                         "map_pays_fraction = share of images where the codec would send the map; "
                         "diff_vs_shipped = per-image mean of (variant - shipped); "
                         "*_ch = after the codec's real colour-map choice (labkit.colour.choose at "
                         "labkit.spec.colour_map_rate_weight(b), applied with labkit.colour.apply; None = no map), "
                         "bpp_ch = (shipped symbols' .lkc bytes without map + chosen map bytes) * 8 / pixels, "
                         "map_bytes = mean chosen map bytes, map_sent_fraction / map_grid_fraction = share of "
                         "images with a map / with a grid of maps; for 'shipped' the *_ch columns are the real "
                         "codec's (Codec.from_pretrained('resae-rd', b).compress: file size and decoded image), "
                         "and shipped_codec_matches_recomputed_choice = share of images where that equals the "
                         "computation used for the variants; bpp = no-map file (earlier column); "
                         "diff_vs_control = per-image mean of (variant - full) on the *_ch columns",
                 "tiles": f"labkit.data.default_dataset('test'), {len(tiles)} tiles 128x128",
                 "photos": PHOTOS, "bits": list(BITS), "results": results},
        "caveats": [
            "The fine-tuning itself (hard-quantized latents at b=1..5, no rate term) changes the decoder's "
            "colour bias and its fit to hard quantization, so differences against the shipped decoder mix the "
            "recipe and the architecture. The control 'full' (shipped architecture, same recipe and wall-clock "
            "budget) separates them: diff_vs_control is the architecture's effect (at equal budget: the "
            "lighter decoder also takes more steps in the same time). " + _control_summary(results, training),
            "*_cm uses one per-image affine map (labkit.colour.fit + apply, applied always); *_ch uses the "
            "codec's real choice (labkit.colour.choose: global map, blended grid of maps, or none) and counts "
            "its bytes in bpp_ch.",
            "Timings share the machine with other work on the second core; ratios come from the same run, "
            "encoder best over all models (identical encoders).",
        ],
        "eval_seconds": time.perf_counter() - t0,
    }
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT_JSON} in {out['eval_seconds']:.0f} s")


def cmd_export(args: argparse.Namespace) -> None:
    """Write a ``tail-1block`` run as a labkit checkpoint folder of ``resae-rd-fast``.

    The recipe is recorded as ``config.json["decoder_fit"]`` (a ``labkit.decoder_fit.DecoderFitConfig``,
    the package's port of this tool's ``train``), so ``labkit.workflow.train_models`` retrains it.
    """
    from labkit import checkpoint
    from labkit.data import training_splits as splits_of
    from labkit.decoder_fit import DecoderFitConfig, transfer
    from labkit.models import build_model
    from labkit.train import validate

    st = torch.load(Path(args.runs) / "tail-1block" / "last.pt", map_location="cpu", weights_only=False)
    cfg = DecoderFitConfig(budget_s=float(st["budget_s"]), stage2_s=float(st.get("stage2_s", 0.0)))
    tool = {"batch": BATCH, "crop": CROP, "bits": list(BITS), "ssim_weight": SSIM_WEIGHT, "seed": SEED,
            "phase1": PHASE1, "lr_new1": LR_NEW1, "lr_reused": LR_REUSED, "lr_new2": LR_NEW2,
            "lr_stage2": LR_STAGE2, "final_lr_frac": LR_FINAL_FRAC, "grad_clip": GRAD_CLIP}
    mismatch = {k: (v, getattr(cfg, k)) for k, v in tool.items() if getattr(cfg, k) != v}
    if mismatch:
        raise SystemExit(f"this tool's recipe and DecoderFitConfig's defaults differ: {mismatch}")
    source = load_checkpoint_file(args.weights)[0] if args.weights else load_pretrained(MODEL)[0]
    model = build_model("resae-rd-fast", seed=SEED)
    transfer(model, source)
    model.decoder.load_state_dict(st["decoder"])
    model.scale_rule = source.scale_rule
    model.eval()
    val = splits_of(args.data_dir, SEED)["val"]
    final = validate(model, val, cfg.val_b, "cpu", 16, source.scale_rule)
    hist = st["history"]
    history = {"step": [r["step"] for r in hist], "elapsed": [r["elapsed"] for r in hist],
               "train_loss": [r["loss"] for r in hist], "phase": [r["phase"] for r in hist],
               "lr": [r["lr_new"] for r in hist]}
    out = Path(args.out)
    checkpoint.save(model, out, None, {
        "decoder_fit": cfg.to_dict(), "scale": source.scale_rule, "noise": True,
        "train_seconds": round(float(st["elapsed"]), 3), "steps": int(st["step"]),
        "device": "cpu (1 thread)", "python": platform.python_version(),
        "final_val_psnr": final["psnr"], "final_val_mse": final["mse"],
        "made_by": f"python tools/exp_light_decoder.py train tail-1block --budget-s {cfg.budget_s:g} "
                   f"--stage2-s {cfg.stage2_s:g}" + (f" --weights {args.weights}" if args.weights else "")
                   + (f" --data-dir {args.data_dir}" if args.data_dir else "")})
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    print(f"wrote {out}: {st['step']} steps, {st['elapsed']:.0f} s, val PSNR(b={cfg.val_b}) {final['psnr']:.2f} dB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time")
    t.add_argument("--variants", nargs="+", default=list(VARIANTS))
    t.add_argument("--repeats", type=int, default=REPEATS)
    tr = sub.add_parser("train")
    tr.add_argument("variant", choices=VARIANTS)
    tr.add_argument("--budget-s", type=float, required=True, help="wall-clock training budget (total over resumes)")
    tr.add_argument("--stage2-s", type=float, default=0.0,
                    help="then a second stage of this many seconds: every decoder layer, warm restart at "
                         "LR_STAGE2, cosine to 10 %% (0: none)")
    tr.add_argument("--weights", default=None, help="resae-rd checkpoint folder to start from (default: shipped)")
    tr.add_argument("--data-dir", default=None, help="course-layout folder to train on (default: the default pool)")
    tr.add_argument("--runs", default=str(RUNS), help=f"where VARIANT/last.pt goes (default {RUNS})")
    e = sub.add_parser("eval")
    e.add_argument("--variants", nargs="+", default=list(VARIANTS))
    e.add_argument("--repeats", type=int, default=REPEATS)
    e.add_argument("--smoke", action="store_true", help="2 tiles, 1 photo, b=1; no timing, no JSON")
    x = sub.add_parser("export", help="write the tail-1block run as labkit weights of resae-rd-fast")
    x.add_argument("--runs", default=str(RUNS))
    x.add_argument("--weights", default=None, help="the source resae-rd checkpoint folder (default: shipped)")
    x.add_argument("--data-dir", default=None, help="course-layout folder it was trained on (for the val PSNR)")
    x.add_argument("--out", required=True, help="checkpoint folder to write (e.g. labkit/weights/resae-rd-fast-v1)")
    args = p.parse_args()
    {"time": cmd_time, "train": cmd_train, "eval": cmd_eval, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
