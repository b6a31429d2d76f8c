#!/usr/bin/env bash
# Set up, build the website, then run the whole test suite (README command b):
# lint, unit tests, every notebook under nbval, the jupytext pairs, and headless Chromium on the built site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_book.sh --browser
start=$(date +%s)
.venv/bin/ruff check bncourse tests scripts
.venv/bin/ruff format --check bncourse tests scripts
.venv/bin/python -m pytest -n 2 --dist loadfile --nbval-lax tests book "$@"
echo "[tests] finished in $(( $(date +%s) - start )) s"
