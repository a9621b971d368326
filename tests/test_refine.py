"""labkit.refine: encoder-side latent refinement for a fixed decoder, and the codec's ``refine``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import labkit.codec
from labkit import bitstream, inference, quant, rate, refine, spec
from labkit.codec import Codec, CodecError
from labkit.inference import encode_tiled
from labkit.rate import estimate_bits
from labkit.refine import RefineSettings
from labkit.distortion import ssim as t_ssim

MODEL = "resae-rd-fast"


def _file_cost(data: bytes, image: np.ndarray, b: int) -> float:
    """The codec's own price of a file: MSE on [0, 1] pixels + the rate weight of b times its real bpp."""
    rec = labkit.codec.decode(data).astype(np.float64)
    mse = float(np.mean((rec - image) ** 2)) / 255.0**2
    return mse + spec.colour_map_rate_weight(b) * spec.bits_per_pixel(len(data), *image.shape[:2])


def _objective(model, x, y, ymax, b, st):
    """refine_latent's loss at latent ``y`` (hard bins), computed independently."""
    scale = torch.tensor([ymax])
    with torch.no_grad():
        clipped = torch.minimum(y, scale.reshape(1, 1, 1, 1))
        x_hat = model.decode(quant.quantize_dequantize(clipped, b, scale))[..., : x.shape[-2], : x.shape[-1]]
        pixels = x.shape[-2] * x.shape[-1]
        return float(torch.mean((x_hat - x) ** 2) + st.ssim_weight * (1 - t_ssim(x_hat, x))
                     + st.rate_weight * estimate_bits(clipped, scale, b)[0] / pixels)


@pytest.fixture(scope="module")
def fast(load_model):
    return load_model(MODEL)


def test_settings_refuse_what_makes_no_sense():
    for steps in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="steps"):
            RefineSettings(steps=steps, rate_weight=0.01, ssim_weight=0.0, lr=0.1)
    with pytest.raises(ValueError, match="rate_weight"):
        RefineSettings(steps=1, rate_weight=-1.0, ssim_weight=0.0, lr=0.1)
    with pytest.raises(ValueError, match="ssim_weight"):
        RefineSettings(steps=1, rate_weight=0.0, ssim_weight=float("nan"), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        RefineSettings(steps=1, rate_weight=0.0, ssim_weight=0.0, lr=0.0)
    st = spec.refine_settings(3)
    assert st.steps == spec.REFINE_STEPS and st.rate_weight == spec.REFINE_RATE_SCALE * spec.colour_map_rate_weight(3)


def test_the_codec_refuses_bad_steps_with_what_to_do(fast):
    with pytest.raises(CodecError, match=r"steps must be a whole number >= 0.*0 = no refinement"):
        Codec(fast, 3, model_name=MODEL, refine=-2)


def test_zero_steps_is_the_plain_codec_byte_for_byte(fast, eval_tiles):
    img = eval_tiles[0]
    assert Codec(fast, 3, model_name=MODEL, refine=0).encode(img) == Codec(fast, 3, model_name=MODEL).encode(img)


def test_refinement_lowers_its_objective_and_leaves_inputs_alone(fast, eval_tiles):
    img = eval_tiles[3]
    b = 3
    st = spec.refine_settings(b, 8)
    weights = [p.detach().clone() for p in fast.parameters()]
    c = Codec(fast, b, model_name=MODEL)
    with torch.inference_mode():
        y = encode_tiled(c.model, img, 512)
    y_copy = y.clone()
    ymax = float(quant.to_float32(quant.latent_scale(y, c.scale))[0])
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    better = refine.refine_latent(c.model, x, y, ymax, b, st)
    assert better.shape == y.shape and not better.requires_grad
    assert torch.equal(y, y_copy)  # the start is not modified
    assert all(torch.equal(a, p) for a, p in zip(weights, fast.parameters()))  # nor the network
    before, after = _objective(c.model, x, y, ymax, b, st), _objective(c.model, x, better, ymax, b, st)
    assert after < before * 0.97, (before, after)


def test_a_diverging_descent_returns_no_worse_than_its_start(fast, eval_tiles):
    """Steps of 50 bins throw the latent about; the best point seen is returned, so the
    objective is never above the network's latent's."""
    img = eval_tiles[2]
    b = 2
    c = Codec(fast, b, model_name=MODEL)
    with torch.inference_mode():
        y = encode_tiled(c.model, img, 512)
    ymax = float(quant.to_float32(quant.latent_scale(y, c.scale))[0])
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    wild = RefineSettings(steps=4, rate_weight=spec.colour_map_rate_weight(b), ssim_weight=0.01, lr=50.0)
    out = refine.refine_latent(c.model, x, y, ymax, b, wild)
    assert _objective(c.model, x, out, ymax, b, wild) <= _objective(c.model, x, y, ymax, b, wild) + 1e-7


def test_refined_files_cost_less_and_decode_with_the_plain_decoder(fast, eval_tiles):
    """The point of it: on real tiles, the refined file is cheaper by the codec's own price
    (real bytes, real decode), has the same header fields, and any receiver decodes it."""
    b = 3
    plain = Codec(fast, b, model_name=MODEL)
    refined = Codec(fast, b, model_name=MODEL, refine=10)
    gains = []
    for img in eval_tiles[[1, 7, 20]]:
        a, r = plain.encode(img), refined.encode(img)
        ha, hr = bitstream.unpack(a)[0], bitstream.unpack(r)[0]
        assert (hr.model, hr.b, hr.height, hr.width, hr.ymax) == (ha.model, ha.b, ha.height, ha.width, ha.ymax)
        assert r != a
        gains.append(_file_cost(a, img, b) - _file_cost(r, img, b))
    assert np.mean(gains) > 0 and sum(g > 0 for g in gains) >= 2, gains


def test_tiles_bound_the_working_set_and_cover_the_latent(fast, real_image, monkeypatch):
    """A budget smaller than the image refines it tile by tile: each tile's window is at most
    core + 2 margins, the cores cover every latent position exactly once, each tile's target is
    its core's pixels (cropped to the image), and the result still pays."""
    img = real_image(200, 264)  # not a multiple of the stride: edge tiles are cropped
    b = 3
    c = Codec(fast, b, model_name=MODEL)
    with torch.inference_mode():
        y = encode_tiled(c.model, img, 1024)
    ymax = float(quant.to_float32(quant.latent_scale(y, c.scale))[0])
    s = c.downsample
    m = refine.decoder_margin(c.model.decoder)
    per_pixel = inference.training_bytes_per_pixel(c.model.decoder, torch.zeros(1, y.shape[1], 8, 8), 64 * s * s)
    budget = int(per_pixel * (64 + 2 * m * s) ** 2)  # room for a 64-pixel core: the least core (2 margins) is used
    core_side = refine.tile_for_budget(per_pixel, budget, s, m) // s
    assert core_side * s < min(img.shape[:2])
    real = refine.refine_latent
    calls = []

    table = rate.prior_in_symbols(c.coder_prior[b])  # the learned coder's prices reach every tile

    def recording_spy(model, x, core, ymax_, b_, st, window=None, prior=None):
        assert window is not None, "an image larger than the tile is not refined whole"
        assert prior is table
        win, rows, cols = window
        assert win.shape[-2] <= core_side + 2 * m and win.shape[-1] <= core_side + 2 * m
        assert torch.equal(win[:, :, rows, cols], core)
        calls.append((tuple(core.shape[-2:]), tuple(x.shape[-2:])))
        return real(model, x, core, ymax_, b_, st, window=window, prior=prior)

    monkeypatch.setattr(refine, "refine_latent", recording_spy)
    better = refine.refine_tiles(c.model, img, y, ymax, b, spec.refine_settings(b, 4), budget, prior=table)
    assert better.shape == y.shape and len(calls) > 1
    hl, wl = y.shape[-2:]
    assert sum(ch * cw for (ch, cw), _ in calls) == hl * wl  # the cores tile the latent
    for (ch, cw), (ph, pw) in calls:
        assert 0 < ph <= ch * s and 0 < pw <= cw * s
    assert sum(ph * pw for _, (ph, pw) in calls) == img.shape[0] * img.shape[1]  # every pixel is a target once
    assert (better != y).any(dim=1)[0].numpy().mean() > 0.5  # most positions moved
    h, w = img.shape[:2]
    q = quant.quantize(better, quant.to_float32(ymax), b)[0].numpy().astype(np.uint8)
    data_r = c._pack(q, ymax, (h, w), c.fit_colour_map(img, q, ymax))
    assert _file_cost(data_r, img, b) < _file_cost(c.encode(img), img, b)


def test_scale_search_then_refinement(fast, eval_tiles):
    img = eval_tiles[5]
    b = 2
    search = Codec(fast, b, model_name=MODEL, scale="search")
    both = Codec(fast, b, model_name=MODEL, scale="search", refine=6)
    a, r = search.encode(img), both.encode(img)
    assert bitstream.unpack(r)[0].ymax == bitstream.unpack(a)[0].ymax  # the search's scale is kept
    symbols, ymax, _ = both.analyse(img)
    assert ymax == bitstream.unpack(r)[0].ymax
    assert labkit.codec.decode(r).shape == img.shape


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (9, 300)])
def test_tiny_and_thin_images_refine_and_decode(fast, shape):
    """Below SSIM's window and below one latent position: MSE + rate alone, and the file decodes."""
    img = (np.random.default_rng(0).random((*shape, 3)) * 255).astype(np.uint8)
    data = Codec(fast, 2, model_name=MODEL, refine=3).encode(img)
    assert labkit.codec.decode(data).shape == img.shape
