#!/usr/bin/env bash
# The whole CUDA training measurement of issue 22 in one run on a bare GPU machine (at most 8.5 minutes: every
# part has its own time limit): install the carried wheels, generate the data, time the step before and after, profile it, and
# run `python -m train` itself for 200 steps. Prints the tables; copies the
# logs to $OUT when set (the device tool brings them back).
#
#   Here, once (pycocotools is the one package the GPU image lacks; Python 3.12 there):
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pycocotools
#   Then, through the device tool: command "bash benchmarks/gpu_train.sh", carry [".whl"], timeout_s 540.
#   On any CUDA machine with the package installed: bash benchmarks/gpu_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
LOGS=${OUT:-/tmp/gpu-train-logs}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
CPUS=$(nproc)
WORKERS=$(( CPUS > 8 ? CPUS / 2 : CPUS ))  # two variants take turns, each with its own workers
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())" || exit 1
date
# 4000 training images (about 10 s with 16 processes); the benchmark cycles through them epoch after epoch
$PY -m train.synthetic --out /tmp/shapes-train --images 4000 --seed 1 --workers "$CPUS" || exit 1
date

B="$PY -m benchmarks.train_throughput --device cuda --data /tmp/shapes-train --workers $WORKERS"
step() { echo; echo "## $1"; shift; timeout "$@" 2>&1 | tee -a "$LOGS/gpu_train.log"; }

# 1. the mixed recipe's step (Group DETR, 6 query groups, batch 32: how the bundled model's stages 5-7 ran, 62-69
#    images/s then): before vs after, 200 timed steps each, taking turns
step "mixed recipe: before vs after (batch 32, 6 groups), 200 steps" 200 \
  $B --variants before after --query-groups 6 --batch-size 32 --steps 200 --warmup 10
# 2. the plain shapes recipe at batch 32: the exact float32 path and the default precision
step "shapes recipe: float32 vs after (batch 32), 60 steps" 60 \
  $B --variants float32 after --batch-size 32 --steps 60 --warmup 5
# 3. where the time goes now, and before
step "profile: after (mixed recipe)" 45 $B --profile after --query-groups 6 --batch-size 32 --steps 20 --warmup 5
step "profile: before (mixed recipe)" 45 $B --profile before --query-groups 6 --batch-size 32 --steps 10 --warmup 3
# 4. python -m train end to end (its own loader, logging, checkpoint), 200 steps in the default precision
#    (float32 is timed in 2; a float32 run of the command: add "float32" to the loop):
#    images/s per step from log.jsonl (the first 20 steps left out: start-up and warm-up)
for precision in default; do
  flag=$([ "$precision" = default ] || echo "--precision $precision")
  rm -rf /tmp/run-$precision
  step "python -m train, mixed recipe, $precision, 200 steps" 90 \
    $PY -m train --data /tmp/shapes-train --output /tmp/run-$precision --config shapes --query-groups 6 \
      --batch-size 32 --workers $(( CPUS - 2 )) --device cuda --max-steps 200 --no-progress $flag
  $PY - "$precision" <<'EOF' | tee -a "$LOGS/gpu_train.log"
import json, statistics, sys
steps = [e for e in map(json.loads, open(f"/tmp/run-{sys.argv[1]}/log.jsonl")) if e.get("kind") == "step"][20:]
rates = [e["images_per_s"] for e in steps]
print(f"python -m train ({sys.argv[1]}): median {statistics.median(rates):.0f} images/s over steps 21-{len(steps) + 20}, "
      f"total {32 * len(steps) / sum(e['seconds'] for e in steps):.0f} images/s")
EOF
  cp /tmp/run-$precision/log.jsonl "$LOGS/train-$precision.jsonl" 2>/dev/null
done
# 5. torch.compile, last because it may take minutes to compile (dynamic shapes); stopped at 100 s
step "compiled vs after (mixed recipe), 60 steps" 100 \
  $B --variants after compiled --query-groups 6 --batch-size 32 --steps 60 --warmup 10
date
