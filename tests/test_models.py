"""labkit.models: shapes, ranges, registry, describe()."""
import json

import pytest
import torch

from labkit.models import MODEL_NAMES, UPSAMPLE_MODES, build_model, count_parameters, describe

SMALL = {"ae1": {}, "ae2": {}, "resae": {"widths": [8, 8, 16]}, "resae-rd": {"widths": [8, 8, 16], "blocks": 1},
         "resae-rd-fast": {"widths": [8, 8, 16], "blocks": 1, "decoder_blocks": [1, 0]}}
SMALL["resae-rd-fast-v1"] = SMALL["resae-rd-fast"]  # the same layout (labkit.spec.SUPERSEDED)
SMALL["resae-rd-fast-v2"] = SMALL["resae-rd-fast"]
#: Latent channels per registered name (resae-rd has twice the course's 16 for the rate term to spend).
LATENT = {"ae1": 16, "ae2": 16, "resae": 16, "resae-rd": 32, "resae-rd-fast": 32, "resae-rd-fast-v1": 32, "resae-rd-fast-v2": 32}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_and_ranges(name):
    m = build_model(name, **SMALL[name]).eval()
    c = LATENT[name]
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        y = m.encode(x)
        assert y.shape == (2, c, 16, 16)
        assert (y >= 0).all()
        out = m(x, b=3)
        assert out["x_hat"].shape == x.shape
        assert 0 <= float(out["x_hat"].min()) and float(out["x_hat"].max()) <= 1
        assert torch.equal(m.decode(out["y_hat"]), out["x_hat"])
        # non-square size divisible by 8
        out = m(torch.rand(1, 3, 64, 96))
        assert out["y"].shape == (1, c, 8, 12) and out["x_hat"].shape == (1, 3, 64, 96)
    assert m.downsample == 8 and m.latent_channels == c


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_upsample_modes(mode):
    for name in ("ae1", "resae"):
        m = build_model(name, upsample=mode, **SMALL[name])
        assert m(torch.rand(1, 3, 32, 40))["x_hat"].shape == (1, 3, 32, 40)
        assert m.config["upsample"] == mode


def test_forward_modes():
    m = build_model("resae", **SMALL["resae"]).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = m(x)
        assert torch.equal(plain["y_hat"], plain["y"])
        hard = m(x, b=2)
        assert len(torch.unique(hard["y_hat"][0])) <= 4
        noisy = m(x, b=2, noise=True)
        assert not torch.equal(noisy["y_hat"], noisy["y"])
    with pytest.raises(ValueError, match="noise=True needs"):
        m(x, noise=True)


def test_input_validation():
    m = build_model("ae1")
    with pytest.raises(ValueError, match="divisible by 8"):
        m.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        m.encode(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        m.decode(torch.rand(1, 8, 4, 4))


def test_build_model_errors_and_config():
    with pytest.raises(ValueError, match="unknown model 'nope'.*ae1.*ae2.*resae"):
        build_model("nope")
    with pytest.raises(ValueError, match="bad config"):
        build_model("ae1", widths=[1, 2, 3])
    with pytest.raises(ValueError, match="upsample"):
        build_model("resae", upsample="bicubic-magic")
    with pytest.raises(ValueError, match="noise"):
        build_model("ae1", noise=True)
    assert build_model("ae1").config["noise"] is False
    assert build_model("ae2").config["noise"] is True
    cfg = build_model("resae").config
    json.dumps(cfg)
    assert cfg["name"] == "resae"
    assert build_model(**cfg).config == cfg  # config is enough to rebuild


def test_seeded_build_is_reproducible_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b = build_model("resae", seed=3), build_model("resae", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_course_architecture_exact():
    m = build_model("ae1")
    convs = [(type(l).__name__, l.in_channels, l.out_channels, l.kernel_size, l.stride)
             for l in m.modules() if isinstance(l, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs[:3] == [("Conv2d", 3, 128, (7, 7), (1, 1)), ("Conv2d", 128, 32, (5, 5), (1, 1)),
                         ("Conv2d", 32, 16, (3, 3), (1, 1))]
    assert [c[0] for c in convs[3:6]] == ["ConvTranspose2d"] * 3
    assert all(c[3] == (2, 2) and c[4] == (2, 2) for c in convs[3:6])
    assert convs[6][:3] == ("Conv2d", 128, 3)
    assert count_parameters(m) == 213_715


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_describe(name):
    m = build_model(name)
    rows = describe(m)
    assert rows and {r["part"] for r in rows} == {"encoder", "decoder"}
    json.dumps(rows)
    enc = [r for r in rows if r["part"] == "encoder"]
    assert enc[-1]["output_shape"] == [LATENT[name], 16, 16]
    assert rows[-1]["output_shape"] == [3, 128, 128] and rows[-1]["type"] == "Sigmoid"
    assert sum(r["params"] for r in rows) == count_parameters(m)
    conv0 = rows[0]
    assert conv0["type"] == "Conv2d" and conv0["in_channels"] == 3
    assert set(conv0) >= {"name", "type", "in_channels", "out_channels", "kernel", "stride", "output_shape"}
    assert sorted(r["scale"] for r in rows if r["scale"] != 1) == [0.5] * 3 + [2] * 3
    assert m.training  # mode restored


def test_fast_decoder_shares_the_encoder_and_runs_nothing_at_full_resolution():
    """resae-rd-fast: resae-rd's encoder exactly; a decoder with one ResBlock less at 1/4 whose
    last convolution works at half resolution (a pixel shuffle makes the full-size image)."""
    rd, fast = build_model("resae-rd"), build_model("resae-rd-fast")
    assert fast.config["decoder_blocks"] == [2, 1] and fast.config["head"] == "shuffle"
    assert "decoder_blocks" not in rd.config and "head" not in rd.config  # old configs rebuild unchanged
    assert {k: v.shape for k, v in rd.encoder.state_dict().items()} == \
        {k: v.shape for k, v in fast.encoder.state_dict().items()}
    rows = describe(fast)
    dec = [r for r in rows if r["part"] == "decoder"]
    n_blocks = [sum(type(m).__name__ == "ResBlock" for m in net.decoder) for net in (rd, fast)]
    assert n_blocks == [4, 3]
    convs = [r for r in dec if r["type"] == "Conv2d"]
    assert all(r["output_shape"][1] <= 64 for r in convs)  # no conv at 128x128 (full resolution)
    assert dec[-2]["type"] == "PixelShuffle" and dec[-3]["out_channels"] == 12
    assert count_parameters(fast.decoder) < count_parameters(rd.decoder)


@pytest.mark.parametrize("bad, match", [({"decoder_blocks": [1]}, "decoder_blocks"),
                                        ({"decoder_blocks": [1, -1]}, "decoder_blocks"),
                                        ({"head": "deconv"}, "unknown head")])
def test_resae_decoder_options_are_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model("resae", **bad)


@pytest.mark.parametrize("name, cfg", [
    ("resae-rd-fast", {"widths": [8, 8, 16], "blocks": 1, "decoder_blocks": [1, 1]}),   # equal to the class's own rule
    ("resae-rd-fast", {"widths": [8, 8, 16], "blocks": 1, "head": "conv", "latent_channels": 16}),
    ("resae-rd", {"widths": [8, 8, 16], "blocks": 1, "latent_channels": 16}),
])
def test_a_config_rebuilds_the_layout_it_came_from(name, cfg):
    """A model's config rebuilds that model, also where an argument equals the class's default but not
    the name's (the name's default must not creep back in: the weights would not fit)."""
    model = build_model(name, **cfg)
    again = build_model(name, **{k: v for k, v in model.config.items() if k not in ("name", "noise")})
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert again.config == model.config


def test_a_config_records_the_values_the_layout_used():
    """Equal layouts get equal configs: a default left to the class (``None``) or given as a tuple is
    recorded as the layout used it."""
    small = {"widths": [8, 8, 16], "blocks": 1}
    configs = [build_model("resae-rd-fast", **small, decoder_blocks=v).config for v in (None, (1, 1), [1, 1])]
    assert configs[0] == configs[1] == configs[2] and configs[0]["decoder_blocks"] == [1, 1]
    assert build_model("resae-rd", **small, latent_channels=16.0).config["latent_channels"] == 16
