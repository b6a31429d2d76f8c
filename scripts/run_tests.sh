#!/usr/bin/env bash
# Set up, build the website, then run the whole test suite (README command b): lint, unit tests, every notebook
# that Colab opens run in a Colab-like environment (tests/test_colab.py; the chapters' only execution besides
# the build), the exercise solutions through the grader, the notebook sync check, and headless Chromium on the
# built site.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh --browser
# The Colab-like environment is made while the book builds (mostly package downloads and installs; the build
# keeps the CPUs busy): its log is shown once both are done. (After setup: both would write the package's
# build metadata.)
colab_log=$(mktemp)
bash scripts/colab_env.sh >"$colab_log" 2>&1 &
colab_pid=$!
bash scripts/build_book.sh --browser
t1=$(date +%s)
if ! wait "$colab_pid"; then
  cat "$colab_log"
  echo "[colab-env] failed" >&2
  exit 1
fi
cat "$colab_log"
.venv/bin/ruff check bncourse tests scripts
.venv/bin/ruff format --check bncourse tests scripts
t2=$(date +%s)
.venv/bin/python -m pytest -n 2 --dist loadgroup --durations=15 tests "$@"
t3=$(date +%s)
echo "[tests] setup + build (Colab env alongside) $(( t1 - t0 )) s, rest of Colab env + lint $(( t2 - t1 )) s, pytest $(( t3 - t2 )) s; total $(( t3 - t0 )) s"
