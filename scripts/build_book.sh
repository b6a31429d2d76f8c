#!/usr/bin/env bash
# Set up, then build the website into _build/html, executing every chapter (README command a).
# Warnings are errors (-W -n); --keep-going reports all of them. A fresh clone builds from an empty
# _build; locally, notebooks whose code cells did not change come from the execution cache
# (rm -rf _build for a clean build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"
start=$(date +%s)
.venv/bin/jupyter-book build . -W -n --keep-going
echo "[build] _build/html built in $(( $(date +%s) - start )) s"
