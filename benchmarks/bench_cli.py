"""Start-up time of the command line: ``--help``, ``info`` and argument errors answer in < 0.5 s.

    python benchmarks/bench_cli.py [--repeats 5]

Each command runs as a fresh process (``labkit`` console script when installed, else
``python -m labkit``); best and median wall-clock seconds of ``--repeats`` runs are
printed with the CPU, beside two references measured in the same run: a bare
interpreter (``python -c pass``) and ``python -c "import torch"`` -- the cost the fast
paths avoid.  The target (issue 10) is < 0.5 s for the rows marked ``target``.
``train --help`` (its defaults come from the torch-free ``labkit.trainconfig``) and an
``encode``, which needs the network, are shown for comparison, without a target.  With
``--importtime`` the slowest imports of ``--help`` and ``info`` (``python -X
importtime``) are listed too.  Results go to ``benchmarks/results/bench_cli.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit.speed import cpu_name  # noqa: E402

TARGET_S = 0.5


def _labkit() -> list[str]:
    script = Path(sys.executable).parent / "labkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "labkit"]


def _time(cmd: list[str], cwd: Path, repeats: int, expect: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)  # warm-up: file cache, bytecode cache if enabled
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != expect:
            raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}, expected {expect}: {r.stderr.strip()}")
    return times


def _slowest_imports(cmd: list[str], cwd: Path, n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` top-level imports with the largest cumulative time under ``python -X importtime``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "labkit", *cmd], cwd=cwd, env=env,
                       capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            if not name.startswith("  "):  # top level only (nested imports are indented)
                rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--importtime", action="store_true", help="also list the slowest imports of --help and info")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_cli.json"))
    args = p.parse_args()

    labkit = _labkit()
    with tempfile.TemporaryDirectory(prefix="labkit-bench-cli-") as tmp:
        cwd = Path(tmp)
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(cwd / "img.png")
        subprocess.run([*labkit, "encode", "img.png", "img.lkc", "--model", "ae1"], cwd=cwd, check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        cases = [  # (label, command, exit status, has a target)
            ("python -c pass", [sys.executable, "-c", "pass"], 0, False),
            ("labkit --help", [*labkit, "--help"], 0, True),
            ("labkit info img.lkc", [*labkit, "info", "img.lkc"], 0, True),
            ("labkit info img.lkc --json", [*labkit, "info", "img.lkc", "--json"], 0, True),
            ("labkit encode --b 9 (usage error)", [*labkit, "encode", "img.png", "x.lkc", "--b", "9"], 2, True),
            ("labkit encode --model AE7 (usage error)",
             [*labkit, "encode", "img.png", "x.lkc", "--model", "AE7"], 2, True),
            ("labkit decode missing.lkc (error)", [*labkit, "decode", "missing.lkc", "x.png"], 1, True),
            ("labkit reproduce --help", [*labkit, "reproduce", "--help"], 0, True),
            ("python -c 'import torch'", [sys.executable, "-c", "import torch"], 0, False),
            ("labkit train --help (no torch)", [*labkit, "train", "--help"], 0, False),
            ("labkit encode 64x64 ae1 (network)",
             [*labkit, "encode", "img.png", "y.lkc", "--model", "ae1", "--overwrite"], 0, False),  # timed repeatedly
        ]
        rows = []
        cpu = cpu_name()
        bytecode = "off (PYTHONDONTWRITEBYTECODE: every run compiles labkit's modules)" if sys.dont_write_bytecode \
            else "on"
        print(f"CPU: {cpu}; {args.repeats} runs each after one warm-up, fresh process; command: {' '.join(labkit)}; "
              f"bytecode cache {bytecode}")
        print(f"{'command':<42} {'best s':>7} {'median s':>9} {'x python':>9}  target < {TARGET_S} s")
        base = None
        for label, cmd, status, target in cases:
            t = _time(cmd, cwd, args.repeats, status)
            best, med = min(t), statistics.median(t)
            base = base or best
            ok = "ok" if best < TARGET_S else "MISSED"
            rows.append(dict(command=label, best_s=round(best, 4), median_s=round(med, 4),
                             vs_python=round(best / base, 2), target_s=TARGET_S if target else None,
                             met=(best < TARGET_S) if target else None))
            print(f"{label:<42} {best:7.3f} {med:9.3f} {best / base:8.1f}x  {ok if target else '-'}")
        imports = {}
        if args.importtime:
            for label, cmd in (("--help", ["--help"]), ("info", ["info", "img.lkc"])):
                imports[label] = _slowest_imports(cmd, cwd)
                print(f"slowest imports of labkit {' '.join(cmd)} (cumulative s): " +
                      ", ".join(f"{n} {s:.3f}" for n, s in imports[label]))
    result = dict(cpu=cpu, repeats=args.repeats, command=" ".join(labkit), bytecode_cache=not sys.dont_write_bytecode,
                  rows=rows, slowest_imports=imports)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    missed = [r["command"] for r in rows if r["met"] is False]
    print(f"targets: {'all met' if not missed else 'MISSED: ' + ', '.join(missed)}; wrote {args.out}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
