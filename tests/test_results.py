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
