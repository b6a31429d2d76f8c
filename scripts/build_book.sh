#!/usr/bin/env bash
# Set up, then build the website into _build/html, executing every page once (README command a).
# Setup makes two environments side by side: .venv (scripts/setup.sh: the build's tools and the tests) and the
# Colab-like .venv-colab (scripts/colab_env.sh: Colab's package versions, bncourse from a freshly built wheel),
# whose Python is the kernel that runs the pages, each in an empty folder (scripts/build_site.py), so the
# build is also the test that every chapter runs as on Colab. Warnings are errors (-W -n); --keep-going reports
# all of them. Pages are executed in parallel, one per CPU (BNCOURSE_BUILD_JOBS=1 for one at a time).
# BNCOURSE_BOOK_BUILD=1 tells the notebooks that the website is being built: only then do panels draw their
# static figure grids and glue hand values to the text. A fresh clone builds from an empty _build; locally,
# notebooks whose code cells did not change come from the execution cache (rm -rf _build for a clean build).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
colab_log=$(mktemp)
bash scripts/colab_env.sh >"$colab_log" 2>&1 &
colab_pid=$!
# on any exit: stop the Colab-like setup if it still runs (setup.sh failed), show its log, remove it
trap 'kill "$colab_pid" 2>/dev/null || true; [ -s "$colab_log" ] && cat "$colab_log"; rm -f "$colab_log"' EXIT
bash scripts/setup.sh "$@"
if ! wait "$colab_pid"; then
  echo "[colab-env] failed" >&2
  exit 1
fi
cat "$colab_log" && : >"$colab_log"
built=$(date +%s)
echo "[setup] both environments ready in $(( built - start )) s"
BNCOURSE_BOOK_BUILD=1 .venv/bin/python scripts/build_site.py . -W -n --keep-going
seconds=$(( $(date +%s) - built ))
echo "$seconds" > _build/build_seconds.txt  # scripts/run_tests.sh prints it with the other phases
echo "[build] _build/html built in $seconds s"
