#!/usr/bin/env bash
# One command for a fresh machine: system packages, a venv with everything (runtime, mic, ExecuTorch, training,
# tests), then the main job: the bundled default model on the shipped sample clips. Re-running it is safe and fast.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# System libraries: PortAudio (microphone), libsndfile (files), espeak-ng (generated test speech), chromium (the
# dashboard's end-to-end test drives it headless).
need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
ldconfig -p 2>/dev/null | grep -q libsndfile.so.1 || need+=(libsndfile1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check -q"
# torch first and pinned (a bare `torch` would pull a multi-GB CUDA build). executorch 1.5.1 goes last and --no-deps:
# it declares ~20 packages (coremltools, pandas, scikit-learn, hydra-core, ...) that loading, running and exporting a
# .pte do not use; the small ones it does use come with the executorch extra. --no-warn-conflicts: on a re-run pip
# would otherwise print "ERROR: pip's dependency resolver ..." for those deliberately absent packages; the filtered
# `pip check` below still reports any other broken requirement.
$PIP install torch==2.13.0
$PIP install --no-warn-conflicts -e ".[executorch,mic,train,text,asr,apps,tts,dev]"
$PIP install --no-deps executorch==1.5.1
UNUSED="coremltools|expecttest|hydra-core|kgb|omegaconf|pandas|parameterized|py-cpuinfo|pytorch-tokenizers|requests|scikit-learn"
broken=$(.venv/bin/pip check 2>&1 | grep -v -E "^executorch 1\.5\.1 requires ($UNUSED), which is not installed\.$" \
         | grep -v "^No broken requirements found" || true)
[ -z "$broken" ] || printf 'warning: pip check reports broken requirements:\n%s\n' "$broken"

# The main job: the bundled default model (ONNX Runtime, no torch on this path) on real emotional speech shipped in
# samples/ (4 RAVDESS clips by actors held out from its training; samples/README.md), one table row per clip.
echo "== python -m apps.samples (bundled default model on real emotional speech) =="
.venv/bin/python -m apps.samples
echo "set-up done. Tests: .venv/bin/python -m pytest -q"
