"""labkit.inference: the optimised model computes what the trained one does; tiles cover the receptive field."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from labkit import inference as I
from labkit.models import build_model

#: Outputs are images in [0, 1] and latents of order 1..300: folding BN and fusing the
#: upsampling reorder float sums only.  Measured on this machine: <= 3e-6 on images.
IMAGE_ATOL = 1e-4
LATENT_RTOL = 1e-4


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics, so folding has something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand((2, 3, 40, 56), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["ae1", "ae2", "resae"])
def test_shipped_models_same_output_after_optimisation(load_model, images, name):
    model = load_model(name)
    fast = I.optimize_for_inference(model)
    with torch.inference_mode():
        y, y_fast = model.encode(images), fast.encode(images.contiguous(memory_format=torch.channels_last))
        x, x_fast = model.decode(y), fast.decode(y.contiguous(memory_format=torch.channels_last))
    scale = float(y.abs().max())
    assert float((y_fast - y).abs().max()) <= LATENT_RTOL * scale
    assert float((x_fast - x).abs().max()) <= IMAGE_ATOL
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (name == "resae"), \
        "the original model is left untouched"


@pytest.mark.parametrize("upsample", ["resize", "transpose", "pixelshuffle"])
def test_bn_folding_and_fusion_with_random_statistics(images, upsample):
    model = _randomise_bn(build_model("resae", seed=3, upsample=upsample))
    fast = I.optimize_for_inference(model)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert left == (3 if upsample == "pixelshuffle" else 0), "every BN after a conv folded (not after a PixelShuffle)"
    if upsample == "resize":
        assert not any(isinstance(m, nn.Upsample) for m in fast.modules()), "every nearest x2 + conv fused"
    with torch.inference_mode():
        y = model.encode(images)
        assert float((fast.encode(images) - y).abs().max()) <= LATENT_RTOL * float(y.abs().max())
        assert float((fast.decode(y) - model.decode(y)).abs().max()) <= IMAGE_ATOL


def test_the_tolerance_catches_a_wrong_fold(images):
    """Not vacuous: a fold that used other BN statistics (here: half the variance) is caught."""
    model = _randomise_bn(build_model("resae", seed=3))
    fast = I.optimize_for_inference(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(0.5)
    with torch.inference_mode():
        y = model.encode(images)
        assert float((fast.encode(images) - y).abs().max()) > LATENT_RTOL * float(y.abs().max())
        assert float((fast.decode(y) - model.decode(y)).abs().max()) > IMAGE_ATOL


@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (16, 9)])
def test_nearest_upsampling_becomes_an_equal_transposed_conv(hw):
    g = torch.Generator().manual_seed(hw[0] * 31 + hw[1])
    seq = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(6, 5, 3, padding=1)).eval()
    with torch.no_grad():
        for p in seq.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn((2, 6, *hw), generator=g)
    fused = I.optimize_for_inference(seq)
    assert isinstance(fused[0], nn.ConvTranspose2d) and isinstance(fused[1], nn.Identity)
    with torch.inference_mode():
        want, got = seq(x), fused(x)
    assert got.shape == want.shape == (2, 5, 2 * hw[0], 2 * hw[1])
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())  # borders included


def test_only_plain_pairs_are_fused():
    keep = [nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 2, 3, padding=1)),
            nn.Sequential(nn.Upsample(scale_factor=3, mode="nearest"), nn.Conv2d(2, 2, 3, padding=1)),
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2, 2, 3, padding=1, stride=2)),
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2, 2, 5, padding=2))]
    for seq in keep:
        assert I.fuse_nearest_upsampling(seq) == 0 and isinstance(seq[0], nn.Upsample)


def test_fold_counts_on_resae(load_model):
    import copy

    model = copy.deepcopy(load_model("resae"))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert I.fold_batchnorm(model) == n_bn > 0
    assert I.fuse_nearest_upsampling(model) == 3  # the three x2 "resize" stages of the decoder


@pytest.mark.parametrize("name", ["ae1", "resae"])
def test_margins_cover_the_measured_receptive_field(load_model, name):
    """The computed margin is at least the field measured by perturbing one input position."""
    fast = I.optimize_for_inference(load_model(name))
    s = int(fast.downsample)
    x = torch.rand((1, 3, 160, 160), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y0 = fast.encode(x)
        x2 = x.clone()
        x2[:, :, 80, 80] += 1.0
        reach = (fast.encode(x2) - y0).abs().sum(dim=(0, 1)) > 0
        rows = np.flatnonzero(reach.any(dim=1).numpy())
        assert max(abs(rows - 80 // s)).item() <= I.encoder_margin(fast.encoder, s)
        z = y0.clone()
        z[:, :, 10, 10] += 1.0
        reach = (fast.decode(z) - fast.decode(y0)).abs().sum(dim=(0, 1)) > 0
        rows = np.flatnonzero(reach.any(dim=1).numpy()) // s
        assert max(abs(rows - 10)).item() <= I.decoder_margin(fast.decoder)


def test_tiles_fit_the_memory_budget(load_model):
    fast = I.optimize_for_inference(load_model("resae"))
    budget = 64 * 2**20
    enc_tile, dec_tile = I.auto_tiles(fast, budget)
    s = int(fast.downsample)
    assert enc_tile % s == 0 and dec_tile % s == 0
    x = torch.zeros((1, 3, 64, 64))
    per_px = I.activation_bytes_per_pixel(fast.decoder, fast.encoder(x), 64 * 64)
    side = dec_tile + 2 * I.decoder_margin(fast.decoder) * s
    assert per_px * side * side <= budget * 1.01
    assert I.tile_for_budget(1000.0, 10**6, 8, 2) == 32  # tiny budget: at least twice the margin
