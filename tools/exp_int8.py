"""Would 8-bit integer inference make ``resae-rd-fast`` fast enough, and what would it cost?

    python tools/exp_int8.py                 # every variant, ~20 min (7 of them the fine-tune) (2-core AMD EPYC, AVX-512); writes the JSON below
    python tools/exp_int8.py int8-encoder    # fp32 and the variants named, merged into the JSON

The speed target (encode + decode within 2x ``resae``'s time, ``benchmarks/bench_codec.py``) is
missed because the networks alone take about 2x (the encoder runs the decoder once more for the
colour maps).  PyTorch's post-training static quantization (``torch.ao.quantization``, FX graph
mode, the ``x86`` engine's default qconfig: per-channel int8 weights, histogram-calibrated uint8
activations) runs convolutions in int8, which CPUs with VNNI do several times faster.  This
measures it without changing labkit:

* the shipped ``resae-rd-fast``, BatchNorm folded, quantized per variant: ``int8`` (encoder and
  decoder), ``int8-encoder`` (the decoder stays the codec's float32 one), ``int8-float-head`` (both,
  but the decoder's head -- last conv, pixel shuffle, sigmoid -- kept float32: quantizing the
  sigmoid's input, the logits, to 8 bits bands the output; keeping any other group of layers float
  did not help, measured on decoded tiles at b = 3);
* calibrated on the embedded training tiles (the encoder on the images, the decoder on their
  dequantized latents at b = 1..5, the scale rule the codec uses);
* the real codec (colour maps, learned coder) with its networks swapped, on the 31 default test
  tiles at b = 1..5: mean bpp (whole files), PSNR, SSIM; BD-rates (``labkit.rd.bd_detail``) against
  the float32 codec;
* speed: encode + decode of ``bench_codec.py``'s 768x512 and 128x128 images at b = 2, best of 7,
  one thread, each variant and ``resae`` in the same run (ratios).

The upsampling fusion of ``labkit.inference`` is left out of the quantized copies: the ``x86``
engine's int8 transposed convolution with per-channel weights gave wrong outputs (9 dB).

Writes benchmarks/results/experiments/int8.json.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import warnings
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import labkit.codec as codec_module  # noqa: E402
from labkit import inference, metrics, quant, rd  # noqa: E402
from labkit.codec import Codec, load_pretrained  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.speed import best_time, cpu_name  # noqa: E402

MODEL = "resae-rd-fast"
ENGINE = "x86"
VARIANTS = ("fp32", "int8", "int8-encoder", "int8-float-head", "int8-float-head-qat")
#: quantization-aware fine-tuning of ``int8-float-head``'s decoder: steps of batch 16 (128x128 crops
#: of the default training pool, b drawn per batch, hard-quantized latents of the int8 encoder, the
#: decoders' loss MSE + 0.05 (1 - SSIM)), Adam with a cosine from QAT_LR, observers frozen for the
#: last QAT_FREEZE of the steps
QAT_STEPS = 1200
QAT_LR = 2e-5
QAT_FREEZE = 0.3
#: the decoder's head kept float32 in ``int8-float-head``: its last conv (at half resolution, 3% of the
#: decoder's multiply-adds), the pixel shuffle and the sigmoid, whose input (logits) int8 would quantize
FLOAT_HEAD = ("10", "11", "12")


def _quantized(net: torch.nn.Module, batches: list[torch.Tensor], keep_float: tuple[str, ...] = ()) -> torch.nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    mapping = get_default_qconfig_mapping(ENGINE)
    for name in keep_float:
        mapping = mapping.set_module_name(name, None)
    prepared = prepare_fx(copy.deepcopy(net).eval(), mapping, example_inputs=(batches[0][:1],))
    with torch.inference_mode():
        for batch in batches:
            prepared(batch)
    return convert_fx(prepared)


def _qat_decoder(decoder: torch.nn.Module, encoder: torch.nn.Module, rule: str, example: torch.Tensor) -> torch.nn.Module:
    """``decoder`` fine-tuned with int8 fake quantization in the loop (head float), converted to int8."""
    import math
    import time

    import torch.nn.functional as F
    from torch.ao.quantization import disable_observer, get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    from labkit.data import default_train_pool
    from labkit.distortion import ssim as ssim_index

    mapping = get_default_qat_qconfig_mapping(ENGINE)
    for name in FLOAT_HEAD:
        mapping = mapping.set_module_name(name, None)
    prepared = prepare_qat_fx(copy.deepcopy(decoder).train(), mapping, example_inputs=(example,))
    opt = torch.optim.Adam(prepared.parameters(), lr=QAT_LR)
    pool = default_train_pool()
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    for step in range(QAT_STEPS):
        rng = np.random.default_rng([20261127, step])
        idx = rng.choice(len(pool), size=16, replace=False)
        r, c = rng.integers(0, pool.shape[1] - 127, size=2)
        x = torch.from_numpy(pool[idx, r:r + 128, c:c + 128]).permute(0, 3, 1, 2).float() / 255.0
        b = int(rng.integers(1, 6))
        with torch.no_grad():
            y = encoder(x)
            ymax = torch.stack([quant.latent_scale(y[i:i + 1], rule)[0] for i in range(len(y))])
            ymax = quant.to_float32(ymax)
            y = quant.quantize_dequantize(torch.minimum(y, ymax.reshape(-1, 1, 1, 1)), b, ymax)
        for g in opt.param_groups:
            g["lr"] = QAT_LR * 0.5 * (1 + math.cos(math.pi * step / QAT_STEPS))
        if step == int(QAT_STEPS * (1 - QAT_FREEZE)):
            prepared.apply(disable_observer)
        x_hat = prepared(y)
        loss = F.mse_loss(x_hat, x) + 0.05 * (1.0 - ssim_index(x_hat, x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"  qat step {step} loss {loss.item():.5f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    torch.set_num_threads(threads)
    return convert_fx(prepared.eval())


def _networks(variant: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(encoder, decoder) of ``variant``, int8 where it says (BatchNorm folded, no upsampling fusion)."""
    model, _ = load_pretrained(MODEL)
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        inference.fold_batchnorm(folded)
    encoder, decoder = folded.encoder, folded.decoder
    train = torch.from_numpy(np.stack(default_dataset("train"))).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        latents = encoder(train)
    rule = getattr(model, "scale_rule", "max")
    dequantized = []
    for b in range(1, 6):
        for y in latents.split(1):
            ymax = quant.to_float32(quant.latent_scale(y, rule))
            dequantized.append(quant.dequantize(quant.quantize(y, ymax, b)[0].unsqueeze(0), ymax, b))
    decoder_batches = [torch.cat(dequantized[i:i + 64]) for i in range(0, len(dequantized), 64)]
    encoder = _quantized(encoder, list(train.split(64)))
    if variant == "int8":
        decoder = _quantized(decoder, decoder_batches)
    elif variant == "int8-float-head":
        decoder = _quantized(decoder, decoder_batches, keep_float=FLOAT_HEAD)
    elif variant == "int8-float-head-qat":
        decoder = _qat_decoder(decoder, encoder, rule, decoder_batches[0][:1])
    return encoder, decoder


_NETWORKS: dict[str, tuple[torch.nn.Module, torch.nn.Module]] = {}


def _codec(variant: str, b: int) -> Codec:
    c = Codec.from_pretrained(MODEL, b=b)
    if variant != "fp32":
        if variant not in _NETWORKS:
            _NETWORKS[variant] = _networks(variant)
        encoder, decoder = _NETWORKS[variant]
        c.model.encoder = encoder
        if variant != "int8-encoder":   # else the codec's own float32 decoder (fused, channels-last)
            c.model.decoder = decoder
    return c


def _patch_margins() -> None:
    """Tiled inference reads each network's receptive field from its layers, and it does not know
    quantized ones: give it the float32 networks' margins (the same layers, the same field)."""
    ref = Codec.from_pretrained(MODEL, b=2).model
    enc_margin = inference.encoder_margin(ref.encoder, 8)
    dec_margin = inference.decoder_margin(ref.decoder)
    encode_tiled, decode_tiled = codec_module.encode_tiled, codec_module.decode_tiled
    codec_module.encode_tiled = lambda model, arr, tile, margin=None: encode_tiled(model, arr, tile, enc_margin)
    codec_module.decode_tiled = (lambda model, latent_of, hw, size, tile, margin=None:
                                 decode_tiled(model, latent_of, hw, size, tile, dec_margin))


def main() -> None:
    warnings.filterwarnings("ignore", module="torch.ao")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.backends.quantized.engine = ENGINE
    _patch_margins()
    import bench_codec

    tiles = default_dataset("test")
    images = bench_codec._images()
    chosen = sys.argv[1:] or list(VARIANTS)
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    chosen = ["fp32"] + [v for v in VARIANTS[1:] if v in chosen]
    path = ROOT / "benchmarks" / "results" / "experiments" / "int8.json"
    out: dict = {"curves": {}, "bd_vs_fp32": {}, "speed_ms": {}}
    if path.exists() and sys.argv[1:]:
        out = json.loads(path.read_text())
    out.update({"what": __doc__.split("\n\n")[2].strip(), "cpu": cpu_name(), "threads": 1, "engine": ENGINE,
                "command": "python tools/exp_int8.py", "qat": {"steps": QAT_STEPS, "lr": QAT_LR, "freeze": QAT_FREEZE}})
    resae = Codec.from_pretrained("resae", b=2)
    for variant in chosen:
        curve = []
        for b in range(1, 6):
            c = _codec(variant, b)
            bpp, psnr, ssim = [], [], []
            for img in tiles:
                data = c.encode(img)
                rec = c.decode(data)
                bpp.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                psnr.append(metrics.psnr(img, rec))
                ssim.append(metrics.ssim(img, rec))
            curve.append({"b": b, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))})
            print(variant, curve[-1], flush=True)
        out["curves"][variant] = curve
        c = _codec(variant, 2)
        speed = {}
        for size, img in images.items():
            data = c.encode(img)
            ref = resae.encode(img)
            speed[size] = {
                "encode": 1e3 * best_time(lambda: c.encode(img), 7),
                "decode": 1e3 * best_time(lambda: c.decode(data), 7),
                "resae": 1e3 * (best_time(lambda: resae.encode(img), 7) + best_time(lambda: resae.decode(ref), 7)),
            }
            speed[size]["ratio_to_resae"] = (speed[size]["encode"] + speed[size]["decode"]) / speed[size]["resae"]
        out["speed_ms"][variant] = speed
        print(variant, speed, flush=True)
    base = out["curves"]["fp32"]
    for variant in [v for v in VARIANTS[1:] if v in out["curves"]]:
        test = out["curves"][variant]
        out["bd_vs_fp32"][variant] = {
            metric: rd.bd_detail([p["bpp"] for p in base], [p[metric] for p in base],
                                 [p["bpp"] for p in test], [p[metric] for p in test])
            for metric in ("psnr", "ssim")}
        print(variant, {m: round(v["value"], 2) for m, v in out["bd_vs_fp32"][variant].items()})
    from labkit.workflow import jsonable
    path.write_text(json.dumps(jsonable(out), indent=1) + "\n")
    print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
