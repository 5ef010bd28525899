#!/usr/bin/env bash
# Distil the causal streaming student (train/distill_causal.py) on a lent GPU machine in one batch run: one process
# per fold, all on the one GPU, each with a time-budgeted LR schedule (it finishes annealed inside BUDGET_MIN).
#
# Needs, in the working tree (ignored files, carried): .gpu/causal-inputs.npz  .gpu/whisper-base-l4.fp16.npz
#   written on the CPU machine (RAVDESS + the target cache) by:  python -m train.distill_causal --pack-gpu .gpu
#   (34 MiB together; the GPU machine needs python3 with torch + numpy only: no dataset, no transformers, no scipy)
# Usage: bash scripts/gpu_causal.sh FOLDS EPOCHS [more train.distill_causal args, which override the defaults]
#   FOLDS: e.g. 0,1,2,3,4;  EPOCHS: upper bound of the schedule (the time budget usually ends it first)
# Env: OUT (gpu-out), TAG (causal -> runs/causal_f<k>), BUDGET_MIN (5.5: training minutes per fold), KILL_S (480: hard
#      kill per process), CONFIG ('{"d_model": 192}': CausalEncoderConfig overrides; '{}' = the CPU run's d 144),
#      THREADS (2 per process), PYTHON (python3)
# Defaults per fold: batch 64, lr 1e-3, --jitter 25 (window ends moved by up to +-0.25 s, teacher targets computed for
#   the moved window), student-side level/frequency-mask augmentation, targets Whisper-base hidden states 3 and 4,
#   fp16 checkpoint (evaluated as saved).
# Writes to $OUT: <TAG>_f<k>.json per fold (UAR, WA, stream UAR, per-class recall, train seconds, device, ...),
#   <TAG>.tgz (runs/<TAG>_f<k>/{causal.pt,validation.json}, per-fold logs), <TAG>_summary.json (environment, folds,
#   means). Unpack on the CPU machine with: tar xzf <files_at>/<TAG>.tgz   (-> runs/<TAG>_f<k>/)
set -uo pipefail
FOLDS=${1:-0,1,2,3,4}; EPOCHS=${2:-200}; shift 2 2>/dev/null || shift $#
OUT=${OUT:-gpu-out}; TAG=${TAG:-causal}; BUDGET=${BUDGET_MIN:-5.5}; KILL=${KILL_S:-480}
CONFIG=${CONFIG:-'{"d_model": 192}'}; PY=${PYTHON:-python3}; THREADS=${THREADS:-2}
export PYTHONUNBUFFERED=1 EDGESER_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT" runs
for f in .gpu/causal-inputs.npz .gpu/whisper-base-l4.fp16.npz; do
  [ -f "$f" ] || { echo "missing $f: run 'python -m train.distill_causal --pack-gpu .gpu' and carry .gpu" >&2; exit 2; }
done
t0=$(date +%s)
pids=()
for k in ${FOLDS//,/ }; do
  rm -rf "runs/${TAG}_f$k"
  timeout -k 10 "$KILL" "$PY" -m train.distill_causal --inputs .gpu/causal-inputs.npz \
    --teacher-weights .gpu/whisper-base-l4.fp16.npz --device cuda --fold "$k" --epochs "$EPOCHS" --batch 64 \
    --jitter 25 --budget-minutes "$BUDGET" --max-minutes 0 --config "$CONFIG" --save-dtype float16 --log-every 10 \
    --out "runs/${TAG}_f$k" --record "$OUT/${TAG}_f$k.json" "$@" > "runs/${TAG}_f$k.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
echo "folds done in $(( $(date +%s) - t0 )) s (last non-zero exit: $rc)"
"$PY" - "$OUT" "$TAG" "$FOLDS" <<'EOF'
import glob, json, os, subprocess, sys
out, tag, folds = sys.argv[1], sys.argv[2], [int(k) for k in sys.argv[3].split(",")]
recs = {}
for k in folds:
    p = os.path.join(out, f"{tag}_f{k}.json")
    recs[k] = json.load(open(p)) if os.path.isfile(p) else None
done = [r for r in recs.values() if r]
mean = {m: sum(r[m] for r in done) / len(done) for m in ("uar", "wa", "stream_uar", "train_seconds")} if done else {}
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = "?"
import numpy, torch
env = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": numpy.__version__,
       "python": sys.version.split()[0]}
missing = [k for k, r in recs.items() if r is None]
json.dump({"tag": tag, "folds": recs, "missing": missing, "mean_over_done": mean, "n_done": len(done), "env": env},
          open(os.path.join(out, f"{tag}_summary.json"), "w"), indent=1)
print(json.dumps({"mean_over_done": mean, "missing": missing, "env": env}))
for k, r in sorted(recs.items()):
    if r:
        print(f"fold {k}: UAR {r['uar']:.4f} WA {r['wa']:.4f} stream UAR {r['stream_uar']:.4f} steps {r['steps']} "
              f"train {r['train_seconds']} s, {r['device']}")
EOF
files=$(ls -d runs/${TAG}_f*/causal.pt runs/${TAG}_f*/validation.json runs/${TAG}_f*.log 2>/dev/null)
[ -n "$files" ] && tar czf "$OUT/${TAG}.tgz" $files
for k in ${FOLDS//,/ }; do echo "== fold $k"; tail -n 4 "runs/${TAG}_f$k.log"; done
ls -la "$OUT"
