"""Prior counts for the coder's ``"learned"`` context mode: the symbol statistics a model ships.

The adaptive coder's ``"neighbor"`` models start every file from flat counts and learn the
latent's statistics as they code it.  On a 128 x 128 image (8,192 symbols at 32 channels) that
learning is a large share of the file.  The statistics are largely the model's, not the
image's: channel ``c`` of a given encoder at bit depth ``b`` has much the same distribution
in every image.  So a model can ship them.  The ``"learned"`` mode
(:mod:`labkit.coder`) codes each channel with its own neighbour models, and each model
starts from the table's counts for that channel and neighbour context instead of flat ones.
It still adapts as it codes (increment :data:`INCREMENT`, cap :data:`LIMIT`), so an unusual
image is not stuck with the table.

A table is fitted once, from the symbols the codec's own encoder writes for the model's
training images (:func:`fit_tables`, ``python tools/fit_coder_prior.py``):

- the counts of each ``(channel, neighbour context, symbol)``;
- smoothed toward the pooled distribution of all channels and contexts (:data:`SMOOTHING`
  pseudo-counts), so a context seldom seen in training keeps a sensible start;
- scaled so each row totals about :data:`STRENGTH` ``* 2**b`` and rounded, with every count
  at least 1 (no symbol is ever impossible).

The strength (how many symbols' worth of evidence the prior is) and the coder's cap were
chosen by measurement: on half of the default training tiles, with the table fitted on the
other half, they give the smallest code (NOTES.md).

**A table is part of the model's file format.**  Files written in the ``"learned"`` mode decode
only with the same counts.  So a table is shipped beside the weights
(:data:`FILE_NAME`), its SHA-256 is recorded in the model's ``config.json``, and :func:`load`
refuses a table whose digest differs.  New counts need a new model id, like new weights.
Everything here is exact integer work on the decoder's side, so every CPU gets the same symbols.
Torch-free at import (:func:`training_symbols` and :func:`fit_checkpoint` run the encoder and
import torch when called).
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes

__all__ = ["FILE_NAME", "BITS", "STRENGTH", "SMOOTHING", "INCREMENT", "LIMIT", "CoderPriorError",
           "contexts", "count", "table_from_counts", "fit_tables", "to_bytes", "digest", "save", "load",
           "training_symbols", "fit_checkpoint"]

#: The table's file inside a model's weights folder.
FILE_NAME = "coder_prior.npz"
#: Bit depths a shipped table covers (the user's knob).  Other depths use ``"neighbor"``.
BITS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Each row of the table totals about ``STRENGTH * 2**b`` counts (64 at b = 1, 1024 at b = 5):
#: how much the prior weighs against what the file's own symbols teach the model.
STRENGTH = 32
#: Pseudo-counts of the pooled distribution added to every row before scaling.
SMOOTHING = 4.0
#: The coder settings files in the ``"learned"`` mode are written with.  A higher cap than the
#: ``"neighbor"`` mode's 1024: a model that starts from a good table should forget more slowly.
INCREMENT = 8
LIMIT = 4096


class CoderPriorError(ValueError):
    """A prior table is missing, malformed or not the one the model shipped."""


def _buckets(v: np.ndarray) -> np.ndarray:
    """``0 if v == 0 else 1 + floor(log2 v)`` for uint8 symbols (the coder's neighbour buckets)."""
    out = np.zeros(v.shape, dtype=np.int64)
    nz = v > 0
    out[nz] = np.floor(np.log2(v[nz].astype(np.float64))).astype(np.int64) + 1
    return out


def n_buckets(alphabet_size: int) -> int:
    """Buckets per neighbour for an alphabet of ``alphabet_size`` symbols (``1 + ceil(log2 A)``)."""
    return int(alphabet_size - 1).bit_length() + 1


def contexts(symbols: np.ndarray, alphabet_size: int) -> np.ndarray:
    """The ``"learned"`` mode's neighbour context of every symbol of a ``(C, H, W)`` array.

    ``bucket(left) * B + bucket(top)`` in the same channel, out-of-image neighbours 0: what the
    coder derives, computed here with numpy so that tables can be fitted from many images.
    """
    q = np.asarray(symbols)
    if q.ndim != 3:
        raise ValueError(f"symbols must be a (C, H, W) array, got shape {q.shape}")
    left = np.zeros_like(q)
    left[:, :, 1:] = q[:, :, :-1]
    top = np.zeros_like(q)
    top[:, 1:, :] = q[:, :-1, :]
    return _buckets(left) * n_buckets(alphabet_size) + _buckets(top)


def count(symbol_arrays: Iterable[np.ndarray], channels: int, b: int) -> np.ndarray:
    """Counts ``[C, B * B, 2**b]`` (int64) of each symbol in each channel and neighbour context."""
    a = 1 << b
    nb = n_buckets(a)
    counts = np.zeros((channels, nb * nb, a), dtype=np.int64)
    for q in symbol_arrays:
        q = np.asarray(q)
        if q.ndim != 3 or q.shape[0] != channels:
            raise ValueError(f"symbols of shape {q.shape} do not have {channels} channels")
        if q.size and int(q.max()) >= a:
            raise ValueError(f"a symbol {int(q.max())} is outside 0..{a - 1} for b={b}")
        ctx = contexts(q, a)
        chan = np.broadcast_to(np.arange(channels)[:, None, None], q.shape)
        np.add.at(counts, (chan.ravel(), ctx.ravel(), q.ravel().astype(np.int64)), 1)
    return counts


def table_from_counts(counts: np.ndarray, b: int) -> np.ndarray:
    """The uint16 table of ``counts`` (see the module docstring): smoothed, scaled, rounded, >= 1."""
    counts = np.asarray(counts, dtype=np.float64)
    a = 1 << b
    if counts.ndim != 3 or counts.shape[1:] != (n_buckets(a) ** 2, a):
        raise ValueError(f"counts of shape {counts.shape} do not fit b={b}")
    pooled = counts.sum(axis=(0, 1)) + 0.5
    pooled /= pooled.sum()
    p = (counts + SMOOTHING * pooled) / (counts.sum(axis=-1, keepdims=True) + SMOOTHING)
    table = np.maximum(1, np.rint(p * (STRENGTH * a))).astype(np.int64)
    assert int(table.sum(axis=-1).max()) <= LIMIT, "STRENGTH * 2**b + 2**b must stay within LIMIT"
    return table.astype(np.uint16)


def fit_tables(symbols_by_b: Mapping[int, Iterable[np.ndarray]], channels: int) -> dict[int, np.ndarray]:
    """One table per bit depth from the symbols the codec writes for training images at that b."""
    return {int(b): table_from_counts(count(arrays, channels, int(b)), int(b)) for b, arrays in symbols_by_b.items()}


def to_bytes(tables: Mapping[int, np.ndarray]) -> bytes:
    """The ``.npz`` bytes of ``tables``: keys ``b1``, ``b2``, ... in order, uncompressed, every member dated
    1980-01-01, so the same tables always give the same bytes (``numpy.savez`` stamps the time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for b in sorted(tables):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(tables[b], dtype=np.uint16), allow_pickle=False)
            info = zipfile.ZipInfo(f"b{b}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def digest(data: bytes) -> str:
    """SHA-256 (hex) of a table file's bytes: what ``config.json`` records."""
    return hashlib.sha256(data).hexdigest()


def save(tables: Mapping[int, np.ndarray], folder: str | os.PathLike[str]) -> str:
    """Write ``folder/coder_prior.npz`` atomically; return its digest (record it in ``config.json``)."""
    data = to_bytes(tables)
    write_bytes(Path(folder) / FILE_NAME, data)
    return digest(data)


def load(folder: str | os.PathLike[str], channels: int, expected_digest: str | None) -> dict[int, np.ndarray] | None:
    """The tables in ``folder``, or None when it holds none.

    Parameters
    ----------
    folder : path
        A model's weights folder.
    channels : int
        The model's latent channels (each table must have that many rows of contexts).
    expected_digest : str or None
        The SHA-256 the model's ``config.json`` records (``coder_prior.sha256``).  A table whose
        digest differs, or a table without a recorded digest, raises: files coded with other
        counts would not decode.

    Raises
    ------
    CoderPriorError
        For a digest mismatch, an unreadable file, or a table of the wrong shape or values.
    """
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        if expected_digest:
            raise CoderPriorError(f"{folder} records a coder prior (sha256 {expected_digest[:12]}...) but has no "
                                  f"{FILE_NAME}; reinstall the weights")
        return None
    data = path.read_bytes()
    if expected_digest is None or digest(data) != expected_digest:
        raise CoderPriorError(f"{path} is not the coder prior its config.json records (sha256 "
                              f"{digest(data)[:12]}... vs {str(expected_digest)[:12]}...): files in the learned "
                              "context mode would not decode with it; restore the shipped file, or refit it "
                              "with tools/fit_coder_prior.py and record the new digest under a new model id")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            tables = {int(k[1:]): np.array(npz[k]) for k in npz.files}
    except (OSError, ValueError, KeyError) as err:
        raise CoderPriorError(f"cannot read {path}: {err}") from None
    for b, t in tables.items():
        a = 1 << b
        want = (channels, n_buckets(a) ** 2, a)
        if t.dtype != np.uint16 or t.shape != want or (t.size and (int(t.min()) < 1 or int(t.sum(-1).max()) > LIMIT)):
            raise CoderPriorError(f"{path}: the table for b={b} must be uint16 of shape {want} with counts >= 1 "
                                  f"and rows totalling <= {LIMIT}; got {t.dtype} {t.shape}")
    return tables


def training_symbols(codec: Any, images: Iterable[np.ndarray], bits: Iterable[int] = BITS) -> dict[int, list[np.ndarray]]:
    """The symbols ``codec`` (a :class:`labkit.codec.Codec`) writes for each image at each b.

    The encoder runs once per image; its latent is quantized at every b with the codec's own
    stored-scale rule, exactly as :meth:`labkit.codec.Codec.analyse` does.
    """
    import torch

    from . import quant
    from .inference import encode_tiled

    bits = list(bits)
    out: dict[int, list[np.ndarray]] = {b: [] for b in bits}
    with torch.inference_mode():
        for image in images:
            y = encode_tiled(codec.model, np.ascontiguousarray(image), codec.tiles[0])
            ymax = quant.to_float32(quant.latent_scale(y, codec.scale))
            for b in bits:
                out[b].append(quant.quantize(y, ymax, b)[0].numpy().astype(np.uint8))
    return out


def fit_checkpoint(folder: str | os.PathLike[str], images: np.ndarray, facts: Mapping[str, Any] | None = None,
                   write: bool = True) -> tuple[dict[int, np.ndarray], str]:
    """Fit the tables of the checkpoint ``folder`` from its training ``images``; write and record them.

    Parameters
    ----------
    folder : path
        A checkpoint folder (``model.pt`` + ``config.json``).
    images : numpy.ndarray
        The images the model was trained on, uint8 ``[N, H, W, 3]`` (never a test split).
    facts : mapping, optional
        What to record beside the digest in ``config.json["coder_prior"]`` (how it was made).
    write : bool
        False: fit only (``tools/fit_coder_prior.py --check``).

    Returns
    -------
    tuple of (dict, str)
        The tables by b, and the digest of their file.
    """
    import json

    import torch

    from .atomic import write_text
    from .checkpoint import load as load_checkpoint
    from .codec import Codec

    folder = Path(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same latents as every other one-thread run
    try:
        model, config = load_checkpoint(folder, coder_prior=False)  # the table being refitted is not read
        codec = Codec(model, 1, "neighbor", model_name=config["model"], coder_prior={})
        tables = fit_tables(training_symbols(codec, images), codec.latent_channels)
    finally:
        torch.set_num_threads(threads)
    data = to_bytes(tables)
    sha = digest(data)
    if write:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        write_bytes(folder / FILE_NAME, data)
        config["coder_prior"] = {"sha256": sha, "images": int(len(images)), "image_shape": list(np.shape(images)[1:3]),
                                 "scale": codec.scale, "bits": list(BITS), "strength": STRENGTH,
                                 "smoothing": SMOOTHING, "increment": INCREMENT, "limit": LIMIT, **dict(facts or {})}
        write_text(config_path, json.dumps(config, indent=2) + "\n")
    return tables, sha
