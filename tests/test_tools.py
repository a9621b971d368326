"""Tools whose output is a record the notes quote: they must compute what they say."""
from __future__ import annotations

import importlib.util
import json

import pytest

from labkit.paths import ROOT


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _curve(scale: float) -> dict:
    """An RD curve whose every point spends ``scale`` times the bits of the base curve."""
    return {"b": [1, 2, 3, 4, 5], "bpp": [scale * v for v in (0.05, 0.1, 0.18, 0.27, 0.36)],
            "psnr": [24.0, 26.0, 27.5, 28.3, 28.6], "ssim": [0.68, 0.74, 0.78, 0.79, 0.795]}


def test_profile_record_measures_each_retrained_model_against_the_shipped_curve(tmp_path):
    tool = _tool("profile_record")
    out_dir, run_dir = tmp_path / "fig", tmp_path / "run"
    out_dir.mkdir()
    metrics = {"profile": "cpu", "evaluate": {
        "curves": {"resae-rd-fast": _curve(1.1), "webp": _curve(1.0)},
        "bd_rate": [{"anchor": "webp", "test": "resae-rd-fast", "bd_rate_psnr_pct": 10.0, "bd_rate_ssim_pct": 10.0},
                    {"anchor": "resae-rd-fast", "test": "webp", "bd_rate_psnr_pct": -9.1, "bd_rate_ssim_pct": -9.1}],
        "criteria": []}, "photos": {"delta_e": []}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "resae-rd-fast").mkdir(parents=True)
    (run_dir / "resae-rd-fast" / "config.json").write_text(json.dumps({
        "train": {"ssim_weight": 0.05}, "train_seconds": 1627.0, "epochs_completed": 300,
        "train_seconds_parts": {"train": 1020.0, "finetune": 600.0, "bn_recalibration": 7.0},
        "finetune": {"steps": 4500, "best_step": 2700, "ssim_weight": 0.1}, "bn_recalibration": {"seconds": 7.0}}))
    baseline = tmp_path / "shipped.json"
    baseline.write_text(json.dumps({"evaluate": {"curves": {"resae-rd-fast": _curve(1.0)}}}))
    out = tmp_path / "rec.json"
    assert tool.main([str(out_dir), str(run_dir), "--out", str(out), "--baseline", str(baseline)]) == 0
    rec = json.loads(out.read_text())
    model = rec["models"]["resae-rd-fast"]
    for metric in ("psnr", "ssim"):  # 10 % more bits at every quality: a BD-rate of +10 %
        assert model["bd_vs_shipped"][metric]["value"] == pytest.approx(10.0, abs=0.01)
    assert model["finetune_ssim_weight"] == 0.1 and model["training_ssim_weight"] == 0.05
    assert model["train_seconds_parts"]["finetune"] == 600.0 and model["finetune_best_step"] == 2700
    assert [r["anchor"] for r in rec["bd_rate_in_run"]] == ["webp"]  # rows whose tested codec was retrained
    with pytest.raises(SystemExit, match="no model folder"):
        tool.main([str(out_dir), str(tmp_path / "elsewhere"), "--out", str(out), "--baseline", str(baseline)])
