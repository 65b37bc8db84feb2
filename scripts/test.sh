#!/usr/bin/env bash
# Set up and run the whole test suite (SQLite and the local PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start-services.sh
bash scripts/system-deps.sh   # prometheus, node_exporter, chromium for the end-to-end tests
# layering: models/ and policies/ never import service/ or traces/replay, no circles in service/
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q "$@"
