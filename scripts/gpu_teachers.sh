#!/usr/bin/env bash
# Train the teachers on a lent GPU machine in one batch run (see benchmarks/README.md, "Teachers").
#
# Needs, in the working tree: .gpu/ravdess.npz   (python -m train pack --data ravdess --copies 2 --out .gpu/ravdess.npz)
#                             .gpu/whisper-base.fp16.pt (python -c "from train.backbones.speech import save_whisper_fp16;
#                                                        save_whisper_fp16('base', '.gpu/whisper-base.fp16.pt')")
# Usage: bash scripts/gpu_teachers.sh JOBS FOLDS WORKERS BUDGET_S KILL_S [FIT_JSON] [SKIP]
#   JOBS: all | full | comma list of model or model:variant;  FOLDS: e.g. 0,1,2,3,4
# Writes to $OUT (or ./gpu-out): teachers.tgz (per-job records, logits, logs, merged teachers.json), queue.log, env.txt
set -uo pipefail
JOBS=${1:-full}; FOLDS=${2:-0,1,2,3,4}; WORKERS=${3:-6}; BUDGET=${4:-400}; KILL=${5:-560}; FIT=${6:-}; SKIP=${7:-}
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/teachers.XXXX)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
{ date -u; uname -a; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  $PY -c "import torch, transformers, numpy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"; } > "$OUT/env.txt" 2>&1
args=(--pack .gpu/ravdess.npz --backbone-weights .gpu/whisper-base.fp16.pt --jobs "$JOBS" --folds "$FOLDS"
      --workers "$WORKERS" --work "$WORK" --budget "$BUDGET" --kill-after "$KILL")
[ -n "$FIT" ] && args+=(--fit-json "$FIT")
[ -n "$SKIP" ] && args+=(--skip "$SKIP")
$PY -m train queue "${args[@]}" 2>&1 | tee "$OUT/queue.log"
$PY -m train merge --work "$WORK" --results "$WORK/teachers.json" --logits "$WORK/teacher_logits" 2>&1 | tail -1
tar czf "$OUT/teachers.tgz" -C "$WORK" records logits logs teachers.json teacher_logits 2>/dev/null || tar czf "$OUT/teachers.tgz" -C "$WORK" .
ls -la "$OUT"
