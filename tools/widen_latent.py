"""Widen a trained ResAE's latent without changing what it decodes: the start of a wider model.

    python tools/widen_latent.py SRC_DIR OUT_DIR --channels 64 [--init zero|split] [--seed 0]

A larger latent (more values per pixel) is what the notes name for the PSNR ceiling of
``resae-rd-fast``; training one from scratch costs what the shipped weights cost.  This builds
the wider network from the trained one so that a fine-tune (``tools/finetune_gpu.py``) starts
where the shipped weights are:

* every layer but the last encoder convolution and the first decoder convolution is copied;
* ``zero``: the new latent channels get small random encoder filters (a tenth of the default
  initialisation, bias 0), and the decoder reads them with zero weights, so the decoded image is
  the source model's and the new channels, nearly all in bin 0, cost almost no bits; the decoder
  learns to read them, the encoder then to fill them where the rate term says they pay;
* ``split``: each new channel copies one old channel's encoder filter and the decoder's weight for
  that channel is halved between the two, so the decoded image is the source model's (the two copies
  quantize alike) but those channels' bits are spent twice until training tells the copies apart.

The output has no coder prior (the table is per latent channel): the codec codes it in the
``neighbor`` context until ``tools/fit_coder_prior.py`` fits one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labkit import checkpoint  # noqa: E402
from labkit.models import build_model  # noqa: E402


def widen(src: torch.nn.Module, channels: int, init: str = "zero", seed: int = 0) -> torch.nn.Module:
    """Return ``src`` rebuilt with ``channels`` latent channels (see the module docstring)."""
    cfg = dict(src.config)
    name = cfg.pop("name")
    cfg.pop("noise", None)
    old = int(cfg.get("latent_channels", 16))
    if channels <= old:
        raise ValueError(f"--channels must exceed the source's {old}")
    wide = build_model(name, seed=seed, **{**cfg, "latent_channels": channels})
    state, new_state = src.state_dict(), wide.state_dict()
    enc_conv = f"encoder.{len(src.encoder) - 2}"   # Conv2d(c3, latent) before the final ReLU
    dec_conv = "decoder.0.0"                       # Conv2d(latent, c3) of the first conv-BN-ReLU
    gen = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        target = new_state[key]
        if target.shape == value.shape:
            new_state[key] = value.clone()
            continue
        if key == f"{enc_conv}.weight":
            w = target.clone()
            w[:old] = value
            if init == "split":
                pick = torch.arange(channels - old) % old
                w[old:] = value[pick] + 1e-3 * value.std() * torch.randn(w[old:].shape, generator=gen)
            else:
                w[old:] *= 0.1
            new_state[key] = w
        elif key == f"{enc_conv}.bias":
            bias = torch.zeros_like(target)
            bias[:old] = value
            if init == "split":
                bias[old:] = value[torch.arange(channels - old) % old]
            new_state[key] = bias
        elif key == f"{dec_conv}.weight":
            w = torch.zeros_like(target)
            w[:, :old] = value
            if init == "split":
                pick = torch.arange(channels - old) % old
                w[:, pick] *= 0.5
                w[:, old:] = w[:, pick]
            new_state[key] = w
        else:
            raise RuntimeError(f"unexpected shape change in {key}: {tuple(value.shape)} -> {tuple(target.shape)}")
    wide.load_state_dict(new_state)
    return wide


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--channels", type=int, required=True)
    p.add_argument("--init", choices=("zero", "split"), default="zero")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    src, config = checkpoint.load(a.src, coder_prior=False)
    wide = widen(src, a.channels, a.init, a.seed).eval()
    extra = checkpoint.run_facts(config, "coder_prior")
    extra["widened_from"] = {"source": str(a.src), "channels": a.channels, "init": a.init, "seed": a.seed,
                             "command": "python tools/widen_latent.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    train = config.get("train")
    if train is not None:
        train = {**train, "model_cfg": {**train.get("model_cfg", {}), "latent_channels": a.channels}}
    checkpoint.save(wide, a.out, train, extra)
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        ys, yw = src.eval().encode(x), wide.encode(x)
        same = (src.decode(ys) - wide.decode(yw)).abs().max().item()
    print(json.dumps({"out": a.out, "params": sum(t.numel() for t in wide.parameters()),
                      "max_abs_decode_difference": same}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
