"""labkit.workflow: run resolution, skipped models, training configs, metrics precision."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labkit import profiles, workflow
from labkit.paths import WEIGHTS_DIR


def _write_weights(root, name, meta):
    (root / name).mkdir(parents=True)
    (root / name / "model.pt").write_bytes(b"")
    (root / name / "config.json").write_text(json.dumps(meta))


def test_training_config_turns_a_time_budget_into_the_epochs_it_completed(tmp_path, monkeypatch):
    train = {"model": "m", "epochs": 800, "time_budget_s": 330, "batch_size": 32, "seed": 0, "device": "cuda"}
    _write_weights(tmp_path, "budget", {"train": train, "epochs_completed": 388})
    _write_weights(tmp_path, "epochs", {"train": dict(train, time_budget_s=None, epochs=50), "epochs_completed": 50})
    monkeypatch.setattr(workflow, "WEIGHTS_DIR", tmp_path)
    run = workflow.resolve("full", fig_dir=str(tmp_path / "fig"), seed=3, device="cpu", models=["budget", "epochs"])
    cfg = workflow.training_config(run, "budget")
    assert cfg["epochs"] == 388 and cfg["time_budget_s"] is None       # replayed by epochs, no clock
    assert cfg["seed"] == 3 and cfg["device"] == "cpu" and cfg["batch_size"] == 32
    cfg = workflow.training_config(run, "epochs")
    assert cfg["epochs"] == 50 and cfg["time_budget_s"] is None
    smoke = workflow.resolve("smoke", fig_dir=str(tmp_path / "fig"), models=["budget"])
    cfg = workflow.training_config(smoke, "budget")
    small = profiles.get_profile("smoke")["train"]
    assert cfg["epochs"] == small["epochs"] and cfg["max_steps"] == small["max_steps"]
    assert cfg["time_budget_s"] == small["time_budget_s"] and cfg["batch_size"] == small["batch_size"]


def test_training_config_of_the_shipped_resae():
    meta = json.loads((WEIGHTS_DIR / "resae" / "config.json").read_text())
    run = workflow.resolve("default", fig_dir=None, models=["resae"])
    cfg = workflow.training_config(run, "resae")
    assert meta["train"]["time_budget_s"] and cfg["epochs"] == meta["epochs_completed"] != meta["train"]["epochs"]


def test_a_listed_model_without_weights_is_skipped_with_a_message(tmp_path, capsys):
    run = workflow.resolve("default", fig_dir=str(tmp_path), models=["resae", "no-such-model", "ae2"])
    assert run.models == ["resae", "ae2"]
    assert "no-such-model" in run.skipped and "no weights" in run.skipped["no-such-model"]
    assert "no-such-model" in capsys.readouterr().err
    assert "skipped  no-such-model" in run.summary()
    with pytest.raises(ValueError, match="none of the models"):
        workflow.resolve("default", fig_dir=str(tmp_path), models=["no-such-model"])


def test_every_listed_model_with_weights_is_used(tmp_path):
    use, skipped = workflow.available(["a", "b"], tmp_path)
    assert use == [] and set(skipped) == {"a", "b"}
    _write_weights(tmp_path, "b", {})
    assert workflow.available(["a", "b"], tmp_path)[0] == ["b"]
    run = workflow.resolve("default", fig_dir=str(tmp_path / "f"))
    assert run.models == [m for m in profiles.MODELS if (WEIGHTS_DIR / m / "model.pt").is_file()]


def test_jsonable_rounds_to_significant_digits():
    out = workflow.jsonable({"x": np.float64(0.1234567891), "y": [np.float32(27.0123456)], "n": np.int64(3),
                             "bad": math.nan, "inf": np.inf, "ok": np.bool_(True)})
    assert out == {"x": 0.123457, "y": [27.0123], "n": 3, "bad": None, "inf": None, "ok": True}
    assert json.loads(json.dumps(out)) == out


def test_architectures_draw_ae1_and_ae2_once(tmp_path):
    run = workflow.resolve("default", fig_dir=str(tmp_path), models=["resae", "ae2", "ae1"])
    described, params = workflow.architectures(run)
    assert list(described) == ["resae", "ae1/ae2"] and set(params) == {"resae", "ae1/ae2"}
    meta = json.loads((WEIGHTS_DIR / "resae" / "config.json").read_text())
    assert params["resae"] == meta["param_count"]         # built from the recorded config
    assert any(row.get("part") == "encoder" for row in described["resae"])


def test_the_cpu_profile_sets_a_budget_per_model_and_names_a_missing_one(tmp_path, monkeypatch):
    train = profiles.get_profile("cpu")["train"]
    budgets, finetunes = train["time_budget_s"], train["finetune_s"]
    run = workflow.resolve("cpu", fig_dir=str(tmp_path / "fig"), models=list(budgets))
    for name, seconds in budgets.items():
        assert workflow.decoder_fit_config(run, name) is None  # every model trained whole
        cfg = workflow.training_config(run, name)
        assert cfg["time_budget_s"] == seconds and cfg["crop"] == 64
        ft = workflow.finetune_config(run, name)
        assert (ft is None) == (name not in finetunes)
    # the default model: its shipped decoder-fit recipe gives way to whole training + a codec-bin fine-tune
    from labkit.finetune import FinetuneConfig

    ft = FinetuneConfig.from_dict(workflow.finetune_config(run, "resae-rd-fast"))
    assert ft.seconds == finetunes["resae-rd-fast"] and ft.batch == 16
    assert ft.quantizer == "ste" and ft.augment == "strong" and ft.lr == 3e-4  # the shipped GPU steps' recipe
    assert ft.ssim_weight == train["finetune_ssim_weight"]  # the profile's loss for the fine-tune
    assert workflow.training_config(run, "resae-rd-fast")["model"] == "resae-rd-fast"
    # the full profile replays the shipped weights' stage A: trained whole, its recorded epochs, no clock
    full = workflow.resolve("full", fig_dir=str(tmp_path / "fig3"))
    assert workflow.decoder_fit_config(full, "resae-rd-fast") is None
    recorded = json.loads((WEIGHTS_DIR / "resae-rd-fast" / "config.json").read_text())
    replay = workflow.training_config(full, "resae-rd-fast")
    assert replay["epochs"] == recorded["epochs_completed"] and replay["time_budget_s"] is None
    assert replay["crop"] == recorded["train"]["crop"]
    assert set(budgets) == set(profiles.MODELS)  # every evaluated model is retrained within the hour
    # the profile's promise: every model, fine-tunes included, within 60 minutes
    assert sum(budgets.values()) + sum(finetunes.values()) <= 3600
    train = {"model": "m", "epochs": 5, "time_budget_s": None, "batch_size": 32, "seed": 0, "device": "cpu"}
    _write_weights(tmp_path, "other", {"train": train, "epochs_completed": 5})
    monkeypatch.setattr(workflow, "WEIGHTS_DIR", tmp_path)
    run = workflow.resolve("cpu", fig_dir=str(tmp_path / "fig2"), models=["other"])
    with pytest.raises(ValueError, match="per model but not for 'other'"):
        workflow.training_config(run, "other")


def test_evaluate_learned_gives_a_named_model_another_scale_rule(load_model, eval_tiles):
    from labkit import evaluate

    nets = {"ae1": load_model("ae1")}
    plain = evaluate.evaluate_learned(nets, eval_tiles[:2], [3], "neighbor", progress=False)
    p90 = evaluate.evaluate_learned(nets, eval_tiles[:2], [3], "neighbor", progress=False, scales={"ae1": "p90"})
    other = evaluate.evaluate_learned(nets, eval_tiles[:2], [3], "neighbor", progress=False, scales={"ae2": "p90"})
    assert [r["bytes"] for r in other] == [r["bytes"] for r in plain]  # a model not named keeps its rule
    assert [r["bytes"] for r in p90] != [r["bytes"] for r in plain]


def test_a_profile_finetune_continues_the_trained_model_in_its_folder(tmp_path):
    from labkit import report
    from labkit.codec import load_pretrained
    from labkit.data import HOLDOUT_PHOTO

    run = workflow.resolve("smoke", fig_dir=str(tmp_path / "fig"), run_dir=str(tmp_path / "run"), device="cpu",
                           models=["resae"])
    run.settings["train"]["finetune_s"] = {"resae": 1.0}
    histories = workflow.train_models(run, progress=False)
    folder = tmp_path / "run" / "resae"
    meta = json.loads((folder / "config.json").read_text())
    ft = meta["finetune"]
    assert ft["steps"] >= 1 and ft["quantizer"] == "ste" and ft["val"] == [HOLDOUT_PHOTO] and ft["val_tiles"] > 0
    parts = meta["train_seconds_parts"]
    assert parts["finetune"] >= 1.0 and meta["train_seconds"] == pytest.approx(sum(parts.values()), abs=1e-3)
    assert meta["epochs_completed"] >= 1                      # the training run's facts are kept
    saved = json.loads((folder / "history.json").read_text())
    assert saved["val_psnr"] == histories["resae"]["val_psnr"]  # the training curves survive the fine-tune
    assert saved["finetune"]["steps"] == ft["steps"] == histories["resae"]["finetune"]["steps"]
    model, _ = load_pretrained("resae", tmp_path / "run")       # the folder is a checkpoint the codec loads
    # its BatchNorm statistics are the re-estimate for the codec's bins, not the fine-tune's last batches
    recal = meta["bn_recalibration"]
    assert recal["batches"] == workflow.FINETUNE_RECALIBRATION_BATCHES and recal["layers"] > 0
    from labkit.data import training_splits

    side = min(training_splits(None, run.seed)["train"].shape[1:3])
    assert recal["crop"] == min(workflow.FINETUNE_RECALIBRATION_CROP, side - side % 8)
    assert ft["ema_decay"] == workflow.FINETUNE_EMA_DECAY  # the average is what was judged and kept
    tracked = [int(v) for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(tracked) == recal["layers"] and set(tracked) == {workflow.FINETUNE_RECALIBRATION_BATCHES}
    row = report.training_summary(["resae"], tmp_path / "run", histories)[0]
    assert row["finetune_steps"] == ft["steps"] and row["train_s"] == meta["train_seconds"]


def test_the_test_description_says_what_the_models_trained_on(tmp_path):
    from labkit import workflow

    (tmp_path / "course" / "train").mkdir(parents=True)
    shipped = workflow.Run.__new__(workflow.Run)
    object.__setattr__(shipped, "data_dir", str(tmp_path / "course"))
    object.__setattr__(shipped, "retrain", False)
    assert workflow.test_description(shipped) == ("images held out of course/train (the shipped weights, trained on "
                                                  "the embedded photos, not on course)")
    object.__setattr__(shipped, "retrain", True)
    assert workflow.test_description(shipped).endswith("(models retrained on course's other images)")
    assert not workflow.trained_on_default(shipped)


def test_test_files_name_the_images_the_report_evaluates(tmp_path):
    from labkit import workflow

    (tmp_path / "course" / "test").mkdir(parents=True)
    for name in ("10.png", "2.png", "1.png", ".hidden.png"):
        (tmp_path / "course" / "test" / name).write_bytes(b"")
    run = workflow.Run.__new__(workflow.Run)
    object.__setattr__(run, "data_dir", str(tmp_path / "course"))
    object.__setattr__(run, "settings", {"n_test": 2})   # the smoke profile's cap
    assert workflow.test_files(run) == ["1.png", "2.png"]
    object.__setattr__(run, "settings", {})
    assert workflow.test_files(run) == ["1.png", "2.png", "10.png"]
    object.__setattr__(run, "data_dir", None)
    assert workflow.test_files(run) is None
