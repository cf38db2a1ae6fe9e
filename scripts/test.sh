#!/usr/bin/env bash
# The kit's test command (CI runs exactly this through .ci/run):
#   1. the checkout is clean (set GEMKR_ALLOW_DIRTY=1 to test uncommitted work locally),
#   2. nbdev_clean leaves no diff, 3. nbdev_export leaves no diff (library == notebooks),
#   4. README.md is the rendering of nbs/index.ipynb, and saved notebook outputs are machine-independent
#      (no absolute paths, no environment warnings, the plain kernelspec: scripts/check_notebooks.py),
#   5. pytest: every default-tier notebook through nbdev's runner (one test each) + tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GEMKR_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
[ -x "$VENV/bin/python" ] || { echo "test: no environment at $VENV: run scripts/setup.sh first"; exit 1; }
export PATH="$VENV/bin:$PATH"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg PYTHONHASHSEED=0
state() { git status --porcelain; git diff | sha256sum; }
if [ -z "${GEMKR_ALLOW_DIRTY:-}" ] && [ -n "$(git status --porcelain)" ]; then
  echo "test: the checkout is not clean (commit, or set GEMKR_ALLOW_DIRTY=1):"; git status -s; exit 1
fi
before=$(state)
nbdev_clean
[ "$(state)" = "$before" ] || { echo "test: nbdev_clean changed notebooks: run nbdev_clean and commit"; git status -s; exit 1; }
nbdev_export
[ "$(state)" = "$before" ] || { echo "test: nbdev_export changed gemkr/: library and notebooks are out of sync"; git status -s; exit 1; }
python scripts/render_readme.py --check
python scripts/check_notebooks.py
python -m pytest -q -p no:cacheprovider tests "$@"
