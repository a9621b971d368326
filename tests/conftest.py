"""Shared fixtures: the shipped weights are loaded once per session, test tiles once.

A ``Codec`` is cheap to build around an already-loaded model, so tests that need
another ``b`` or context call ``make_codec(name, b, context)`` instead of reloading.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest


@pytest.fixture(scope="session")
def load_model():
    """``load_model(name)`` -> the shipped (eval-mode) model, loaded at most once."""
    from labkit.codec import load_pretrained

    @functools.lru_cache(maxsize=None)
    def _load(name: str):
        return load_pretrained(name)[0]

    return _load


@pytest.fixture(scope="session")
def make_codec(load_model):
    """``make_codec(name="resae", b=2, context="neighbor", **Codec_options)`` over the shared, once-loaded weights."""
    from labkit.codec import Codec

    def _make(name: str = "resae", b: int = 2, context: str = "neighbor", **kw):
        return Codec(load_model(name), b, context, model_name=name, **kw)

    return _make


@pytest.fixture(scope="session")
def eval_tiles() -> np.ndarray:
    """The embedded test tiles, uint8 [N, 128, 128, 3] (treat as read-only)."""
    from labkit.data import default_dataset

    return default_dataset("test")


@pytest.fixture(scope="session")
def real_image(eval_tiles):
    """``real_image(h, w)``: real photo content (a mosaic of 6 test tiles) resized to h x w, writable."""
    from PIL import Image

    mosaic = np.concatenate([np.concatenate(list(eval_tiles[r * 3:(r + 1) * 3]), axis=1) for r in range(2)], axis=0)

    def _make(h: int, w: int) -> np.ndarray:
        return np.array(Image.fromarray(mosaic).resize((w, h), Image.Resampling.LANCZOS))

    return _make


class TickingClock:
    """Stands in for a module's ``time``: each read of ``perf_counter`` moves ``tick`` seconds, so a
    wall-clock budget becomes a count of reads and a test of it does not depend on the machine's load."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture
def ticking_clock(monkeypatch):
    """``ticking_clock(module, tick)`` replaces ``module.time`` by a :class:`TickingClock` for the test."""
    def install(module, tick: float) -> TickingClock:
        clock = TickingClock(tick)
        monkeypatch.setattr(module, "time", clock)
        return clock
    return install
