"""Grading: rerun a profile into a scratch folder and compare its metrics with the committed ones.

    labkit grade [--profile default] [--reference figures/metrics.json] [--keep DIR]

Every number in the fresh ``metrics.json`` is compared with the reference under the
tolerance of its kind (below).  Exit status 0 when all agree, 1 otherwise, with a
table of the disagreements.  The committed figures are never touched.

Tolerances (stated once, here): the learned codec runs the shipped weights with
torch's CPU kernels, whose float rounding may differ across CPUs, so a latent value
near a bin edge may land in the neighbour bin; classic codecs depend on the
libjpeg/libwebp/libavif/openjpeg builds inside Pillow's wheel.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from .paths import ROOT

#: (absolute, relative) tolerance by the last key of a number's path.
TOLERANCES: dict[str, tuple[float, float]] = {
    "bpp": (0.0, 0.02), "target_bpp": (0.0, 0.02), "bytes": (2.0, 0.02),
    "ssim": (0.005, 0.0), "psnr": (0.1, 0.0),
    "dssim_at_equal_bpp": (0.01, 0.0), "dbits_pct_at_equal_ssim": (2.0, 0.0),
    "bd_rate_ssim_pct": (3.0, 0.0), "bd_rate_psnr_pct": (3.0, 0.0),
    "ideal_bits": (0.0, 0.02),
}
#: The same kinds, named as a key's ending (``resae_psnr``, ``val_psnr``, ``psnr_overlap``,
#: ``estimated bpp``), and the mean CIE76 colour error of the photos (``delta_e``).
SUFFIX_TOLERANCES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("psnr", TOLERANCES["psnr"]), ("psnr_overlap", TOLERANCES["psnr"]),
    ("ssim", TOLERANCES["ssim"]), ("ssim_overlap", TOLERANCES["ssim"]),
    ("bpp", TOLERANCES["bpp"]), ("delta_e", (0.25, 0.0)),
)
DEFAULT_TOL = (1e-6, 0.02)
#: Fields that name what a record is (shown beside a disagreement in a list of records).
RECORD_KEYS = ("codec", "model", "b", "quality", "image", "photo", "matched_to", "versus", "metric")
#: Keys that describe the run, not its results (environment, timings, generated prose).
IGNORED = {"env", "train_s", "seconds", "elapsed", "data_dir", "fig_dir", "device", "text"}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.0.c": leaf} for every leaf of nested dicts/lists."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in IGNORED:
                out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = obj
    return out


def _tolerance(path: str) -> tuple[float, float]:
    for part in reversed(path.split(".")):
        if part in TOLERANCES:
            return TOLERANCES[part]
        if part.startswith(("coded ", "entropy")):
            return (0.0, 0.02)
        for suffix, tol in SUFFIX_TOLERANCES:
            if part == suffix or part.endswith(("_" + suffix, " " + suffix)):
                return tol
    return DEFAULT_TOL


def describe(path: str, reference: dict[str, Any]) -> str:
    """What the record holding ``path`` is, e.g. ``codec=resae b=4 image=7`` (empty outside a list of records)."""
    node: Any = reference
    found: dict[str, Any] | None = None
    for part in path.split(".")[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            break
        if isinstance(node, dict) and any(k in node for k in RECORD_KEYS):
            found = node
    if not found:
        return ""
    return " ".join(f"{k}={found[k]}" for k in RECORD_KEYS if k in found and not isinstance(found[k], (dict, list)))


def compare(fresh: dict[str, Any], reference: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """Disagreements as (path, reference value, fresh value, why)."""
    f, r = flatten(fresh), flatten(reference)
    bad = []
    for path in sorted(set(f) | set(r)):
        if path not in f:
            bad.append((path, r[path], None, "missing from the fresh run"))
            continue
        if path not in r:
            bad.append((path, None, f[path], "not in the reference"))
            continue
        a, b = r[path], f[path]
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            if a != b:
                bad.append((path, a, b, "differs"))
            continue
        if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
            if not (a is None and b is None):
                bad.append((path, a, b, "differs"))
            continue
        atol, rtol = _tolerance(path)
        if abs(a - b) > atol + rtol * abs(a):
            bad.append((path, a, b, f"|Δ|={abs(a - b):.4g} > {atol:g} + {rtol:g}·|ref|"))
    return bad


def committed_reference(path: Path) -> tuple[dict[str, Any], str]:
    """The reference metrics as committed (``git show HEAD:<path>``), else the file on disk.

    Using the committed version means a ``make figures`` run before grading cannot turn the
    comparison into a comparison of the fresh run with itself.
    """
    import subprocess

    try:
        rel = path.resolve().relative_to(ROOT)
        out = subprocess.run(["git", "show", f"HEAD:{rel.as_posix()}"], cwd=ROOT, capture_output=True, check=True)
        return json.loads(out.stdout), f"{rel} at git HEAD"
    except (ValueError, OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        return json.loads(path.read_text()), str(path)


def gradable_profiles() -> list[str]:
    """The profiles a grade can rerun: those that evaluate the shipped weights without training.

    A profile that retrains (``smoke``, ``cpu``, ``full``) is not bit-reproducible from run to run
    (threaded float sums in training: ``labkit reproduce -p profile smoke`` then a grade of that profile
    moved 49 and 102 of its 2,485 numbers past the tolerances in two tries, 2026-11-28), so its numbers
    cannot be graded against a reference.
    """
    from .profiles import PROFILES

    return [name for name, settings in PROFILES.items() if not settings["retrain"]]


def check_gradable(profile: str) -> None:
    """Raise ValueError, saying what to do, unless :func:`gradable_profiles` holds ``profile``."""
    from .profiles import PROFILES

    gradable = gradable_profiles()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; the profiles are {', '.join(PROFILES)}, and "
                         f"{', '.join(gradable)} can be graded")
    if profile not in gradable:
        raise ValueError(f"profile {profile!r} retrains its models, and training does not repeat bit for bit, so "
                         f"its numbers cannot be graded within labkit.grade's tolerances; grade "
                         f"{' or '.join(gradable)} (the shipped weights), or compare two runs of "
                         f"`labkit reproduce -p profile {profile}` by eye")


def run(profile: str = "default", reference: str | Path | None = None, keep: str | Path | None = None,
        progress: bool | None = None) -> int:
    """Rerun ``profile`` and compare its metrics with the reference (``labkit grade``).

    Parameters
    ----------
    profile : str
        Profile to rerun.
    reference : str or Path, optional
        Reference ``metrics.json``; default: the profile's ``figures/.../metrics.json`` as
        committed at git HEAD (:func:`committed_reference`).
    keep : str or Path, optional
        Write the fresh run here instead of a temporary folder.
    progress : bool, optional
        Show a progress bar over the steps on stderr (default yes; ``False``: none).
        The executed notebooks land in ``notebooks/executed/grade-<profile>/``.

    Returns
    -------
    int
        0 when every number agrees within tolerance, 1 otherwise (the disagreements are printed).

    Raises
    ------
    FileNotFoundError
        When there is no reference to compare with.
    ValueError
        For an unknown profile, or one that retrains its models (:func:`gradable_profiles`).
    """
    from .pipeline import NOTEBOOKS, default_out_dir, display_path, executed_dir_for, reproduce
    from .progress import step_bar

    check_gradable(profile)
    started = time.monotonic()
    if reference:
        ref_path = Path(reference)
        if not ref_path.is_file():
            raise FileNotFoundError(f"no reference {ref_path}; pass an existing metrics.json")
        ref, ref_name = json.loads(ref_path.read_text()), str(ref_path)
    else:
        ref_path = default_out_dir(profile, None) / "metrics.json"
        if not ref_path.is_file():
            raise FileNotFoundError(f"no reference {ref_path}; run `make figures` once and commit it")
        ref, ref_name = committed_reference(ref_path)
    executed = executed_dir_for(f"grade-{profile}")
    bar = step_bar(NOTEBOOKS + ["publish", "compare"], progress, f"labkit grade {profile}")
    try:
        with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
            out = Path(keep) if keep else Path(tmp) / "figures"
            reproduce(profile=profile, out_dir=out, executed_dir=executed, run_dir=Path(tmp) / "runs",
                      log_output=False, progress=bar if bar is not None else False)
            fresh = json.loads((out / "metrics.json").read_text())  # compare what was written, rounded alike
        if bar is not None:
            bar.set_postfix_str("compare", refresh=True)
        bad = compare(fresh, ref)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str("done", refresh=True)
    finally:
        if bar is not None:
            bar.close()
    n = len(flatten(ref))
    took = f"{time.monotonic() - started:.0f} s; executed notebooks in {display_path(executed)}"
    if bad:
        print(f"GRADE FAILED: {len(bad)} of {n} numbers disagree with {ref_name} ({took})")
        for path, a, b, why in bad[:60]:
            what = describe(path, ref) or describe(path, fresh)
            print(f"  {path}{f' [{what}]' if what else ''}: reference {a!r}, fresh {b!r} ({why})")
        if len(bad) > 60:
            print(f"  ... and {len(bad) - 60} more")
        return 1
    print(f"GRADE OK: all {n} numbers of {ref_name} reproduced within tolerance (see labkit/grade.py) ({took})")
    return 0


if __name__ == "__main__":  # the old entry point: say where the command went
    raise SystemExit("labkit.grade has no command line of its own any more; run `labkit grade` "
                     "(or `python -m labkit grade`)")
