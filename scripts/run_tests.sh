#!/usr/bin/env bash
# Set up, build the website, then run the whole test suite (README command b): lint, unit tests, the exercise
# solutions and student copies through the grader and in the Colab-like environment, the panels under Colab's
# ipywidgets, the notebook sync check, and headless Chromium on the built site. The chapters execute once, in
# the build (scripts/build_book.sh: in the Colab-like environment, each from an empty folder).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/build_book.sh --browser
build_s=$(cat _build/build_seconds.txt)
t1=$(date +%s)
.venv/bin/ruff check bncourse tests scripts
.venv/bin/ruff format --check bncourse tests scripts
t2=$(date +%s)
# --dist loadfile: each test file runs on one worker, so a module fixture (a graded class, the graded exercise
# pairs) is made once (tests/test_scheduling.py checks it; under pytest 9, --dist loadgroup ignores its groups)
.venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 tests "$@"
t3=$(date +%s)
echo "[tests] setup + build $(( t1 - t0 )) s (the build itself $build_s s; target 360), lint $(( t2 - t1 )) s," \
  "pytest $(( t3 - t2 )) s; total $(( t3 - t0 )) s (target 900 on 2 cores)"
