"""Notebooks 01 and 02 in a real JupyterLab, driven in headless Chromium by Playwright.

A JupyterLab server from this environment listens on a free port of 127.0.0.1 with a random
token, serving copies of the two notebooks (the committed files are never autosaved over), with
kernels at the smoke size. Each notebook is opened and run through JupyterLab's own
"Run All Cells"; no cell may end with an error output. Every slider of notebook 01's widget
is then moved, and its figure must change (the PNG the kernel sends back differs). Each test
shuts its kernel down; the server and the browser stop at the end of the module. Last, the
static site's page of notebook 01 is opened from disk with the network refused, and its
formulas must be typeset by the site's own MathJax.

The browser is the system's Chromium (``SAMLAB_CHROMIUM``, else ``chromium``,
``chromium-browser``, ``google-chrome`` on PATH), never one downloaded by Playwright: without
one, these tests skip and say so (``.ci/run`` installs Debian's ``chromium`` when it can).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_sam_linear_logistic.ipynb", "02_two_layer_jacobian.ipynb"]
#: per-notebook limit on "Run All Cells", in seconds (the smoke size takes well under 30 s)
RUN_TIMEOUT = 240


def _chromium() -> str | None:
    candidates = [os.environ.get("SAMLAB_CHROMIUM", "")]
    candidates += [shutil.which(n) or "" for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _free_port() -> int:
    """A port nothing listens on (this module imports no samlab, hence no torch: a lighter process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token, process) of a JupyterLab serving copies of the notebooks; shut down after."""
    root = tmp_path_factory.mktemp("lab")
    for name in NAMES:
        shutil.copy(NOTEBOOKS / name, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "SAMLAB_PROFILE": "smoke",
        "OMP_NUM_THREADS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
    }
    env.pop("MPLBACKEND", None)  # the notebooks use %matplotlib inline
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, token, server
    finally:
        import psutil

        kernels = [p for p in psutil.Process(server.pid).children(recursive=True)] if server.poll() is None else []
        try:  # the server shuts its kernels down, then itself
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
            server.wait(timeout=30)
        except Exception:
            server.terminate()
            server.wait(timeout=30)
        log.close()
        gone, alive = psutil.wait_procs(kernels, timeout=10)
        for p in alive:
            p.kill()
        assert not alive, f"kernels outlived the server: {alive}"


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (install Debian's `chromium`, or set SAMLAB_CHROMIUM to a Chromium binary)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])  # no sandbox: tests may run as root
        try:
            yield b
        finally:
            b.close()


OPEN_AND_RUN = """async (name) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path: name, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  await app.commands.execute('notebook:run-all-cells');
  const errors = [];
  let code = 0, ran = 0;
  for (const cell of panel.content.widgets) {
    if (cell.model.type !== 'code') continue;
    code += 1;
    if (cell.model.executionCount) ran += 1;
    const outputs = cell.model.outputs;
    for (let i = 0; i < outputs.length; i++) {
      const out = outputs.get(i).toJSON();
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
  }
  return {code, ran, errors, id: panel.id};
}"""


def _wait_for_lab(page, base, token, workspace):
    page.goto(f"{base}/lab/workspaces/{workspace}?reset&token={token}", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
    page.evaluate("() => window.jupyterapp.started")


def _widget_png(page, panel) -> bytes:
    """The PNG of the figure in the widget's output area of the notebook ``panel`` (empty if none yet)."""
    src = page.evaluate(
        """(id) => { const img = document.getElementById(id).querySelector('.widget-interact img');
                     return img ? img.src : ''; }""",
        panel,
    )
    return base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:image/png;base64,") else b""


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_jupyterlab_and_widgets_redraw(name, browser, lab):  # browser first: skip before starting a server
    base, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _wait_for_lab(page, base, token, workspace=name[:2])
        page.set_default_timeout(RUN_TIMEOUT * 1000)
        result = page.evaluate(OPEN_AND_RUN, name)
        panel = result["id"]
        assert result["errors"] == [], f"{name}: cells raised {result['errors']}"
        assert result["code"] > 0 and result["ran"] == result["code"], f"{name}: not every code cell ran: {result}"

        sliders = page.locator(f"#{panel} .jupyter-widgets .widget-slider")
        if name.startswith("02"):
            assert sliders.count() == 0  # notebook 02 has no widget
            return
        page.wait_for_function(
            "(id) => document.getElementById(id).querySelectorAll('.widget-slider').length >= 2", arg=panel
        )
        assert sliders.count() == 2, "notebook 01's explorer should show two sliders (ρ and the noise rate)"
        page.wait_for_function("(id) => !!document.getElementById(id).querySelector('.widget-interact img')", arg=panel)
        for i in range(sliders.count()):
            slider = sliders.nth(i)
            slider.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            before_value, before_png = readout.inner_text(), _widget_png(page, panel)
            assert before_png, "the widget shows no figure"
            handle = slider.locator(".noUi-handle")
            handle.focus()
            page.keyboard.press("ArrowRight")  # one step up (noUiSlider's keyboard support)
            page.wait_for_function(
                "([id, i, v]) => document.getElementById(id).querySelectorAll('.widget-slider')[i]"
                ".querySelector('.widget-readout').innerText !== v",
                arg=[panel, i, before_value], timeout=30_000,
            )
            deadline = time.monotonic() + 60
            while (after_png := _widget_png(page, panel)) in (b"", before_png) and time.monotonic() < deadline:
                time.sleep(0.25)
            assert after_png and after_png != before_png, (
                f"slider {i} moved from {before_value} to {readout.inner_text()} but the figure did not change"
            )
    finally:  # this test's kernel goes with it
        page.evaluate("() => window.jupyterapp && window.jupyterapp.serviceManager.sessions.shutdownAll()")
        page.close()
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as r:
            assert json.load(r) == [], "a kernel outlived its test"


def test_static_site_renders_formulas_offline(browser, tmp_path):
    """`make html`'s page of notebook 01, opened from disk with every non-file request refused:
    nothing is asked of the network, and MathJax (the site's own copy) typesets the formulas."""
    from samlab import course  # imports torch: this test runs after the JupyterLab ones

    if course._mathjax_source() is None:
        pytest.skip("jupyter-server-mathjax is not installed: the site shows formulas as TeX source")
    site = tmp_path / "_site"
    course.build_site(site, [NOTEBOOKS / NAMES[0]])
    remote: list[str] = []
    page = browser.new_page()
    try:
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (remote.append(route.request.url), route.abort()))
        page.goto((site / "notebooks" / NAMES[0].replace(".ipynb", ".html")).as_uri(), wait_until="load")
        page.wait_for_function(
            "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.running === 0"
            " && MathJax.Hub.queue.pending === 0 && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0",
            timeout=60_000,
        )
        typeset = page.evaluate("() => document.querySelectorAll('.MathJax, .MathJax_Display').length")
        raw = page.evaluate("() => document.body.innerText.includes('\\\\sigma(')")
    finally:
        page.close()
    assert remote == [], f"the page asked the network for {remote[:5]}"
    assert typeset > 10, f"only {typeset} formulas typeset"
    assert not raw, "TeX source left untypeset"
