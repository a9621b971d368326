"""The lab in a real browser (``make test-lab``): JupyterLab + Debian's chromium driven by Playwright.

JupyterLab is started on a free localhost port with a token and the project's Jupyter config
(``etc/jupyter/jupyter_server_config.py``, as ``make lab`` does). Each notebook is opened, its
parameters cell is edited to the ``smoke`` profile (as a user would), it is run with the labkit
kernel, and the test asserts: every cell ran, no error output, no traceback on stderr, every
figure the notebook displays rendered as an image; a screenshot per notebook goes to
``build/lab-screenshots/``. The notebook is then saved with its outputs (the config strips them),
the parameter is set back and saved again: the file must be byte-identical to what it was, and
``git status`` must not have changed.

The browser is the system's chromium (``LABKIT_CHROMIUM``, else Debian's ``/usr/lib/chromium/chromium``
or ``chromium`` on PATH): Playwright downloads nothing. Without it the test is skipped with the reason.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
CONFIG = ROOT / "etc" / "jupyter" / "jupyter_server_config.py"
SHOTS = ROOT / "build" / "lab-screenshots"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
PARAM_LINE = re.compile(r'^profile = "default"', re.MULTILINE)
RUN_TIMEOUT_S = float(os.environ.get("LABKIT_LAB_TIMEOUT", 1200))
#: Lines a successful run must not show on stderr.
ERROR_LOOKING = re.compile(r"Traceback|\bERROR\b|Error:|Exception:")


def chromium_path() -> str | None:
    """The system chromium binary: $LABKIT_CHROMIUM, Debian's real binary, or chromium on PATH."""
    env = os.environ.get("LABKIT_CHROMIUM")
    if env:
        return env
    for cand in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain=v1", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab: yields (base_url, token); stops it afterwards."""
    pytest.importorskip("playwright.sync_api", reason="Playwright missing: pip install -e '.[dev]'")
    if chromium_path() is None:
        pytest.skip("no chromium: `make test-lab` installs Debian's (apt-get install chromium) as root; "
                    "or set LABKIT_CHROMIUM to a chromium binary")
    tmp = tmp_path_factory.mktemp("lab")
    settings = tmp / "settings"
    for plugin, values in {
        # every cell stays in the DOM (the test reads rendered images), no news/update checks
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), MPLBACKEND="agg")
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), f"--config={CONFIG}", "--no-browser",
           f"--ServerApp.root_dir={NB_DIR}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--allow-root"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=NB_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base, token, tmp / "server.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


OPEN = """async (path) => {
  const app = window.jupyterapp;
  await app.restored;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (kernel) { await kernel.info; }
  window.__labkit = {panel, done: false, ok: null, error: null};
  return kernel ? kernel.name : null;
}"""

SET_SOURCE = """([index, source]) => {
  const cell = window.__labkit.panel.content.widgets[index];
  cell.model.sharedModel.setSource(source);
}"""

PARAMETERS = """() => window.__labkit.panel.content.widgets
  .map((c, i) => [i, c.model.getMetadata('tags') || [], c.model.sharedModel.getSource()])
  .filter(([i, tags, src]) => tags.includes('parameters'))
  .map(([i, tags, src]) => [i, src])"""

RUN_ALL = """() => {
  const s = window.__labkit;
  window.jupyterapp.commands.execute('notebook:run-all-cells')
    .then(ok => { s.ok = ok; s.done = true; }, err => { s.error = String(err); s.done = true; });
}"""

RESULTS = """() => window.__labkit.panel.content.widgets
  .filter(c => c.model.type === 'code')
  .map(c => ({
    source: c.model.sharedModel.getSource(),
    execution_count: c.model.executionCount,
    outputs: c.model.outputs.toJSON().map(o => ({
      output_type: o.output_type, name: o.name || null,
      text: o.text === undefined ? null : (Array.isArray(o.text) ? o.text.join('') : o.text),
      ename: o.ename || null, evalue: o.evalue || null})),
    images: Array.from(c.node.querySelectorAll('.jp-OutputArea-output img'))
      .map(img => ({complete: img.complete, width: img.naturalWidth})),
  }))"""

IMAGES_LOADED = """() => Array.from(window.__labkit.panel.node.querySelectorAll('.jp-OutputArea-output img'))
  .every(img => img.complete && img.naturalWidth > 0)"""

SCROLL_TO_FIRST_IMAGE = """() => {
  const img = window.__labkit.panel.node.querySelector('.jp-OutputArea-output img');
  if (img) { img.scrollIntoView({block: 'start'}); }
}"""

SAVE = "async () => { await window.__labkit.panel.context.save(); return window.__labkit.panel.context.model.dirty; }"

CLOSE = """async () => {
  const {panel} = window.__labkit;
  await panel.sessionContext.shutdown();
  panel.dispose();
}"""


def _check_run(name: str, cells: list[dict]) -> None:
    for cell in cells:
        where = f"{name}, cell starting {cell['source'][:60]!r}"
        assert cell["execution_count"] is not None, f"{where}: did not run"
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"{where}: {out['ename']}: {out['evalue']}"
            if out["output_type"] == "stream" and out["name"] == "stderr":
                bad = [ln for ln in out["text"].splitlines() if ERROR_LOOKING.search(ln)]
                assert not bad, f"{where}: error-looking stderr: {bad[:3]}"
        if "display(Image" in cell["source"]:
            assert cell["images"], f"{where}: displays a figure but no image rendered"
            assert all(i["complete"] and i["width"] > 0 for i in cell["images"]), f"{where}: an image did not load"


def test_every_notebook_runs_in_jupyterlab_and_leaves_git_clean(lab):
    from playwright.sync_api import sync_playwright

    from labkit.pipeline import default_out_dir

    base, token, server_log = lab
    started = time.time()
    before_status = _git_status()
    before_bytes = {n: (NB_DIR / n).read_bytes() for n in NOTEBOOKS}
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path())
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{base}/lab?token={token}")
        page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
        for name in NOTEBOOKS:
            t0 = time.monotonic()
            kernel = page.evaluate(OPEN, name)
            assert kernel == "labkit", f"{name}: opened with kernel {kernel!r}, expected the project's 'labkit'"
            params = page.evaluate(PARAMETERS)
            assert len(params) == 1, f"{name}: expected one parameters cell, found {len(params)}"
            index, original = params[0]
            assert PARAM_LINE.search(original), f"{name}: parameters cell has no line `profile = \"default\"`"
            page.evaluate(SET_SOURCE, [index, PARAM_LINE.sub('profile = "smoke"', original, count=1)])
            page.evaluate(RUN_ALL)
            page.wait_for_function("() => window.__labkit.done", timeout=RUN_TIMEOUT_S * 1000, polling=1000)
            state = page.evaluate("() => ({ok: window.__labkit.ok, error: window.__labkit.error})")
            page.wait_for_function(IMAGES_LOADED, timeout=60_000)
            cells = page.evaluate(RESULTS)
            _check_run(name, cells)
            assert state["ok"] is True and state["error"] is None, f"{name}: run-all reported {state}"
            timings[name] = time.monotonic() - t0
            page.evaluate(SCROLL_TO_FIRST_IMAGE)
            page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"))

            # saved with outputs and the edited parameter: outputs are stripped on the way to disk
            assert page.evaluate(SAVE) is False
            saved = nbformat.read(NB_DIR / name, as_version=4)
            assert 'profile = "smoke"' in saved.cells[index].source, f"{name}: the save did not reach the disk"
            assert all(c.outputs == [] and c.execution_count is None for c in saved.cells if c.cell_type == "code"), \
                f"{name}: saved with outputs (server log: {server_log})"
            # parameter set back and saved: exactly the bytes it had
            page.evaluate(SET_SOURCE, [index, original])
            assert page.evaluate(SAVE) is False
            assert (NB_DIR / name).read_bytes() == before_bytes[name], f"{name}: saving in the lab changed the file"
            page.evaluate(CLOSE)
        browser.close()
    published = default_out_dir("smoke", None)
    metrics = published / "metrics.json"
    assert metrics.is_file() and metrics.stat().st_mtime >= started and list(published.glob("*.png")), \
        f"00_reproduce published nothing in {published}"
    assert _git_status() == before_status, "running the notebooks in the lab changed `git status`"
    unencrypted = [ln for ln in server_log.read_text().splitlines() if "without encryption" in ln]
    assert not unencrypted, f"kernels started without CurveZMQ keys (etc/jupyter config): {unencrypted[:1]}"
    print("seconds per notebook in the lab:", {k: round(v, 1) for k, v in timings.items()})
