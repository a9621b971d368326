#!/usr/bin/env python
"""Benchmark labkit.coder: speed as a ratio to a plain compiled range coder, size vs ideal.

    .venv/bin/python benchmarks/bench_coder.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_coder.py --quick    # smaller data, fewer repeats
    .venv/bin/python benchmarks/bench_coder.py --ref-only # just the reference ratios (r)
    .venv/bin/python benchmarks/bench_coder.py --tune     # increment/limit sweep
    .venv/bin/python benchmarks/bench_coder.py --v1-cost  # bytes of format v2 vs v1 (builds v1 from git)

Data: seeded latents resembling quantised ReLU latents of a conv autoencoder,
shape (16, 16, 16): a spatially smooth Gaussian field plus Laplacian noise, per-channel
offset and scale, ReLU, then ``q = floor(y / ymax * A)`` with ``ymax`` the latent's
maximum (as labkit.quant does) -- most mass at 0, a geometric-like tail.

(r) THE SPEED TARGET: labkit's coder against ``benchmarks/ref_coder.c``, a plain
    adaptive range coder with the same model as the "none" context (counts start at
    1, +increment, halved above limit; linear cumulative-frequency search, one
    division per symbol), compiled in this run with the system C compiler at -O3 and
    called through ctypes.  Both code the same 1-D stream of latents (A = 4, 16, 32;
    1,024,000 symbols, ``--quick``: 256,000) in one call; CPU time of this thread,
    best of 7 (``--quick``: 3), the four timings interleaved so that a loaded machine
    slows both alike.  Target: ratio (labkit / reference Msym/s) >= 1 at A = 16 and 32,
    encode and decode.
(a) 1000 latents (``--quick``: 200), one ``encode``/``decode`` call per latent
    through the public API (argument checks and allocation included), in every context
    mode; ``learned`` starts from a table fitted (``labkit.coder_prior``) on as many latents
    of the next seed, with the prior's increment and limit, as the codec codes it;
(b) one 1-D stream of the same latents concatenated (4,096,000 symbols; ``--quick``:
    1,024,000), one call.  On 1-D input "channel" is "none" and "neighbor" sees only
    the left neighbour.
(c) the cost of a fixed 256-symbol alphabet (what the course's C++ coder uses)
    against the real 2**b, on the same latents: with labkit's defaults (8, 1024) and
    with settings suited to 256 symbols (increment 255, limit 65535).

Speeds (a), (b) are the best of a few wall-clock repeats, single thread (pinned to CPU
0 where the OS allows).  "over ideal" is mean(bytes - ideal_bits / 8) per latent, the
ideal being ``coder.ideal_code_length_bits`` (pure Python, so computed on the first
100 latents, ``--quick``: 25).  constriction (if installed):
``stream.queue.RangeEncoder`` with a static ``Categorical`` model fitted to each
latent's own histogram (model building and int32 conversion not timed, the model's
side information not counted); the ratios are ours / constriction's from the same
run.  The CPU's name is printed and stored.  Results also go to
``benchmarks/results/bench_coder.json``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from labkit import coder, coder_prior  # noqa: E402
from labkit.speed import best_time, cpu_name  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_coder  # noqa: E402

try:  # optional comparison (constriction.stream is an attribute, not a submodule)
    import constriction

    Categorical = constriction.stream.model.Categorical
    RangeEncoder = constriction.stream.queue.RangeEncoder
    RangeDecoder = constriction.stream.queue.RangeDecoder
except (ImportError, AttributeError):  # pragma: no cover
    Categorical = None

ALPHABETS = (2, 4, 8, 16, 32)
REF_ALPHABETS = (4, 16, 32)
#: the last commit whose coder wrote format version 1 (for --v1-cost)
V1_COMMIT = "34eb45b"
SHAPE = (16, 16, 16)
RESULTS = Path(__file__).resolve().parent / "results" / "bench_coder.json"


def make_latents(n: int, A: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    """``n`` seeded quantised-ReLU-like latents of ``shape`` with alphabet ``A``."""
    rng = np.random.default_rng([seed, A])
    C, H, W = shape
    z = rng.standard_normal((n, C, H + 2, W + 2))
    field = sum(z[:, :, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)) / 3.0
    lap = rng.laplace(size=(n, C, H, W)) / np.sqrt(2.0)
    mu = rng.uniform(-1.0, 0.2, size=(n, C, 1, 1))
    scale = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=(n, C, 1, 1)))
    y = np.maximum(mu + scale * (0.8 * field + 0.6 * lap), 0.0)
    ymax = np.maximum(y.reshape(n, -1).max(1), 1e-12).reshape(n, 1, 1, 1)
    return np.minimum(np.floor(y / ymax * A), A - 1).astype(np.uint8)


def _best(fn, repeats: int) -> float:
    return best_time(fn, repeats, warmup=False)


def prior_options(mode: str, A: int, n_lat: int, seed: int) -> dict:
    """What the codec passes with a context that starts from a table (``coder.PRIOR_MODES``): the table,
    fitted as ``labkit.coder_prior`` fits a model's from ``n_lat`` latents of another seed (held out from
    the timed ones), and the increment and limit it is coded with; ``{}`` for the other contexts."""
    if mode not in coder.PRIOR_MODES:
        return {}
    b = A.bit_length() - 1
    training = make_latents(n_lat, A, seed=seed + 1)
    table = coder_prior.table_from_counts(coder_prior.count(list(training), training.shape[1], b), b)
    return {"prior": table, "increment": coder_prior.INCREMENT, "limit": coder_prior.LIMIT}


def bench_ours(latents, A, mode, repeats, n_ideal, **options):
    shape = latents[0].shape
    payloads = [coder.encode(x, A, mode, **options) for x in latents]
    for x, p in zip(latents, payloads):
        if not np.array_equal(coder.decode(p, shape, A, mode, **options), x):
            raise SystemExit(f"round trip failed: A={A} mode={mode}")
    enc = coder.encode
    dec = coder.decode

    def run_enc():
        for x in latents:
            enc(x, A, mode, **options)

    def run_dec():
        for p in payloads:
            dec(p, shape, A, mode, **options)

    n_sym = sum(x.size for x in latents)
    t_enc = _best(run_enc, repeats)
    t_dec = _best(run_dec, repeats)
    k = min(n_ideal, len(latents))
    over = [len(p) - coder.ideal_code_length_bits(x, A, mode, **options) / 8 for x, p in zip(latents[:k], payloads[:k])]
    return {
        "enc_msym_s": n_sym / t_enc / 1e6,
        "dec_msym_s": n_sym / t_dec / 1e6,
        "bytes_per_latent": float(np.mean([len(p) for p in payloads])),
        "bits_per_symbol": 8.0 * sum(len(p) for p in payloads) / n_sym,
        "over_ideal_bytes_per_latent": float(np.mean(over)) if over else None,
        "over_ideal_max_bytes": float(np.max(over)) if over else None,
    }


def bench_constriction(latents, A, repeats):
    if Categorical is None:
        return None
    syms = [x.reshape(-1).astype(np.int32) for x in latents]
    models = [
        Categorical(np.bincount(s, minlength=A).astype(np.float64), perfect=False) for s in syms
    ]
    comp = []
    for s, m in zip(syms, models):
        e = RangeEncoder()
        e.encode(s, m)
        comp.append(e.get_compressed())
    for s, m, c in zip(syms, models, comp):
        if not np.array_equal(RangeDecoder(c).decode(m, s.size), s):
            raise SystemExit(f"constriction round trip failed: A={A}")

    def run_enc():
        for s, m in zip(syms, models):
            e = RangeEncoder()
            e.encode(s, m)
            e.get_compressed()

    def run_dec():
        for s, m, c in zip(syms, models, comp):
            RangeDecoder(c).decode(m, s.size)

    n_sym = sum(s.size for s in syms)
    return {
        "enc_msym_s": n_sym / _best(run_enc, repeats) / 1e6,
        "dec_msym_s": n_sym / _best(run_dec, repeats) / 1e6,
        "bytes_per_latent": float(np.mean([4 * c.size for c in comp])),
    }


def bench_reference(A: int, n_lat: int, repeats: int, seed: int) -> dict:
    """(r): labkit vs the plain C reference on one 1-D stream, "none" context, defaults."""
    stream = make_latents(n_lat, A, seed=seed).reshape(-1)
    inc, lim = coder.DEFAULT_INCREMENT, coder.DEFAULT_LIMIT
    ours = coder.encode(stream, A, "none")
    ref = ref_coder.encode(stream, A, inc, lim)
    if not np.array_equal(coder.decode(ours, stream.shape, A, "none"), stream):
        raise SystemExit(f"labkit round trip failed: A={A}")
    if not np.array_equal(ref_coder.decode(ref, stream.size, A, inc, lim), stream):
        raise SystemExit(f"reference round trip failed: A={A}")
    fns = {
        "enc": lambda: coder.encode(stream, A, "none"),
        "dec": lambda: coder.decode(ours, stream.shape, A, "none"),
        "ref_enc": lambda: ref_coder.encode(stream, A, inc, lim),
        "ref_dec": lambda: ref_coder.decode(ref, stream.size, A, inc, lim),
    }
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):  # interleaved: load on the machine hits all four alike
        for k, fn in fns.items():
            t0 = time.thread_time()
            fn()
            best[k] = min(best[k], time.thread_time() - t0)
    m = stream.size / 1e6
    r = {k + "_msym_s": m / v for k, v in best.items()}
    r.update(A=A, n_symbols=int(stream.size), bytes=len(ours), ref_bytes=len(ref),
             enc_ratio=best["ref_enc"] / best["enc"], dec_ratio=best["ref_dec"] / best["dec"])
    return r


def run_reference(n_lat: int, repeats: int, seed: int) -> list[dict]:
    print(f"\n(r) labkit vs plain C reference range coder (benchmarks/ref_coder.c, {ref_coder.compiler()} "
          f"{' '.join(ref_coder.CFLAGS)}), context none, increment/limit "
          f"{coder.DEFAULT_INCREMENT}/{coder.DEFAULT_LIMIT}, one 1-D stream of {n_lat} latents, "
          f"thread CPU time, best of {repeats}, interleaved")
    head = (f"{'A':>3} {'enc Msym/s':>10} {'ref enc':>8} {'enc ratio':>9} {'dec Msym/s':>10} {'ref dec':>8} "
            f"{'dec ratio':>9} {'bytes':>8} {'ref bytes':>9}")
    print(head)
    print("-" * len(head))
    out = []
    for A in REF_ALPHABETS:
        r = bench_reference(A, n_lat, repeats, seed)
        out.append(r)
        print(f"{A:>3} {r['enc_msym_s']:>10.1f} {r['ref_enc_msym_s']:>8.1f} {r['enc_ratio']:>9.2f} "
              f"{r['dec_msym_s']:>10.1f} {r['ref_dec_msym_s']:>8.1f} {r['dec_ratio']:>9.2f} "
              f"{r['bytes']:>8} {r['ref_bytes']:>9}")
    met = all(r["enc_ratio"] >= 1 and r["dec_ratio"] >= 1 for r in out if r["A"] >= 16)
    print(f"target (ratio >= 1 at A = 16 and 32, encode and decode): {'met' if met else 'NOT met'}")
    return out


def run_alphabet_cost(latents_by_A: dict, contexts=("none", "neighbor")) -> dict:
    """(c): bytes with a fixed 256-symbol alphabet vs the real 2**b (same symbols)."""
    print("\n(c) a fixed 256-symbol alphabet vs the real 2**b (same latents; % more bytes than 2**b with "
          f"the defaults {coder.DEFAULT_INCREMENT}/{coder.DEFAULT_LIMIT})")
    out = {}
    for ctx in contexts:
        for A, lat in latents_by_A.items():
            own = sum(len(coder.encode(x, A, ctx)) for x in lat)
            d = sum(len(coder.encode(x, 256, ctx)) for x in lat)
            t = sum(len(coder.encode(x, 256, ctx, increment=255, limit=coder.MAX_LIMIT)) for x in lat)
            out[f"{ctx}-A{A}"] = {"bytes_2b": own, "bytes_256_default": d, "bytes_256_inc255_lim65535": t,
                                  "pct_256_default": 100 * (d / own - 1), "pct_256_inc255": 100 * (t / own - 1)}
            print(f"  {ctx:<9} A={A:>2}: {own} bytes; 256 symbols: {100 * (d / own - 1):+.1f} % at "
                  f"{coder.DEFAULT_INCREMENT}/{coder.DEFAULT_LIMIT}, {100 * (t / own - 1):+.1f} % at 255/65535")
    return out


def build_v1_coder(commit: str = V1_COMMIT):
    """Compile ``ext/arith.pyx`` as of ``commit`` (format version 1) into a temp module."""
    from Cython.Build import cythonize  # noqa: F401 - fail early with a clear ImportError
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(root), "show", f"{commit}:ext/arith.pyx"], check=True,
                         capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="lk-v1-"))
    (tmp / "arith_v1.pyx").write_text(src)
    (tmp / "setup.py").write_text(
        "from setuptools import setup, Extension\nfrom Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize([Extension('arith_v1', ['arith_v1.pyx'], extra_compile_args=['-O3'])],"
        " compiler_directives={'language_level': '3', 'boundscheck': False, 'wraparound': False,"
        " 'cdivision': True}, quiet=True))\n")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    spec = importlib.util.spec_from_file_location("arith_v1", next(tmp.glob("arith_v1*.so")))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_v1_cost(args) -> dict:
    """Bytes of the version-2 payload (one-byte termination, nothing trimmed) minus version 1."""
    v1 = build_v1_coder()
    n_lat = 100 if args.quick else 300
    ids = {m: i for i, m in enumerate(coder.CONTEXT_MODES)}
    print(f"format v2 - v1 payload bytes per {SHAPE} latent ({n_lat} latents per A; v1 = ext/arith.pyx at {V1_COMMIT})")
    out = {}
    for A in ALPHABETS:
        lat = make_latents(n_lat, A, seed=args.seed)
        for ctx in ("none", "neighbor"):
            d = np.array([len(coder.encode(x, A, ctx)) - len(v1.encode_raw(x, A, ids[ctx], coder.DEFAULT_INCREMENT,
                                                                               coder.DEFAULT_LIMIT)) for x in lat])
            size = float(np.mean([len(coder.encode(x, A, ctx)) for x in lat]))
            out[f"{ctx}-A{A}"] = {"mean": float(d.mean()), "min": int(d.min()), "max": int(d.max()), "mean_bytes": size}
            print(f"  A={A:>2} {ctx:<9} mean {d.mean():+.3f} bytes (min {d.min():+d}, max {d.max():+d}) "
                  f"on {size:.1f}-byte payloads")
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def run_bench(args) -> dict:
    n_lat = 200 if args.quick else 1000
    repeats = 2 if args.quick else 3
    n_ideal = 25 if args.quick else 100
    records = []
    stats = {}
    print(f"labkit.coder benchmark on {cpu_name()}: {n_lat} latents {SHAPE} per A, best of {repeats}; "
          f"stream (b) = the same latents as one 1-D array")
    head = (f"{'data':>6} {'A':>3} {'context':<16} {'enc Msym/s':>10} {'dec Msym/s':>10} "
            f"{'bytes/lat':>9} {'bits/sym':>8} {'over ideal':>10} {'enc x c.':>8} "
            f"{'dec x c.':>8} {'size x c.':>9}")
    print(head)
    print("-" * len(head))
    for A in ALPHABETS:
        lat = make_latents(n_lat, A, seed=args.seed)
        hist = np.bincount(lat.ravel(), minlength=A) / lat.size
        nz = hist[hist > 0]
        stats[A] = {"p0": float(hist[0]), "entropy_bits": float(-(nz * np.log2(nz)).sum())}
        latents = list(lat)
        ref = bench_constriction(latents, A, repeats)
        if ref is not None:
            records.append({"data": "latents", "A": A, "coder": "constriction", "context": "static", **ref})
        for mode in coder.CONTEXT_MODES:
            r = bench_ours(latents, A, mode, repeats, n_ideal, **prior_options(mode, A, n_lat, args.seed))
            rec = {"data": "latents", "A": A, "coder": "labkit", "context": mode, **r}
            if ref is not None:
                rec["enc_x_constriction"] = r["enc_msym_s"] / ref["enc_msym_s"]
                rec["dec_x_constriction"] = r["dec_msym_s"] / ref["dec_msym_s"]
                rec["size_x_constriction"] = r["bytes_per_latent"] / ref["bytes_per_latent"]
            records.append(rec)
            print(f"{'(a)':>6} {A:>3} {mode:<16} {r['enc_msym_s']:>10.1f} {r['dec_msym_s']:>10.1f} "
                  f"{r['bytes_per_latent']:>9.1f} {r['bits_per_symbol']:>8.3f} "
                  f"{_fmt(r['over_ideal_bytes_per_latent'], '>+10.3f')} "
                  f"{_fmt(rec.get('enc_x_constriction'), '>8.2f')} "
                  f"{_fmt(rec.get('dec_x_constriction'), '>8.2f')} "
                  f"{_fmt(rec.get('size_x_constriction'), '>9.3f')}")
        if ref is not None:
            print(f"{'(a)':>6} {A:>3} {'constriction':<16} {ref['enc_msym_s']:>10.1f} "
                  f"{ref['dec_msym_s']:>10.1f} {ref['bytes_per_latent']:>9.1f} "
                  f"{8 * ref['bytes_per_latent'] / lat[0].size:>8.3f}")
        stream = lat.reshape(-1)
        for mode in ("none", "neighbor"):
            p = coder.encode(stream, A, mode)
            if not np.array_equal(coder.decode(p, stream.shape, A, mode), stream):
                raise SystemExit(f"stream round trip failed: A={A} mode={mode}")
            t_enc = _best(lambda: coder.encode(stream, A, mode), repeats)
            t_dec = _best(lambda: coder.decode(p, stream.shape, A, mode), repeats)
            ideal = coder.ideal_code_length_bits(stream, A, mode)
            rec = {"data": "stream", "A": A, "coder": "labkit", "context": mode,
                   "n_symbols": int(stream.size), "enc_msym_s": stream.size / t_enc / 1e6,
                   "dec_msym_s": stream.size / t_dec / 1e6, "bytes": len(p),
                   "ideal_bytes": ideal / 8, "over_ideal_pct": 100 * (8 * len(p) / ideal - 1)}
            records.append(rec)
            print(f"{'(b)':>6} {A:>3} {mode:<16} {rec['enc_msym_s']:>10.1f} {rec['dec_msym_s']:>10.1f} "
                  f"{'':>9} {8 * len(p) / stream.size:>8.3f} {rec['over_ideal_pct']:>+9.4f}%")
        print(f"{'':>6} {A:>3} data: P(0) = {stats[A]['p0']:.3f}, "
              f"order-0 entropy {stats[A]['entropy_bits']:.3f} bits/symbol")
    print("\nover ideal: (a) mean bytes per latent over the ideal adaptive code length, "
          "(b) percent; x c. = ours / constriction (static per-latent histogram model, "
          "whose side information is not counted)")
    alphabet = run_alphabet_cost({A: list(make_latents(n_lat // 4, A, seed=args.seed)) for A in ALPHABETS})
    reference = run_reference(250 if args.quick else 1000, 3 if args.quick else 7, args.seed)
    return {
        "reference": reference,
        "alphabet_256": alphabet,
        "meta": {
            "cpu": cpu_name(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "quick": bool(args.quick),
            "latents": n_lat,
            "shape": list(SHAPE),
            "repeats": repeats,
            "seed": args.seed,
            "defaults": {"increment": coder.DEFAULT_INCREMENT, "limit": coder.DEFAULT_LIMIT},
            "data_stats": {str(a): s for a, s in stats.items()},
        },
        "records": records,
    }


def run_tune(args) -> dict:
    """Sweep increment x limit; size = real coded bytes (within a byte of ideal)."""
    incs = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
    limits = tuple(min(1 << k, coder.MAX_LIMIT) for k in range(8, 17))
    n_lat = 100 if args.quick else 300
    out = {}
    for mode in ("none", "neighbor", "channel"):
        table = np.zeros((len(incs), len(limits)))
        for A in ALPHABETS:
            latents = list(make_latents(n_lat, A, seed=args.seed + 1))
            base = None
            sub = np.full((len(incs), len(limits)), np.nan)
            for i, inc in enumerate(incs):
                for j, lim in enumerate(limits):
                    if lim < A + inc:
                        continue
                    sub[i, j] = sum(len(coder.encode(x, A, mode, increment=inc, limit=lim)) for x in latents)
            base = np.nanmin(sub)
            table += sub / base  # relative size, averaged over A below
        table /= len(ALPHABETS)
        out[mode] = table.tolist()
        print(f"\ncontext={mode}: mean size relative to the best (inc, limit) per A, "
              f"over A in {ALPHABETS}, {n_lat} latents each")
        print("inc \\ limit " + " ".join(f"{lim:>7}" for lim in limits))
        for i, inc in enumerate(incs):
            print(f"{inc:>11} " + " ".join(f"{v:>7.4f}" for v in table[i]))
    return {"tune": out, "increments": incs, "limits": limits}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller data, fewer repeats")
    ap.add_argument("--tune", action="store_true", help="sweep increment/limit instead")
    ap.add_argument("--ref-only", action="store_true", help="only (r): the ratios to the C reference")
    ap.add_argument("--v1-cost", action="store_true", help="bytes of format v2 vs v1 (builds v1 from git)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=RESULTS, help="where to write the JSON")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {0})
        except OSError:
            pass
    if args.v1_cost:
        run_v1_cost(args)
        return 0
    if args.ref_only:
        print(f"CPU: {cpu_name()}")
        run_reference(250 if args.quick else 1000, 3 if args.quick else 7, args.seed)
        return 0
    result = run_tune(args) if args.tune else run_bench(args)
    if not args.tune:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
