#!/usr/bin/env bash
# Set up and run the whole test suite (SQLite and the local PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start-services.sh
exec .venv/bin/python -m pytest -q "$@"
