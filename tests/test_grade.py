"""Grading: the comparison logic, and (slow) the committed report reproduces."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from labkit import grade

FIGURES = Path(__file__).resolve().parent.parent / "figures"


def _metrics():
    return {"evaluate": {"curves": {"resae": {"b": [1, 2], "bpp": [0.1, 0.2], "ssim": [0.5, 0.7], "psnr": [20.0, 23.0]}},
                         "bd_rate": [{"anchor": "webp", "bd_rate_ssim_pct": 10.0, "bd_rate_psnr_pct": None}]},
            "train": {"env": {"torch": "x"}, "models": [{"model": "resae", "train_s": 12.0}]}}


def test_identical_metrics_agree():
    assert grade.compare(_metrics(), _metrics()) == []


@pytest.mark.parametrize("path,value,agrees", [
    (("evaluate", "curves", "resae", "ssim", 1), 0.704, True),    # within ±0.005
    (("evaluate", "curves", "resae", "ssim", 1), 0.71, False),
    (("evaluate", "curves", "resae", "bpp", 0), 0.1019, True),    # within 2 % relative
    (("evaluate", "curves", "resae", "bpp", 0), 0.103, False),
    (("evaluate", "curves", "resae", "psnr", 0), 20.09, True),
    (("evaluate", "curves", "resae", "psnr", 0), 20.2, False),
    (("evaluate", "bd_rate", 0, "bd_rate_ssim_pct"), 12.5, True),
    (("evaluate", "bd_rate", 0, "bd_rate_ssim_pct"), 14.0, False),
    (("evaluate", "bd_rate", 0, "bd_rate_psnr_pct"), 3.0, False),   # defined vs undefined
    (("evaluate", "curves", "resae", "b", 1), 3, False),
    (("train", "models", 0, "train_s"), 999.0, True),              # timings are not graded
    (("train", "env", "torch"), "y", True),
])
def test_tolerances(path, value, agrees):
    fresh = copy.deepcopy(_metrics())
    node = fresh
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert (grade.compare(fresh, _metrics()) == []) is agrees


def test_missing_and_extra_numbers_are_reported():
    fresh = _metrics()
    del fresh["evaluate"]["bd_rate"]
    fresh["evaluate"]["new"] = 1.0
    why = {b[0]: b[3] for b in grade.compare(fresh, _metrics())}
    assert why["evaluate.new"] == "not in the reference"
    assert why["evaluate.bd_rate.0.bd_rate_ssim_pct"] == "missing from the fresh run"


def test_committed_report_is_complete():
    metrics = json.loads((FIGURES / "metrics.json").read_text())
    assert metrics["profile"] == "default"
    assert set(metrics["evaluate"]["curves"]) >= {"resae", "ae2", "ae1", "jpeg-matched", "jpeg", "jpeg-opt", "webp", "avif", "jpeg2000"}
    for name in ("comparison_b1.png", "comparison_b2.png", "comparison_b3.png", "rd_ssim.png", "rd_psnr.png",
                 "difference_b2.png", "training_curves.png", "architecture.png", "criteria_table.png"):
        assert (FIGURES / name).is_file(), name


@pytest.mark.slow
def test_default_profile_reproduces_committed_metrics(capsys):
    """`make grade` as a test: rerun the default profile and compare with figures/metrics.json."""
    assert grade.run() == 0, capsys.readouterr().out
