#!/usr/bin/env bash
# Set up and run the whole test suite (SQLite and the local PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start-services.sh
bash scripts/system-deps.sh   # prometheus, node_exporter, chromium for the end-to-end tests
# layering: models/ and policies/ never import service/ or traces/replay, no circles in service/
.venv/bin/lint-imports
# the documentation site: a broken link or anchor, or a page missing from the nav, fails
# (not --quiet: it hides the warnings that --strict counts, and the build then passes)
SITE="$(mktemp -d)"
.venv/bin/mkdocs build --strict --site-dir "$SITE"
rm -rf "$SITE"
exec .venv/bin/python -m pytest -q "$@"
