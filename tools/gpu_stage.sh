#!/usr/bin/env bash
# The next training stage of both bundled models on one bare GPU machine, in one run (issue 23, item 4):
# install, generate the shapes data, train `shapes` (DETR, mixed-scene recipe) and `shapes-deformable`
# (Deformable DETR through transformers) side by side on the one GPU, evaluate both, copy everything back.
#
#   tools/gpu_stage.sh prepare      # HERE, once, with network: wheels the GPU image lacks into .whl/ and the
#                                   # photos into data/photos/ (needs the apt wallpaper packages, README)
#   tools/gpu_stage.sh run          # THERE (device tool: carry [".whl", "data/photos"], OUT set by the tool)
#
# Knobs (environment): SHAPES_MINUTES, SD_MINUTES (training time of each, default 4), SHAPES_FROM (default the
# bundled detr_core/assets/shapes.pth), SD_FROM (default the shapes-deformable configuration from scratch; a
# folder such as an earlier stage's best/ continues it), SD_LR (default 2e-4), EXTRA_FLAGS (added to both
# training commands, e.g. issue 19's precision flags), N_TRAIN (16000), N_VAL (400), N_TEST (500), N_CROPS (300),
# WORKERS (6 per run),
# DEVICE (cuda; cpu for a dry run), OUT (default runs/gpu-stage). A CPU dry run of the whole script:
#   DEVICE=cpu N_TRAIN=40 N_VAL=8 N_TEST=8 N_CROPS=4 SHAPES_MINUTES=0.3 SD_MINUTES=0.3 WORKERS=0 \
#   BATCH=4 OUT=/tmp/gpudry tools/gpu_stage.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
PY=${PY:-python3}

if [ "$MODE" = prepare ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >> "$exclude"
  # The GPU image (Python 3.12) has torch, scipy, timm, skimage, sklearn, but no pycocotools, and transformers
  # 5.17 with huggingface-hub 1.x: carry the versions this project is tested with, and what they need beyond it
  $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
      pycocotools==2.0.11 transformers==5.25.0 huggingface-hub==2.4.0 kernels==0.19.1 httpx2==2.17.0 \
      httpcore2==2.17.0 truststore==0.10.5 tomlkit==0.14.0 hf-xet==1.8.0 click==8.5.1 idna==3.21 anyio==4.16.0
  [ -d data/photos/heldout ] || $PY -m train.photos --out data/photos
  du -sh .whl data/photos
  exit 0
fi
[ "$MODE" = run ] || { echo "usage: tools/gpu_stage.sh prepare|run" >&2; exit 2; }

OUT=${OUT:-runs/gpu-stage}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; WORKERS=${WORKERS:-6}; BATCH=${BATCH:-32}
N_TRAIN=${N_TRAIN:-16000}; N_VAL=${N_VAL:-400}; N_TEST=${N_TEST:-500}; N_CROPS=${N_CROPS:-300}
SHAPES_MINUTES=${SHAPES_MINUTES:-4}; SD_MINUTES=${SD_MINUTES:-4}
SHAPES_FROM=${SHAPES_FROM:-detr_core/assets/shapes.pth}; SD_FROM=${SD_FROM:-shapes-deformable}; SD_LR=${SD_LR:-2e-4}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
W=/tmp/stage; rm -rf $W; mkdir -p $W
exec > >(tee "$OUT/console.log") 2>&1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
t0=$(date +%s); lap() { echo "== $1: $(( $(date +%s) - t0 )) s"; }

# 1. install: the carried wheels, then this package's own code from the working tree (no dependencies fetched)
date; nvidia-smi -L 2>/dev/null || true
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
$PY -c "import torch, transformers, pycocotools; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
[ -d data/photos/heldout ] || { echo "data/photos/ is missing: run 'tools/gpu_stage.sh prepare' here and carry data/photos" >&2; exit 2; }
lap install

# 2. data: the mixed-scene sets of stages 5-7 (README) and the three measurement sets
$PY -m train.synthetic --out $W/mix-train --images "$N_TRAIN" --seed 21 --backgrounds mixed --photos data/photos/train \
    --empty-fraction 0.3 --distractors 0.6 --workers 16
$PY -m train.synthetic --out $W/mix-val --images "$N_VAL" --seed 22 --backgrounds mixed --photos data/photos/train \
    --empty-fraction 0.3 --distractors 0.6 --workers 16
$PY -m train.synthetic --out $W/shapes-test --images "$N_TEST" --seed 7 --workers 16
$PY -m train.synthetic --out $W/shapes-photo-test --images "$N_TEST" --seed 8 --backgrounds photos \
    --photos data/photos/heldout --workers 16
$PY -m train.synthetic --out $W/negatives-crops --images "$N_CROPS" --seed 9 --backgrounds photos \
    --photos data/photos/heldout --empty-fraction 1 --workers 16
lap data

# 3. both stages at once on the one GPU (each is far from filling it)
common="--data $W/mix-train --val-data $W/mix-val --epochs 1000 --lr-drop 1000 --batch-size $BATCH --device $DEVICE \
  --workers $WORKERS --no-progress $EXTRA_FLAGS"
$PY -m train $common --config shapes --query-groups 6 --output $W/shapes --init-from "$SHAPES_FROM" \
    --lr 5e-5 --lr-backbone 2.5e-5 --warmup-steps 100 --seed 50 --max-minutes "$SHAPES_MINUTES" \
    > "$OUT/shapes-train.log" 2>&1 &
shapes_pid=$!
$PY -m train $common --model "$SD_FROM" --output $W/sd --lr "$SD_LR" --lr-backbone 2e-5 --warmup-steps 200 \
    --seed 61 --max-minutes "$SD_MINUTES" > "$OUT/sd-train.log" 2>&1 &
sd_pid=$!
status=0
wait $shapes_pid || { echo "shapes training failed"; status=1; }
wait $sd_pid || { echo "shapes-deformable training failed"; status=1; }
tail -n 3 "$OUT/shapes-train.log" "$OUT/sd-train.log"
lap train

# 4. the measurements of the README, on both models' best checkpoints
evaluate() {  # name model
  $PY -m train.evaluate --model "$2" --data $W/shapes-test --negatives data/photos/heldout --attention \
      --device "$DEVICE" --json-out $W/eval/$1-plain.json
  $PY -m train.evaluate --model "$2" --data $W/shapes-photo-test --negatives $W/negatives-crops/images \
      --device "$DEVICE" --json-out $W/eval/$1-photo.json
}
mkdir -p $W/eval
[ -f $W/shapes/best.pth ] && evaluate shapes $W/shapes/best.pth
[ -d $W/sd/best ] && evaluate shapes-deformable $W/sd/best
lap evaluate

# 5. back to this machine: model-only files (no optimiser state), in parts under the 16 MiB a file, and the logs
mkdir -p $W/models/shapes-deformable
[ -f $W/shapes/best.pth ] && $PY -c "import detr_core, sys; detr_core.save_model(detr_core.load_model(sys.argv[1]), sys.argv[2])" \
    $W/shapes/best.pth $W/models/shapes.pth
[ -d $W/sd/best ] && cp $W/sd/best/config.json $W/sd/best/preprocessor_config.json $W/sd/best/model.safetensors \
    $W/models/shapes-deformable/
tar -C $W -cf $W/models.tar models
split -b 15m -d $W/models.tar "$OUT/models.tar.part"
cp $W/shapes/log.jsonl $W/eval/shapes-log.jsonl 2>/dev/null || true
cp $W/sd/log.jsonl $W/eval/shapes-deformable-log.jsonl 2>/dev/null || true
tar -C $W -czf "$OUT/logs.tar.gz" eval
ls -l "$OUT"
echo "reassemble: cat models.tar.part* | tar -x   (models/shapes.pth, models/shapes-deformable/)"
lap done
exit $status
