"""The notebooks: committed clean, one parameters cell, and the whole smoke pipeline runs end to end."""
from __future__ import annotations

import copy
import json
import math
import runpy
from pathlib import Path

import nbformat
import pytest

from labkit import pipeline

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
JUPYTER_CONFIG = ROOT / "etc" / "jupyter" / "jupyter_server_config.py"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
EXPECTED_FIGURES = [
    "architecture.png", "training_curves.png", "latent_histograms.png", "entropy_vs_coded.png",
    "comparison_b1.png", "comparison_b2.png", "comparison_b3.png", "rd_ssim.png", "rd_psnr.png",
    "difference_b2.png", "criteria_table.png", "metrics.json",
]


def test_all_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["00_reproduce.ipynb", "01_train.ipynb", "02_quantize.ipynb", "03_evaluate.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterized(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    # plain values only: no calls or imports in the parameters cell
    for line in tagged[0].source.splitlines():
        code = line.split("#", 1)[0].strip()
        assert "(" not in code and "import" not in code, f"parameters cell must hold plain values: {line!r}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
    assert nb.metadata["kernelspec"]["name"] == "labkit"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_as_jupyter_writes_it(path):
    """Saving an unchanged notebook in JupyterLab must give the committed bytes (else git shows a diff)."""
    text = path.read_text()
    assert nbformat.writes(nbformat.reads(text, as_version=4)) + "\n" == text, (
        f"{path.name} is not in the layout Jupyter saves; rewrite it with "
        f"python -c \"import nbformat as n; p='{path.relative_to(ROOT)}'; n.write(n.read(p, 4), p)\"")


def _save_hook():
    """The project's Jupyter config, loaded as the server loads it; returns (config, hook module globals)."""
    from traitlets.config import Config

    cfg = Config()
    ns = runpy.run_path(str(JUPYTER_CONFIG), init_globals={"get_config": lambda: cfg})
    return cfg, ns


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_save_hook_strips_a_run_back_to_the_committed_notebook(path):
    """What running a notebook in JupyterLab adds is removed on save: same bytes as committed."""
    cfg, ns = _save_hook()
    hook = cfg.ContentsManager.pre_save_hook
    assert hook is ns["strip_outputs_before_save"]
    committed = path.read_text()
    nb = json.loads(committed)
    ran = copy.deepcopy(nb)
    ran["metadata"]["language_info"] = {"name": "python", "version": "3.11.2", "mimetype": "text/x-python",
                                        "codemirror_mode": {"name": "ipython", "version": 3}}
    ran["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for i, cell in enumerate(ran["cells"]):
        cell["metadata"].update({"trusted": True, "scrolled": True, "execution": {"iopub.status.idle": "x"}})
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]},
                               {"output_type": "error", "ename": "E", "evalue": "v", "traceback": []}]
    model = {"type": "notebook", "content": nbformat.from_dict(ran)}
    hook(model=model, path=path.name, contents_manager=None)
    assert nbformat.writes(model["content"]) + "\n" == committed
    # executed copies (papermill's, under executed/) keep their outputs
    kept = {"type": "notebook", "content": nbformat.from_dict(copy.deepcopy(ran))}
    hook(model=kept, path=f"executed/default/{path.name}", contents_manager=None)
    assert kept["content"] == ran


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


#: Lines a successful run must not print (what ipykernel/jupyter_client/papermill used to print).
ERROR_LOOKING = ("ERROR", "Error", "Traceback", "WARNING", "KeyboardInterrupt", "without encryption")


def test_smoke_pipeline_end_to_end(tmp_path, capfd):
    out = tmp_path / "figures"
    metrics = pipeline.reproduce(profile="smoke", out_dir=out, executed_dir=tmp_path / "executed",
                                 run_dir=tmp_path / "runs", log_output=False)
    # quiet: a progress bar on stderr and one summary line on stdout, from this process and its kernels
    printed = capfd.readouterr()
    noisy = [ln for ln in (printed.out + printed.err).replace("\r", "\n").splitlines()
             if any(word in ln for word in ERROR_LOOKING)]
    assert not noisy, noisy
    assert "labkit smoke: 4/4" in printed.err, printed.err[-500:]
    summary = printed.out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith(f"labkit: smoke report in {out}"), printed.out
    for name in EXPECTED_FIGURES:
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, f"missing {name}"
        if name.endswith(".png"):
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for nb in ("01_train.ipynb", "02_quantize.ipynb", "03_evaluate.ipynb"):
        assert (tmp_path / "executed" / nb).is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["profile"] == "smoke" and set(on_disk) >= {"train", "quantize", "evaluate"}
    assert metrics["profile"] == "smoke"
    curves = on_disk["evaluate"]["curves"]
    assert set(curves) >= {"resae", "ae2", "ae1", "jpeg-matched", "jpeg", "webp"}
    for name, c in curves.items():
        assert all(_finite_number(v) and v > 0 for v in c["bpp"]), name
        assert all(_finite_number(v) and -1 <= v <= 1 for v in c["ssim"]), name
    # the learned codec's rate grows with b, and every record's bpp matches its byte count
    assert curves["resae"]["bpp"] == sorted(curves["resae"]["bpp"])
    for r in on_disk["evaluate"]["records"]:
        if r["codec"] in ("resae", "ae2", "ae1"):
            assert abs(r["bpp"] - r["bytes"] * 8 / (128 * 128)) < 1e-5
    assert not list(tmp_path.glob(".figures.staging*")), "staging folder must be cleaned up"
    # a retrained model whose shipped weights have a coder prior gets its own, and codes with it
    # (the smoke profile retrains every model of labkit.profiles.MODELS)
    run = tmp_path / "runs" / "resae-rd-fast"
    assert run.is_dir(), "the smoke profile retrains the default model"
    recorded = json.loads((run / "config.json").read_text())["coder_prior"]
    assert recorded["images"] == 16 and (run / "coder_prior.npz").is_file()
    assert {r["context"] for r in on_disk["evaluate"]["records"] if r["codec"] == "resae-rd-fast"} == {"learned"}


def test_failing_notebook_names_cell_and_leaves_figures_untouched(tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}\n')
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.reproduce(profile="smoke", data_dir=str(tmp_path / "no-such-data"), out_dir=out,
                           executed_dir=tmp_path / "executed", run_dir=tmp_path / "runs", log_output=False)
    msg = str(err.value)
    assert "01_train.ipynb" in msg and "cell" in msg and "DataError" in msg
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert json.loads((out / "metrics.json").read_text()) == {"old": True}
    assert (tmp_path / "executed" / "01_train.ipynb").is_file(), "the executed copy shows the failing cell"


def test_unknown_profile_is_rejected_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        pipeline.reproduce(profile="huge", out_dir=tmp_path / "f")


def test_kernels_start_and_stop_without_error_looking_lines(tmp_path, capfd):
    """The pipeline's kernel manager: no TCP-without-encryption warning, no KeyboardInterrupt at shutdown."""
    import papermill as pm

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": pipeline.kernel_name(), "display_name": "k", "language": "python"}
    src, dst = tmp_path / "tiny.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    for _ in range(3):
        pm.execute_notebook(str(src), str(dst), kernel_name=pipeline.kernel_name(), progress_bar=False,
                            kernel_manager_class=pipeline.quiet_kernel_manager_class())
    assert nbformat.read(dst, as_version=4).cells[0].outputs[0]["text"] == "42\n"
    printed = capfd.readouterr()
    assert not [ln for ln in (printed.out + printed.err).splitlines() if any(w in ln for w in ERROR_LOOKING)], printed


def test_executed_notebooks_land_under_notebooks_executed_tag():
    assert pipeline.run_tag("default", None) == "default"
    assert pipeline.run_tag("full", "/data/course-repo") == "full-course-repo"
    assert pipeline.executed_dir_for("default") == NB_DIR / "executed" / "default"
