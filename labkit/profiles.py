"""Run profiles shared by the notebooks: how much data, which b, how long to train.

``smoke``   CI: a few images, a few training steps, about two minutes in all.
``default`` what figures/ holds: the shipped weights, the full embedded test split, b=1..5.
``full``    retrains every model from its recorded config (labkit/weights/<name>/config.json).
"""
from __future__ import annotations

import copy
from typing import Any

#: Classic-codec quality sweeps (Pillow's parameter for each codec).
SWEEP_DEFAULT = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 75, 90],
    "jpeg-opt": [5, 10, 15, 20, 30, 40, 50, 60, 75, 90],
    "webp": [5, 10, 20, 30, 40, 50, 60, 75, 90],
    "avif": [10, 20, 30, 40, 50, 60, 70, 80, 90],
    "jpeg2000": [20, 22, 24, 26, 28, 30, 32, 35, 38, 42],
}
SWEEP_SMOKE = {k: v[1::4] for k, v in SWEEP_DEFAULT.items()}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        n_test=4, bits=[1, 2, 3], grid_bits=[1, 2, 3], grid_images=2, diff_b=2, context="neighbor",
        sweep=SWEEP_SMOKE, retrain=True,
        train=dict(epochs=1, max_steps=3, batch_size=4, n_train=16, n_val=4, time_budget_s=60),
    ),
    "default": dict(
        n_test=None, bits=[1, 2, 3, 4, 5], grid_bits=[1, 2, 3], grid_images=4, diff_b=2, context="neighbor",
        sweep=SWEEP_DEFAULT, retrain=False,
        train=None,  # shipped weights
    ),
    "full": dict(
        n_test=None, bits=[1, 2, 3, 4, 5], grid_bits=[1, 2, 3], grid_images=4, diff_b=2, context="neighbor",
        sweep=SWEEP_DEFAULT, retrain=True,
        train="recorded",  # each model's recorded config from labkit/weights/<name>/config.json
    ),
}

MODELS = ["resae", "ae2", "ae1"]


def get_profile(name: str) -> dict[str, Any]:
    """A deep copy of profile ``name``; unknown names raise with the list of valid ones."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])
