#!/usr/bin/env bash
# Set up, then build the website into _build/html, executing every chapter (README command a).
# Warnings are errors (-W -n); --keep-going reports all of them. Pages are executed in parallel, one per CPU
# (scripts/build_site.py; BNCOURSE_BUILD_JOBS=1 for one at a time). BNCOURSE_BOOK_BUILD=1 tells the notebooks
# that the website is being built: only then do panels draw their static figure grids. A fresh clone builds
# from an empty _build; locally, notebooks whose code cells did not change come from the execution cache
# (rm -rf _build for a clean build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"
start=$(date +%s)
BNCOURSE_BOOK_BUILD=1 .venv/bin/python scripts/build_site.py . -W -n --keep-going
echo "[build] _build/html built in $(( $(date +%s) - start )) s"
