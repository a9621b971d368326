"""Recorded results are strict JSON: every reader (a browser, jq, another language) can load them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*(ROOT / "benchmarks" / "results").rglob("*.json"), *(ROOT / "figures").glob("*.json")])


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON (write null for a value that is left out)")


def test_there_are_results_to_check():
    assert len(FILES) > 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_results_have_no_nan_or_infinity(path):
    json.loads(path.read_text(), parse_constant=_refuse)


def _bench(name: str):
    """Import ``benchmarks/<name>.py`` as a module (its functions make the recorded tables)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_rd():
    return _bench("bench_rd")


RD_RESULTS = [p for p in FILES if p.name.startswith("bench_rd") or p.name.startswith("rate_proxy")]


def test_there_are_rd_results_to_check():
    assert len(RD_RESULTS) >= 10


@pytest.mark.parametrize("path", RD_RESULTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recorded_rd_tables_follow_todays_rules(path):
    """A result's criteria, BD-rates and equal-rate rows are what today's labkit.report makes of its curves.

    When a rule changes, ``python benchmarks/bench_rd.py --rederive FILE`` brings the recorded
    tables up to date; until then this fails instead of leaving old verdicts in the repository.
    """
    bench_rd = _bench_rd()
    result = json.loads(path.read_text())
    fresh = bench_rd.derived_tables(result["curves"])
    for key, value in fresh.items():
        if key in result or value:
            assert result.get(key) == value, f"{key} in {path.name} is stale: run bench_rd.py --rederive {path.name}"


def test_rederive_rewrites_only_stale_tables(tmp_path):
    bench_rd = _bench_rd()
    source = ROOT / "benchmarks" / "results" / "bench_rd.json"
    result = json.loads(source.read_text())
    stale = dict(result, criteria=[dict(r, holds=not r["holds"]) for r in result["criteria"]])
    path = tmp_path / "bench_rd.json"
    path.write_text(json.dumps(stale, indent=1) + "\n")
    assert bench_rd.rederive(path) == ["criteria"]
    assert json.loads(path.read_text()) == result
    assert bench_rd.rederive(path) == []


FULLSIZE_RESULTS = [p for p in FILES if p.name.startswith("bench_fullsize")]


@pytest.mark.parametrize("path", FULLSIZE_RESULTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recorded_fullsize_bd_rates_follow_todays_rules(path):
    """bench_fullsize's BD-rates are what today's labkit.rd makes of its curves (else: bench_fullsize.py --rederive)."""
    module = _bench("bench_fullsize")
    result = json.loads(path.read_text())
    models = list(dict.fromkeys(r["test"] for r in result["bd"]))
    classic = [a for a in dict.fromkeys(r["anchor"] for r in result["bd"]) if a not in models]
    assert len(FULLSIZE_RESULTS) >= 3 and classic
    assert module.jsonable(module.bd_rows(result["curves"], models, classic)) == result["bd"], \
        f"stale: run bench_fullsize.py --rederive {path.name}"
