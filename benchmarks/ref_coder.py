"""Build and call benchmarks/ref_coder.c, the plain compiled reference range coder.

The C file is compiled with the system C compiler (``$CC``, default ``cc``) with the
same optimisation level as labkit's extension (``-O3``, no ``-march``) into
``benchmarks/build/`` and loaded with ctypes.  Used only by ``bench_coder.py`` and
its test; not part of labkit.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ref_coder.c"
BUILD = HERE / "build"
CFLAGS = ("-O3", "-shared", "-fPIC")

_LIB = None


def compiler() -> str | None:
    """The C compiler to use, or None when there is none on PATH."""
    return shutil.which(os.environ.get("CC", "cc"))


def build() -> ctypes.CDLL:
    """Compile (once per source hash) and load the reference coder."""
    global _LIB
    if _LIB is not None:
        return _LIB
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC); the reference coder cannot be built")
    src = SOURCE.read_bytes()
    tag = hashlib.sha1(src + " ".join(CFLAGS).encode()).hexdigest()[:12]
    BUILD.mkdir(exist_ok=True)
    lib = BUILD / f"ref_coder_{tag}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], check=True)
        os.replace(tmp, lib)
    dll = ctypes.CDLL(str(lib))
    u8p = ctypes.POINTER(ctypes.c_uint8)
    dll.ref_encode.argtypes = [u8p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint32,
                               u8p, ctypes.c_int64]
    dll.ref_encode.restype = ctypes.c_int64
    dll.ref_decode.argtypes = [u8p, ctypes.c_int64, u8p, ctypes.c_int64, ctypes.c_int,
                               ctypes.c_uint32, ctypes.c_uint32]
    dll.ref_decode.restype = ctypes.c_int64
    _LIB = dll
    return dll


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def encode(symbols: np.ndarray, A: int, increment: int, limit: int) -> bytes:
    """Code a 1-D uint8 array with one adaptive model (labkit's ``"none"`` context)."""
    lib = build()
    sym = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(-1)
    out = np.empty(3 * sym.size + 16, np.uint8)
    n = lib.ref_encode(_ptr(sym), sym.size, A, increment, limit, _ptr(out), out.size)
    if n < 0:
        raise ValueError("reference encoder failed (symbol outside the alphabet)")
    return out[:n].tobytes()


def decode(payload: bytes, n: int, A: int, increment: int, limit: int) -> np.ndarray:
    """Decode ``n`` symbols written by :func:`encode`."""
    lib = build()
    buf = np.frombuffer(payload, np.uint8) if payload else np.zeros(1, np.uint8)
    out = np.empty(n, np.uint8)
    lib.ref_decode(_ptr(buf), len(payload), _ptr(out), n, A, increment, limit)
    return out
