#!/usr/bin/env bash
# What does a lighter network cost?  The speed target (encode + decode <= 2x `resae`) needs one:
# `resae-rd-fast`'s networks do 2.8x resae's multiply-adds.  This trains lighter layouts of the same
# model with the 60-minute CPU recipe (README, "Training"; benchmarks/results/experiments/cpu60m_avx512.json),
# one thread per run so two layouts train side by side on the 2-core machine, then measures them
# through the codec (tiles against the shipped weights, the tables against WebP, coffee + rocket at
# full size) and times them against the shipped `resae` in the same run.
#
#   tools/exp_lite_layout.sh run NAME 'MODEL_CFG_JSON' [STAGE_A_S STAGE_B_S]   # 1800 1740: the recipe's hour
#   tools/exp_lite_layout.sh eval NAME
#   tools/exp_lite_layout.sh speed NAME [NAME ...]      # run alone: it times on one core
#   python tools/exp_lite_layout.py NAME [NAME ...]     # collects benchmarks/results/experiments/lite_layout.json
#
# RUNS (default /tmp/labkit_lite) holds the runs; nothing there is committed. The committed JSON's
# runs were made with RUNS=/work/runs/lite.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=$(realpath -m "${RUNS:-/tmp/labkit_lite}")
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
usage() { echo "usage: $0 run NAME 'MODEL_CFG_JSON' [STAGE_A_S STAGE_B_S] | eval NAME | speed NAME [NAME ...]" >&2; exit 2; }
step=${1:-}
[ $# -ge 2 ] || usage
shift
case "$step" in
  run)
    [ $# -ge 2 ] || usage
    N=$1; CFG=$2; SA=${3:-1800}; SB=${4:-1740}; R=$RUNS/$N
    mkdir -p "$R"
    GH=$($PY -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")
    date -u +%s > "$R/t0"
    $PY tools/train_shipped.py resae-rd --out "$R/a" --epochs 100000 --device cpu --set \
      "{\"model\": \"resae-rd-fast\", \"model_cfg\": $CFG, \"crop\": 64, \"batch_size\": 16, \"time_budget_s\": $SA}" > "$R/a.log" 2>&1
    date -u +%s > "$R/t1"
    $PY tools/finetune_gpu.py "$R/a" "$R/b" --device cpu --threads 1 --seconds "$SB" --validations 15 --batch 16 \
      --lr 3e-4 --rules search --quant ste --augment strong --ema 0.9997 --val-photos "$GH" > "$R/b.log" 2>&1
    date -u +%s > "$R/t2"
    $PY tools/recalibrate_bn.py "$R/b" "$R/c" --part all --batches 64 --crop 128 > "$R/recal.log" 2>&1
    date -u +%s > "$R/t3"
    $PY tools/fit_coder_prior.py "$R/c" > "$R/prior.log" 2>&1
    echo "$CFG" > "$R/model_cfg.json"
    ;;
  eval)
    N=$1; R=$RUNS/$N; W=$R/wd
    [ -f "$R/c/coder_prior.npz" ] || { echo "no finished run in $R: run '$0 run $N ...' first" >&2; exit 2; }
    mkdir -p "$W" && ln -sfn "$R/c" "$W/resae-rd-fast"
    $PY tools/compare_checkpoints.py labkit/weights/resae-rd-fast "$R/c" --out "$R/cmp.json" > "$R/cmp.txt" 2>&1
    $PY benchmarks/bench_rd.py --weights-dir "$W" --curves-from benchmarks/results/bench_rd.json --out "$R/rd.json" > "$R/rd.txt" 2>&1
    $PY benchmarks/bench_fullsize.py --models resae-rd-fast --classic webp --weights-dir "$W" --out "$R/fs.json" > "$R/fs.txt" 2>&1
    ;;
  speed)
    for N in "$@"; do
      [ -d "$RUNS/$N/wd" ] || { echo "no evaluated run in $RUNS/$N: run '$0 eval $N' first" >&2; exit 2; }
    done
    for N in "$@"; do
      $PY benchmarks/bench_codec.py --model resae-rd-fast --vs resae --weights-dir "$RUNS/$N/wd" --repeats 10 > "$RUNS/$N/speed.txt" 2>&1
    done
    $PY benchmarks/bench_codec.py --model resae-rd-fast --vs resae --repeats 10 --out "$RUNS/shipped_speed.json" > "$RUNS/shipped_speed.txt" 2>&1
    ;;
  *) usage ;;
esac
