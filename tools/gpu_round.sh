#!/usr/bin/env bash
# One GPU lease, one command: train `resae-rd-fast` whole (encoder and light decoder together)
# on the GPU with tools/finetune_gpu.py, several recipes side by side, for the default pool and
# for a course-layout folder.  Each job writes its best weights (by its validation objective) as
# it goes and is packed into $OUT when it ends, so a run stopped at its limit still returns what
# the others finished.
#
#   OUT=/tmp/out DEVICE=cuda tools/gpu_round.sh
#
# Inputs (a folder .gpu/ beside the repo's files, ignored by git; prepare it with
# `tools/gpu_round.sh prepare COURSE_DATA_DIR [DEFAULT_START COURSE_START]`, where the starts are
# resae-rd-fast checkpoints; they travel as float16 copies to fit the lease's 64 MiB, or as they are
# with HALF=0, which an encoder-only job needs: its decoder must stay the shipped one, bit for bit):
#   .gpu/photos/          the default set's source photos (copied from scikit-image's data/)
#   .gpu/val/             a photo in neither the pool nor the test split (matplotlib's Grace Hopper):
#                         the default jobs validate on its tiles, since the val split overlaps the pool
#   .gpu/course128/train/ the course images
#   .gpu/start-default/, .gpu/start-course/   the starting weights
#   .gpu/train-default/, .gpu/train-course/   the resae-rd runs whose TrainConfig the jobs use
# JOBS lists name:data:quant:augment[:part[:lr[:ssim[:seconds[:start]]]]] (data = default|course; part = all,
# all-fbn (the whole model with BatchNorm statistics frozen) or encoder, see labkit.finetune; lr
# overrides LR, ssim the encoder objective's SSIM weight ("-": the default), seconds FT_S, start a
# folder under .gpu/ holding the job's starting weights (default: start-default / start-course), for
# that job; "-" keeps a field's default). Jobs separated by spaces run side by side; "a+b" runs b after a, from a's best weights (an
# encoder job after a whole-model one prices bits with the start's coder prior, --prior-from).
# FT_S is each job's budget in seconds (wall clock, validations included); every value lands in
# the written config.json. START_DEFAULT / START_COURSE override the starting weights' folders.
# EXTRA holds options every job's tools/finetune_gpu.py gets (e.g. "--ema 0.9997 --crop 128").
# The lease carries the tracked tree (about 58 MB since 2026-11-28, most of it resae-rd and three sets
# of resae-rd-fast weights) plus .gpu/, 64 MiB in all: start from tracked weights where you can
# (START_DEFAULT=labkit/weights/resae-rd-fast needs no copy), and a course job's 8.7 MB of images then
# fit only without another start copy.
set -u
FT_S=${FT_S:-470} BATCH=${BATCH:-32} LR=${LR:-3e-4} DEVICE=${DEVICE:-cuda} RULES=${RULES-search}
VALS=${VALS:-10} THREADS=${THREADS:-3} EXTRA=${EXTRA:-}
JOBS=${JOBS:-"d-noise-strong:default:noise:strong d-ste-strong:default:ste:strong d-ste-flip:default:ste:flip c-ste-strong:course:ste:strong c-noise-strong:course:noise:strong"}
WORK=${WORK:-/tmp/gpu_round}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1

if [ "${1:-}" = prepare ]; then
    [ $# -eq 4 ] || [ $# -eq 2 ] || { echo "usage: $0 prepare COURSE_DATA_DIR [DEFAULT_START COURSE_START]" >&2; exit 2; }
    rm -rf .gpu && mkdir -p .gpu/photos .gpu/val .gpu/course128
    skdata=$(.venv/bin/python -c "import labkit.data as d; print(d._skimage_data_dir())")
    for f in $(.venv/bin/python -c "import labkit.data as d; print(' '.join(sum(d.DEFAULT_SOURCES.values(), [])))"); do
        cp "$skdata/$f" .gpu/photos/
    done
    cp "$(.venv/bin/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")" .gpu/val/
    cp -r "$2/train" .gpu/course128/
    [ $# -eq 4 ] && HALF=${HALF:-1} .venv/bin/python - "$3" .gpu/start-default "$4" .gpu/start-course <<'PY'
import os, shutil, sys, torch
from pathlib import Path
half = os.environ["HALF"] != "0"
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    Path(dst).mkdir(parents=True)
    state = torch.load(Path(src) / "model.pt", map_location="cpu", weights_only=True)
    # a tensor whose float16 copy overflows stays float32 (resae-rd-fast's first decoder BatchNorm has
    # running variances above 65504: as inf they would zero 10 channels whenever the model is evaluated)
    small = lambda v: v.half() if half and v.is_floating_point() and bool(torch.isfinite(v.half()).all()) else v
    torch.save({k: small(v) for k, v in state.items()}, Path(dst) / "model.pt")
    for f in ("config.json", "history.json", "coder_prior.npz"):
        if (Path(src) / f).is_file():
            shutil.copy(Path(src) / f, Path(dst) / f)
PY
    mkdir -p .gpu/train-default .gpu/train-course
    cp labkit/weights/resae-rd/config.json .gpu/train-default/
    # without starts (START_DEFAULT / START_COURSE name tracked weights) the course jobs take the
    # default recipe's TrainConfig too
    if [ $# -eq 4 ]; then cp "$(dirname "$4")/resae-rd/config.json" .gpu/train-course/
    else cp labkit/weights/resae-rd/config.json .gpu/train-course/; fi
    grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >>.git/info/exclude
    du -sh .gpu
    exit 0
fi

OUT=${OUT:?set OUT to the folder that receives the packed checkpoints}
export PYTHONUNBUFFERED=1 LABKIT_CACHE_DIR=$WORK/cache OMP_NUM_THREADS=$THREADS
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK"
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import torch, PIL, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'numpy', numpy.__version__, 'PIL', PIL.__version__)"

job() {  # name data quant augment part lr ssim seconds start
    local name=$1 which=$2 q=$3 aug=$4 part=${5:-all} lr=${6:-$LR} ssim=${7:--} secs=${8:-$FT_S} start=$9 d=$WORK/$1 opts
    if [ "$which" = course ]; then opts="--data-dir .gpu/course128"
    else opts="--photos .gpu/photos --val-photos .gpu/val/grace_hopper.jpg"; fi
    [ "$part" = all-fbn ] && { part=all; opts="$opts --freeze-bn"; }
    [ "$ssim" != - ] && opts="$opts --ssim-weight $ssim"
    [ "$part" = encoder ] && [ ! -f "$start/coder_prior.npz" ] && opts="$opts --prior-from $(start_of "$which")"
    echo "[$name] train resae-rd-fast ($part) from $start for $secs s: quant $q, augment $aug, lr $lr, ssim $ssim, rules ${RULES:-trained}, extra '$EXTRA'"
    $PY tools/finetune_gpu.py "$start" "$d/$name" --train-config .gpu/train-$which --seconds "$secs" \
        --part "$part" --batch "$BATCH" --lr "$lr" --final-lr-frac 0.05 --warmup 0.05 --validations "$VALS" --device "$DEVICE" \
        --threads "$THREADS" --quant "$q" --augment "$aug" ${RULES:+--rules "$RULES"} $opts $EXTRA >"$d.log" 2>&1
    echo "[$name] exit $?; $(tail -n 1 "$d.log")"
    cp "$d.log" "$d/$name/train.log" 2>/dev/null
    [ -f "$d/$name/model.pt" ] && tar -C "$d" --exclude=coder_prior.npz -cf "$OUT/$name.tar" "$name"
}

start_of() {  # data -> the first job's starting weights
    if [ "$1" = course ]; then echo "${START_COURSE:-.gpu/start-course}"; else echo "${START_DEFAULT:-.gpu/start-default}"; fi
}

chain() {  # "a+b+...": each job starts from the previous one's best weights
    local spec start= name which q aug part lr ssim secs from
    for spec in $(tr + ' ' <<<"$1"); do
        IFS=: read -r name which q aug part lr ssim secs from <<<"$spec"
        [ "$part" = - ] && part=
        [ "$lr" = - ] && lr=
        [ "$secs" = - ] && secs=
        [ -n "$start" ] || { if [ -n "$from" ] && [ "$from" != - ]; then start=.gpu/$from; else start=$(start_of "$which"); fi; }
        mkdir -p "$WORK/$name"
        job "$name" "$which" "$q" "$aug" "${part:-all}" "${lr:-$LR}" "${ssim:--}" "${secs:-$FT_S}" "$start" || return
        start=$WORK/$name/$name
        [ -f "$start/model.pt" ] || return
    done
}

mkdir -p "$WORK"
$PY - <<'PY'  # cut the default pool once (the jobs share the cache)
import sys; sys.path.insert(0, "tools"); sys.path.insert(0, ".")
from finetune_gpu import use_photos_from
use_photos_from(".gpu/photos")
import labkit.data as d
print("pool", d.training_splits(None, 0)["train"].shape)
PY
for spec in $JOBS; do
    chain "$spec" &
done
wait
for f in "$WORK"/*.log; do echo "== $f"; grep -E "^step|^done|Error|error" "$f" | tail -n 4; done
for f in "$WORK"/*.log; do echo "== $f"; cat "$f"; done >"$OUT/logs.txt"
ls -la "$OUT"
