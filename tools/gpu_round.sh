#!/usr/bin/env bash
# One GPU lease, one command: continue `resae-rd` from its weights on the GPU
# (tools/finetune_gpu.py), then fit `resae-rd-fast`'s light decoder to the result
# (tools/fit_decoder.py), for the default pool and for a course-layout folder side by side.
# Each finished checkpoint is packed into $OUT at once, so a run stopped at its limit still
# returns what it finished.
#
#   OUT=/tmp/out DEVICE=cuda tools/gpu_round.sh
#
# Inputs (a folder .gpu/ beside the repo's files, ignored by git; prepare it with
# `tools/gpu_round.sh prepare COURSE_DATA_DIR COURSE_RESAE_RD_DIR`):
#   .gpu/photos/          the default set's source photos (copied from scikit-image's data/)
#   .gpu/course128/train/ the course images       .gpu/course-resae-rd/  their resae-rd weights
# Budgets (seconds, wall clock) and batches are the variables below; every value is recorded in
# the written config.json files.  FIT_RULES is the decoder fit's --rules (default: the scale
# search's rules per sample, which measured 0.7 / 1.0 points better than the trained rule on the
# CPU, NOTES.md; empty: the trained rule); FIT_THREADS its torch threads (two jobs share the cores).
set -u
FT_S=${FT_S:-290} FIT_S=${FIT_S:-150} FIT2_S=${FIT2_S:-60}
BATCH=${BATCH:-32} LR=${LR:-4e-4} FBATCH=${FBATCH:-32} DEVICE=${DEVICE:-cuda}
FIT_RULES=${FIT_RULES-search} FIT_THREADS=${FIT_THREADS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
WORK=${WORK:-/tmp/gpu_round}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1

if [ "${1:-}" = prepare ]; then
    [ $# -eq 3 ] || { echo "usage: $0 prepare COURSE_DATA_DIR COURSE_RESAE_RD_DIR" >&2; exit 2; }
    mkdir -p .gpu/photos .gpu/course128 .gpu/course-resae-rd
    skdata=$(.venv/bin/python -c "import labkit.data as d; print(d._skimage_data_dir())")
    for f in $(.venv/bin/python -c "import labkit.data as d; print(' '.join(sum(d.DEFAULT_SOURCES.values(), [])))"); do
        cp "$skdata/$f" .gpu/photos/
    done
    cp -r "$2/train" .gpu/course128/
    cp "$3"/model.pt "$3"/config.json "$3"/history.json .gpu/course-resae-rd/
    grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >>.git/info/exclude
    du -sh .gpu
    exit 0
fi

OUT=${OUT:?set OUT to the folder that receives the packed checkpoints}
export PYTHONUNBUFFERED=1 LABKIT_CACHE_DIR=$WORK/cache
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK"
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import torch, PIL, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'numpy', numpy.__version__, 'PIL', PIL.__version__)"

job() {  # name source_dir data_dir_option...
    local name=$1 src=$2; shift 2
    local d=$WORK/$name
    mkdir -p "$d"
    echo "[$name] finetune resae-rd from $src for $FT_S s"
    $PY tools/finetune_gpu.py "$src" "$d/resae-rd" --seconds "$FT_S" --batch "$BATCH" --lr "$LR" \
        --final-lr-frac 0.05 --warmup 0.03 --validations 12 --device "$DEVICE" "$@" >"$d/resae-rd.log" 2>&1
    echo "[$name] finetune exit $?; $(tail -n 1 "$d/resae-rd.log")"
    cp "$d/resae-rd.log" "$d/resae-rd/train.log" 2>/dev/null
    [ -f "$d/resae-rd/model.pt" ] || { echo "[$name] no resae-rd weights: stop"; return 1; }
    tar -C "$d" -cf "$OUT/$name-resae-rd.tar" resae-rd
    echo "[$name] fit resae-rd-fast for $FIT_S + $FIT2_S s"
    $PY tools/fit_decoder.py "$d/resae-rd" "$d/resae-rd-fast" --budget-s "$FIT_S" --stage2-s "$FIT2_S" \
        --batch "$FBATCH" --device "$DEVICE" --threads "$FIT_THREADS" ${FIT_RULES:+--rules "$FIT_RULES"} \
        "$@" >"$d/fast.log" 2>&1
    echo "[$name] fit exit $?; $(tail -n 1 "$d/fast.log")"
    cp "$d/fast.log" "$d/resae-rd-fast/train.log" 2>/dev/null
    rm -f "$d/resae-rd-fast/last.pt"
    tar -C "$d" -cf "$OUT/$name-resae-rd-fast.tar" resae-rd-fast
}

job default labkit/weights/resae-rd --photos .gpu/photos &
job course .gpu/course-resae-rd --data-dir .gpu/course128 &
wait
for f in "$WORK"/*/*.log; do echo "== $f"; grep -E "^step|^done|objective|val psnr|Error|error" "$f" | tail -n 12; done
ls -la "$OUT"
