"""The training-time rate estimate, the encoder's scale rules and the rate-distortion model."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from labkit import quant
from labkit.models import build_model
from labkit.rate import bucket_matrix, conditional_entropy_bits, estimate_bits, soft_symbols
from labkit.train import TrainConfig, fit


def _bucket(v: int) -> int:
    return 0 if v == 0 else 1 + int(math.floor(math.log2(v)))


@pytest.mark.parametrize("levels", [2, 4, 8, 32])
def test_bucket_matrix_is_the_coders_rule(levels):
    m = bucket_matrix(levels)
    assert m.shape == (levels, 1 + math.ceil(math.log2(levels)))
    for k in range(levels):
        assert int(m[k].argmax()) == _bucket(k) and float(m[k].sum()) == 1.0


def test_soft_symbols_sum_to_one_and_are_one_hot_at_bin_centres():
    levels = 8
    u = torch.rand(1000) * 1.2 - 0.1  # also outside [0, 1]: clipped like the quantizer
    p = soft_symbols(u, levels)
    assert torch.allclose(p.sum(-1), torch.ones(1000), atol=1e-6)
    centres = (torch.arange(levels) + 0.5) / levels
    assert torch.equal(soft_symbols(centres, levels), torch.eye(levels))


def _empirical_conditional_entropy(q: np.ndarray) -> float:
    """Bits of H(q | bucket(left), bucket(top)) times the count, out-of-image = 0 (numpy reference)."""
    c, h, w = q.shape
    counts: dict[tuple[int, int], dict[int, int]] = {}
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                ctx = (_bucket(int(q[ch, i, j - 1]) if j else 0), _bucket(int(q[ch, i - 1, j]) if i else 0))
                row = counts.setdefault(ctx, {})
                row[int(q[ch, i, j])] = row.get(int(q[ch, i, j]), 0) + 1
    bits = 0.0
    for row in counts.values():
        n = sum(row.values())
        bits -= sum(k * math.log2(k / n) for k in row.values())
    return bits


@pytest.mark.parametrize("levels", [2, 8])
def test_hard_symbols_give_the_exact_empirical_conditional_entropy(levels):
    rng = np.random.default_rng(0)
    q = np.minimum(rng.geometric(0.5, size=(3, 9, 7)) - 1, levels - 1)
    p = torch.nn.functional.one_hot(torch.from_numpy(q), levels).double()[None]
    got = float(conditional_entropy_bits(p, levels, "neighbor")[0])
    assert got == pytest.approx(_empirical_conditional_entropy(q), rel=1e-6)
    counts = np.bincount(q.ravel(), minlength=levels)
    plain = -sum(n * math.log2(n / q.size) for n in counts if n)
    assert float(conditional_entropy_bits(p, levels, "none")[0]) == pytest.approx(plain, rel=1e-6)


def test_estimate_tracks_the_real_coder_and_has_a_gradient():
    from labkit import coder

    torch.manual_seed(0)
    # a smooth non-negative latent with many zeros, like a ReLU encoder's
    y = torch.relu(torch.nn.functional.avg_pool2d(torch.randn(1, 8, 40, 40), 5, 1) * 3 - 0.2)
    y.requires_grad_(True)
    scale = quant.latent_scale(y.detach(), "p99.9")
    for b in (2, 3, 4):
        est = estimate_bits(torch.minimum(y, scale), scale, b)
        q = quant.quantize(y.detach(), scale, b)[0].numpy()
        real = 8 * len(coder.encode(q, 2**b, "neighbor"))
        e = float(est.detach())
        assert 0.7 * real < e < 1.3 * real, (b, e, real)
    est.sum().backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


def test_learned_estimate_prices_what_the_prior_knows():
    # hard symbols: the learned estimate is the cross-entropy of each (channel, context) row
    # under the prior plus the row itself; a prior that knows the data makes it cheaper than a
    # flat one, and with a negligible prior it is the per-channel conditional entropy
    from labkit import coder_prior
    from labkit.rate import prior_in_symbols

    rng = np.random.default_rng(3)
    levels, b = 8, 3
    q = np.minimum(rng.geometric(0.5, size=(4, 12, 12)) - 1, levels - 1)
    p = torch.nn.functional.one_hot(torch.from_numpy(q), levels).double()[None]
    shape = (4, coder_prior.n_buckets(levels) ** 2, levels)
    knows = coder_prior.table_from_counts(coder_prior.count([q.astype(np.uint8)] * 4, 4, b), b)
    flat = np.full(shape, coder_prior.STRENGTH, np.uint16)
    with_knowledge = float(conditional_entropy_bits(p, levels, "learned", prior_in_symbols(knows).double())[0])
    with_flat = float(conditional_entropy_bits(p, levels, "learned", prior_in_symbols(flat).double())[0])
    assert with_knowledge < 0.9 * with_flat
    tiny = torch.full(shape, 1e-9, dtype=torch.float64)
    per_channel = sum(_empirical_conditional_entropy(q[c:c + 1]) for c in range(4))
    assert float(conditional_entropy_bits(p, levels, "learned", tiny)[0]) == pytest.approx(per_channel, rel=1e-6)
    with pytest.raises(ValueError, match="needs a prior of shape"):
        conditional_entropy_bits(p, levels, "learned")
    with pytest.raises(ValueError, match="needs a prior of shape"):
        conditional_entropy_bits(p, levels, "learned", torch.ones(3, 16, 8))


def test_scale_rules():
    y = torch.rand(2, 4, 8, 8)
    assert torch.equal(quant.latent_scale(y, "max"), quant.latent_max(y))
    assert torch.equal(quant.latent_scale(y, "p100"), quant.latent_max(y))
    flat = y.reshape(2, -1)
    k = round(0.9 * flat.shape[1])  # nearest rank
    assert torch.equal(quant.latent_scale(y, "p90"), flat.sort(1).values[:, k - 1])
    for bad in ("p50", "p100.5", "pxx", "median", "", None):
        with pytest.raises(ValueError, match="scale rule"):
            quant.check_scale_rule(bad)


def test_resae_rd_model_and_clipping_forward():
    m = build_model("resae-rd", seed=0).eval()
    assert m.latent_channels == 32 and m.config["latent_channels"] == 32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x, b=2, scale="p90")
    assert out["y"].shape == (2, 32, 4, 4)
    assert torch.all(out["y"] <= out["ymax"].reshape(-1, 1, 1, 1))  # clipped to the stored scale
    assert out["x_hat"].shape == x.shape


def test_rate_distortion_fit_keeps_the_best_validated_weights(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    cfg = TrainConfig(model="resae-rd", model_cfg={"widths": [4, 8, 8], "blocks": 0, "latent_channels": 4},
                      loss="mse+ssim", rate_weight=0.01, bits=[1, 3], scale="p99.9", epochs=3, batch_size=2,
                      crop=32, device="cpu", val_every=1)
    model = build_model("resae-rd", seed=0, **cfg.model_cfg)
    h = fit(model, imgs[:4], imgs[4:], cfg, out_dir=tmp_path, progress=False)
    objectives = [r["objective"] for r in h["val_rd"]]
    assert len(objectives) == 3 and set(h["val_rd"][0]["bpp"]) == {"1", "3"}
    assert h["best_epoch"] == 1 + int(np.argmin(objectives))
    assert h["best_objective"] == min(objectives)
    import json
    assert json.loads((tmp_path / "config.json").read_text())["scale"] == "p99.9"


def test_rd_config_validation():
    with pytest.raises(ValueError, match="rate_weight"):
        TrainConfig(rate_weight=-1)
    with pytest.raises(ValueError, match="bit depth"):
        TrainConfig(bits=[0, 3])
    with pytest.raises(ValueError, match="scale rule"):
        TrainConfig(scale="p10")
    assert TrainConfig(bits=[2, 5]).train_bits == [2, 5] and TrainConfig(b_train=4).train_bits == [4]


def test_codec_does_not_import_training_code():
    code = "import sys, labkit.codec; assert 'labkit.train' not in sys.modules, 'codec imported labkit.train'"
    subprocess.run([sys.executable, "-c", code], check=True)
