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


@pytest.mark.parametrize("path, tol", [
    ("evaluate.summary.headline.b2.resae-rd-fast_psnr", grade.TOLERANCES["psnr"]),  # the trial's +0.4 dB passed at 2 %
    ("evaluate.summary.headline.b2.resae-rd-fast_ssim", grade.TOLERANCES["ssim"]),
    ("evaluate.summary.headline.b2.jpeg_bpp", grade.TOLERANCES["bpp"]),
    ("train.histories.resae.val_psnr.3", grade.TOLERANCES["psnr"]),
    ("evaluate.bd_rate.0.psnr_overlap.1", grade.TOLERANCES["psnr"]),
    ("evaluate.bd_rate.0.ssim_overlap.0", grade.TOLERANCES["ssim"]),
    ("photos.delta_e.1.coffee", (0.25, 0.0)),
    ("quantize.bits_per_symbol.2.estimated bpp", grade.TOLERANCES["bpp"]),
    ("evaluate.bd_rate.0.psnr_overlap_fraction", grade.DEFAULT_TOL),
])
def test_tolerance_by_key_ending(path, tol):
    assert grade._tolerance(path) == tol


def test_a_disagreement_names_its_record():
    ref = {"evaluate": {"records": [{"codec": "ae1", "b": 1, "image": 0, "ssim": 0.5},
                                    {"codec": "resae", "b": 4, "image": 7, "ssim": 0.85}]}}
    assert grade.describe("evaluate.records.1.ssim", ref) == "codec=resae b=4 image=7"
    assert grade.describe("evaluate.summary.n_images", ref) == ""


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


def _git(repo: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def committed_repo(tmp_path, monkeypatch):
    """A git repository whose HEAD holds figures/metrics.json = _metrics(); the file on disk then differs."""
    from labkit import pipeline

    repo = tmp_path / "repo"
    ref = repo / "figures" / "metrics.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps(_metrics()))
    _git(repo, "init", "-q")
    _git(repo, "add", "figures/metrics.json")
    _git(repo, "commit", "-q", "-m", "reference")
    on_disk = _metrics()
    on_disk["evaluate"]["curves"]["resae"]["ssim"] = [0.9, 0.95]   # e.g. a `make figures` run not committed
    ref.write_text(json.dumps(on_disk))
    monkeypatch.setattr(grade, "ROOT", repo)
    monkeypatch.setattr(pipeline, "default_out_dir", lambda profile, data_dir: repo / "figures")
    return repo, on_disk


def test_committed_reference_reads_git_head_not_the_file_on_disk(committed_repo):
    repo, on_disk = committed_repo
    ref, name = grade.committed_reference(repo / "figures" / "metrics.json")
    assert ref == _metrics() and ref != on_disk
    assert name == "figures/metrics.json at git HEAD"


def test_committed_reference_outside_git_falls_back_to_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_metrics()))
    ref, name = grade.committed_reference(path)
    assert ref == _metrics() and name == str(path)


@pytest.mark.parametrize("fresh_is_head,expected", [(True, 0), (False, 1)])
def test_grade_compares_a_fresh_run_with_git_head(committed_repo, monkeypatch, capsys, fresh_is_head, expected):
    """`grade.run()` without --reference: a run equal to HEAD passes, one equal to the edited file fails."""
    from labkit import pipeline

    repo, on_disk = committed_repo
    seen = {}

    def fake_reproduce(profile, out_dir, executed_dir, run_dir, log_output, progress):
        seen.update(profile=profile, out_dir=Path(out_dir), executed_dir=Path(executed_dir))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps(_metrics() if fresh_is_head else on_disk))
        return {}

    monkeypatch.setattr(pipeline, "reproduce", fake_reproduce)
    assert grade.run(progress=False) == expected
    out = capsys.readouterr().out
    assert "figures/metrics.json at git HEAD" in out
    assert ("GRADE OK" in out) is (expected == 0)
    assert seen["out_dir"] != repo / "figures", "the fresh run must not be written over the reference"
    assert seen["executed_dir"].name == "grade-default"


@pytest.mark.parametrize("profile,needle", [("smoke", "retrains its models"), ("full", "retrains its models"),
                                            ("nope", "unknown profile 'nope'")])
def test_grade_refuses_profiles_it_cannot_grade(profile, needle):
    """Only profiles that evaluate fixed weights repeat within the tolerances; the error says which can."""
    assert grade.gradable_profiles() == ["default"]
    with pytest.raises(ValueError, match=needle) as err:
        grade.run(profile=profile, progress=False)
    assert "default" in str(err.value)
