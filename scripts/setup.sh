#!/usr/bin/env bash
# Create .venv and install Tidewise with its test tools. Idempotent: a second run is quick.
# torch comes first, pinned to the CPU build on this machine's disk, so that pip never
# resolves a multi-GB CUDA build on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -e ".[dev,docs]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import service, models, policies, traces, torch, nflows, mkdocs" \
  || { echo "setup: installation incomplete" >&2; exit 1; }
