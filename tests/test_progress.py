"""Progress bars: an executed notebook keeps each bar's last frame, not the widget's first ("0%")."""
from __future__ import annotations

import json
import os
import re

import nbformat

from labkit import pipeline, progress


def test_text_mode_bar_ends_at_100_percent_on_stdout(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "text")
    for _ in progress.bar(range(7), desc="work"):
        pass
    progress.write("a line")
    out = capsys.readouterr().out
    assert "work: 100%" in out and "7/7" in out
    assert "a line\n" in out


def test_disabled_bar_is_silent(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "text")
    assert list(progress.bar(range(3), desc="quiet", enabled=False)) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_text_mode_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert not progress.text_mode()
    monkeypatch.setenv(progress.ENV, "TEXT ")
    assert progress.text_mode()


def test_executed_notebook_keeps_the_finished_bar(tmp_path, monkeypatch):
    """papermill through run_notebook: the saved output says 100%, and the parent's env is restored."""
    src = tmp_path / "nb"
    src.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from labkit.progress import bar\n"
                                          "for _ in bar(range(5), desc='loop'):\n    pass\n"
                                          "for _ in bar(range(3), desc='gone', leave=False):\n    pass\n"
                                          "print('end')")]
    nb.metadata.kernelspec = {"name": pipeline.kernel_name(), "display_name": "Python", "language": "python"}
    nbformat.write(nb, src / "bars.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", src)
    monkeypatch.delenv(progress.ENV, raising=False)
    dst = pipeline.run_notebook("bars.ipynb", tmp_path / "out", parameters={}, log_output=False)
    assert progress.ENV not in os.environ
    outputs = json.loads(dst.read_text())["cells"][0]["outputs"]
    assert all(o["output_type"] == "stream" for o in outputs), outputs  # no widget
    text = "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"] for o in outputs)
    assert "loop: 100%" in text and "5/5" in text
    assert not re.search(r"(?<!\d)0%\|", text) and "gone" not in text  # the cleared bar leaves nothing behind
    assert text.rstrip().endswith("end")


def test_report_notebooks_run_on_one_thread(tmp_path, monkeypatch):
    """ONE_THREAD_NOTEBOOKS' kernels get one thread (the report's numbers then do not depend on the core count)."""
    src = tmp_path / "nb"
    src.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, torch\nprint('threads', torch.get_num_threads(), "
                                          "os.environ.get('OMP_NUM_THREADS'))")]
    nb.metadata.kernelspec = {"name": pipeline.kernel_name(), "display_name": "Python", "language": "python"}
    for name in ("report.ipynb", "other.ipynb"):
        nbformat.write(nb, src / name)
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", src)
    monkeypatch.setattr(pipeline, "ONE_THREAD_NOTEBOOKS", frozenset({"report.ipynb"}))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")

    def printed(name):
        dst = pipeline.run_notebook(name, tmp_path / "out", parameters={}, log_output=False)
        outputs = json.loads(dst.read_text())["cells"][0]["outputs"]
        return "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream").strip()

    assert printed("report.ipynb") == "threads 1 1"
    assert printed("other.ipynb") == "threads 2 2"  # training keeps the caller's setting
    assert os.environ["OMP_NUM_THREADS"] == "2"  # restored
