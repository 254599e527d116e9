#!/usr/bin/env bash
# Train the models shipped in the package (docs/models.md), as they were trained: two streams
# of `codec build` on BSDS500's 200 training images, one thread each (2-core machine), each build
# bounded by train.time_limit (minutes) and evaluated on Kodak with real files at the end.
# Usage: bench/train_shipped.sh [OUT_DIR]   (default runs/ship); CODEC_DATA points at the data.
set -euo pipefail
OUT=${1:-runs/ship}
DATA=${CODEC_DATA:-../shared/data}
MIN_ENTROPY=${MIN_ENTROPY:-24}
MIN_OTHER=${MIN_OTHER:-48}
common=(--preset cpu --data "$DATA/bsds500/train" --val "$DATA/kodak"
        --set train.epochs=1000)
entropy_stream() {
  # Quality 1..4 = weight 600, 300, 150, 75 (1/λ of CompressAI's λ 0.0018 … 0.013).
  local q=1
  for w in 600 300 150 75; do
    codec --threads 1 build --rate entropy "${common[@]}" --set model.rate.weight=$w \
      --set train.time_limit=$MIN_ENTROPY --out "$OUT/entropy-q$q"
    q=$((q + 1))
  done
}
other_stream() {
  codec --threads 1 build --rate admm --coder cabac "${common[@]}" \
    --set train.time_limit=$MIN_OTHER --out "$OUT/admm"
  codec --threads 1 build --rate importance --coder cabac "${common[@]}" \
    --set train.time_limit=$MIN_OTHER --out "$OUT/importance"
}
entropy_stream > "$OUT.entropy.log" 2>&1 &
other_stream > "$OUT.other.log" 2>&1 &
wait
