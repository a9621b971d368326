"""The project's Jupyter server config, used by ``make lab`` and the browser test (``make test-lab``).

Notebooks stay clean: every notebook saved through this server is stripped of what running it
adds (outputs, execution counts, run-time cell metadata, the kernel's ``language_info``
details) before it reaches the disk, so opening and running the notebooks in JupyterLab never
dirties git nor breaks ``tests/test_notebooks.py``. Outputs live only in the browser session;
papermill's executed copies (``notebooks/executed/``, git-ignored) are left as written.

Loaded with ``jupyter lab --config=etc/jupyter/jupyter_server_config.py``.
"""
from __future__ import annotations

import warnings
from typing import Any

#: Cell metadata that records a run or a view state, not content.
RUNTIME_CELL_METADATA = ("execution", "collapsed", "scrolled", "jupyter", "papermill", "ExecuteTime", "trusted")
#: Notebook metadata that records a run, not content.
RUNTIME_NOTEBOOK_METADATA = ("widgets", "papermill")
#: API paths under these folders are saved as they are (executed copies keep their outputs).
KEEP_OUTPUTS_UNDER = ("executed",)


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Remove outputs and run-time metadata from a notebook model's content, in place.

    Parameters
    ----------
    nb : dict
        The notebook as a JSON-like dict (nbformat 4).

    Returns
    -------
    dict
        The same object, stripped.
    """
    meta = nb.setdefault("metadata", {})
    for key in RUNTIME_NOTEBOOK_METADATA:
        meta.pop(key, None)
    if isinstance(meta.get("language_info"), dict):
        meta["language_info"] = {"name": meta["language_info"].get("name", "python")}
    for cell in nb.get("cells", []):
        cell_meta = cell.setdefault("metadata", {})
        for key in RUNTIME_CELL_METADATA:
            cell_meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def strip_outputs_before_save(model: dict[str, Any], path: str, **kwargs: Any) -> None:
    """``ContentsManager.pre_save_hook``: strip notebooks saved outside ``executed/``."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    if path.strip("/").split("/", 1)[0] in KEEP_OUTPUTS_UNDER:
        return
    strip_notebook(model["content"])


c = get_config()  # type: ignore[name-defined]  # noqa: F821  (provided by traitlets when loaded as config)
c.ContentsManager.pre_save_hook = strip_outputs_before_save
# jupyter_server applies the config to its contents manager twice, and its validator then warns that
# this hook overrides itself ("Overriding existing pre_save_hook (strip_outputs_before_save) with a
# new one (strip_outputs_before_save)"); only that self-override is silenced, any other hook still warns
warnings.filterwarnings("ignore", message=r"Overriding existing pre_save_hook \(strip_outputs_before_save\) "
                        r"with a new one \(strip_outputs_before_save\)")


def _curve_available() -> bool:
    try:
        import zmq

        return bool(zmq.has("curve"))
    except ImportError:  # pragma: no cover
        return False


# Kernels get CurveZMQ keys (as labkit.pipeline's papermill runs do), so ipykernel does not warn
# "Kernel is running over TCP without encryption" into the server's log for every notebook opened.
if _curve_available():
    c.KernelManager.transport_encryption = "auto"
# no "get notified about official Jupyter news?" popup over the outputs, and no update check:
# a lab machine is offline, and the popup covered the first cell's output in the browser test
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
