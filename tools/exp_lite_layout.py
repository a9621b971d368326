"""Collect the lighter-layout runs of ``tools/exp_lite_layout.sh`` into one JSON.

    python tools/exp_lite_layout.py NAME [NAME ...] [--runs DIR]

For each run (``DIR/NAME``, made by ``exp_lite_layout.sh run``, ``eval`` and ``speed``): its layout,
parameters and multiply-adds, its training times and steps, the default tiles through the codec
against the shipped ``resae-rd-fast`` (BD-rate) and against WebP (BD-rate and at WebP's bpp), coffee and
rocket at full size against WebP with the photos' colour errors, and its encode + decode time over the
shipped ``resae``'s in the same run; the shipped ``resae-rd-fast``'s ratio from the same session
beside it.  Writes benchmarks/results/experiments/lite_layout.json.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit import rd  # noqa: E402
from labkit.models import build_model, count_parameters  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "experiments" / "lite_layout.json"
MODEL = "resae-rd-fast"
#: the full layout's CPU hour (two threads), the same recipe: its curve on the same tiles through the codec
CPU_HOUR = ROOT / "benchmarks" / "results" / "experiments" / "cpu60m_avx512.json"
CPU_HOUR_RUN = "/work/runs/g27/e2e/c"


#: what each step of exp_lite_layout.sh leaves in a run folder (checked before anything is read)
NEEDED = {"run": ("c/config.json", "t0", "t1", "t2", "t3", "a.log", "b.log"),
          "eval": ("cmp.json", "rd.json", "fs.json"), "speed": ("wd/bench_codec.json",)}


def _json(path: Path) -> dict:
    """A JSON file's contents."""
    return json.loads(path.read_text())


def _last_line(path: Path, prefix: str) -> str:
    """The last line of a log that starts with ``prefix`` (the run's summary line)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith(prefix)]
    if not lines:
        raise SystemExit(f"{path} has no line starting {prefix!r}: that step did not finish; rerun it")
    return lines[-1]


def _check(run: Path) -> None:
    """Refuse a run folder a step of exp_lite_layout.sh has not finished, naming the step."""
    for step, files in NEEDED.items():
        missing = [f for f in files if not (run / f).is_file()]
        if missing:
            raise SystemExit(f"{run}: missing {', '.join(missing)}; run `tools/exp_lite_layout.sh {step} "
                             f"{run.name}` with RUNS={run.parent} first")


def _speed(bench: dict) -> dict:
    """The ratios a bench_codec.py --vs resae run measured, and where the networks' time goes."""
    out = {"encode_decode_over_resae": {k: round(v, 3) for k, v in bench["vs"]["ratio"].items()},
           "total_ms": bench["vs"]["total_ms"]}
    if "speed_without_colour_map" in bench:
        plain = bench["speed_without_colour_map"]
        out["without_colour_map_over_resae"] = {
            size: round(plain[size]["codec"]["total_ms"] / bench["vs"]["total_ms"][size]["resae"], 3)
            for size in bench["vs"]["ratio"]}
    net = bench["networks"]
    out["networks"] = {k: round(net[k], 1) for k in ("encoder_macs_per_px", "decoder_macs_per_px",
                                                    "encoder_ns_per_px", "decoder_ns_per_px")}
    return out


def _vs_cpu_hour(curve: dict) -> dict:
    """BD-rate (PSNR, SSIM) of a tiles curve against the full layout's 60-minute CPU recipe."""
    hour = _json(CPU_HOUR)["default_test_tiles"]["curves"][CPU_HOUR_RUN]
    bits = sorted(hour, key=int)
    return {m: rd.bd_detail([hour[b]["bpp"] for b in bits], [hour[b][m] for b in bits],
                            [curve[b]["bpp"] for b in bits], [curve[b][m] for b in bits]) for m in ("psnr", "ssim")}


def collect(run: Path) -> dict:
    """One run folder's layout, times and results (see the module docstring)."""
    _check(run)
    config = _json(run / "c" / "config.json")
    times = [int((run / f"t{i}").read_text()) for i in range(4)]
    bench_rd = _json(run / "rd.json")
    fs = _json(run / "fs.json")
    cmp_ = _json(run / "cmp.json")
    key = next(k for k in cmp_["bd_rate_vs_first"])
    vs_webp = [r for r in bench_rd["bd_rate"] if r["test"] == MODEL and r["anchor"] == "webp"][0]
    vs_resae = [r for r in bench_rd["bd_rate"] if r["test"] == MODEL and r["anchor"] == "resae"][0]
    photos_webp = {r["metric"]: r for r in fs["bd"] if r["test"] == MODEL and r["anchor"] == "webp"}
    delta_e = {}
    for r in fs["colour"]:
        if r["codec"] == MODEL:
            delta_e[r["b"]] = max(delta_e.get(r["b"], 0.0), round(r["delta_e"], 2))
    return {
        "model_cfg": config["model_cfg"],
        "parameters": count_parameters(build_model(MODEL, **config["model_cfg"])),
        "seconds": {"stage_a": times[1] - times[0], "stage_b": times[2] - times[1],
                    "bn_reestimate": times[3] - times[2], "total": times[3] - times[0]},
        "stage_a": _last_line(run / "a.log", "done:"),
        "stage_b": _last_line(run / "b.log", "done:"),
        "default_test_tiles": {
            "curve": cmp_["curves"][key],
            "bd_rate_vs_shipped": cmp_["bd_rate_vs_first"][key],
            "bd_rate_vs_full_layout_cpu_hour": _vs_cpu_hour(cmp_["curves"][key]),
            "bd_rate_vs_webp": {m: vs_webp[f"bd_rate_{m}_pct"] if vs_webp[f"{m}_left_out"] is None
                                else vs_webp[f"{m}_left_out"] for m in ("psnr", "ssim")},
            "bd_rate_vs_resae": {m: vs_resae[f"bd_rate_{m}_pct"] for m in ("psnr", "ssim")},
            "at_webp_bpp": bench_rd["at_equal_rate"][f"{MODEL} vs webp"],
            "criterion_vs_ae2": [{k: r[k] for k in ("b", "bpp", "ssim", "dssim_at_equal_bpp", "holds")}
                                 for r in bench_rd["criteria"] if r["test"] == MODEL and r["anchor"] == "ae2"],
        },
        "coffee_rocket_full_size": {
            "curve": fs["curves"][MODEL],
            "bd_rate_vs_webp": {m: r["value"] if r["value"] is not None else r["reason"] for m, r in photos_webp.items()},
            "largest_photo_mean_delta_e_by_b": delta_e,   # the worst of the four photos' mean CIE76 ΔE
        },
        "speed": _speed(_json(run / "wd" / "bench_codec.json")),
        "speed_cpu": _json(run / "wd" / "bench_codec.json")["cpu"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--runs", type=Path, default=Path("/tmp/labkit_lite"))
    args = p.parse_args(argv)
    result = {
        "what": __doc__.split("\n\n")[2].replace("\n", " "),
        "cpu": cpu_name(),   # the machine that collected; each run's speed_cpu is the one that timed it
        "runs_folder": str(args.runs),
        "commands": ["tools/exp_lite_layout.sh run NAME 'MODEL_CFG_JSON' 1800 1740  (two runs side by side, one thread each)",
                     "tools/exp_lite_layout.sh eval NAME", "tools/exp_lite_layout.sh speed NAME ... (alone)",
                     "python tools/exp_lite_layout.py NAME ..."],
        "runs": {name: collect(args.runs / name) for name in args.names},
        "shipped": {"speed": _speed(_json(args.runs / "shipped_speed.json"))},
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for name, r in result["runs"].items():
        t = r["default_test_tiles"]
        print(f"{name}: {json.dumps(r['model_cfg'])}; tiles vs shipped PSNR {t['bd_rate_vs_shipped']['psnr']['value']:+.1f} % "
              f"SSIM {t['bd_rate_vs_shipped']['ssim']['value']:+.1f} %; vs WebP {t['bd_rate_vs_webp']}; "
              f"speed over resae {r['speed']['encode_decode_over_resae']}")
    print(f"shipped speed over resae {result['shipped']['speed']['encode_decode_over_resae']}")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
