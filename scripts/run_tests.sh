#!/usr/bin/env bash
# Set up, build the website, then run the whole test suite (README command b): lint, unit tests, every notebook
# that Colab opens run in a Colab-like environment (tests/test_colab.py; the chapters' only execution besides
# the build), the exercise solutions through the grader, the notebook sync check, and headless Chromium on the
# built site.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/build_book.sh --browser
t1=$(date +%s)
bash scripts/colab_env.sh
.venv/bin/ruff check bncourse tests scripts
.venv/bin/ruff format --check bncourse tests scripts
t2=$(date +%s)
.venv/bin/python -m pytest -n 2 --dist loadgroup --durations=15 tests "$@"
t3=$(date +%s)
echo "[tests] setup + build $(( t1 - t0 )) s, Colab env + lint $(( t2 - t1 )) s, pytest $(( t3 - t2 )) s; total $(( t3 - t0 )) s"
