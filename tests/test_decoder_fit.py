"""labkit.decoder_fit: the lighter decoder for a frozen encoder (how resae-rd-fast is made)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from labkit import decoder_fit as D
from labkit.codec import load_checkpoint_file
from labkit.models import build_model

SMALL = {"widths": [8, 8, 16], "blocks": 1}


def _pair():
    source = build_model("resae-rd", seed=1, **SMALL).eval()
    source.scale_rule = "p99.9"
    fast = build_model("resae-rd-fast", seed=2, decoder_blocks=[1, 0], **SMALL)
    return source, fast


def _images(n=12, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, 1, 3))
    ramp = np.linspace(0, 80, size)[None, :, None, None].astype(np.int64)
    return np.clip(base + ramp + rng.integers(-10, 11, (n, size, size, 3)), 0, 255).astype(np.uint8)


def test_transfer_copies_the_encoder_and_every_shared_decoder_layer():
    source, fast = _pair()
    head = D.transfer(fast, source)
    assert head == ["decoder.8", "decoder.9", "decoder.10"]
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(fast.encoder.state_dict()[k], v)
    src = list(source.decoder.children())
    # fast decoder: conv, Res(1/8), up, BN, ReLU, up, BN, ReLU | head; the source's 1/4 ResBlock is skipped
    kept = [0, 1, 2, 3, 4, 6, 7, 8]
    for mod, i in zip(list(fast.decoder.children())[:-3], kept):
        a, b = mod.state_dict(), src[i].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ridge_init_starts_the_head_close_to_the_source_decoder():
    source, fast = _pair()
    D.transfer(fast, source)
    fast.eval()
    cfg = D.DecoderFitConfig(crop=32, batch=4, ridge_batches=2)
    ds = D.TileDataset(_images(), crop=32, augment=True, seed=0)
    x, b = D._batch_at(ds, 5, cfg)
    yq = D._latents(source.encoder, x, b, "p99.9")
    with torch.no_grad():
        teacher = source.decoder(yq)
        before = float(((fast.decoder(yq) - teacher) ** 2).mean())
        D._ridge_init(fast, source, source.encoder, ds, "p99.9", cfg)
        after = float(((fast.decoder(yq) - teacher) ** 2).mean())
    assert after < 0.25 * before


def test_fit_decoder_keeps_the_encoder_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    source, fast = _pair()
    cfg = D.DecoderFitConfig(max_steps=3, batch=4, crop=32, ridge_batches=1, checkpoint_every_s=0)
    lines = []
    hist = D.fit_decoder(fast, source, _images(), cfg, out_dir=tmp_path, val_images=_images(4, seed=1),
                         log=lines.append)
    assert hist["step"] == [3] and len(hist["train_loss"]) == 1 and np.isfinite(hist["train_loss"][0])
    for k, v in source.encoder.state_dict().items():  # frozen: the symbols stay the source's
        assert torch.equal(fast.encoder.state_dict()[k], v)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model"] == "resae-rd-fast" and meta["decoder_fit"] == cfg.to_dict() and "train" not in meta
    assert meta["scale"] == "p99.9" and meta["steps"] == 3 and np.isfinite(meta["final_val_psnr"])
    loaded, _ = load_checkpoint_file(tmp_path)
    assert loaded.scale_rule == "p99.9"
    for k, v in fast.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # resume=True continues from last.pt: nothing left to do, same weights
    again = build_model("resae-rd-fast", seed=9, decoder_blocks=[1, 0], **SMALL)
    D.fit_decoder(again, source, _images(), cfg, out_dir=tmp_path, log=lines.append, resume=True)
    assert any(line.startswith("resumed") for line in lines)
    for k, v in fast.decoder.state_dict().items():
        assert torch.equal(again.decoder.state_dict()[k], v)
    with pytest.raises(ValueError, match="another DecoderFitConfig"):
        D.fit_decoder(again, source, _images(), D.DecoderFitConfig(max_steps=4, batch=4, crop=32),
                      out_dir=tmp_path, log=lines.append, resume=True)
    # without resume, a stale last.pt is replaced: the fit runs again from the (new) source
    lines.clear()
    other = build_model("resae-rd", seed=5, **SMALL).eval()
    fresh = build_model("resae-rd-fast", seed=9, decoder_blocks=[1, 0], **SMALL)
    D.fit_decoder(fresh, other, _images(), cfg, out_dir=tmp_path, log=lines.append)
    assert not any(line.startswith("resumed") for line in lines)
    for k, v in other.encoder.state_dict().items():
        assert torch.equal(fresh.encoder.state_dict()[k], v)


def test_schedule_phases():
    cfg = D.DecoderFitConfig(budget_s=100, stage2_s=50)
    assert D._lrs_at(cfg, 10) == (0.0, cfg.lr_new1, 1)             # head alone
    r, n, phase = D._lrs_at(cfg, 20)
    assert phase == 2 and r == pytest.approx(cfg.lr_reused) and n == pytest.approx(cfg.lr_new2)
    r, n, phase = D._lrs_at(cfg, 99.999)
    assert phase == 2 and r == pytest.approx(cfg.lr_reused * cfg.final_lr_frac, rel=1e-3)
    r, n, phase = D._lrs_at(cfg, 100)
    assert phase == 3 and r == pytest.approx(cfg.lr_stage2) and n == pytest.approx(3 * cfg.lr_stage2)
    with pytest.raises(ValueError, match="unknown DecoderFitConfig keys"):
        D.DecoderFitConfig.from_dict({"budget": 3})


def test_latents_take_one_scale_rule_per_sample():
    source, _ = _pair()
    x = torch.from_numpy(_images(3)).permute(0, 3, 1, 2).float() / 255

    def encoder(batch):   # one image per call: a convolution's last bits may depend on the batch size on some CPUs
        return torch.cat([source.encoder(batch[i:i + 1]) for i in range(len(batch))])

    rules = ["p99.5", "max", "p99.9"]
    per_sample = D._latents(encoder, x, 3, rules)
    for i, r in enumerate(rules):  # equal to each image coded alone with its rule
        assert torch.equal(per_sample[i:i + 1], D._latents(encoder, x[i:i + 1], 3, r))
    assert not torch.equal(per_sample[0], D._latents(encoder, x[:1], 3, "max")[0])   # the rules differ here
    with pytest.raises(ValueError, match="2 scale rules for a batch of 3"):
        D._latents(source.encoder, x, 3, rules[:2])


def test_rules_per_sample_come_from_seed_and_step_and_leave_the_batches_alone():
    cfg = D.DecoderFitConfig(batch=6, crop=32, rules=["p99.5", "max"])
    assert D._rules_at(7, 6, "p99.9", D.DecoderFitConfig()) == "p99.9"   # no rules: the source's
    a = D._rules_at(7, 6, "p99.9", cfg)
    assert a == D._rules_at(7, 6, "p99.9", cfg) and set(a) <= {"p99.5", "max"}
    assert any(D._rules_at(s, 6, "p99.9", cfg) != a for s in range(8, 20))
    ds = D.TileDataset(_images(), crop=32, augment=True, seed=0)
    x1, b1 = D._batch_at(ds, 7, cfg)
    x2, b2 = D._batch_at(ds, 7, D.DecoderFitConfig(batch=6, crop=32))
    assert b1 == b2 and torch.equal(x1, x2)


def test_warm_start_continues_the_given_decoder(tmp_path):
    source, fast = _pair()
    D.fit_decoder(fast, source, _images(), D.DecoderFitConfig(max_steps=2, batch=4, crop=32, ridge_batches=1),
                  log=lambda s: None)
    start = {k: v.clone() for k, v in fast.decoder.state_dict().items()}
    cfg = D.DecoderFitConfig(budget_s=0, stage2_s=10, max_steps=2, batch=4, crop=32, warm_start=True,
                             rules=["p99.5", "max"])
    lines: list[str] = []
    hist = D.fit_decoder(fast, source, _images(), cfg, out_dir=tmp_path, log=lines.append)
    assert any("warm start" in line for line in lines) and not any("ridge" in line for line in lines)
    assert hist["phase"] == [3]                                  # every layer from the first step
    assert any(not torch.equal(fast.decoder.state_dict()[k], v) for k, v in start.items())
    assert json.loads((tmp_path / "config.json").read_text())["decoder_fit"]["rules"] == ["p99.5", "max"]
    # a decoder fitted to another encoder is refused, and so is a warm start with a stage 1
    other = build_model("resae-rd", seed=5, **SMALL).eval()
    with pytest.raises(ValueError, match="encoder differs"):
        D.fit_decoder(fast, other, _images(), cfg, log=lines.append)
    with pytest.raises(ValueError, match="budget_s=0"):
        D.fit_decoder(fast, source, _images(), D.DecoderFitConfig(warm_start=True, max_steps=1), log=lines.append)
    with pytest.raises(ValueError, match="scale rule"):
        D.fit_decoder(fast, source, _images(),
                      D.DecoderFitConfig(budget_s=0, stage2_s=1, warm_start=True, rules=["p101"]), log=lines.append)
