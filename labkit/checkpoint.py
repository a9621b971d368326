"""Checkpoints: save, load (``weights_only=True``), validate, list the shipped weights.

A checkpoint is a folder holding

- ``model.pt``     the model's ``state_dict`` only (tensors: loads with ``weights_only=True``)
- ``config.json``  ``model`` (a registered name), ``model_cfg`` (constructor arguments),
  ``train`` (the resolved TrainConfig), versions, parameter count and run facts.

This module knows models, not training: the codec loads weights through it without
importing the trainer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from . import __version__
from .atomic import atomic_path, write_text
from .models import build_model, count_parameters
from .paths import WEIGHTS_DIR

__all__ = ["CheckpointError", "model_identity", "save", "load", "check_state", "available_weights", "decoder_tag"]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model it names."""


def model_identity(model: nn.Module, default_name: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, constructor config)`` that rebuild ``model`` with ``build_model``.

    Parameters
    ----------
    model : nn.Module
        A model from :func:`labkit.models.build_model` (its ``.config`` names it).
    default_name : str, optional
        The name to use when the model carries no ``config``.

    Returns
    -------
    tuple of (str, dict)
        The registered name and the constructor arguments.
    """
    mc = dict(getattr(model, "config", None) or {})
    name = mc.pop("name", default_name)
    mc.pop("noise", None)
    if name is None:
        raise CheckpointError("the model carries no config naming it; build it with labkit.models.build_model")
    return name, mc


def save(model: nn.Module, out_dir: str | os.PathLike[str], train: Mapping[str, Any] | None = None,
         extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.pt`` (state_dict) and ``config.json`` atomically into ``out_dir``.

    Parameters
    ----------
    model : nn.Module
        The model to save (its ``.config`` names the architecture).
    out_dir : path
        The checkpoint folder (created if missing).
    train : mapping, optional
        The TrainConfig as a dict; its ``model_cfg`` is replaced by the resolved one so
        that retraining rebuilds this exact network.
    extra : mapping, optional
        Further JSON-able facts of the run (time, device, final metrics, ...).

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    name, mcfg = model_identity(model, (train or {}).get("model"))
    save_weights(model, out)
    meta = {
        "model": name,
        "model_cfg": mcfg,
        **({"train": {**train, "model_cfg": mcfg}} if train is not None else {}),
        "labkit_version": __version__,
        "torch_version": torch.__version__,
        "param_count": count_parameters(model),
        **(extra or {}),
    }
    write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return out


#: The ``config.json`` entries :func:`save` writes itself (the rest are the run's facts, ``extra``).
SAVED_KEYS = ("model", "model_cfg", "train", "labkit_version", "torch_version", "param_count")


def save_weights(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model.pt`` (the state_dict, on the CPU) atomically into ``out_dir``; ``config.json`` is left alone."""
    out = Path(out_dir)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    return out / "model.pt"


def run_facts(config: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    """``config``'s entries other than :data:`SAVED_KEYS` and ``drop``: the ``extra`` that carries a
    checkpoint's facts over when a tool writes a changed copy of it with :func:`save`."""
    return {k: v for k, v in config.items() if k not in SAVED_KEYS and k not in drop}


def _resolve(path_or_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path_or_dir)
    if p.is_dir():
        return p / "model.pt", p / "config.json"
    return p, p.with_name("config.json")


def load(path_or_dir: str | os.PathLike[str],
         map_location: str | torch.device = "cpu", coder_prior: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named in ``config.json`` and load ``model.pt`` into it.

    Parameters
    ----------
    path_or_dir : path
        The checkpoint folder, or its ``.pt`` file (``config.json`` sits next to it).
    map_location : str or torch.device
        Where the weights go.
    coder_prior : bool
        Load the coder prior shipped in the folder (False: leave it unread, as refitting it does).

    Returns
    -------
    tuple of (nn.Module, dict)
        The model in eval mode and the config dict.  Two attributes carry what the codec needs
        besides the weights: ``scale_rule`` is the config's ``"scale"`` (default ``"max"``: the
        codec's default stored-scale rule for it), and ``coder_prior`` the coder prior tables
        shipped in the folder (:mod:`labkit.coder_prior`; digest-checked against
        ``config["coder_prior"]["sha256"]``), or None.

    Raises
    ------
    CheckpointError
        Missing files, unreadable config, weights that do not fit (every missing or
        unexpected key and shape mismatch is listed), or a coder prior that is not the recorded one.
    """
    weights, cfg_path = _resolve(path_or_dir)
    if not weights.is_file():
        raise CheckpointError(f"no checkpoint weights at {weights}")
    if not cfg_path.is_file():
        raise CheckpointError(f"no config.json next to {weights}; it records which model to build")
    try:
        config = json.loads(cfg_path.read_text())
        name, mcfg = config["model"], config.get("model_cfg", {})
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"unreadable checkpoint config {cfg_path}: {e}") from None
    try:
        model = build_model(name, **mcfg)
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: cannot build model: {e}") from None
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated file, non-weights content
        # torch's message ends with advice to load with weights_only=False, i.e. to run code from
        # the file: never the right step for a weights file, so only its first line is kept
        text = str(e).strip()
        first = text.splitlines()[0][:200] if text and "weights_only" not in text else type(e).__name__
        raise CheckpointError(f"cannot read {weights}: not a labkit weights file ({first}); restore it from "
                              "the run that made it, or retrain") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # also accept a training run's last.pt
    check_state(model, state, name, mcfg, weights)
    model.load_state_dict(state)
    #: the encoder's scale rule the model was trained with: the codec's default for it
    model.scale_rule = config.get("scale", "max")
    #: the coder's prior tables by bit depth (``labkit.coder_prior``), or None
    model.coder_prior = (_coder_prior(weights.parent, config, int(getattr(model, "latent_channels", 16)))
                         if coder_prior else None)
    model.to(map_location).eval()
    return model, config


def _coder_prior(folder: Path, config: Mapping[str, Any], channels: int) -> dict[int, Any] | None:
    from . import coder_prior

    recorded = config.get("coder_prior")
    try:
        return coder_prior.load(folder, channels, recorded.get("sha256") if isinstance(recorded, dict) else None)
    except coder_prior.CoderPriorError as err:
        raise CheckpointError(str(err)) from None


def check_state(model: nn.Module, state: Any, name: str, mcfg: Mapping[str, Any], where: Path) -> None:
    """Raise :class:`CheckpointError` listing every key and shape difference between ``state`` and ``model``,
    or naming the tensors that hold inf or nan."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} does not hold a state_dict (got {type(state).__name__})")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        bad = [k for k, v in state.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # e.g. a float16 copy of a BatchNorm variance above 65504: the layer would zero its channels
            raise CheckpointError(
                f"checkpoint {where} holds non-finite values (inf or nan) in {len(bad)} tensor(s): "
                f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}; the weights are damaged "
                "(a float16 copy that overflowed, or a diverged run): use the original float32 weights")
        return

    def head(items: list[str], n: int = 8) -> str:
        more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
        return ", ".join(items[:n]) + more

    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {head(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {head(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {head(shapes, 5)}")
    raise CheckpointError(
        f"checkpoint {where} does not fit model {name!r} with config {dict(mcfg)}: "
        + "; ".join(parts)
        + ". The weights were probably written by a different model or config: fix "
        "'model'/'model_cfg' in config.json to match the run that produced them, or retrain."
    )


def decoder_tag(model: nn.Module) -> int:
    """A 32-bit fingerprint of the decoder network a file is read with.

    ``.lkc`` files written since 2026-11-28 start their CRC from it (``labkit.bitstream``), so a
    file refuses to decode with another decoder than the one that wrote it under the same model
    name (a user's own ``ae1`` against the shipped one) instead of decoding to noise.  It is a
    CRC-32 over each entry of ``model.decoder.state_dict()`` in name order (the name, then the
    tensor's bytes on the CPU in native order, little-endian on every machine labkit runs on),
    so it is the same on every machine, for any wrapper around the model, and whatever memory
    layout the tensors have.  The encoder does not enter it (a retrained encoder writes files the
    same decoder reads), nor does the coder prior: the files that use it (the ``learned``
    context) are checked by its digest when the weights load and by the coder's end-of-data
    check, and files of the other contexts never read it.

    Parameters
    ----------
    model : nn.Module
        A model with a ``decoder`` submodule, before ``labkit.inference.optimize_for_inference``
        (which folds BatchNorm and so changes the tensors).

    Returns
    -------
    int
        The tag, 0 .. 2**32 - 1.
    """
    import zlib

    import numpy as np

    crc = 0
    for name, tensor in sorted(model.decoder.state_dict().items()):
        crc = zlib.crc32(name.encode("utf-8"), crc)
        crc = zlib.crc32(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes(), crc)
    return crc


def available_weights(weights_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the checkpoints in ``weights_dir`` (default: the weights shipped with labkit)."""
    root = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "model.pt").is_file())
