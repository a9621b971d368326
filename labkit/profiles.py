"""Run settings: which models are evaluated, and each profile's data, b and training budget.

``smoke``   CI: a few images, a few training steps, about 30 s in all.
``default`` what figures/ holds: the shipped weights, the full embedded test split, b=1..5.
``full``    retrains every model from its recorded config (labkit/weights/<name>/config.json).
``cpu``     retrains every model on a 2-core CPU within 60 minutes of training in all (wall-clock
            budgets per model, 64x64 crops; the default model then fine-tuned on the codec's bins),
            then evaluates as ``default`` does.
"""
from __future__ import annotations

import copy
from typing import Any

from .baselines import SWEEPS

#: Classic-codec quality sweeps: the one list in ``labkit.baselines`` (lowest setting up).
SWEEP_DEFAULT = SWEEPS
#: Smoke runs: every fourth setting, from the lowest.
SWEEP_SMOKE = {k: v[::4] for k, v in SWEEPS.items()}

#: Full-size photos of scikit-image for the whole-photo section (colour error at every b).
PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png"]

#: ``context=None`` in every profile: each model codes with its own default context (``"learned"`` for a
#: model that ships a coder prior, ``labkit.coder_prior``; else ``"neighbor"``), as the command line does.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        n_test=4, bits=[1, 2, 3], grid_bits=[1, 2, 3], grid_images=2, diff_b=2, context=None,
        sweep=SWEEP_SMOKE, retrain=True, photos=["astronaut.png"],
        train=dict(epochs=1, max_steps=3, batch_size=4, n_train=16, n_val=4, time_budget_s=60),
    ),
    "default": dict(
        n_test=None, bits=[1, 2, 3, 4, 5], grid_bits=[1, 2, 3], grid_images=4, diff_b=2, context=None,
        sweep=SWEEP_DEFAULT, retrain=False, photos=PHOTOS,
        train=None,  # shipped weights
    ),
    "cpu": dict(
        n_test=None, bits=[1, 2, 3, 4, 5], grid_bits=[1, 2, 3], grid_images=4, diff_b=2, context=None,
        sweep=SWEEP_DEFAULT, retrain=True, photos=PHOTOS,
        # 59 minutes of training in all; the LR schedule of each run follows its clock. The default
        # model gets the most: trained whole, then fine-tuned on the codec's bins (finetune_s,
        # labkit.workflow.finetune_config, keeping a moving average of its weights; its BatchNorm
        # statistics re-estimated at the end on 128-pixel crops, 11 s), the recipe that brings it
        # nearest its shipped weights in an hour; the fine-tune weighs 1 - SSIM 0.1 instead of the
        # training recipe's 0.05 (the 60-minute recipe e, NOTES.md; the profile's fourth plan)
        train=dict(epochs=100000, crop=64, batch_size=16,
                   time_budget_s={"resae-rd": 480, "resae-rd-fast": 1020, "resae": 720, "ae2": 360,
                                  "ae1": 360},
                   finetune_s={"resae-rd-fast": 600}, finetune_ssim_weight=0.1),
    ),
    "full": dict(
        n_test=None, bits=[1, 2, 3, 4, 5], grid_bits=[1, 2, 3], grid_images=4, diff_b=2, context=None,
        sweep=SWEEP_DEFAULT, retrain=True, photos=PHOTOS,
        train="recorded",  # each model's recorded config from labkit/weights/<name>/config.json
    ),
}

#: Every learned model the report evaluates, in display order: the one list the notebooks,
#: figures and tables are built from. Adding a shipped model here (weights in
#: labkit/weights/<name>/) adds it to every figure and table; a listed model without
#: weights is skipped with a message.
MODELS = ["resae", "resae-rd", "resae-rd-fast", "ae2", "ae1"]
#: The course's own models (baselines); every other model in MODELS is a proposal and gets
#: the criteria and BD-rate tables against them and the classic codecs.
COURSE_MODELS = ("ae2", "ae1")
#: The seed's proposal: JPEG "at matched bpp" (the course method) is matched to its files,
#: and the headline numbers are quoted for it.
REFERENCE = "resae"


def proposed(models: list[str]) -> list[str]:
    """The models of ``models`` that are not the course's own (``COURSE_MODELS``), in order."""
    return [m for m in models if m not in COURSE_MODELS]


def get_profile(name: str) -> dict[str, Any]:
    """A deep copy of profile ``name``; unknown names raise with the list of valid ones."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])
