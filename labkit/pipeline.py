"""The one-command report: run the notebooks in order with papermill, then publish.

Each notebook writes its figures and its part of the metrics into a staging folder.
Only when every notebook has succeeded are the files moved into the output folder
and merged into ``metrics.json`` -- so a failing run never leaves a half-regenerated
report behind.  A failure names the notebook, the cell and the executed copy to open.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .atomic import write_text

NOTEBOOKS = ["01_train.ipynb", "02_quantize.ipynb", "03_evaluate.ipynb"]
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
KERNEL_NAME = "labkit"


class PipelineError(RuntimeError):
    """A notebook failed; the message names it, the failing cell and the executed copy."""


def kernel_name() -> str:
    """The project's kernel if registered (``make setup`` does), else the current Python's ``python3``."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client missing or broken
        pass
    return "python3"


def default_out_dir(profile: str, data_dir: str | None) -> Path:
    """figures/ for the default profile on the embedded data, figures/<profile>[-<data>]/ otherwise."""
    if profile == "default" and not data_dir:
        return ROOT / "figures"
    tag = profile + (f"-{Path(data_dir).resolve().name}" if data_dir else "")
    return ROOT / "figures" / tag


def run_notebook(name: str, executed_dir: Path, parameters: dict[str, Any], log_output: bool = True) -> Path:
    """Execute one notebook with papermill; raise :class:`PipelineError` naming the failing cell."""
    import papermill as pm

    src, dst = NOTEBOOK_DIR / name, executed_dir / name
    executed_dir.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=kernel_name(),
                            cwd=str(NOTEBOOK_DIR), log_output=log_output, progress_bar=False,
                            stdout_file=sys.stdout if log_output else None)
    except pm.PapermillExecutionError as err:
        raise PipelineError(f"{name} failed in cell {err.exec_count} ({err.ename}: {err.evalue}); "
                            f"open {dst} to see the failing cell (papermill marked it)") from err
    return dst


def _update_readme(evaluate_metrics: dict[str, Any]) -> None:
    """Regenerate the README's results block from the published metrics (default report only)."""
    from .report import update_readme

    readme = ROOT / "README.md"
    if readme.is_file():
        text = readme.read_text()
        new = update_readme(text, evaluate_metrics)
        if new != text:
            write_text(readme, new)


def reproduce(profile: str = "default", data_dir: str | None = None, out_dir: str | os.PathLike[str] | None = None,
              executed_dir: str | os.PathLike[str] | None = None, run_dir: str | os.PathLike[str] | None = None,
              seed: int = 0, device: str = "auto",
              retrain: bool | None = None, log_output: bool = True) -> dict[str, Any]:
    """Run 01 -> 02 -> 03 for ``profile`` and publish figures + metrics.json into ``out_dir``.

    Returns the merged metrics.  Nothing in ``out_dir`` changes unless all notebooks succeed.
    """
    try:  # papermill inside a papermill-run notebook needs a re-entrant loop (papermill #490)
        import nest_asyncio

        nest_asyncio.apply()
    except Exception:  # pragma: no cover
        pass
    from .profiles import get_profile

    get_profile(profile)  # validate early
    out = Path(out_dir) if out_dir else default_out_dir(profile, data_dir)
    out = out.resolve()
    executed = Path(executed_dir).resolve() if executed_dir else NOTEBOOK_DIR / "executed" / out.name
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    params = dict(profile=profile, data_dir=data_dir, fig_dir=str(staging), seed=seed, device=device,
                  run_dir=str(Path(run_dir).resolve() if run_dir else ROOT / "runs" / out.name))
    if retrain is not None:
        params["retrain"] = retrain
    try:
        for nb in NOTEBOOKS:
            run_notebook(nb, executed, params, log_output=log_output)
        metrics: dict[str, Any] = {"profile": profile, "data_dir": data_dir, "seed": seed}
        for part in sorted(staging.glob("metrics_*.json")):
            metrics[part.stem.removeprefix("metrics_")] = json.loads(part.read_text())
            part.unlink()
        write_text(staging / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(staging.iterdir()):
            os.replace(f, out / f.name)
        if out == (ROOT / "figures").resolve() and "evaluate" in metrics:
            _update_readme(metrics["evaluate"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics
