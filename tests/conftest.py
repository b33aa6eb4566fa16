"""Test-session settings shared by every test, including the notebooks that nbval runs.

Instructor notebooks run under nbval with strict grading: a check that fails or is not attempted raises, so a
broken reference solution cannot pass quietly. The kernels nbval starts inherit this environment.
"""

import os

os.environ.setdefault("COURSE_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Notebooks that are test fixtures, not course notebooks: they are driven by their own tests.
collect_ignore_glob = ["browser/*.ipynb", "fixtures/*.ipynb"]

# Parallel runs (pytest-xdist, as `bash scripts/course.sh test` starts them): each worker gets one CPU thread, and so
# do the notebook kernels it starts (they inherit COURSE_THREADS), so two workers never share a core with four threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["COURSE_THREADS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402  (after the environment above, which the kernels and torch read at start)

_SLOW_FIRST = ("notebooks/", "tests/test_notebooks.py", "tests/grading/regrade/", "tests/browser/")
# Files that must share a worker: both build a wheel from the checkout (pip writes the same ./build folder).
_SHARED_GROUPS = {"tests/test_packaging.py": "wheel builds", "tests/test_colab_setup.py": "wheel builds"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist: keep each notebook's nbval cells (and each other test file) on one worker, but let the student
    notebooks of tests/test_notebooks.py run in parallel, and start the longest items first so no worker idles at the
    end. Without xdist nothing changes."""
    if not getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    root = str(config.rootpath) + os.sep

    def where(item) -> str:
        return str(item.path).removeprefix(root).replace(os.sep, "/")

    for item in items:
        path = where(item)
        group = f"{path}::{item.name}" if path == "tests/test_notebooks.py" else _SHARED_GROUPS.get(path, path)
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: next((rank for rank, prefix in enumerate(_SLOW_FIRST)
                                      if where(item).startswith(prefix)), len(_SLOW_FIRST)))
