"""A real browser: JupyterLab runs explorer_demo.ipynb in headless Chromium; the views draw, the explorer reacts.

A second test opens a copy executed by ``scripts/execute_notebooks.py`` as a fresh clone (untrusted, no kernel has run
it): every bertviz view and the explorer must show a picture and a hint, and the notebook must not be marked modified;
after "Trust Notebook" the views draw and hide their pictures. Screenshots are kept in ``$COURSE_SCREENSHOTS`` (if set).

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
MINILM_LAYERS, MINILM_HEADS = 6, 12
VIEW_CELLS = {1: "head view", 2: "model view", 3: "neuron view"}  # explorer_demo's code cells (0: setup)
EXPLORER_CELL = 4
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
        JUPYTER_DATA_DIR=str(home / "data"),  # its own trust database: "Trust Notebook" here trusts nothing elsewhere
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
        yield base, token, home / "jupyterlab.log", root
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


def serve_offline(context, cdn_hits: list, held: list, blocked: list, hold_require: bool = True) -> None:
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
            return held.append(route) if name == "require.min.js" and hold_require else fulfill_locally(route)
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
    base, token, log_path, _root = jupyterlab
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
            assert_drawn_views_replaced_their_pictures(page)
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


# ---------------------------------------------------------------- a fresh clone: stored outputs, untrusted, no kernel

OUTPUT_STATE = """(index) => {  // what code cell `index` shows: visible pictures, visible text, visible drop-downs
  const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(cell => cell.model.type === "code");
  const area = cells[index] && cells[index].node.querySelector(".jp-OutputArea");
  if (!area) {  // the notebook is being (re)rendered: nothing shown yet, the waits below try again
    return {pictures: [], text: "", selects: 0, svgs: 0, trusted: null, missing: true};
  }
  const visible = node => node.getClientRects().length > 0 && getComputedStyle(node).visibility !== "hidden";
  const images = [...area.querySelectorAll("img")].filter(visible);
  return {
    pictures: images.filter(img => img.complete && img.naturalWidth > 0 && img.src.startsWith("data:image/png"))
                    .map(img => [img.naturalWidth, img.naturalHeight]),
    text: area.innerText,
    selects: [...area.querySelectorAll("select")].filter(visible).length,
    svgs: [...area.querySelectorAll("#vis svg")].filter(visible).length,  // bertviz's drawings
    trusted: cells[index].model.trusted,
  };
}"""
MODEL_VIEW_FITS = """() => {  // the model view's drawing, and the part of it its output area shows
  const svg = [...document.querySelectorAll('div[id^="bertviz-"] #vis svg')]
    .find(node => node.closest('div[id^="bertviz-"]').querySelector("select#layer") === null);
  const area = svg.closest(".jp-OutputArea-output");
  const drawn = svg.getBoundingClientRect(), shown = area.getBoundingClientRect();
  const columns = [...svg.querySelectorAll("text")].filter(t => /^\\d+$/.test(t.textContent))
    .map(t => t.getBoundingClientRect()).filter(r => Math.abs(r.top - drawn.top) < 40);
  return {svgRight: drawn.right, areaRight: shown.right, scrollWidth: area.scrollWidth, clientWidth: area.clientWidth,
          headLabelsRight: Math.max(...columns.map(r => r.right)), headLabels: columns.length};
}"""
CODE_CELLS_READY = """(n) => {  // the notebook's model has at least n code cells, each with its output area
  const widget = window.jupyterapp.shell.currentWidget;
  const cells = widget && widget.content && widget.content.widgets
    ? widget.content.widgets.filter(cell => cell.model.type === "code") : [];
  return cells.length >= n && cells.slice(0, n).every(cell => cell.node.querySelector(".jp-OutputArea"));
}"""
NOTEBOOK_DIRTY = "() => window.jupyterapp.shell.currentWidget.context.model.dirty"
KERNEL_IDLE = """() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;
  return s.session && s.session.kernel && s.session.kernel.status === "idle"; }"""


def assert_drawn_views_replaced_their_pictures(page) -> None:
    """Once bertviz has drawn, each view's static picture and hint are hidden and its drop-downs are shown."""
    from course_lib.viz.view_pictures import BERTVIZ_HINT

    for index, name in VIEW_CELLS.items():
        page.wait_for_function(f"(i) => ({OUTPUT_STATE})(i).svgs > 0", arg=index, polling=250)
        state = page.evaluate(OUTPUT_STATE, index)
        assert state["pictures"] == [] and BERTVIZ_HINT not in state["text"], (name, state)
        assert state["selects"] >= (name != "model view"), (name, state)  # the model view has no layer drop-down
    fits = page.evaluate(MODEL_VIEW_FITS)
    assert fits["headLabels"] == MINILM_HEADS, fits  # bertviz wrote all 12 head numbers
    assert fits["headLabelsRight"] <= fits["areaRight"] and fits["scrollWidth"] <= fits["clientWidth"], fits


@pytest.fixture(scope="module")
def fresh_clone(jupyterlab, tmp_path_factory):
    """explorer_demo.ipynb executed by scripts/execute_notebooks.py, placed in JupyterLab's root, never opened."""
    *_, root = jupyterlab
    work = tmp_path_factory.mktemp("executed") / "fresh_clone.ipynb"
    shutil.copy(NOTEBOOK, work)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "execute_notebooks.py"), str(work)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copy(work, root / work.name)
    return work.name


def screenshot_dir(tmp_path) -> Path:
    """Where screenshots go: $COURSE_SCREENSHOTS when set (to look at them), else the test's tmp folder."""
    folder = Path(os.environ.get("COURSE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_fresh_untrusted_clone_shows_a_picture_and_a_hint_for_every_view_and_widget(jupyterlab, fresh_clone,
                                                                                        tmp_path):
    from course_lib.viz.explorer import EXPLORER_HINT
    from course_lib.viz.view_pictures import BERTVIZ_HINT

    base, token, log_path, _root = jupyterlab
    shots = screenshot_dir(tmp_path)
    cdn_hits, held, blocked, page_errors = [], [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 2400})  # the whole notebook on screen
            serve_offline(context, cdn_hits, held, blocked, hold_require=False)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=30_000)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{base}/lab/tree/{fresh_clone}?token={token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
            )
            page.wait_for_function(KERNEL_IDLE, polling=250)  # JupyterLab has compared the kernelspec by now
            page.wait_for_function(CODE_CELLS_READY, arg=EXPLORER_CELL + 1, polling=250)  # the model is loaded
            for index in (*VIEW_CELLS, EXPLORER_CELL):
                page.wait_for_function(f"(i) => ({OUTPUT_STATE})(i).pictures.length > 0", arg=index, polling=250)
            page.wait_for_timeout(500)  # let layout settle before the screenshot
            page.screenshot(path=str(shots / "fresh_clone_untrusted.png"))

            # Untrusted, no script ran: a picture and the hint, never empty drop-downs or a widget's repr.
            for index, name in VIEW_CELLS.items():
                state = page.evaluate(OUTPUT_STATE, index)
                assert not state["trusted"], (name, state)
                assert len(state["pictures"]) == 1 and BERTVIZ_HINT in state["text"], (name, state)
                assert state["selects"] == 0 and state["svgs"] == 0, (name, state)
            state = page.evaluate(OUTPUT_STATE, EXPLORER_CELL)
            assert len(state["pictures"]) == 1 and EXPLORER_HINT in state["text"], state
            assert "VBox(" not in state["text"] and "Error displaying widget" not in state["text"], state
            assert cdn_hits == [], cdn_hits  # nothing ran
            assert page.evaluate(NOTEBOOK_DIRTY) is False  # the stored kernelspec is the installed one

            # Trusted (File > Trust Notebook): the stored scripts run, bertviz draws, every picture gives way.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:trust'); }")  # waits for the dialog
            page.locator(".jp-Dialog .jp-mod-accept").click()
            assert_drawn_views_replaced_their_pictures(page)
            state = page.evaluate(OUTPUT_STATE, EXPLORER_CELL)  # the widget itself is not stored: still the picture
            assert len(state["pictures"]) == 1 and "Error displaying widget" not in state["text"], state
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "fresh_clone_trusted.png"))
            print(f"screenshots in {shots}")
        except Exception:
            print(f"page errors: {page_errors}\nblocked: {blocked}\nJupyterLab log:\n{log_path.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
