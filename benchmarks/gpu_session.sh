#!/usr/bin/env bash
# The GPU figures of issue #17 in one script (one H100/H200; ~12 min with the SD1.5-sized random model).
# Each step prints one JSON object to $OUT/<step>.json (default bench-out/); a step that fails or times out
# does not stop the next. Record the results in docs/benchmarks.md with the card's name.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
run() {  # name, seconds, arguments…
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$PY" benchmarks/model_gpu.py "$@" > "$OUT/$name.log" 2>&1
  echo "exit $?"
  grep '^{' "$OUT/$name.log" | tail -1 > "$OUT/$name.json" || true
  tail -c 2000 "$OUT/$name.log"
}
# 1. fast ≥ 60 frames/s and fast/teacher ≥ 10×: every mode with the tiny decoder and compiled denoising nets
run generation_tiny_compiled 420 --sections generation --decoders tiny --compile --clips 2
# 2. distillation step (8 and 2 solver steps, CFG-distilled and not), its peak memory and largest batch on 80 GB;
#    teacher training step; the parts of one fast clip
run train_distill_parts 420 --sections train,distill,parts --memory-cap-gib 80 --distill-batch-limit 8
# 3. loader windows/s with 0/4/8/12 workers vs the step rates (uses the step times of step 2 only when run together)
run loader 300 --sections loader --loader-workers 0,4,8,12 --step-times-from "$OUT/train_distill_parts.json"
# 4. the same comparison eagerly with the SD VAE decoder (no compilation)
run generation_sd_vae 420 --sections generation --decoders sd_vae --clips 2
