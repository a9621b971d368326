"""GDN vs BatchNorm+ReLU in resae-rd, measured once at an equal CPU budget (issue 9, item 3).

    python tools/exp_gdn.py train bn  --seconds 900 --out /tmp/gdn-ab   # one process per variant,
    python tools/exp_gdn.py train gdn --seconds 900 --out /tmp/gdn-ab   # run side by side (1 thread each)
    python tools/exp_gdn.py compare --out /tmp/gdn-ab [--json benchmarks/results/experiments/gdn_vs_bn.json]

Both variants are ``resae-rd`` (widths 32/96/160, two residual blocks, 32 latent channels)
trained from the same seed with the shipped recipe (``tools/train_shipped.py`` ``resae-rd``:
MSE + 0.05 (1 - SSIM) + 0.015 R, b drawn from 1..5, scale p99.9) on 64x64 crops, batch 16,
for the same wall-clock budget.  ``gdn`` replaces the BatchNorm + ReLU after every
down-/up-sampling convolution with GDN in the encoder and inverse GDN in the decoder
(Balle et al. 2016; the residual blocks keep BatchNorm), as in CompressAI's models.
``compare`` codes the embedded test tiles at b = 1..5 with the real coder (no colour map)
and prints each variant's curve and the BD-rates of GDN against BatchNorm.

The experiment's own GDN lives here, not in ``labkit``: it was measured and rejected (NOTES.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from labkit import inference, metrics  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset, training_splits  # noqa: E402
from labkit.models import build_model  # noqa: E402
from labkit.rd import bd_detail  # noqa: E402
from labkit.train import TrainConfig, fit  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_shipped import RECIPES  # noqa: E402

BITS = (1, 2, 3, 4, 5)


class GDN(nn.Module):
    """Generalized divisive normalization ``x / sqrt(beta + gamma * x^2)`` (inverse: times).

    Positivity by squaring (``beta = b^2 + eps``, ``gamma = g^2``), initialised as CompressAI
    does (beta 1, gamma 0.1 I).  Pointwise in space, so tiled inference treats it like BN.
    """

    def __init__(self, ch: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(torch.eye(ch) * 0.1**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = (self.gamma**2).reshape(*self.gamma.shape, 1, 1)
        norm = F.conv2d(x * x, gamma, self.beta**2 + 1e-6)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


inference._POINTWISE = inference._POINTWISE + (GDN,)  # spatially pointwise: same receptive field


def _with_bias(conv: nn.Module) -> None:
    if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels))


def to_gdn(model: nn.Module) -> nn.Module:
    """Swap the BN + ReLU after each sampling conv for GDN (encoder) / IGDN (decoder), in place."""
    for seq, inverse in ((model.encoder, False), (model.decoder, True)):
        mods = seq._modules
        names = list(mods)
        for i, name in enumerate(names):
            m = mods[name]
            # a (conv, BN, ReLU) stage
            if isinstance(m, nn.Sequential) and len(m) == 3 and isinstance(m[1], nn.BatchNorm2d) \
                    and isinstance(m[2], nn.ReLU):
                _with_bias(m[0])
                m[1], m[2] = GDN(m[1].num_features, inverse), nn.Identity()
            # decoder: upsample block, BN, ReLU at the top level
            elif isinstance(m, nn.BatchNorm2d) and i + 1 < len(names) and isinstance(mods[names[i + 1]], nn.ReLU):
                prev = mods[names[i - 1]]
                for c in prev.modules():
                    _with_bias(c)
                mods[name], mods[names[i + 1]] = GDN(m.num_features, inverse), nn.Identity()
    return model


def make(variant: str) -> nn.Module:
    model = build_model("resae-rd", seed=0)
    return to_gdn(model) if variant == "gdn" else model


def train(variant: str, seconds: float, out: Path) -> None:
    torch.set_num_threads(1)
    recipe = dict(RECIPES["resae-rd"], epochs=100000, device="cpu", crop=64, batch_size=16, time_budget_s=seconds)
    cfg = TrainConfig.from_dict(recipe)
    splits = training_splits(None, seed=cfg.seed)
    model = make(variant)
    fit(model, splits["train"], splits["val"], cfg, out_dir=out / variant, progress=False)
    torch.save(model.state_dict(), out / variant / "experiment_state.pt")


@torch.inference_mode()
def curve(model: nn.Module, tiles: np.ndarray) -> dict[int, dict[str, float]]:
    out = {}
    for b in BITS:
        codec = Codec(model, b, model_name="resae-rd", colour_map=False, scale="p99.9")
        rs = [codec.compress(t) for t in tiles]
        out[b] = {"bpp": float(np.mean([r.bpp for r in rs])),
                  "psnr": float(np.mean([metrics.psnr(t, r.recon) for t, r in zip(tiles, rs)])),
                  "ssim": float(np.mean([metrics.ssim(t, r.recon) for t, r in zip(tiles, rs)]))}
    return out


def compare(out: Path, json_path: Path | None) -> None:
    torch.set_num_threads(1)
    tiles = default_dataset("test")
    result: dict = {"curves": {}, "runs": {}}
    for variant in ("bn", "gdn"):
        model = make(variant)
        model.load_state_dict(torch.load(out / variant / "experiment_state.pt", weights_only=True))
        model.eval()
        hist = json.loads((out / variant / "history.json").read_text())
        result["runs"][variant] = {"epochs": len(hist["epoch"]), "seconds": round(hist["elapsed"][-1], 1),
                                   "steps_per_epoch": 24, "best_epoch": hist["best_epoch"],
                                   "stopped": hist["stopped"]}
        result["curves"][variant] = curve(model, tiles)
        print(variant, result["runs"][variant], "  ".join(
            f"b={b}: {c['bpp']:.3f} bpp {c['psnr']:.2f} dB {c['ssim']:.3f}" for b, c in result["curves"][variant].items()))
    bn, gdn = result["curves"]["bn"], result["curves"]["gdn"]
    result["bd_rate_gdn_vs_bn"] = {}
    for metric in ("psnr", "ssim"):
        d = bd_detail([bn[b]["bpp"] for b in BITS], [bn[b][metric] for b in BITS],
                      [gdn[b]["bpp"] for b in BITS], [gdn[b][metric] for b in BITS], kind="rate")
        result["bd_rate_gdn_vs_bn"][metric] = d
        print(f"BD-rate GDN vs BN on {metric}: " + (f"{d['value']:+.1f} % over {d['overlap']}" if d["reason"] is None
                                                    else d["reason"]))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(jsonable(result), indent=1) + "\n")
        print(f"wrote {json_path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("train", "compare"))
    p.add_argument("variant", nargs="?", choices=("bn", "gdn"))
    p.add_argument("--seconds", type=float, default=900.0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.what == "train":
        if not args.variant:
            p.error("train needs the variant: bn or gdn")
        train(args.variant, args.seconds, args.out)
    else:
        compare(args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
