#!/usr/bin/env bash
# Retrain the embedded model's text encoder (v2, issue 15) and U-Net on one CUDA GPU within a wall-clock
# budget, in resumable chunks: call it again with the same RUNS and it goes on where the last call stopped.
# Every stage checkpoints before the deadline, so no chunk's work is lost with the machine.
#
#   scripts/train-unet-gpu.sh RUNS MINUTES        e.g. scripts/train-unet-gpu.sh runs/gpu 8   (again and again)
#
# 1. RUNS/{tokenizer,clip/text_encoder,clip/final,autoencoder/final} are copied from the shipped model
#    (python -m segakit.train.shipped).
# 2. The text encoder v2 (python -m segakit.train.text_encoder: hard negatives, attribute heads), continued
#    from the shipped CLIP, TE_STEPS steps (default 1700); a call whose budget ends first stops there.
# 3. The latent cache: N world samples (default 300,000), rendered by WORKERS processes (the cache skips
#    the shards already written).
# 4. A 30-second speed probe of the U-Net, then the real run on the new text encoder with captions drawn
#    afresh every step, a cosine learning rate sized to end when the first budget does (it stops at the
#    deadline anyway; run again to resume). The U-Net stage refuses a text encoder that fails the gate.
# Then assemble on any machine: SEGAKIT_RUNS=RUNS python -m segakit.train.embedded
# Environment: PYTHON (python3), DEVICE (cuda), N, WORKERS (14), BATCH (512), LR (5e-4), TE_STEPS (1700),
# INIT (U-Net start: "" = from scratch, "embedded" = the shipped U-Net), UNET_ARGS (extra flags).
set -euo pipefail
RUNS=${1:?usage: train-unet-gpu.sh RUNS MINUTES}
MINUTES=${2:?usage: train-unet-gpu.sh RUNS MINUTES}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
N=${N:-300000}
WORKERS=${WORKERS:-14}
BATCH=${BATCH:-512}
LR=${LR:-5e-4}
UNET_ARGS=${UNET_ARGS:-}
TE_STEPS=${TE_STEPS:-1700}
INIT=${INIT:-}
START=$(date +%s)
DEADLINE=$((START + MINUTES * 60))

export SEGAKIT_RUNS=$RUNS HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
$PYTHON -m segakit.train.shipped

minutes_left() { $PYTHON -c "print(max(0.1, ($DEADLINE - $(date +%s) - ${1:-30}) / 60))"; }

echo "== text encoder v2: $TE_STEPS steps ($(date -u +%T))"
$PYTHON -m segakit.train.text_encoder --device "$DEVICE" --run "$RUNS/text_encoder" --max_steps "$TE_STEPS" \
  --tokenizer "$RUNS/tokenizer" --max_minutes "$(minutes_left 30)"
if ! $PYTHON -c "import sys; from pathlib import Path; from segakit.train.config import text_encoder_done; sys.exit(0 if text_encoder_done(Path(sys.argv[1])) else 1)" "$RUNS"; then
  echo "== text encoder not finished within this call's budget; run again to resume ($(date -u +%T))"
  exit 0
fi

echo "== cache: $N samples, $WORKERS render workers ($(date -u +%T))"
$PYTHON -m segakit.train.cache --device "$DEVICE" --n "$N" --shard_size 10000 --batch_size 500 --workers "$WORKERS"

COMMON=(--device "$DEVICE" --batch_size "$BATCH" --lr "$LR" --amp true --warmup 500 --log_every 100 --fresh_captions true)
if [ -n "$INIT" ]; then COMMON+=(--init "$INIT"); fi
if [ ! -e "$RUNS/unet/ckpt/state.json" ]; then
  echo "== speed probe ($(date -u +%T))"
  rm -rf "$RUNS/probe"
  # shellcheck disable=SC2086
  $PYTHON -m segakit.train.unet "${COMMON[@]}" --run "$RUNS/probe" --max_minutes 0.5 --ckpt_every 1000000 --sample_every 1000000 $UNET_ARGS
  RATE=$($PYTHON -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(rows[-2 if len(rows) > 1 else -1]['samples_per_s'])" "$RUNS/probe/metrics.jsonl")
  LEFT=$((DEADLINE - $(date +%s) - 45))  # seconds left for training, less the final checkpoint and samples
  STEPS=$($PYTHON -c "import sys; print(max(100, int(float(sys.argv[1]) * int(sys.argv[2]) / int(sys.argv[3]) * 0.97)))" "$RATE" "$LEFT" "$BATCH")
  echo "probe: $RATE samples/s -> $STEPS steps of $BATCH in ${LEFT}s"
  echo "$STEPS" > "$RUNS/max_steps"
fi
STEPS=$(cat "$RUNS/max_steps")
MINUTES_LEFT=$(minutes_left 30)
echo "== unet: $STEPS steps, at most $MINUTES_LEFT minutes ($(date -u +%T))"
# shellcheck disable=SC2086
$PYTHON -m segakit.train.unet "${COMMON[@]}" --schedule cosine --max_steps "$STEPS" --max_minutes "$MINUTES_LEFT" \
  --ckpt_every 2500 --sample_every 5000 $UNET_ARGS
echo "== done ($(date -u +%T)), $(( $(date +%s) - START )) s"
