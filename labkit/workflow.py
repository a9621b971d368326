"""The notebooks' steps: resolve a run from plain parameters, load data and models, train, write metrics.

Each notebook's ``parameters`` cell holds plain values; :func:`resolve` turns them into
a :class:`Run` (profile defaults filled in, paths resolved).  Models come either from
the shipped weights or, with ``retrain=True``, from ``run_dir`` where 01_train put them;
the list is ``labkit.profiles.MODELS``, and a listed model without shipped weights is
skipped with a message.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .paths import ROOT, WEIGHTS_DIR
from .profiles import MODELS, get_profile
from .trainconfig import trained_bits


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
    #: Listed models left out, with the reason (e.g. no shipped weights yet).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def weights_dir(self) -> Path:
        """Where the models to evaluate live: run_dir after retraining, else the shipped weights."""
        return self.run_dir if self.retrain else WEIGHTS_DIR

    def summary(self) -> str:
        """What this run does, in a few lines (printed at the top of every notebook)."""
        data = self.data_dir or "embedded default (scikit-image photos)"
        if self.data_dir and not (Path(self.data_dir) / "test").is_dir():
            from .data import HOLDOUT_FRACTION, held_out_names

            names = held_out_names(self.data_dir) or []
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            data += (f"  [no test/ folder: {HOLDOUT_FRACTION:.0%} of train/ is held out as the test set, the same "
                     "for every seed" + (f": {shown}]" if names else "]"))
        dest = self.fig_dir
        if dest.name.startswith(".") and dest.name.endswith(".staging"):
            dest = dest.parent / dest.name[1:-len(".staging")]
            where = f"{dest} (staged; published when every notebook has succeeded)"
        else:
            where = str(dest)
        models = ", ".join(self.models)
        source = f"retrained into {self.run_dir}" if self.retrain else "shipped weights (labkit/weights)"
        lines = [f"profile  {self.profile}", f"models   {models}: {source}"]
        lines += [f"skipped  {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"data     {data}", f"figures  {where}"]
        return "\n".join(lines)

    def figure(self, name: str) -> Path:
        """Path of figure ``name`` in this run's figure folder."""
        return self.fig_dir / name

    def write_metrics(self, part: str, metrics: dict[str, Any]) -> Path:
        """Write this notebook's metrics as ``metrics_<part>.json`` (merged by the pipeline)."""
        from .atomic import write_text

        path = self.fig_dir / f"metrics_{part}.json"
        write_text(path, json.dumps(jsonable(metrics), indent=1, sort_keys=True) + "\n")
        return path


def jsonable(obj: Any) -> Any:
    """``obj`` ready for JSON: floats to ``report.SIG_DIGITS`` significant digits, non-finite as null.

    numpy scalars become Python numbers and paths strings, so the same measurement gives the
    same file on any CPU (the digits dropped are float noise).
    """
    from .report import SIG_DIGITS

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return float(f"{v:.{SIG_DIGITS}g}") if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def available(models: list[str], weights_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Split ``models`` into those with weights (``<weights_dir>/<name>/model.pt`` and config.json) and the rest.

    Returns
    -------
    (list of str, dict)
        The models to use, in order, and ``{name: why it is skipped}`` for the others.
    """
    root = WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    use, skipped = [], {}
    for name in models:
        folder = root / name
        if (folder / "model.pt").is_file() and (folder / "config.json").is_file():
            use.append(name)
        else:
            skipped[name] = (f"no weights in {folder} (model.pt and config.json); skipped -- add them, "
                             "or remove the name from labkit.profiles.MODELS")
    return use, skipped


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
    # shipped weights are needed either way: evaluated as they are, or their recorded config retrained
    use, skipped = available(list(models or MODELS))
    for name, why in skipped.items():
        print(f"labkit: {name}: {why}", file=sys.stderr)
    if not use:
        raise ValueError(f"none of the models {list(models or MODELS)} has shipped weights in {WEIGHTS_DIR}")
    return Run(profile=profile, settings=settings, data_dir=data_dir, fig_dir=fig, run_dir=run, seed=seed,
               device=device, retrain=settings["retrain"] if retrain is None else bool(retrain),
               models=use, skipped=skipped)


def test_images(run: Run) -> np.ndarray:
    """The profile's test images (all of the split unless the profile caps the count)."""
    from .data import get_splits

    test = get_splits(run.data_dir, run.seed)["test"]
    n = run.settings.get("n_test")
    return test[:n] if n else test


def test_description(run: Run) -> str:
    """What the profile's test images are, in words, for the report's opening line.

    The embedded default split: tiles of its test photos, which no model trains on; a course
    folder: the images of its ``test/`` part, or those held out of ``train/`` when it has none
    (``data.get_splits``).
    """
    from .data import DEFAULT_SOURCES

    if run.data_dir is None:
        photos = " and ".join(Path(name).stem for name in DEFAULT_SOURCES["test"])
        return f"test tiles (128×128) of {photos}, photos no model saw in training"
    folder = Path(run.data_dir)
    what = f"test images of {folder.name}/test" if (folder / "test").is_dir() else f"images held out of {folder.name}/train"
    trained = (f"models retrained on {folder.name}'s other images" if run.retrain else
               f"the shipped weights, trained on the embedded photos, not on {folder.name}")
    return f"{what} ({trained})"


def test_files(run: Run) -> list[str] | None:
    """The file names of a course folder's test images (its ``test/`` files, or those held out of
    ``train/``), in the order the report numbers them; None for the embedded data."""
    from .data import held_out_names, image_files

    if run.data_dir is None:
        return None
    folder = Path(run.data_dir)
    if (folder / "test").is_dir():
        names = [p.name for p in image_files(folder / "test")]
    else:
        names = held_out_names(folder) or []
    n = run.settings.get("n_test")   # the profile's cap, as test_images applies it
    return names[:n] if n else names


def trained_on_default(run: Run) -> bool:
    """Whether the run's models were trained on the embedded photos (shipped weights, or retrained on them)."""
    return run.data_dir is None or not run.retrain


def architectures(run: Run) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Layer rows (``models.describe``) and parameter counts of every model, built from its recorded config.

    AE1 and AE2 share one architecture (they differ only in training), so they are drawn once
    as ``"ae1/ae2"``.
    """
    from .models import build_model, count_parameters, describe

    described, params = {}, {}
    for name in run.models:
        cfg_path = WEIGHTS_DIR / name / "config.json"
        model_cfg = json.loads(cfg_path.read_text()).get("model_cfg", {}) if cfg_path.is_file() else {}
        net = build_model(name, **model_cfg)
        described[name], params[name] = describe(net), count_parameters(net)
    if "ae1" in described and "ae2" in described:
        del described["ae1"]
        described["ae1/ae2"], params["ae1/ae2"] = described.pop("ae2"), params.pop("ae2")
        params.pop("ae1", None)
    return described, params


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
    for k, value in _profile_train_settings(run, name, ("epochs", "batch_size", "time_budget_s", "max_steps",
                                                         "crop")).items():
        cfg[k] = value
    return cfg


def _profile_train_settings(run: Run, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The profile's training settings ``keys`` for model ``name`` (those the profile sets).

    A dict value gives one setting per model (the cpu profile's budgets); a model it leaves
    out is an error naming the fix.
    """
    small = run.settings.get("train")
    out: dict[str, Any] = {}
    if not isinstance(small, dict):
        return out
    for k in keys:
        if k not in small:
            continue
        value = small[k]
        if isinstance(value, dict) and name not in value:
            raise ValueError(f"profile {run.profile!r} sets {k} per model but not for {name!r} "
                             f"(it has {', '.join(value)}); add it to labkit/profiles.py")
        out[k] = value[name] if isinstance(value, dict) else value
    return out


def finetune_config(run: Run, name: str) -> dict[str, Any] | None:
    """The FinetuneConfig fields of the codec-bin fine-tune a profile gives ``name`` after its training, or None.

    A profile's ``train["finetune_s"]`` (seconds per model; a model it leaves out gets none)
    continues the model just trained with :func:`labkit.finetune.finetune`: the whole model on
    the codec's hard bins (straight-through), the scale search's rules drawn per sample, strong
    augmentation, the profile's batch size, validated on the tiles of
    :data:`labkit.data.HOLDOUT_PHOTO`; ``train["finetune_ssim_weight"]`` (optional) weighs
    ``1 - SSIM`` in its loss instead of the model's training recipe.  That is the recipe of the shipped ``resae-rd-fast``'s GPU
    steps, which on a 2-core CPU closes most of the gap to the shipped weights (NOTES.md).  A model
    with a fine-tune is trained whole from its recorded ``train`` recipe, even one whose shipped
    weights were a decoder fit.
    """
    from . import spec

    small = run.settings.get("train")
    seconds = (small.get("finetune_s") or {}).get(name) if isinstance(small, dict) else None
    if not seconds:
        return None
    # lr, quantizer ("ste"), augment ("strong") and validations: FinetuneConfig's defaults, the GPU steps' recipe
    fields = dict(seconds=float(seconds), batch=int(small.get("batch_size", 32)), rules=list(spec.SCALE_SEARCH_RULES),
                  seed=run.seed, ema_decay=FINETUNE_EMA_DECAY)
    weight = _profile_train_settings(run, name, ("finetune_ssim_weight",)).get("finetune_ssim_weight")
    if weight is not None:
        fields["ssim_weight"] = float(weight)
    return fields


def decoder_fit_config(run: Run, name: str) -> dict[str, Any] | None:
    """The DecoderFitConfig fields for retraining ``name``'s decoder, or None if it is trained whole.

    A model whose shipped config records ``decoder_fit`` (``resae-rd-fast-v1``) is made by
    :func:`labkit.decoder_fit.fit_decoder` from another model's encoder, unless the profile
    gives it a fine-tune (:func:`finetune_config`: then it is trained whole).  The profile's
    ``time_budget_s`` (then no second stage), ``max_steps``, ``batch_size`` and ``crop``
    replace the recorded ones, as they do for whole-model training.
    """
    meta = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    if "decoder_fit" not in meta or finetune_config(run, name) is not None:
        return None
    cfg = dict(meta["decoder_fit"])
    cfg["seed"] = run.seed
    renamed = {"time_budget_s": "budget_s", "max_steps": "max_steps", "batch_size": "batch", "crop": "crop"}
    for k, value in _profile_train_settings(run, name, tuple(renamed)).items():
        cfg[renamed[k]] = value
        if k == "time_budget_s":
            cfg["stage2_s"] = 0.0
    return cfg


def train_models(run: Run, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train every model of the run into ``run_dir/<name>`` from its recorded config; return histories.

    A decoder fit (a checkpoint that records ``decoder_fit``) starts from its source model as trained in this run
    when the run has it (it is listed earlier), else from the shipped source weights.  A model
    whose shipped weights come with a coder prior (``labkit.coder_prior``) gets one fitted for
    the retrained weights from the same training images, so it codes as the shipped model does.
    """
    from . import coder_prior
    from .codec import load_pretrained
    from .data import training_splits
    from .decoder_fit import DecoderFitConfig, fit_decoder
    from .models import build_model
    from .train import TrainConfig, fit

    splits = training_splits(run.data_dir, run.seed)
    small = run.settings.get("train")
    if isinstance(small, dict):
        splits["train"] = splits["train"][: small.get("n_train")]
        splits["val"] = splits["val"][: small.get("n_val")]
    histories: dict[str, dict[str, Any]] = {}
    for name in run.models:
        dfit = decoder_fit_config(run, name)
        if dfit is not None:
            dcfg = DecoderFitConfig.from_dict(dfit)
            trained_here = dcfg.source in histories
            source = load_pretrained(dcfg.source, run.run_dir if trained_here else None)[0]
            print(f"labkit: {name}: decoder fit for the encoder of {dcfg.source} "
                  f"({'trained in this run' if trained_here else 'shipped weights'})", file=sys.stderr)
            model = build_model(name, seed=dcfg.seed)
            histories[name] = fit_decoder(model, source, splits["train"], dcfg, out_dir=run.run_dir / name,
                                          val_images=splits["val"])
        else:
            cfg = TrainConfig.from_dict(training_config(run, name))
            model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
            histories[name] = fit(model, splits["train"], splits["val"], cfg, out_dir=run.run_dir / name,
                                  progress=progress)
            ft = finetune_config(run, name)
            if ft is not None:
                histories[name] = _finetune_stage(run, name, model, cfg, splits["train"], ft, histories[name])
        if "coder_prior" in json.loads((WEIGHTS_DIR / name / "config.json").read_text()):
            coder_prior.fit_checkpoint(run.run_dir / name, splits["train"],
                                       {"made_by": f"labkit.workflow.train_models (profile {run.profile})"})
    return histories


#: After a profile's fine-tune, every BatchNorm statistic is re-estimated over this many batches of the
#: codec's bins at mixed b (:func:`labkit.finetune.recalibrate_bn`): the kept weights carry a train-mode
#: run's averages of its last batches, each at one b.  On the `cpu` profile's run of 2026-11-27 it took
#: its `resae-rd-fast` from +13.3 % / +20.4 % to +4.0 % / +13.8 % BD-rate (PSNR / SSIM) against the
#: shipped weights, in 7 s (NOTES.md).
FINETUNE_RECALIBRATION_BATCHES = 64
#: The side of the crops that re-estimate runs on (the training images' own side, rounded down to a
#: multiple of 8, where they are smaller): a 64-pixel training crop's 8 x 8 latent has 28 of its 64 positions on the border,
#: where zero padding shifts every statistic, and whole photos hardly have borders.  With it the
#: 60-minute recipe's weights went from +0.2 % / -0.5 % to -1.7 % / -1.9 % BD-rate against
#: ``resae-rd-fast-v2`` on full-size photos (NOTES.md, "the thirteenth recipe").
FINETUNE_RECALIBRATION_CROP = 128
#: The profile's fine-tune keeps a moving average of its weights with this decay per step (labkit.finetune.
#: WeightAverage): about the last 1,000 steps, so the last steps' noise is averaged out.  On the `cpu`
#: profile's fine-tune (arm B of cpu_profile_finetune_ab.json, re-estimated on 128-pixel crops) it
#: beat no average on three BD-rates of four; with both, the profile's hour went from +9.0 % / +7.3 %
#: to +4.8 % / +3.2 % against ``resae-rd-fast-v2`` on the tiles (cpu_profile_ema_avx512.json).
FINETUNE_EMA_DECAY = 0.999


def _finetune_stage(run: Run, name: str, model: torch.nn.Module, cfg: Any, train_images: np.ndarray,
                    ft_fields: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    """Continue ``model`` (just trained into ``run_dir/name``) with its profile's fine-tune, in place.

    The folder ends with the fine-tune's best weights, their BatchNorm statistics re-estimated for
    the codec's bins (:data:`FINETUNE_RECALIBRATION_BATCHES`, recorded as ``bn_recalibration``);
    ``config.json`` keeps the training run's facts, ``train_seconds`` becomes the stages' wall clock
    (``train_seconds_parts`` splits it) and ``history.json`` keeps the training curves beside the
    fine-tune's.
    """
    from .atomic import write_text
    from .checkpoint import save_weights
    from .data import HOLDOUT_PHOTO, holdout_tiles
    from .finetune import FinetuneConfig, finetune, recalibrate_bn
    from .train import resolve_device

    out = run.run_dir / name
    trained = json.loads((out / "config.json").read_text())
    ft = FinetuneConfig.from_dict(ft_fields)
    dev = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, device=str(dev))  # "auto" resolved: labkit.finetune validates there
    images = torch.from_numpy(train_images).to(dev).permute(0, 3, 1, 2).contiguous()
    val = torch.from_numpy(holdout_tiles()).permute(0, 3, 1, 2).float().div(255)
    keep = ("train_seconds", "epochs_completed", "device", "python", "noise", "best_epoch",
            "final_val_mse", "final_val_psnr")
    extra = {**{k: trained[k] for k in keep if k in trained},
             "finetune": {"after": "this run's training", "val": [HOLDOUT_PHOTO], "val_tiles": int(val.shape[0]),
                          "made_by": f"labkit.workflow.train_models (profile {run.profile})"}}
    print(f"labkit: {name}: {ft.seconds:.0f} s fine-tune on the codec's bins (labkit.finetune)", file=sys.stderr)
    fh = finetune(model.to(dev), images, val, cfg, ft, out, extra,
                  log=lambda line: print(f"labkit: {name}: {line}", file=sys.stderr), history_base=history)
    t0 = time.perf_counter()
    side = min(images.shape[-2:])
    crop = min(FINETUNE_RECALIBRATION_CROP, side - side % 8)
    layers = recalibrate_bn(model, images, cfg, batches=FINETUNE_RECALIBRATION_BATCHES, batch=ft.batch,
                            rules=ft.rules, part="all", seed=cfg.seed, crop=crop)
    save_weights(model, out)
    recal_s = round(time.perf_counter() - t0, 3)
    meta = json.loads((out / "config.json").read_text())
    meta["bn_recalibration"] = {"part": "all", "layers": layers, "batches": FINETUNE_RECALIBRATION_BATCHES,
                                "batch": ft.batch, "crop": crop, "rules": ft.rules, "seed": cfg.seed, "seconds": recal_s,
                                "by": "labkit.finetune.recalibrate_bn"}
    parts = {"train": trained.get("train_seconds"), "finetune": fh["elapsed_s"], "bn_recalibration": recal_s}
    meta.update(train_seconds=round(sum(v for v in parts.values() if v), 3), train_seconds_parts=parts)
    write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return {**history, "finetune": fh}


def env_info() -> dict[str, Any]:
    """Versions that matter for reproducing the numbers."""
    import platform

    import PIL
    import skimage

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "scikit-image": skimage.__version__, "cpu_count": os.cpu_count()}


def training_objectives(run: Run) -> dict[str, str]:
    """A short description of each model's training objective, from its config (for plot legends)."""
    out = {}
    for name in run.models:
        path = run.weights_dir / name / "config.json"
        if not path.is_file():
            continue
        meta = json.loads(path.read_text())
        if "decoder_fit" in meta:
            d = meta["decoder_fit"]
            out[name] = (f"decoder for {d.get('source')}'s encoder: MSE + {d.get('ssim_weight', 0.05):g}·(1−SSIM), "
                         f"quantized b={trained_bits(d) or '1..5'}")
            continue
        t = meta.get("train", {})
        loss = t.get("loss", "mse")
        desc = "MSE" if loss == "mse" else f"MSE + {t.get('ssim_weight', 0.05):g}·(1−SSIM)" if loss == "mse+ssim" else loss
        if t.get("rate_weight"):
            desc += f" + {t['rate_weight']:g}·R"
        noise = t.get("noise")
        if noise is None:
            noise = name != "ae1"
        b = trained_bits(t)
        where = f"b={b} per batch" if isinstance(b, str) else f"b={3 if b is None else b}"
        out[name] = desc + (f", noise {where}" if noise else ", no noise")
        ft_weight = (meta.get("finetune") or {}).get("ssim_weight")
        if ft_weight is not None and ft_weight != t.get("ssim_weight", 0.05):
            out[name] += f"; fine-tuned with {ft_weight:g}·(1−SSIM)"
    return out
