"""The steps the notebooks call, so no logic is copied between notebooks.

Each notebook's ``parameters`` cell holds plain values; :func:`resolve` turns them into
a :class:`Run` (profile defaults filled in, paths resolved).  Models come either from
the shipped weights or, with ``retrain=True``, from ``run_dir`` where 01_train put them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .paths import ROOT, WEIGHTS_DIR
from .profiles import MODELS, get_profile


@dataclass
class Run:
    """Everything a notebook needs to know about this run, resolved from its parameters."""

    profile: str
    settings: dict[str, Any]
    data_dir: str | None
    fig_dir: Path
    run_dir: Path
    seed: int
    device: str
    retrain: bool
    models: list[str] = field(default_factory=lambda: list(MODELS))

    @property
    def weights_dir(self) -> Path:
        """Where the models to evaluate live: run_dir after retraining, else the shipped weights."""
        return self.run_dir if self.retrain else WEIGHTS_DIR

    def summary(self) -> str:
        """What this run does, in a few lines (printed at the top of every notebook)."""
        data = self.data_dir or "embedded default (scikit-image photos)"
        if self.data_dir and not (Path(self.data_dir) / "test").is_dir():
            data += "  [no test/ folder: 15% of train/ is held out as the test set]"
        dest = self.fig_dir
        if dest.name.startswith(".") and dest.name.endswith(".staging"):
            dest = dest.parent / dest.name[1:-len(".staging")]
            where = f"{dest} (staged; published when every notebook has succeeded)"
        else:
            where = str(dest)
        models = ", ".join(self.models)
        source = f"retrained into {self.run_dir}" if self.retrain else "shipped weights (labkit/weights)"
        return (f"profile  {self.profile}\nmodels   {models}: {source}\ndata     {data}\nfigures  {where}")

    def figure(self, name: str) -> Path:
        return self.fig_dir / name

    def write_metrics(self, part: str, metrics: dict[str, Any]) -> Path:
        """Write this notebook's metrics as ``metrics_<part>.json`` (merged by the pipeline)."""
        from .atomic import write_text

        path = self.fig_dir / f"metrics_{part}.json"
        write_text(path, json.dumps(jsonable(metrics), indent=1, sort_keys=True) + "\n")
        return path


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, floats rounded to 6 digits, non-finite as null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return round(v, 6) if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def resolve(profile: str = "default", data_dir: str | None = None, fig_dir: str | None = None,
            run_dir: str | None = None, seed: int = 0, device: str = "auto", retrain: bool | None = None,
            models: list[str] | None = None) -> Run:
    """Fill in profile defaults; a notebook opened by hand writes to figures/interactive/."""
    settings = get_profile(profile)
    if data_dir:
        data_dir = str(Path(data_dir).expanduser().resolve())
    fig = Path(fig_dir) if fig_dir else ROOT / "figures" / "interactive"
    run = Path(run_dir) if run_dir else ROOT / "runs" / profile
    fig.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    return Run(profile=profile, settings=settings, data_dir=data_dir, fig_dir=fig, run_dir=run, seed=seed,
               device=device, retrain=settings["retrain"] if retrain is None else bool(retrain),
               models=list(models or MODELS))


def test_images(run: Run) -> np.ndarray:
    """The profile's test images (all of the split unless the profile caps the count)."""
    from .data import get_splits

    test = get_splits(run.data_dir, run.seed)["test"]
    n = run.settings.get("n_test")
    return test[:n] if n else test


def load_models(run: Run) -> dict[str, torch.nn.Module]:
    """Every model of the run in eval mode on the CPU (the codec runs on the CPU)."""
    from .codec import load_pretrained

    return {name: load_pretrained(name, run.weights_dir)[0] for name in run.models}


def load_histories(run: Run) -> dict[str, dict[str, Any]]:
    """Training histories (history.json) of every model of the run."""
    out = {}
    for name in run.models:
        path = run.weights_dir / name / "history.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def training_config(run: Run, name: str) -> dict[str, Any]:
    """The TrainConfig fields for retraining ``name`` from the shipped weights' recorded config.

    The shipped runs were stopped by a wall-clock budget on a GPU (their LR schedule
    followed the clock); a rerun replays the same number of epochs without a clock, so it
    is hardware-independent.  The smoke profile then shrinks it to a few steps.
    """
    meta = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    cfg = dict(meta["train"])
    if cfg.get("time_budget_s"):
        cfg["epochs"] = int(meta.get("epochs_completed") or cfg["epochs"])
        cfg["time_budget_s"] = None
    cfg["seed"] = run.seed
    cfg["device"] = run.device
    small = run.settings.get("train")
    if isinstance(small, dict):
        for k in ("epochs", "batch_size", "time_budget_s", "max_steps"):
            if k in small:
                cfg[k] = small[k]
    return cfg


def train_models(run: Run, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train every model of the run into ``run_dir/<name>`` from its recorded config; return histories."""
    from .data import training_splits
    from .models import build_model
    from .train import TrainConfig, fit

    splits = training_splits(run.data_dir, run.seed)
    small = run.settings.get("train")
    if isinstance(small, dict):
        splits["train"] = splits["train"][: small.get("n_train")]
        splits["val"] = splits["val"][: small.get("n_val")]
    histories = {}
    for name in run.models:
        cfg = TrainConfig.from_dict(training_config(run, name))
        model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
        histories[name] = fit(model, splits["train"], splits["val"], cfg, out_dir=run.run_dir / name,
                              progress=progress)
    return histories


def env_info() -> dict[str, Any]:
    """Versions that matter for reproducing the numbers."""
    import platform

    import PIL
    import skimage

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "scikit-image": skimage.__version__, "cpu_count": os.cpu_count()}


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """See :func:`labkit.report.markdown_table`."""
    from .report import markdown_table as _table

    return _table(rows, columns)


def training_summary(run: Run, histories: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: parameters, epochs, training time and device, final validation PSNR."""
    rows = []
    for name in run.models:
        cfg_path = run.weights_dir / name / "config.json"
        meta = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        h = histories.get(name, {})
        rows.append({"model": name, "params": meta.get("param_count"), "epochs": meta.get("epochs_completed", len(h.get("epoch", []))),
                     "train_s": meta.get("train_seconds"), "device": meta.get("device"),
                     "final_val_psnr": meta.get("final_val_psnr", h.get("final_val_psnr")),
                     "b_train": meta.get("train", {}).get("b_train"), "noise": meta.get("noise")})
    return rows


def context_savings(table: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """Per b: bits saved by each context mode relative to the memoryless (``none``) coder, in percent."""
    rows = []
    for b, t in table.items():
        base = t["coded none"]
        row: dict[str, Any] = {"b": b, "none bits/sym": round(base, 4)}
        for k, v in t.items():
            if k.startswith("coded ") and k != "coded none":
                row[f"{k.removeprefix('coded ')} saves %"] = round(100.0 * (1.0 - v / base), 2) if base > 0 else 0.0
        rows.append(row)
    return rows


def training_objectives(run: Run) -> dict[str, str]:
    """A short description of each model's training objective, from its config (for plot legends)."""
    out = {}
    for name in run.models:
        path = run.weights_dir / name / "config.json"
        if not path.is_file():
            continue
        t = json.loads(path.read_text()).get("train", {})
        loss = t.get("loss", "mse")
        desc = "MSE" if loss == "mse" else f"MSE + {t.get('ssim_weight', 0.05):g}·(1−SSIM)" if loss == "mse+ssim" else loss
        noise = t.get("noise")
        if noise is None:
            noise = name != "ae1"
        out[name] = desc + (f", noise b={t.get('b_train', 3)}" if noise else ", no noise")
    return out
