#!/usr/bin/env bash
# Train several recipes of tools/train_shipped.py at once on one GPU (each its own process).
#   tools/train_parallel.sh OUT_ROOT SECONDS "name recipe data_dir_or_- json_overrides" ...
# Every run gets the same wall-clock budget (time_budget_s); its LR schedule follows the clock.
set -u
out_root=$1; seconds=$2; shift 2
mkdir -p "$out_root"
pids=()
for job in "$@"; do
  read -r name recipe data json <<<"$job"
  dd=(); [ "$data" != "-" ] && dd=(--data-dir "$data")
  extra=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(time_budget_s=float(sys.argv[2]), checkpoint_every_s=60); print(json.dumps(d))" "${json:-{\}}" "$seconds")
  python3 tools/train_shipped.py "$recipe" --out "$out_root/$name" "${dd[@]}" --epochs 100000 --device "${DEVICE:-cuda}" \
      --set "$extra" >"$out_root/$name.log" 2>&1 &
  pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
