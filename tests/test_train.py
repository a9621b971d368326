"""labkit.train: learning, determinism, checkpoints, resume, config (its command line: tests/test_cli.py)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit.models import build_model
from labkit.train import CheckpointError, TrainConfig, fit, load_checkpoint, lr_at

TINY = {"widths": [8, 8, 8]}


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Learnable synthetic photos: bilinear blow-ups of random 4x4 colour grids."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(model="resae", model_cfg=TINY, epochs=3, batch_size=4, lr=5e-3, crop=32, seed=0)
    return TrainConfig(**{**base, **kw})


def run(cfg: TrainConfig, out=None, **kw):
    model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
    hist = fit(model, smooth_images(16), smooth_images(4, seed=1), cfg, out_dir=out, progress=False,
               log=lambda s: None, **kw)
    return model, hist


def test_training_reduces_loss_and_is_deterministic():
    cfg = tiny_cfg(epochs=12, lr=1e-2)
    _, h1 = run(cfg)
    _, h2 = run(cfg)
    assert h1["train_loss"][-1] < 0.8 * h1["train_loss"][0]
    assert h1["val_psnr"][-1] > h1["val_psnr"][0] + 0.5
    assert h1["train_loss"] == h2["train_loss"] and h1["val_psnr"] == h2["val_psnr"]
    assert len(h1["epoch"]) == 12 and all(v is not None for v in h1["val_psnr"])
    _, h3 = run(tiny_cfg(epochs=2, seed=1))
    assert h3["train_loss"] != h1["train_loss"][:2]


def test_checkpoint_round_trip(tmp_path):
    model, hist = run(tiny_cfg(epochs=1), out=tmp_path)
    for f in ("model.pt", "config.json", "history.json", "last.pt"):
        assert (tmp_path / f).is_file()
    assert json.loads((tmp_path / "history.json").read_text())["train_loss"] == hist["train_loss"]
    loaded, config = load_checkpoint(tmp_path)
    assert config["model"] == "resae" and config["param_count"] > 0
    assert config["final_val_psnr"] == pytest.approx(hist["val_psnr"][-1])
    assert TrainConfig.from_dict(config["train"]).model_cfg == config["model_cfg"]
    x = torch.rand(2, 3, 32, 48)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.cpu()(x, b=3)["x_hat"], loaded(x, b=3)["x_hat"])
    loaded2, _ = load_checkpoint(tmp_path / "model.pt")
    assert not loaded2.training


def test_checkpoint_mismatch_error(tmp_path):
    run(tiny_cfg(epochs=1, max_steps=1), out=tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_cfg"]["widths"] = [8, 16, 8]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*checkpoint \(8, 8, 3, 3\) vs model") as e:
        load_checkpoint(tmp_path)
    assert "does not fit model 'resae'" in str(e.value) and "config.json" in str(e.value)
    cfg["model"], cfg["model_cfg"] = "ae1", {}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing keys.*unexpected keys"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint weights"):
        load_checkpoint(tmp_path / "nothing")
    assert issubclass(CheckpointError, ValueError)


def test_checkpoint_with_non_finite_values_is_refused(tmp_path):
    run(tiny_cfg(epochs=1, max_steps=1), out=tmp_path)
    load_checkpoint(tmp_path)  # loads as written
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    var = next(k for k in state if k.endswith("running_var"))
    state[var] = state[var].clone().fill_(1e5).half()  # a float16 copy of a variance above 65504: inf
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=rf"non-finite values.*{var}.*float32 weights"):
        load_checkpoint(tmp_path)
    state[var] = torch.ones_like(state[var], dtype=torch.float32)
    first = next(k for k in state if k.endswith("weight"))
    state[first] = state[first].clone()
    state[first].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=rf"in 1 tensor\(s\): {first}"):
        load_checkpoint(tmp_path)


def test_resume_matches_uninterrupted(tmp_path):
    cfg = tiny_cfg(epochs=3, checkpoint_every_s=0)
    _, full = run(cfg)

    def interrupt(line: str) -> None:
        if line.startswith("epoch   2/"):
            raise KeyboardInterrupt

    model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
    with pytest.raises(KeyboardInterrupt):
        fit(model, smooth_images(16), smooth_images(4, seed=1), cfg, out_dir=tmp_path, progress=False,
            log=interrupt)
    _, resumed = run(cfg, out=tmp_path, resume=True)
    assert resumed["train_loss"] == full["train_loss"]
    with pytest.raises(ValueError, match=r"options differ from the saved run's in lr \(saved 0.005, given 0.001\); "
                                         r"repeat the run's own options"):
        run(tiny_cfg(epochs=3, lr=1e-3, checkpoint_every_s=0), out=tmp_path, resume=True)


@pytest.mark.parametrize("limit", [dict(epochs=2), dict(epochs=5, max_steps=5)], ids=["epochs", "max_steps"])
def test_resuming_a_finished_run_changes_nothing(tmp_path, limit):
    """It used to record another epoch of no steps (train_loss 0.0) each time."""
    cfg = tiny_cfg(checkpoint_every_s=0, **limit)
    run(cfg, out=tmp_path)
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    lines: list[str] = []
    model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
    history = fit(model, smooth_images(16), smooth_images(4, seed=1), cfg, out_dir=tmp_path, progress=False,
                  resume=True, log=lines.append)
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    assert len(lines) == 1 and "already complete" in lines[0] and "nothing to do" in lines[0]
    assert 0.0 not in history["train_loss"]


def test_max_steps_time_budget_and_noise_default(ticking_clock):
    import labkit.train

    _, h = run(tiny_cfg(epochs=5, max_steps=5, val_every=100))
    assert len(h["epoch"]) == 2 and "max_steps" in h["stopped"]
    assert h["val_psnr"] == [None, h["final_val_psnr"]]  # the last epoch is always validated
    ticking_clock(labkit.train, 0.01)
    _, h = run(tiny_cfg(epochs=10_000, time_budget_s=0.5, val_every=100))
    assert "time budget" in h["stopped"] and 1 <= len(h["epoch"]) < 10_000
    assert h["lr"][-1] < 0.5 * 5e-3  # the schedule followed the clock, not the 10k epochs
    assert TrainConfig(model="ae1").use_noise is False
    assert TrainConfig(model="ae2").use_noise is True
    assert TrainConfig(model="ae2", noise=False).use_noise is False


def test_config_validation_and_json():
    cfg = tiny_cfg(time_budget_s=10.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"modle": "ae1"})
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="vae")
    with pytest.raises(ValueError, match="bit depth"):
        TrainConfig(b_train=9)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    for field, bad in (("lr", -1.0), ("lr", 0.0), ("lr", float("nan")), ("weight_decay", -0.1),
                       ("ssim_weight", float("inf")), ("rate_weight", float("nan"))):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: bad})


def test_an_unknown_device_is_named_with_the_choices():
    from labkit.train import resolve_device

    with pytest.raises(ValueError, match=r"unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_lr_schedule_shape():
    cfg = TrainConfig(lr=1.0, warmup=0.1, final_lr_frac=0.01)
    assert lr_at(cfg, 0.0) == 0.0 and lr_at(cfg, 0.1) == pytest.approx(1.0)
    assert lr_at(cfg, 1.0) == pytest.approx(0.01) and lr_at(cfg, 0.5) < lr_at(cfg, 0.2)


def test_epoch_bar_counts_the_steps_the_epoch_takes(monkeypatch):
    """A run stopping at max_steps mid-epoch ends its bar full (a notebook widget stopped short is drawn red)."""
    import labkit.progress

    bars = []
    real_bar = labkit.progress.bar

    def recording_bar(iterable=None, **kw):
        b = real_bar(iterable, **kw)
        bars.append(b)
        return b

    monkeypatch.setattr(labkit.progress, "bar", recording_bar)
    model = build_model("resae", seed=0, **TINY)
    cfg = tiny_cfg(epochs=2, max_steps=3)  # 16 images / batch 4 = 4 steps per epoch
    fit(model, smooth_images(16), smooth_images(4, seed=1), cfg, progress=True, log=lambda s: None)
    assert [(b.total, b.n) for b in bars] == [(3, 3)]


def test_data_stream_is_the_one_of_recorded_runs(monkeypatch):
    """The batches a seed gives are pinned (exact: uint8 crops scaled to float): the progress bar changed on
    2026-11-28 and must not change which crops a seeded run trains on (values from labkit 7f92bad)."""
    import hashlib

    import labkit.train

    rng = np.random.default_rng(0)
    images = (rng.random((20, 32, 32, 3)) * 255).astype(np.uint8)
    seen = []
    real_step = labkit.train._train_step

    def recording_step(model, x, opt, cfg):
        seen.append(hashlib.sha1(x.numpy().tobytes()).hexdigest()[:6])
        return real_step(model, x, opt, cfg)

    monkeypatch.setattr(labkit.train, "_train_step", recording_step)
    for progress in (False, True):
        seen.clear()
        cfg = TrainConfig(model="ae1", batch_size=4, crop=32, seed=0, epochs=3, max_steps=7)
        fit(build_model("ae1", seed=0), images, images[:4], cfg, progress=progress, log=lambda s: None)
        assert seen[:3] == ["fc09ab", "831400", "e93415"] and seen[-1] == "5d91c0" and len(seen) == 7


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_first_step(monkeypatch):
    """--batch-size 100000 on the default pool (395 crops) took 15 GB and counting; now it is named and refused."""
    from labkit import train as T
    from labkit.models import build_model
    from labkit.trainconfig import TrainConfig

    model = build_model("ae1")
    cfg = TrainConfig(model="ae1", batch_size=100000)
    monkeypatch.setattr(T, "_available_memory", lambda: 4 * 2**30)
    with pytest.raises(ValueError, match=r"a batch of 395 crops of 128x128 needs about \d+\.\d GiB for ae1's training "
                                         r"step .* 4\.0 GiB available; pass a smaller batch size \(--batch-size; "
                                         r"at most about \d+\)"):
        T._check_batch_memory(model, cfg, 395, torch.device("cpu"))
    assert model.training                                   # measured in eval mode, left as it was
    T._check_batch_memory(model, TrainConfig(model="ae1", batch_size=16), 395, torch.device("cpu"))  # 0.6 GiB: fine
    monkeypatch.setattr(T, "_available_memory", lambda: None)  # not Linux: nothing to check against
    T._check_batch_memory(model, cfg, 395, torch.device("cpu"))
