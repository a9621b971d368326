"""The record of a retraining profile's run: its models against the shipped weights and in the run.

    python tools/profile_record.py OUT_DIR RUN_DIR --out JSON [--what TEXT] [--baseline figures/metrics.json]

OUT_DIR is the run's figure folder (``labkit reproduce -p profile cpu -p out_dir OUT_DIR``; its
``metrics.json``), RUN_DIR where it trained the models (``runs/<profile>`` unless the run named
another).  The record holds, for every retrained model:

* ``curves`` on the default test tiles and ``bd_vs_shipped``, the BD-rate (PSNR / SSIM,
  :func:`labkit.rd.bd_detail`) of the retrained model against the shipped weights' curves in
  ``--baseline`` (the default profile's metrics);
* ``train_seconds`` and, for a model with a fine-tune, its stages (seconds, steps, best step,
  the fine-tune's SSIM weight);
* the run's own BD-rate and criteria tables and the photos' colour error, as the report computed them.

Only JSON is read: it takes a second and can run beside a training job.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import rd  # noqa: E402
from labkit.atomic import write_text  # noqa: E402
from labkit.paths import ROOT  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402

METRICS = ("psnr", "ssim")


def bd_vs(baseline: dict[str, Any], curve: dict[str, Any]) -> dict[str, Any]:
    """BD-rate of ``curve`` against ``baseline`` on PSNR and SSIM, with overlaps."""
    return {m: rd.bd_detail(baseline["bpp"], baseline[m], curve["bpp"], curve[m]) for m in METRICS}


def model_facts(folder: Path) -> dict[str, Any]:
    """Training seconds and, after a fine-tune, its stages, from a model folder's config.json."""
    meta = json.loads((folder / "config.json").read_text())
    facts: dict[str, Any] = {"train_seconds": meta.get("train_seconds"), "epochs": meta.get("epochs_completed")}
    ft = meta.get("finetune")
    if ft:
        facts.update(train_seconds_parts=meta.get("train_seconds_parts"), finetune_steps=ft.get("steps"),
                     finetune_best_step=ft.get("best_step"), finetune_ssim_weight=ft.get("ssim_weight"),
                     training_ssim_weight=(meta.get("train") or {}).get("ssim_weight"),
                     bn_recalibration=(meta.get("bn_recalibration") or {}).get("seconds"))
    return facts


def record(out_dir: Path, run_dir: Path, baseline_path: Path) -> dict[str, Any]:
    """The record of the run whose metrics are in ``out_dir`` and models in ``run_dir``."""
    metrics = json.loads((out_dir / "metrics.json").read_text())
    shipped = json.loads(baseline_path.read_text())["evaluate"]["curves"]
    curves = metrics["evaluate"]["curves"]
    models = [m for m in curves if (run_dir / m / "config.json").is_file()]
    if not models:
        raise SystemExit(f"error: no model folder of the run's curves ({', '.join(curves)}) under {run_dir}; "
                         "pass the run's RUN_DIR (runs/<profile> by default)")
    proposals = set(models)
    return {
        "profile": metrics.get("profile"),
        "models": {m: {"curves": curves[m], "bd_vs_shipped": bd_vs(shipped[m], curves[m]) if m in shipped else None,
                       **model_facts(run_dir / m)} for m in models},
        "bd_rate_in_run": [r for r in metrics["evaluate"]["bd_rate"] if r["test"] in proposals],
        "criteria_in_run": metrics["evaluate"]["criteria"],
        "delta_e": (metrics.get("photos") or {}).get("delta_e"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="the run's figure folder (its metrics.json)")
    p.add_argument("run_dir", type=Path, help="where the run trained its models (runs/<profile>)")
    p.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    p.add_argument("--what", default="", help="one sentence on the run: machine, date, load")
    p.add_argument("--baseline", type=Path, default=ROOT / "figures" / "metrics.json",
                   help="the shipped weights' metrics (the default profile's)")
    a = p.parse_args(argv)
    for path in (a.out_dir / "metrics.json", a.baseline):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found; run the profile first (labkit reproduce -p profile cpu "
                             "-p out_dir OUT_DIR) or pass --baseline")
    rec = {"what": a.what, **record(a.out_dir, a.run_dir, a.baseline)}
    write_text(a.out, json.dumps(jsonable(rec), indent=1, allow_nan=False) + "\n")
    for name, m in rec["models"].items():
        bd = m["bd_vs_shipped"] or {}
        print(f"{name:15s} train {m['train_seconds']} s  vs shipped: "
              + "  ".join(f"{k} {v['value']:+.1f} %" if v["reason"] is None else f"{k} ({v['reason']})"
                          for k, v in bd.items()))
    for r in rec["bd_rate_in_run"]:
        if r["anchor"] == "webp":
            print(f"{r['test']} vs webp in the run: PSNR {r['bd_rate_psnr_pct']} %, SSIM {r['bd_rate_ssim_pct']} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
