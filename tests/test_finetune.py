"""labkit.finetune: the whole-model fine-tune with the codec's quantization, rules and crops."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from labkit import finetune as FT
from labkit import quant, spec
from labkit.codec import load_checkpoint_file
from labkit.models import build_model
from labkit.train import TrainConfig

SMALL = {"widths": [8, 8, 16], "blocks": 1, "decoder_blocks": [1, 0]}


def _model(seed=0):
    return build_model("resae-rd-fast", seed=seed, **SMALL)


def _cfg(bits):
    """A small model's TrainConfig (32x32 crops, the shipped loss and scale rule) at these bit depths."""
    return TrainConfig(model="resae-rd-fast", model_cfg=dict(SMALL), crop=32, bits=list(bits), rate_weight=0.015,
                       loss="mse+ssim", scale="p99.9", device="cpu")


def _x(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def test_ste_gives_the_decoder_the_codec_bins_and_the_encoder_a_gradient():
    model = _model().train()
    x = _x()
    res = FT.rd_forward(model, x, 2, "p99.9", quantizer="ste")
    with torch.no_grad():
        y = model.encode(x)
        ymax = quant.to_float32(quant.latent_scale(y, "p99.9"))
        expected = quant.quantize_dequantize(torch.minimum(y, ymax.reshape(-1, 1, 1, 1)), 2, ymax)
    # the encoder's BatchNorm in train mode sees the same batch twice: same statistics, same output
    assert torch.allclose(res["y_hat"], expected, atol=1e-6)
    assert len(torch.unique(res["y_hat"][0, 0])) <= 4  # b = 2: at most four bin centres per channel
    res["x_hat"].mean().backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_noise_without_rules_is_the_models_own_forward():
    model = _model().eval()
    x = _x()
    torch.manual_seed(3)
    a = FT.rd_forward(model, x, 3, "p99.9", quantizer="noise")
    torch.manual_seed(3)
    b = model(x, b=3, noise=True, scale="p99.9")
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["ymax"], b["ymax"])


def test_rules_draw_each_samples_scale_from_the_list():
    model = _model().eval()
    x = _x(n=16)
    rules = ["p99.5", "max"]
    gen = torch.Generator().manual_seed(0)
    res = FT.rd_forward(model, x, 3, "p99.9", rules=rules, quantizer="ste", generator=gen)
    with torch.no_grad():
        y = model.encode(x)
        options = torch.stack([quant.to_float32(quant.latent_scale(y, r)) for r in rules])  # [2, N]
    hit = (res["ymax"][None] == options)
    assert bool(hit.any(0).all()), "every scale is one of the rules'"
    assert bool(hit[0].any()) and bool(hit[1].any()), "both rules are drawn in 16 samples"
    assert float((res["y"].detach() - torch.minimum(y, res["ymax"].reshape(-1, 1, 1, 1))).abs().max()) == 0.0


def test_scale_rules_parses_search_and_lists_and_refuses_typos():
    assert FT.scale_rules("search") == list(spec.SCALE_SEARCH_RULES)
    assert FT.scale_rules("p99, max") == ["p99", "max"]
    assert FT.scale_rules(None) is None and FT.scale_rules("") is None
    with pytest.raises(ValueError, match="unknown scale rule"):
        FT.scale_rules("p99.9,mx")


def _images(n=6, size=48):
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_crop_batch_is_reproducible_and_in_range():
    imgs = _images()
    a = FT.crop_batch(imgs, 5, 32, "strong", torch.Generator().manual_seed(7))
    b = FT.crop_batch(imgs, 5, 32, "strong", torch.Generator().manual_seed(7))
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_flip_crops_are_pixels_of_the_images():
    imgs = _images()
    x = FT.crop_batch(imgs, 8, 32, "flip", torch.Generator().manual_seed(1))
    values = set(np.unique(imgs.numpy()).tolist())
    got = np.unique(np.round(x.numpy() * 255).astype(int))
    assert set(got.tolist()) <= values


def test_strong_augment_permutes_channels_of_some_samples():
    # every image is constant per channel (10, 100, 200): a crop's channel means give its order
    imgs = torch.tensor([10, 100, 200], dtype=torch.uint8)[None, :, None, None].expand(4, 3, 48, 48).contiguous()
    seen = set()
    for s in range(8):
        x = FT.crop_batch(imgs, 16, 32, "strong", torch.Generator().manual_seed(s))
        for m in x.mean(dim=(2, 3)).mul(255).round().int().tolist():
            assert sorted(m) == [10, 100, 200]
            seen.add(tuple(m))
    assert (10, 100, 200) in seen and len(seen) > 3


def test_crop_batch_refuses_images_smaller_than_the_crop():
    with pytest.raises(ValueError, match="smaller than"):
        FT.crop_batch(_images(size=16), 2, 32)


def test_config_refuses_unknown_settings():
    with pytest.raises(ValueError, match="quantizer"):
        FT.FinetuneConfig(quantizer="round")
    with pytest.raises(ValueError, match="augment"):
        FT.FinetuneConfig(augment="heavy")
    with pytest.raises(ValueError, match="unknown scale rule"):
        FT.FinetuneConfig(rules=["p101"])
    with pytest.raises(ValueError, match="unknown FinetuneConfig keys"):
        FT.FinetuneConfig.from_dict({"secs": 3})
    with pytest.raises(ValueError, match="part"):
        FT.FinetuneConfig(part="decoder")
    with pytest.raises(ValueError, match="ssim_weight"):
        FT.FinetuneConfig(ssim_weight=-0.1)
    with pytest.raises(ValueError, match="ssim_weight"):
        FT.FinetuneConfig(ssim_weight=float("nan"))
    for crop in (0, 60):
        with pytest.raises(ValueError, match="crop"):
            FT.FinetuneConfig(crop=crop)
    for decay in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ema_decay"):
            FT.FinetuneConfig(ema_decay=decay)
    for power in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ema_power"):
            FT.FinetuneConfig(ema_power=power)
    with pytest.raises(ValueError, match="one of them"):
        FT.FinetuneConfig(ema_decay=0.999, ema_power=4.0)


def test_finetune_keeps_the_best_weights_and_records_the_recipe(tmp_path, ticking_clock):
    ticking_clock(FT, 0.05)
    model = _model(seed=4)
    cfg = _cfg([2, 3])
    ft = FT.FinetuneConfig(seconds=1.5, batch=2, validations=2, rules=["p99.9", "max"])
    val = _images(n=3, size=32).float().div(255)
    lines = []
    hist = FT.finetune(model, _images(), val, cfg, ft, tmp_path, {"note": "test"}, log=lines.append,
                       history_base={"val_psnr": [20.0]})
    assert hist["steps"] > 0 and len(hist["objective"]) == len(lines) >= 3
    best = int(np.argmin(hist["objective"]))
    assert hist["best_step"] == hist["step"][best]
    saved, meta = load_checkpoint_file(tmp_path)
    assert meta["note"] == "test" and meta["finetune"]["quantizer"] == "ste"
    assert meta["finetune"]["rules"] == ["p99.9", "max"] and meta["finetune"]["best_step"] == hist["best_step"]
    for k, v in saved.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), f"{k}: the model ends holding the kept weights"
    saved_history = json.loads((tmp_path / "history.json").read_text())
    assert saved_history["finetune"]["steps"] == hist["steps"] and saved_history["val_psnr"] == [20.0]


def test_a_whole_model_finetune_weighs_ssim_by_its_own_setting_and_keeps_the_runs_recipe(tmp_path, ticking_clock):
    import dataclasses

    from labkit.train import validate_rd

    ticking_clock(FT, 0.05)
    model = _model(seed=5)
    cfg = _cfg([2, 3])
    val = _images(n=3, size=32).float().div(255)
    heavier = dataclasses.replace(cfg, ssim_weight=0.4)
    want, plain = (validate_rd(model, val, c, torch.device("cpu"))["objective"] for c in (heavier, cfg))
    assert want != pytest.approx(plain, rel=1e-3)  # the weight moves the objective
    ft = FT.FinetuneConfig(seconds=1.0, batch=2, validations=1, ssim_weight=0.4)
    hist = FT.finetune(model, _images(), val, cfg, ft, tmp_path, log=lambda line: None)
    assert hist["objective"][0] == pytest.approx(want, rel=1e-6)  # the first validation, before any step
    _, meta = load_checkpoint_file(tmp_path)
    assert meta["train"]["ssim_weight"] == cfg.ssim_weight  # the training run's recipe stays as it was
    assert meta["finetune"]["ssim_weight"] == 0.4


def test_weight_average_moves_towards_the_model_with_a_warm_up_and_copies_integer_state():
    model = _model(seed=6)
    avg = FT.WeightAverage(model, 0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(1.0)
    bn_name, bn = next((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.num_batches_tracked.fill_(7)
    avg.update()  # the first update weighs the old average by min(0.9, 1/10) = 0.1
    name, prm = next(iter(model.named_parameters()))
    assert torch.allclose(avg.state[name], start[name] + 0.9, atol=1e-6)
    assert int(avg.state[f"{bn_name}.num_batches_tracked"]) == 7
    for _ in range(200):
        avg.update()  # the model stands still: the average converges to it
    assert torch.allclose(avg.state[name], prm.detach(), atol=1e-5)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    avg.state[name] += 5.0
    with avg.swapped_in():
        assert torch.equal(model.state_dict()[name], avg.state[name])
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), f"{k}: the trained state is back after the block"
    with pytest.raises(ValueError, match="decay"):
        FT.WeightAverage(model, 1.0)
    for both_or_neither in ({}, {"decay": 0.9, "power": 2.0}):
        with pytest.raises(ValueError, match="not both or neither"):
            FT.WeightAverage(model, **both_or_neither)


@pytest.mark.parametrize("power", [0.0, 1.0, 4.0])
def test_a_power_average_weighs_step_t_as_t_to_the_power(power):
    """The model holds the value t at update t. After T updates, update t's weight in the average,
    (1 - d_t) times the later d_s, telescopes to (t^(γ+1) - (t-1)^(γ+1)) / T^(γ+1)."""
    model = torch.nn.Linear(1, 1, bias=False)
    avg = FT.WeightAverage(model, power=power)
    steps = 50
    for t in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(t))
        avg.update()
    t = np.arange(1, steps + 1, dtype=np.float64)
    weights = (t ** (power + 1) - (t - 1) ** (power + 1)) / steps ** (power + 1)
    assert weights.sum() == pytest.approx(1.0)
    assert float(avg.state["weight"]) == pytest.approx(float((weights * t).sum()), rel=1e-5)
    if power == 0.0:
        assert float(avg.state["weight"]) == pytest.approx(t.mean(), rel=1e-5)  # the plain mean
    with pytest.raises(ValueError, match="power"):
        FT.WeightAverage(model, power=-0.5)


@pytest.mark.parametrize("averaging", [{"ema_decay": 0.8}, {"ema_power": 2.0}])
def test_finetune_with_an_average_judges_and_keeps_the_average_not_the_trained_weights(tmp_path, ticking_clock,
                                                                                           monkeypatch, averaging):
    ticking_clock(FT, 0.05)
    lent: list[tuple[dict, dict]] = []  # (trained, average) at each validation

    class Recording(FT.WeightAverage):
        def swapped_in(self):
            lent.append(({k: v.clone() for k, v in self.model.state_dict().items()},
                         {k: v.clone() for k, v in self.state.items()}))
            return super().swapped_in()

    monkeypatch.setattr(FT, "WeightAverage", Recording)
    model = _model(seed=7)
    seen: list[dict] = []  # what the model held while each validation line was logged
    ft = FT.FinetuneConfig(seconds=1.5, batch=2, validations=3, **averaging)
    hist = FT.finetune(model, _images(), _images(n=3, size=32).float().div(255), _cfg([2, 3]), ft, tmp_path,
                       log=lambda line: seen.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert hist["steps"] > 3 and len(lent) == len(seen) == len(hist["objective"])
    name = next(k for k, _ in model.named_parameters())
    for (trained, average), held in zip(lent, seen):
        assert torch.equal(held[name], average[name])  # validation saw the average
    assert not torch.equal(lent[-1][0][name], lent[-1][1][name])  # which is not the trained weights
    saved, meta = load_checkpoint_file(tmp_path)
    kept = seen[int(np.argmin(hist["objective"]))]
    for k, v in saved.state_dict().items():
        assert torch.equal(v, kept[k]), f"{k}: the checkpoint is the best average"
    assert {k: meta["finetune"][k] for k in ("ema_decay", "ema_power")} == {"ema_decay": 0.0, "ema_power": None,
                                                                          **averaging}


def test_a_finetune_crop_sets_the_training_crops_and_the_checkpoint_keeps_the_runs_own(tmp_path, ticking_clock,
                                                                                      monkeypatch):
    ticking_clock(FT, 0.05)
    sides = []
    real = FT.crop_batch
    monkeypatch.setattr(FT, "crop_batch", lambda images, n, crop, *a: sides.append(crop) or real(images, n, crop, *a))
    ft = FT.FinetuneConfig(seconds=0.5, batch=2, validations=1, crop=40)
    FT.finetune(_model(seed=8), _images(), _images(n=2, size=32).float().div(255), _cfg([2]), ft, tmp_path,
                log=lambda line: None)
    assert sides and set(sides) == {40}
    _, meta = load_checkpoint_file(tmp_path)
    assert meta["train"]["crop"] == 32 and meta["finetune"]["crop"] == 40


# ----------------------------------------------------------------------------- the encoder alone, on the codec's objective

def test_codec_objective_is_refinements_cost_of_the_codecs_bins():
    from labkit.distortion import ssim
    from labkit.rate import estimate_bits

    model, x, b = _model(seed=2).eval(), _x(n=3, size=32, seed=5), 3
    got = FT.codec_objective(model, x, b, "p99.9")
    with torch.no_grad():
        y = model.encode(x)
        ymax = quant.to_float32(quant.latent_scale(y, "p99.9"))
        y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1))
        x_hat = model.decode(quant.quantize_dequantize(y, b, ymax))
        s = spec.refine_settings(b)
        want = (torch.mean((x_hat - x) ** 2) + s.ssim_weight * (1 - ssim(x_hat, x))
                + s.rate_weight * estimate_bits(y, ymax, b).mean() / (32 * 32))
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-5)
    heavier = FT.codec_objective(model, x, b, "p99.9", ssim_weight=0.5)
    assert float(heavier.detach()) > float(got.detach())
    # the learned context prices bits under the prior: a prior sure of symbol 0 everywhere
    # makes a latent of many zeros cheap, and the encoder gets a gradient through the hard bins
    c = model.latent_channels
    prior = torch.full((c, 16, 8), 1e-3)
    prior[..., 0] = 1e4
    priced = FT.codec_objective(model, x, b, "p99.9", priors={b: prior})
    assert float(priced.detach()) != pytest.approx(float(got.detach()), rel=1e-6)
    priced.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


def test_encoder_finetune_leaves_the_decoder_and_every_statistic_as_they_were(tmp_path, ticking_clock):
    ticking_clock(FT, 0.05)
    model = _model(seed=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _cfg([1, 3])
    ft = FT.FinetuneConfig(seconds=2.0, batch=2, validations=3, part="encoder", lr=3e-3)
    val = _images(n=3, size=32).float().div(255)
    hist = FT.finetune(model, _images(), val, cfg, ft, tmp_path, log=lambda line: None)
    assert hist["steps"] > 0 and hist["objective"][0] == 1.0  # each b's cost relative to its start
    assert len(set(hist["objective"])) > 1 and len(hist["objective_per_b"]) == len(hist["objective"])
    after = model.state_dict()
    for k, v in before.items():
        if not k.startswith("encoder.") or "running_" in k or "num_batches" in k:
            assert torch.equal(after[k], v), f"{k} changed: only the encoder's weights may"
    saved, meta = load_checkpoint_file(tmp_path)
    assert meta["finetune"]["part"] == "encoder"
    # the caller's model comes back trainable and in the mode it was in
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_frozen_batchnorm_keeps_every_running_statistic_while_the_weights_train(tmp_path, ticking_clock):
    ticking_clock(FT, 0.05)
    model = _model(seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _cfg([2, 3])
    ft = FT.FinetuneConfig(seconds=1.5, batch=2, validations=3, freeze_bn=True, lr=3e-3)
    val = _images(n=3, size=32).float().div(255)
    hist = FT.finetune(model, _images(), val, cfg, ft, tmp_path, log=lambda line: None)
    assert hist["steps"] > 0
    after = model.state_dict()
    stats = [k for k in before if "running_" in k or "num_batches" in k]
    assert stats, "the test model has BatchNorm layers"
    for k in stats:
        assert torch.equal(after[k], before[k]), f"{k} changed with freeze_bn"
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("decoder.") and k not in stats)
    # without it, the same run moves the statistics (the check above can fail)
    model = _model(seed=7)
    FT.finetune(model, _images(), val, cfg, FT.FinetuneConfig(seconds=1.5, batch=2, validations=3, lr=3e-3),
                tmp_path / "unfrozen", log=lambda line: None)
    assert any(not torch.equal(model.state_dict()[k], before[k]) for k in stats if "running_" in k)


# ----------------------------------------------------------------------------- BatchNorm statistics for the codec's bins

def test_recalibrate_bn_averages_the_codecs_bins_and_changes_no_weight():
    model = _model(seed=5)
    cfg = _cfg([1, 3, 5])
    images = _images()
    with torch.no_grad():  # statistics a train-mode run would leave: anything but the codec's
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert FT.recalibrate_bn(model, images, cfg, batches=1, batch=3, part="decoder", seed=2) == sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.decoder.modules())
    after = model.state_dict()
    assert not model.training
    for k, v in before.items():
        if k.startswith("decoder.") and ("running_" in k or "num_batches" in k):
            continue
        assert torch.equal(after[k], v), f"{k}: recalibration changes no weight and, with part='decoder', no encoder statistic"
    # one batch: the first decoder BatchNorm's mean is that batch's mean of the conv on the codec's bins
    import random
    gen = torch.Generator().manual_seed(2)
    x = FT.crop_batch(images, 3, cfg.crop, "flip", gen)
    b = random.Random(2).choice(list(cfg.train_bits))
    with torch.no_grad():
        y = model.encode(x)
        ymax = quant.to_float32(quant.latent_scale(y, cfg.scale))
        y = torch.minimum(y, ymax.reshape(-1, 1, 1, 1))
        h = model.decoder[0][0](quant.quantize_dequantize(y, b, ymax))
    torch.testing.assert_close(after["decoder.0.1.running_mean"], h.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert int(after["decoder.0.1.num_batches_tracked"]) == 1
    # part="all" re-estimates the encoder's too, in the same pass: its first layer's mean is the batch mean of its conv
    FT.recalibrate_bn(model, images, cfg, batches=1, batch=3, part="all", seed=2)
    x = FT.crop_batch(images, 3, cfg.crop, "flip", torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.state_dict()["encoder.0.1.running_mean"],
                                   model.encoder[0][0](x).mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert not torch.equal(model.state_dict()["encoder.0.1.running_mean"], before["encoder.0.1.running_mean"])
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="part"):
        FT.recalibrate_bn(model, images, cfg, part="encoder")


def test_recalibrate_bn_takes_crops_of_the_side_asked_for(monkeypatch):
    sides = []
    real = FT.crop_batch
    monkeypatch.setattr(FT, "crop_batch", lambda images, n, crop, *a: sides.append(crop) or real(images, n, crop, *a))
    model, cfg, images = _model(seed=5), _cfg([2]), _images()  # 48-pixel images, 32-pixel training crops
    FT.recalibrate_bn(model, images, cfg, batches=2, batch=2, seed=1)
    FT.recalibrate_bn(model, images, cfg, batches=2, batch=2, seed=1, crop=48)
    assert sides == [32, 32, 48, 48]
    for bad in (0, 20, 56):  # not a multiple of 8, or larger than the images
        with pytest.raises(ValueError, match="crop"):
            FT.recalibrate_bn(model, images, cfg, batches=1, batch=2, crop=bad)


def test_finetune_with_recalibration_keeps_weights_judged_with_recalibrated_statistics(tmp_path, ticking_clock):
    ticking_clock(FT, 0.05)
    model = _model(seed=6)
    cfg = _cfg([2, 3])
    ft = FT.FinetuneConfig(seconds=1.5, batch=2, validations=2, recalibrate_bn=3)
    val = _images(n=3, size=32).float().div(255)
    FT.finetune(model, _images(), val, cfg, ft, tmp_path, log=lambda line: None)
    saved, meta = load_checkpoint_file(tmp_path)
    assert meta["finetune"]["recalibrate_bn"] == 3
    tracked = [int(v) for k, v in saved.state_dict().items() if k.endswith("num_batches_tracked")]
    assert tracked and all(n == 3 for n in tracked), "the kept statistics are the re-estimate (3 batches since the reset)"
    for bad in ({"part": "encoder"}, {"freeze_bn": True}):
        with pytest.raises(ValueError, match="recalibrate_bn"):
            FT.FinetuneConfig(recalibrate_bn=4, **bad)
    with pytest.raises(ValueError, match="recalibrate_bn"):
        FT.FinetuneConfig(recalibrate_bn=-1)
