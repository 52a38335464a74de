#!/usr/bin/env bash
# Train the embedded flow model (python -m segakit.train.flow) on one CUDA GPU within a wall-clock budget, in
# resumable chunks: call it again with the same RUNS and it goes on where the last call stopped. The recipe
# checkpoints before its time limit, so no chunk's work is lost with the machine.
#
#   scripts/train-flow-gpu.sh RUNS MINUTES        e.g. scripts/train-flow-gpu.sh "$OUT/runs" 8   (again and again)
#
# 1. RUNS/{tokenizer,clip/text_encoder,clip/final,autoencoder/final} are copied from the shipped model
#    (python -m segakit.train.shipped): the flow model shares the U-Net's text encoder and autoencoder.
# 2. The latent cache: N world samples (default 100,000, the CPU run's), rendered by WORKERS processes (the cache
#    skips the shards already written; its shards hold the same world samples as the CPU run's).
# 3. The flow transformer in RUNS/flow, stopping 45 s before the budget ends (run again to resume).
# 4. Its EMA exported as a stock StableDiffusion3Pipeline folder, RUNS/flow/export (a few seconds).
# Environment: PYTHON (python3), DEVICE (cuda), N, WORKERS (14), BATCH (512), LR (5e-4), STEPS (12000),
# FLOW_ARGS (extra flags for the recipe).
set -euo pipefail
RUNS=${1:?usage: train-flow-gpu.sh RUNS MINUTES}
MINUTES=${2:?usage: train-flow-gpu.sh RUNS MINUTES}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
N=${N:-100000}
WORKERS=${WORKERS:-14}
BATCH=${BATCH:-512}
LR=${LR:-5e-4}
STEPS=${STEPS:-12000}
FLOW_ARGS=${FLOW_ARGS:-}
START=$(date +%s)
DEADLINE=$((START + MINUTES * 60))

export SEGAKIT_RUNS=$RUNS HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
$PYTHON -m segakit.train.shipped

echo "== cache: $N samples, $WORKERS render workers ($(date -u +%T))"
$PYTHON -m segakit.train.cache --device "$DEVICE" --n "$N" --shard_size 5000 --batch_size 500 --workers "$WORKERS"

MINUTES_LEFT=$($PYTHON -c "print(max(0.1, ($DEADLINE - $(date +%s) - 45) / 60))")
echo "== flow: up to step $STEPS, at most $MINUTES_LEFT minutes ($(date -u +%T))"
# shellcheck disable=SC2086
$PYTHON -m segakit.train.flow --device "$DEVICE" --run "$RUNS/flow" --batch_size "$BATCH" --lr "$LR" --amp true \
  --max_steps "$STEPS" --max_minutes "$MINUTES_LEFT" --log_every 100 --ckpt_every 1000 --sample_every 2000 $FLOW_ARGS
$PYTHON -m segakit.train.flow --run "$RUNS/flow" --export "$RUNS/flow/export"
echo "== done ($(date -u +%T)), $(( $(date +%s) - START )) s"
