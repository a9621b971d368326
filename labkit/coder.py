"""Adaptive arithmetic coding of quantised latents (typed wrapper over ``ext/``).

The payload is the raw range-coder output: no header.  Shape, alphabet size,
context mode (stored as :func:`context_id`), ``increment`` and ``limit`` are side
information that the caller (``labkit.bitstream``) must store and pass back to
:func:`decode`.

Model: one adaptive frequency table per context; every count starts at 1, grows by
``increment`` each time its symbol is coded and all counts are halved
(``f -> (f + 1) // 2``, so they stay >= 1) as soon as the total exceeds ``limit``.
Contexts are derived from already-coded symbols, so the decoder mirrors them:

``"none"``              one model for the whole array.
``"channel"``           one model per latent channel ``c`` of a ``(C, H, W)`` array.
``"neighbor"``          model picked by the quantised left and top symbols in the
                        same channel, each bucketed as ``0, 1, 2-3, 4-7, ...``
                        (``0 if v == 0 else 1 + floor(log2 v)``), so an alphabet of
                        ``A`` symbols gives ``(1 + ceil(log2 A))**2`` contexts
                        (4 for A=2, 9 for A=4, 36 for A=32, 81 for A=256).
``"neighbor+channel"``  the neighbour models, restarted for every channel.
``"learned"``           as ``"neighbor+channel"``, but each channel's models start from
                        *prior counts* ``prior[c, bucket(left) * B + bucket(top), s]``
                        (``B`` buckets per neighbour) instead of all 1: the symbol
                        statistics a trained model ships for its latent
                        (:mod:`labkit.coder_prior`), so a small image does not pay to
                        learn them.  The prior is side information like the shape:
                        :func:`decode` needs the same table.

Out-of-image neighbours count as 0.  1-D input is coded as shape ``(1, 1, N)``.

Defaults ``DEFAULT_INCREMENT = 8``, ``DEFAULT_LIMIT = 1024`` were chosen by
measurement (``python benchmarks/bench_coder.py --tune``): real coded size of 300
seeded 16x16x16 quantised-ReLU-like latents per alphabet (``make_latents`` in the
benchmark: P(0) from 0.99 at A=2 to 0.72 at A=32, per-channel offset/scale), for
A in {2, 4, 8, 16, 32}, increment in {1, 2, 4, 8, 12, 16, 24, 32, 48, 64} x limit in
{2**8 .. 2**15, 65535}, relative to the best pair per A and averaged over A.  Small limits
win because the statistics change from channel to channel (fast forgetting pays):
(8, 1024) is within 0.6 % of the per-mode optimum for "none" (+0.57 %), "neighbor"
(+0.50 %) and "channel" (+0.17 %); increment 1-2 costs 1.5-12 %, limit 65535 with
increment 32 costs 1.6-6.4 %.

Payload (format version 2): the range coder's bytes, ending with exactly one
termination byte and nothing trimmed, so :func:`decode` knows where the coded data
ends and, by default, raises :class:`PayloadError` for a payload that was cut short
or has bytes appended (``termination="trimmed"`` reads version-1 payloads, which
had a shorter ending and dropped every trailing zero byte).  Measured cost against
version 1 on the benchmark's 16x16x16 latents (300 per A = 2..32, contexts "none" and
"neighbor"): 0.15 to 0.23 byte per latent on average, at most 2
(``python benchmarks/bench_coder.py --v1-cost`` rebuilds the version-1 coder from git).

Size cap: at most ``MAX_SYMBOLS = 2**28`` symbols per call (256 MiB of uint8 output;
a 1-Gpixel image at stride 8 with 16 channels has 2.5e8), checked before anything
is allocated, so a bogus shape is a ``ValueError`` and never a ``MemoryError``.

Bounds: ``1 <= increment`` and ``alphabet_size + increment <= limit <= 65535``.
The upper bound fits labkit.bitstream's 16-bit field and keeps every sub-interval of the 32-bit range >= 254 wide (range is
kept >= 2**24, total <= 65535), the lower bound guarantees that one halving brings
the total back under ``limit``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from labkit import _arith

__all__ = [
    "CONTEXT_MODES",
    "DEFAULT_INCREMENT",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_SYMBOLS",
    "TERMINATIONS",
    "PayloadError",
    "PRIOR_MODES",
    "check_settings",
    "check_prior",
    "context_id",
    "context_name",
    "encode",
    "decode",
    "ideal_code_length_bits",
    "num_contexts",
]

#: Context modes in id order; the id (index) is stored in bitstream headers.
CONTEXT_MODES: tuple[str, ...] = tuple(_arith.CONTEXT_MODES)
#: Context modes whose models start from a prior table (``prior=`` of :func:`encode`/:func:`decode`).
PRIOR_MODES: tuple[str, ...] = tuple(_arith.PRIOR_MODES)
_CONTEXT_IDS = {name: i for i, name in enumerate(CONTEXT_MODES)}

DEFAULT_INCREMENT = 8
DEFAULT_LIMIT = 1024
#: Largest allowed ``limit`` (2**16 - 1: the model total fits 16 bits).
MAX_LIMIT: int = int(_arith.MAX_LIMIT)
MIN_ALPHABET, MAX_ALPHABET = 2, 256
#: Most symbols one :func:`encode`/:func:`decode` call accepts (checked before allocating).
MAX_SYMBOLS: int = 1 << 28
#: How :func:`decode` checks where the payload ends (see :func:`decode`).
TERMINATIONS: tuple[str, ...] = ("exact", "trimmed", "none")


class PayloadError(ValueError):
    """The payload does not end where the coded symbols end: it was cut short or extended."""


def context_id(name: str) -> int:
    """Stable small integer id of a context mode (what bitstream headers store)."""
    try:
        return _CONTEXT_IDS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown context mode {name!r}; valid modes: {', '.join(CONTEXT_MODES)}"
        ) from None


def context_name(id: int) -> str:
    """Inverse of :func:`context_id`."""
    if isinstance(id, (int, np.integer)) and not isinstance(id, bool) and 0 <= id < len(CONTEXT_MODES):
        return CONTEXT_MODES[int(id)]
    raise ValueError(
        f"unknown context id {id!r}; valid ids: 0..{len(CONTEXT_MODES) - 1} "
        f"({', '.join(f'{i}={n}' for i, n in enumerate(CONTEXT_MODES))})"
    )


def check_settings(alphabet_size: int, context: str, increment: int, limit: int) -> None:
    """``ValueError`` naming the first setting the coder does not take (what ``encode`` would raise)."""
    _check_params(alphabet_size, context, increment, limit)


def _check_params(alphabet_size, context, increment, limit) -> int:
    """Validate the coding parameters; return the context id."""
    if (
        not isinstance(alphabet_size, (int, np.integer))
        or isinstance(alphabet_size, bool)
        or not MIN_ALPHABET <= alphabet_size <= MAX_ALPHABET
    ):
        raise ValueError(
            f"alphabet_size must be an integer in {MIN_ALPHABET}..{MAX_ALPHABET} "
            f"(2**b for b = 1..8 bits), got {alphabet_size!r}"
        )
    mode = _CONTEXT_IDS.get(context) if isinstance(context, str) else None
    if mode is None:
        raise ValueError(
            f"unknown context mode {context!r}; valid modes: {', '.join(CONTEXT_MODES)}"
        )
    if not isinstance(increment, (int, np.integer)) or isinstance(increment, bool) or increment < 1:
        raise ValueError(f"increment must be an integer >= 1, got {increment!r}")
    if (
        not isinstance(limit, (int, np.integer))
        or isinstance(limit, bool)
        or not alphabet_size + increment <= limit <= MAX_LIMIT
    ):
        raise ValueError(
            f"limit must be an integer with alphabet_size + increment <= limit <= "
            f"{MAX_LIMIT} (here {alphabet_size} + {increment} = "
            f"{alphabet_size + increment}), got {limit!r}; lower the increment or "
            f"raise the limit"
        )
    return mode


_U8 = np.dtype(np.uint8)
_MODE_CACHE: dict = {}


def _mode(alphabet_size, context, increment, limit) -> int:
    """Context id for valid parameters (validated once per combination of plain ints)."""
    if (
        type(alphabet_size) is int
        and type(increment) is int
        and type(limit) is int
        and type(context) is str
    ):
        key = (alphabet_size, context, increment, limit)
        mode = _MODE_CACHE.get(key)
        if mode is None:
            mode = _check_params(alphabet_size, context, increment, limit)
            if len(_MODE_CACHE) < 4096:
                _MODE_CACHE[key] = mode
        return mode
    return _check_params(alphabet_size, context, increment, limit)


def _as_chw(shape) -> tuple[int, int, int]:
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 1:
        return 1, 1, int(shape[0])
    raise ValueError(
        f"symbols must be a 1-D array or a (C, H, W) array, got {len(shape)}-D shape "
        f"{tuple(shape)}; reshape batches to one latent per call"
    )


def _check_size(chw: tuple[int, int, int], shape) -> None:
    if chw[0] < 0 or chw[1] < 0 or chw[2] < 0:
        raise ValueError(f"shape must not have negative sizes, got {tuple(shape)}")
    n = chw[0] * chw[1] * chw[2]
    if n > MAX_SYMBOLS:
        raise ValueError(
            f"shape {tuple(shape)} has {n} symbols, more than the coder's cap of "
            f"MAX_SYMBOLS = 2**28 = {MAX_SYMBOLS} per call; code it in parts"
        )


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> tuple[int, ...]:
    flat = int(np.flatnonzero(bad.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, arr.shape))


def _as_symbols(symbols, alphabet_size: int) -> np.ndarray:
    """Return a C-contiguous uint8 array with the same shape, checking the values."""
    arr = np.asarray(symbols)
    _as_chw(arr.shape)  # reject wrong ndim before ascontiguousarray makes 0-D 1-D
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "iub":
        raise ValueError(
            f"symbols must be an integer array (uint8 preferred), got dtype {arr.dtype}"
        )
    if arr.size:
        bad = (arr < 0) | (arr >= alphabet_size)
        if bad.any():
            pos = _first_bad(arr, bad)
            raise ValueError(
                f"symbol {arr[pos]} at index {pos} is outside the alphabet "
                f"0..{alphabet_size - 1}; quantise to {alphabet_size} levels or raise "
                f"alphabet_size"
            )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def prior_shape(channels: int, alphabet_size: int) -> tuple[int, int, int]:
    """Shape ``(C, B * B, A)`` of the prior table of the ``"learned"`` mode for ``channels`` channels."""
    nb = int(_arith.neighbor_buckets(alphabet_size))
    return int(channels), nb * nb, int(alphabet_size)


def check_prior(prior, context: str, channels: int, alphabet_size: int, limit: int) -> np.ndarray | None:
    """The prior table as the extension reads it (C-contiguous uint16), or None for modes without one.

    Raises ``ValueError`` naming what is wrong: a table given to a mode that takes none,
    none given to ``"learned"``, a shape other than :func:`prior_shape`, a count below 1 or
    above 65535, or a row whose total exceeds ``limit`` (its model would start over the cap).
    """
    if context not in PRIOR_MODES:
        if prior is not None:
            raise ValueError(f"context mode {context!r} takes no prior table; only {', '.join(PRIOR_MODES)} does")
        return None
    if prior is None:
        raise ValueError(f"context mode {context!r} needs the prior table the latent's model ships "
                         "(labkit.coder_prior); pass prior=")
    arr = np.asarray(prior)
    want = prior_shape(channels, alphabet_size)
    if arr.shape != want:
        raise ValueError(f"the prior table has shape {arr.shape}, but {channels} channels of "
                         f"{alphabet_size} symbols need {want}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"the prior table must hold integer counts, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 1 or int(arr.max()) > 0xFFFF):
        raise ValueError("prior counts must lie in 1..65535")
    if arr.size and int(arr.sum(axis=-1, dtype=np.int64).max()) > limit:
        raise ValueError(f"a prior row's total ({int(arr.sum(axis=-1, dtype=np.int64).max())}) exceeds the coder "
                         f"limit {limit}; scale the table down or raise the limit")
    return np.ascontiguousarray(arr, dtype=np.uint16)


def encode(
    symbols,
    alphabet_size: int,
    context: str = "none",
    *,
    increment: int = DEFAULT_INCREMENT,
    limit: int = DEFAULT_LIMIT,
    prior=None,
) -> bytes:
    """Losslessly code ``symbols`` (uint8 ``(C, H, W)`` or 1-D) into payload bytes.

    Parameters
    ----------
    symbols : array-like of int
        ``(C, H, W)`` or ``(N,)``, values in ``0..alphabet_size - 1``, at most
        :data:`MAX_SYMBOLS` of them (checked before anything is allocated).
    alphabet_size : int
        ``2 ** b`` (2..256).
    context : str
        One of :data:`CONTEXT_MODES`.
    increment, limit : int
        The adaptive model: ``1 <= increment``, ``alphabet_size + increment <= limit
        <= MAX_LIMIT``.
    prior : array-like of int, optional
        The ``"learned"`` mode's starting counts, shape :func:`prior_shape` (required by
        that mode, refused by the others; :func:`check_prior`).

    Returns
    -------
    bytes
        The payload (format version 2), without a header: :func:`decode` needs the
        same shape, alphabet size, context, increment and limit.

    Raises
    ------
    ValueError
        For bad parameters, a shape that is not 1-D or 3-D or too large, or a symbol
        outside the alphabet (the message names its value and index).
    """
    mode = _mode(alphabet_size, context, increment, limit)
    res = None
    if prior is None and context in PRIOR_MODES:
        check_prior(None, context, 0, alphabet_size, limit)  # raises: this mode needs its table
    if (type(symbols) is np.ndarray and symbols.dtype is _U8 and symbols.ndim == 3
            and symbols.size <= MAX_SYMBOLS):
        arr = symbols
        try:  # fast path: C-contiguous uint8 (C, H, W); anything else raises here
            table = check_prior(prior, context, arr.shape[0], alphabet_size, limit)
            res = _arith.encode_raw(arr, alphabet_size, mode, increment, limit, table)
        except ValueError:
            res = None
    if res is None:
        shape = np.shape(symbols) if not isinstance(symbols, np.ndarray) else symbols.shape
        if len(shape) in (1, 3):
            _check_size(_as_chw(shape), shape)
        arr = _as_symbols(symbols, alphabet_size)
        C, H, W = _as_chw(arr.shape)
        table = check_prior(prior, context, C, alphabet_size, limit)
        res = _arith.encode_raw(arr.reshape(C, H, W), alphabet_size, mode, increment, limit, table)
    if type(res) is int:
        pos = tuple(int(i) for i in np.unravel_index(res, arr.shape))
        raise ValueError(
            f"symbol {int(arr[pos])} at index {pos} is outside the alphabet "
            f"0..{alphabet_size - 1}; quantise to {alphabet_size} levels or raise "
            f"alphabet_size"
        )
    return res


def decode(
    payload,
    shape: Sequence[int],
    alphabet_size: int,
    context: str = "none",
    *,
    increment: int = DEFAULT_INCREMENT,
    limit: int = DEFAULT_LIMIT,
    termination: str = "exact",
    prior=None,
) -> np.ndarray:
    """Decode ``payload`` into a uint8 array of ``shape`` (``(C, H, W)`` or ``(N,)``).

    Parameters
    ----------
    payload : bytes-like
        Bytes written by :func:`encode` with the same shape, alphabet size, context,
        increment and limit.
    shape : sequence of int
        ``(C, H, W)`` or ``(N,)``; at most :data:`MAX_SYMBOLS` symbols.
    alphabet_size : int
        ``2 ** b`` (2..256).
    context, increment, limit
        As given to :func:`encode`.
    termination : {"exact", "trimmed", "none"}
        ``"exact"`` (what :func:`encode` writes): the payload must end exactly where
        the coded symbols end, and the final coder state must be the one the
        encoder's termination leaves.  ``"trimmed"``: a version-1 payload (trailing
        zero bytes dropped), which must not be longer than the coded data nor end
        in a zero byte.  ``"none"``: no check.
    prior : array-like of int, optional
        As given to :func:`encode` (the ``"learned"`` mode's table).

    Returns
    -------
    numpy.ndarray
        uint8 symbols of ``shape``, each ``< alphabet_size``.

    Raises
    ------
    PayloadError
        When the payload fails the ``termination`` check (cut short, extended, or
        not written by this coder).  Any bytes decode without a crash; integrity
        beyond this is the container's CRC's job.
    ValueError
        For bad parameters, or a shape over :data:`MAX_SYMBOLS` (before allocating).
    """
    mode = _mode(alphabet_size, context, increment, limit)
    if termination not in TERMINATIONS:
        raise ValueError(f"termination must be one of {', '.join(TERMINATIONS)}, got {termination!r}")
    try:
        chw = _as_chw(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of ints, got {shape!r}") from None
    _check_size(chw, shape)
    table = check_prior(prior, context, chw[0], alphabet_size, limit)
    if type(payload) is not bytes:
        try:
            payload = memoryview(payload).cast("B")
        except TypeError:
            raise ValueError(
                f"payload must be a contiguous bytes-like object, got {type(payload).__name__}"
            ) from None
    out = np.empty(chw, dtype=np.uint8)
    end, clean = _arith.decode_raw(payload, out, alphabet_size, mode, increment, limit, table)
    if termination != "none":
        _check_end(len(payload), end, clean, termination, payload)
    return out if len(shape) == 3 else out.reshape(chw[2])


def _check_end(size: int, end: int, clean: bool, termination: str, payload) -> None:
    if termination == "exact":
        if size != end:
            how = "cut short" if size < end else "extended"
            raise PayloadError(
                f"payload is {size} bytes but the coded symbols end at byte {end}: it was "
                f"{how} (or written with other shape/coder settings); re-encode the source"
            )
        if not clean:
            raise PayloadError(
                "payload does not end the way the encoder ends a stream: its bytes were "
                "altered (or written with other shape/coder settings); re-encode the source"
            )
    elif size > end or (size and payload[size - 1] == 0):
        raise PayloadError(
            f"payload of {size} bytes does not fit a version-1 stream that ends at byte "
            f"{end} with a non-zero byte: it was extended or altered; re-encode the source"
        )


def num_contexts(context: str, shape: Sequence[int], alphabet_size: int) -> int:
    """Number of distinct models a context mode uses for ``shape`` (for reports)."""
    mode = context_id(context)
    C = _as_chw(tuple(shape))[0]
    nb = int(_arith.neighbor_buckets(alphabet_size))
    return (1, max(C, 1), nb * nb, max(C, 1) * nb * nb, max(C, 1) * nb * nb)[mode]


# ------------------------------------------------------------ reference (pure Python)
def _bucket(v: int) -> int:
    return int(v).bit_length()  # 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...


def ideal_code_length_bits(
    symbols,
    alphabet_size: int,
    context: str = "none",
    *,
    increment: int = DEFAULT_INCREMENT,
    limit: int = DEFAULT_LIMIT,
    prior=None,
) -> float:
    """Ideal adaptive code length, ``sum(-log2(freq[s] / total))``, in bits.

    An independent pure-Python re-implementation of the model and the context
    derivation (it does not call the extension), used to check the coder.
    """
    mode = _check_params(alphabet_size, context, increment, limit)
    arr = _as_symbols(symbols, alphabet_size)
    C, H, W = _as_chw(arr.shape)
    table = check_prior(prior, context, C, alphabet_size, limit)
    x = arr.reshape(C, H, W).tolist()
    A = alphabet_size
    nb = _bucket(A - 1) + 1
    log2 = [0.0] + [math.log2(k) for k in range(1, limit + increment + 1)]  # totals stay <= limit + increment
    bits = 0.0
    models: dict = {}
    for c in range(C):
        if mode in (1, 3, 4):  # channel-restarted models
            models = {}
        plane = x[c]
        for y in range(H):
            row = plane[y]
            above = plane[y - 1] if y > 0 else None
            for xx in range(W):
                s = row[xx]
                if mode >= 2:
                    left = row[xx - 1] if xx > 0 else 0
                    top = above[xx] if above is not None else 0
                    key = _bucket(left) * nb + _bucket(top)
                else:
                    key = 0
                m = models.get(key)
                if m is None:
                    start = [1] * A if table is None else [int(v) for v in table[c, key]]
                    m = models[key] = [start, sum(start)]
                freq = m[0]
                bits += log2[m[1]] - log2[freq[s]]
                freq[s] += increment
                m[1] += increment
                if m[1] > limit:
                    for k in range(A):
                        freq[k] = (freq[k] + 1) >> 1
                    m[1] = sum(freq)
    return bits
