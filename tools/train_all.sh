#!/usr/bin/env bash
# Train the shipped models and the explored variants in parallel (one GPU, or the CPU: slow).
#   RUNS=runs/shipped EPOCHS=400 COURSE=/path/to/course128 DEVICE=cuda tools/train_all.sh
# Default data: RECIPES_DEFAULT; course-layout data (COURSE set): RECIPES_COURSE, with the
# epochs scaled so both see about the same number of optimizer steps.
set -u
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/shipped}
EPOCHS=${EPOCHS:-400}
DEVICE=${DEVICE:-auto}
COURSE=${COURSE:-}
RECIPES_DEFAULT=${RECIPES_DEFAULT:-"ae1 ae2 resae resae-ssim resae-wide-ssim"}
RECIPES_COURSE=${RECIPES_COURSE:-"ae2 resae resae-ssim"}
PY=${PY:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$RUNS/default" "$RUNS/course"
pids=()
for r in $RECIPES_DEFAULT; do
  $PY tools/train_shipped.py "$r" --out "$RUNS/default/$r" --epochs "$EPOCHS" --device "$DEVICE" \
      --set "${SET:-{\}}" > "$RUNS/default/$r.log" 2>&1 & pids+=($!)
done
if [ -n "$COURSE" ]; then
  # course128: 147 train tiles (5 steps/epoch at batch 32) vs 395 windows (13 steps/epoch)
  CE=$(( EPOCHS * 13 / 5 ))
  for r in $RECIPES_COURSE; do
    $PY tools/train_shipped.py "$r" --out "$RUNS/course/$r" --data-dir "$COURSE" --epochs "$CE" --device "$DEVICE" \
        --set "${SET:-{\}}" > "$RUNS/course/$r.log" 2>&1 & pids+=($!)
  done
fi
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
grep -h "^done\|Error\|error" "$RUNS"/*/*.log
exit $status
