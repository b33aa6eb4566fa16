"""A real browser: JupyterLab runs explorer_demo.ipynb in headless Chromium; the views draw, the explorer reacts.

Needs Debian's ``chromium`` (never a downloaded browser) and the ``playwright`` Python package; skipped without them.
bertviz asks cdnjs for require.js, d3 and jQuery: the test answers from Debian's copies (libjs-requirejs, node-d3,
libjs-jquery) and aborts every other request that leaves localhost.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOK = HERE / "explorer_demo.ipynb"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_JS = {  # file name bertviz asks cdnjs for -> the Debian package's copy
    "require.min.js": Path("/usr/share/javascript/requirejs/require.min.js"),  # libjs-requirejs
    "d3.min.js": Path("/usr/share/nodejs/d3/dist/d3.min.js"),  # node-d3 (5.x, as bertviz's 5.7.0)
    "jquery.min.js": Path("/usr/share/javascript/jquery/jquery.min.js"),  # libjs-jquery
}
SENTENCE_TOKENS = ["[CLS]", "the", "cat", "sat", "on", "mat", ".", "[SEP]"]  # "The cat sat on the mat."
MINILM_LAYERS = 6
TIMEOUT_MS = 90_000

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright; never `playwright install`)"
)
pytest.importorskip("jupyterlab", reason="jupyterlab not installed (pip install -e '.[dev]')")


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on a free localhost port with a token, isolated config/settings; yields ``(base_url, token)``."""
    missing = [f"{path} ({name})" for name, path in LOCAL_JS.items() if not path.exists()]
    if missing:
        pytest.fail("local copies of bertviz's scripts are missing; apt-get install libjs-requirejs node-d3 "
                    f"libjs-jquery: {', '.join(missing)}")
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    # No news feed prompt; every cell in the DOM (no virtual scrolling), so all outputs can be inspected.
    write_json(home / "config" / "labconfig" / "page_config.json",
               {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    write_json(home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
               {"windowingMode": "none"})
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),  # the kernel's python
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    log = open(home / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         "--allow-root"],  # CI runs as root
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited ({server.returncode}):\n{(home / 'jupyterlab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 60 s:\n{(home / 'jupyterlab.log').read_text()}")
            time.sleep(0.25)
        yield base, token, home / "jupyterlab.log"
    finally:
        server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session this test started, kernels included
            server.wait()
        log.close()


def fulfill_locally(route) -> None:
    """Answer a cdnjs request with the local copy of the same file."""
    name = urlparse(route.request.url).path.rsplit("/", 1)[-1]
    route.fulfill(path=str(LOCAL_JS[name]), content_type="application/javascript")


def serve_offline(context, cdn_hits: list, held: list, blocked: list) -> None:
    """Let localhost through, answer cdnjs from LOCAL_JS, abort anything else.

    require.js is HELD (appended to ``held``) until the test releases it: the slowest network possible, so every
    view's script runs before require.js exists, the race that leaves plain bertviz blank in a fresh JupyterLab tab.
    """

    def handle(route):
        url = route.request.url
        host = urlparse(url).hostname
        if host in ("127.0.0.1", "localhost"):
            return route.continue_()
        name = urlparse(url).path.rsplit("/", 1)[-1]
        if host == "cdnjs.cloudflare.com" and name in LOCAL_JS:
            cdn_hits.append(name)
            return held.append(route) if name == "require.min.js" else fulfill_locally(route)
        blocked.append(url)
        return route.abort()

    context.route("**/*", handle)


RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await app.commands.execute("notebook:run-all-cells");
}"""
CELL_ERRORS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  return cells.flatMap(cell => cell.model.type === "code" ? cell.model.outputs.toJSON() : [])
              .filter(output => output.output_type === "error")
              .map(output => output.ename + ": " + output.evalue);
}"""
VIEW_TOKENS = """(kind) => {  // the words a bertviz view drew; views told apart by their controls
  const views = [...document.querySelectorAll('div[id^="bertviz-"]')];
  const neuron = div => div.querySelector("select#att_head") !== null;
  const root = views.find(div => kind === "neuron" ? neuron(div) : div.querySelector("select#layer") && !neuron(div));
  const words = root ? [...root.querySelectorAll("#vis svg text")].map(node => node.textContent.trim()) : [];
  return words.length ? words : null;
}"""
NOTEBOOK_IDLE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(cell => cell.model.type === "code");
  return kernel && kernel.status === "idle" && cells.every(cell => cell.model.executionCount !== null);
}"""


def test_jupyterlab_draws_bertviz_and_the_explorer_reacts_to_the_layer_slider(jupyterlab):
    base, token, log_path = jupyterlab
    cdn_hits, held, blocked, page_errors = [], [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})  # fresh tab: empty cache
            serve_offline(context, cdn_hits, held, blocked)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=30_000)  # a loaded 2-core CI machine is slow
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
            )
            page.evaluate(RUN_ALL)
            page.wait_for_function(NOTEBOOK_IDLE, polling=250)
            assert page.evaluate(CELL_ERRORS) == []
            assert cdn_hits == ["require.min.js"]  # asked for once (both views share one load), still held
            for route in held:
                fulfill_locally(route)

            # bertviz's head view drew its SVG, with the sentence's tokens on both sides.
            words = page.wait_for_function(VIEW_TOKENS, arg="head", polling=250).json_value()
            assert set(SENTENCE_TOKENS) <= set(words) and len(words) >= 2 * 9, words
            model_view_svg = page.locator('div[id^="bertviz-"]:not(:has(select#layer)) #vis svg')
            sync_api.expect(model_view_svg).to_have_count(1)
            words = page.wait_for_function(VIEW_TOKENS, arg="neuron", polling=250).json_value()
            assert set(SENTENCE_TOKENS) <= set(words), words
            # Neuron view: expand "cat" (+), hover it: bertviz computes q.k / sqrt(d) from the hooked queries and keys.
            neuron = page.locator('div[id^="bertviz-"]:has(select#att_head)')
            neuron.locator("#collapsed #leftText > g").nth(2).locator("rect:not(.highlight)").click(force=True)
            sync_api.expect(neuron.locator("#expanded")).to_have_attribute("visibility", "visible")
            neuron.locator("#expanded #leftText text").nth(2).hover()
            scores = neuron.locator("#expanded #dotproducts rect[data-value]")
            sync_api.expect(scores).to_have_count(len(SENTENCE_TOKENS) + 1)
            values = [float(value) for value in scores.evaluate_all("rects => rects.map(r => r.dataset.value)")]
            assert all(map(math.isfinite, values)) and len(set(values)) > 1, values
            assert sorted(set(cdn_hits)) == sorted(LOCAL_JS), cdn_hits

            # The explorer: drag the layer slider to the top layer; the heatmap must change.
            heatmap = page.locator("img.course-explorer-heatmap")
            page.wait_for_function(
                "() => { const img = document.querySelector('img.course-explorer-heatmap');"
                " return img && img.complete && img.naturalWidth > 0; }"
            )
            before_src, before_png = heatmap.get_attribute("src"), heatmap.screenshot()
            slider = page.locator(".course-explorer-layer")
            slider.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            sync_api.expect(readout).to_have_text("0")
            handle, track = slider.locator(".noUi-handle").bounding_box(), slider.locator(".noUi-target").bounding_box()
            page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] + 20, handle["y"] + handle["height"] / 2, steps=8)
            page.mouse.up()
            sync_api.expect(readout).to_have_text(str(MINILM_LAYERS - 1))
            page.wait_for_function(
                "(old) => { const img = document.querySelector('img.course-explorer-heatmap');"
                " return img.src !== old && img.complete && img.naturalWidth > 0; }",
                arg=before_src,
            )
            assert heatmap.screenshot() != before_png
            assert not [error for error in page_errors if "require" in error or "bertviz" in error], page_errors
        except Exception:
            print(f"page errors: {page_errors}\nblocked: {blocked}\nJupyterLab log:\n{log_path.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
