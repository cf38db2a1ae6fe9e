#!/usr/bin/env bash
# Sets up the kit: a virtual environment with the pinned stack and gemkr installed in editable mode.
#   GEMKR_VENV  where the environment lives (default: .venv in the checkout)
#   PYTHON      the interpreter to build it from (default: python3, 3.10-3.12)
# The environment is rebuilt only when settings.ini, setup.py or this script change (their hash is
# stored in the venv); otherwise the editable install is just re-pointed at this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GEMKR_VENV:-.venv}"
PY="${PYTHON:-python3}"
# torch and torchvision are a matched pair: pin both in every pip command, or pip swaps torch.
PINS=(torch==2.14.1 torchvision==0.29.1)
key=$(cat settings.ini setup.py scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$VENV/.gemkr-key" ] && [ "$(cat "$VENV/.gemkr-key")" = "$key" ]; then
  echo "setup: reusing $VENV ($key)"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored: it is neither" || true
else
  echo "setup: building $VENV ($key); the first install takes about 6 minutes"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "${PINS[@]}" -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
  "$VENV/bin/python" -c "import gemkr, numpy, torch, transformers, nbdev" || { echo "setup: install failed"; exit 1; }
  # the notebooks name this kernel: JupyterLab started from the environment runs them in it, and does not mark
  # them modified on open (nbdev_clean keeps a kernelspec whose display name equals its name)
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name gemkr --display-name gemkr >/dev/null
  echo "$key" > "$VENV/.gemkr-key"
fi
