"""labkit.quant: course quantizer formulas, bounds, validation, float32 agreement."""
import numpy as np
import pytest
import torch

from labkit import quant


@pytest.fixture
def y() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 16, 8, 8, generator=g) * torch.tensor([0.5, 1.0, 3.0, 7.3]).view(-1, 1, 1, 1)


def test_latent_max_per_image_and_zero(y):
    m = quant.latent_max(y)
    assert m.shape == (4,)
    assert torch.equal(m, y.flatten(1).amax(1))
    z = quant.latent_max(torch.zeros(2, 3, 4, 4))
    assert (z > 0).all()
    q = quant.quantize(torch.zeros(2, 3, 4, 4), z, 3)
    assert (q == 0).all()


@pytest.mark.parametrize("b", range(1, 9))
def test_round_trip_error_and_range(y, b):
    m = quant.latent_max(y)
    q = quant.quantize(y, m, b)
    assert q.dtype == torch.uint8
    assert int(q.min()) >= 0 and int(q.max()) <= 2**b - 1
    assert int(q.max()) == 2**b - 1  # y == ymax lands in the top bin
    y_hat = quant.dequantize(q, m, b)
    half = (m / 2 ** (b + 1)).view(-1, 1, 1, 1)
    ulps = 4 * torch.finfo(torch.float32).eps * m.view(-1, 1, 1, 1)  # float32 rounding at bin edges
    assert ((y_hat - y).abs() <= half + ulps).all()
    assert torch.equal(quant.quantize_dequantize(y, b), y_hat)


def test_formula_values():
    y = torch.tensor([[0.0, 0.25, 0.5, 0.99, 1.0]])
    q = quant.quantize(y, torch.tensor([1.0]), 2)
    assert q.tolist() == [[0, 1, 2, 3, 3]]
    assert quant.dequantize(q, torch.tensor([1.0]), 2).tolist() == [[0.125, 0.375, 0.625, 0.875, 0.875]]


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, "3", None, True])
def test_bits_validation(y, bad):
    with pytest.raises(ValueError, match="bit depth"):
        quant.quantize(y, quant.latent_max(y), bad)
    with pytest.raises(ValueError, match="bit depth"):
        quant.add_noise(y, bad)


def test_numpy_int_bits_ok(y):
    quant.quantize(y, quant.latent_max(y), np.int64(3))


def test_ymax_shape_error(y):
    with pytest.raises(ValueError, match="one value per image"):
        quant.quantize(y, torch.ones(3), 3)


def test_float32_ymax_agreement():
    """Encoder with float64 ymax and decoder with the stored float32 value agree exactly."""
    g = torch.Generator().manual_seed(1)
    y64 = torch.rand(2, 16, 4, 4, generator=g, dtype=torch.float64) * 3.3
    m64 = quant.latent_max(y64)
    stored = np.float32(m64.numpy())  # what the bitstream keeps
    q_enc = quant.quantize(y64, m64, 5)
    q_dec_side = quant.quantize(y64, torch.from_numpy(stored), 5)
    assert torch.equal(q_enc, q_dec_side)
    a = quant.dequantize(q_enc, m64, 5)
    b = quant.dequantize(q_enc, torch.from_numpy(stored), 5)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert quant.to_float32(m64).dtype == torch.float32


@pytest.mark.parametrize("b", [1, 3, 8])
def test_noise_amplitude(y, b):
    g = torch.Generator().manual_seed(2)
    m = quant.latent_max(y)
    n = quant.add_noise(y, b, generator=g) - y
    half = (m / 2 ** (b + 1)).view(-1, 1, 1, 1)
    assert (n.abs() <= half * (1 + 1e-5)).all()
    assert (n.abs().flatten(1).amax(1) > 0.9 * half.flatten()).all()  # uses the full width
    assert abs(float((n / half).mean())) < 0.05  # zero mean


def test_noise_ymax_detached():
    y = torch.rand(2, 4, 4, 4, requires_grad=True)
    quant.add_noise(y, 2).sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))  # identity gradient only
