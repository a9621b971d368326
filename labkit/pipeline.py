"""The one-command report: run the notebooks in order with papermill, then publish.

Each notebook writes its figures and its part of the metrics into a staging folder.
Only when every notebook has succeeded are the files moved into the output folder
and merged into ``metrics.json`` -- so a failing run never leaves a half-regenerated
report behind.  A failure names the notebook, the cell and the executed copy to open.

Runs are quiet: one progress bar over the steps (on stderr) and a one-line summary at the
end; each notebook's own output stays in its executed copy, ``notebooks/executed/<tag>/``
(``<tag>`` = the profile, plus ``-<data folder>`` for user data; ``grade-<profile>`` for
``make grade``).  Kernels are started by :class:`QuietKernelManager`, which removes the two
error-looking lines jupyter_client/ipykernel print around a healthy run (see its docstring).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .atomic import write_text
from .paths import ROOT
from .progress import step_bar

NOTEBOOKS = ["01_train.ipynb", "02_quantize.ipynb", "03_evaluate.ipynb"]
#: The notebooks whose numbers are the report: their kernels run torch (and BLAS) on one thread.
#: The decoder's float sums depend on how a convolution is split across threads, so the same
#: CPU gave 301 of the 25,713 graded numbers a last-digit change between 1 and 2 threads; one
#: thread gives the same report on any core count, and on a 2-core machine with the other core
#: busy it is 4-8x faster than two (measured by the third new-user trial, 2026-11-28).
#: Training (01) keeps torch's default, so the ``cpu`` profile's time budget buys what it did.
ONE_THREAD_NOTEBOOKS = frozenset({"02_quantize.ipynb", "03_evaluate.ipynb"})
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
NOTEBOOK_DIR = ROOT / "notebooks"
KERNEL_NAME = "labkit"


class PipelineError(RuntimeError):
    """A notebook failed; the message names it, the failing cell and the executed copy."""


def quiet_kernel_manager_class() -> type:
    """:class:`QuietKernelManager`, built on first use (jupyter_client is imported only to run notebooks)."""
    global QuietKernelManager
    if QuietKernelManager is not None:
        return QuietKernelManager
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _Quiet(AsyncKernelManager):
        """An ``AsyncKernelManager`` for papermill runs, without two misleading log lines.

        * ``[IPKernelApp] WARNING | Kernel is running over TCP without encryption``: ipykernel
          warns whenever its TCP sockets carry no CurveZMQ keys.  jupyter_client >= 8.10 provisions
          keys for kernels whose spec declares ``supported_encryption: curve`` (ipykernel's does)
          when ``transport_encryption="auto"``; this manager defaults to that (when pyzmq has curve).
        * ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.``: ``shutdown_kernel`` sends
          SIGINT before its shutdown request, and ipykernel logs it as an error when it lands in
          a message handler.  papermill shuts a kernel down only after the last cell has finished,
          so there is nothing to interrupt: this manager skips that SIGINT (a kernel that ignores
          the shutdown request is still killed by jupyter_client).  Explicit interrupts work as usual.
        """

        @default("transport_encryption")
        def _auto_encryption(self) -> str:
            return "auto" if zmq.has("curve") else "disabled"

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    _Quiet.__name__ = _Quiet.__qualname__ = "QuietKernelManager"
    QuietKernelManager = _Quiet
    return _Quiet


#: The kernel manager papermill runs use (set by :func:`quiet_kernel_manager_class`).
QuietKernelManager: type | None = None


def run_tag(profile: str, data_dir: str | None) -> str:
    """``<profile>`` or ``<profile>-<data folder name>``: names a run's figures and executed notebooks."""
    return profile + (f"-{Path(data_dir).resolve().name}" if data_dir else "")


def executed_dir_for(tag: str) -> Path:
    """Where the executed copies of a run's notebooks land: ``notebooks/executed/<tag>/``."""
    return NOTEBOOK_DIR / "executed" / tag


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
    return ROOT / "figures" / run_tag(profile, data_dir)


def run_notebook(name: str, executed_dir: Path, parameters: dict[str, Any], log_output: bool = True) -> Path:
    """Execute one notebook with papermill; raise :class:`PipelineError` naming the failing cell.

    Parameters
    ----------
    name : str
        Notebook file name in ``notebooks/``.
    executed_dir : Path
        Folder for the executed copy (created).
    parameters : dict
        Values injected after the ``parameters`` cell.
    log_output : bool
        Relay the notebook's stdout/stderr to this process's as they arrive.

    Returns
    -------
    Path
        The executed copy.
    """
    import papermill as pm

    from .progress import ENV as PROGRESS_ENV

    src, dst = NOTEBOOK_DIR / name, Path(executed_dir) / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    kernel_env = {PROGRESS_ENV: "text"}
    if name in ONE_THREAD_NOTEBOOKS:
        kernel_env.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    saved_env = {k: os.environ.get(k) for k in kernel_env}
    # the kernel inherits these: plain-text bars, so the executed copy keeps each bar's last frame
    # (a widget's saved text is its first, "0%"; coalesce_streams applies the bars' carriage
    # returns), and one thread for the report's numbers (ONE_THREAD_NOTEBOOKS)
    os.environ.update(kernel_env)
    try:
        # log_output=False: papermill's own logging would print every stderr chunk a second time
        # (as a WARNING); the two files relay the streams as they come, progress bars included
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=kernel_name(),
                            cwd=str(NOTEBOOK_DIR), log_output=False, progress_bar=False,
                            stdout_file=sys.stdout if log_output else None,
                            stderr_file=sys.stderr if log_output else None,
                            kernel_manager_class=quiet_kernel_manager_class(), coalesce_streams=True)
    except pm.PapermillExecutionError as err:
        raise PipelineError(f"{name} failed in cell {err.exec_count} ({err.ename}: {err.evalue}); "
                            f"open {dst} to see the failing cell (papermill marked it)") from err
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
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
              retrain: bool | None = None, log_output: bool = False, progress: Any = None) -> dict[str, Any]:
    """Run 01 -> 02 -> 03 for ``profile`` and publish figures + metrics.json into ``out_dir``.

    Parameters
    ----------
    profile, data_dir, seed, device, retrain
        The notebooks' parameters (see ``labkit.profiles``).
    out_dir : path, optional
        Where to publish (default :func:`default_out_dir`).
    executed_dir : path, optional
        Where the executed notebooks land (default ``notebooks/executed/<tag>/``, :func:`run_tag`).
    run_dir : path, optional
        Where retrained checkpoints go (default ``runs/<out_dir name>``).
    log_output : bool
        Relay every notebook's output (default: quiet; it is in the executed copies).
    progress : bool, tqdm or None
        ``None``/``True``: a progress bar over the steps on stderr; ``False``: none; a tqdm
        instance: advance that one (``labkit.grade`` passes its own).

    Returns
    -------
    dict
        The merged metrics.  Nothing in ``out_dir`` changes unless all notebooks succeed.
    """
    try:  # papermill inside a papermill-run notebook needs a re-entrant loop (papermill #490)
        import nest_asyncio

        nest_asyncio.apply()
    except Exception:  # pragma: no cover
        pass
    from .profiles import get_profile

    get_profile(profile)  # validate early
    started = time.monotonic()
    out = Path(out_dir) if out_dir else default_out_dir(profile, data_dir)
    out = out.resolve()
    executed = Path(executed_dir).resolve() if executed_dir else executed_dir_for(run_tag(profile, data_dir))
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    params = dict(profile=profile, data_dir=data_dir, fig_dir=str(staging), seed=seed, device=device,
                  run_dir=str(Path(run_dir).resolve() if run_dir else ROOT / "runs" / out.name))
    if retrain is not None:
        params["retrain"] = retrain
    own_bar = progress is None or progress is True or progress is False
    bar = step_bar(NOTEBOOKS + ["publish"], None if progress is None else bool(progress),
                    f"labkit {profile}") if own_bar else progress
    try:
        for nb in NOTEBOOKS:
            if bar is not None:
                bar.set_postfix_str(nb.removesuffix(".ipynb"), refresh=True)
            run_notebook(nb, executed, params, log_output=log_output)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.set_postfix_str("publish", refresh=True)
        metrics: dict[str, Any] = {"profile": profile, "data_dir": data_dir, "seed": seed}
        for part in sorted(staging.glob("metrics_*.json")):
            metrics[part.stem.removeprefix("metrics_")] = json.loads(part.read_text())
            part.unlink()
        write_text(staging / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        published = sorted(staging.iterdir())
        for f in published:
            os.replace(f, out / f.name)
        if out == (ROOT / "figures").resolve() and "evaluate" in metrics:
            _update_readme(metrics["evaluate"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str("done", refresh=True)
    finally:
        if bar is not None and own_bar:
            bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    if bar is not None and own_bar:
        n_png = sum(f.suffix == ".png" for f in published)
        print(f"labkit: {profile} report in {display_path(out)} ({n_png} figures + metrics.json) in "
              f"{time.monotonic() - started:.0f} s; executed notebooks in {display_path(executed)}", flush=True)
    return metrics


def display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (shorter to read), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
