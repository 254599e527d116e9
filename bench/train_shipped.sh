#!/usr/bin/env bash
# Train the models shipped in the package (docs/models.md), as they were trained: two streams
# of `codec build` on BSDS500's 200 training images, one thread each (2-core machine), each
# evaluated on Kodak with real files at the end. A build bounded by train.time_limit (minutes)
# fixes its plan after the first epoch, so a loaded machine gives it fewer steps; the entropy
# family is bounded by steps instead.
# Usage: bench/train_shipped.sh [OUT_DIR] [ONLY...]   (default runs/ship; ONLY: model names)
# CODEC_DATA points at the data (default ../shared/data).
set -euo pipefail
OUT=${1:-runs/ship}
shift || true
ONLY=" ${*:-} "
DATA=${CODEC_DATA:-../shared/data}
common=(--preset cpu --data "$DATA/bsds500/train" --val "$DATA/kodak")
# name | build options. Quality 1..4 of `entropy` = weight 600, 300, 150, 75
# (1/λ of CompressAI's λ 0.0018 … 0.013). The entropy family is fine-tuned from one base build
# (`entropy-base`, weight 150, 9,120 steps at Adam 1e-3 halved on plateaus): each point trains
# 2,700 steps at its own weight from the base's weights (`--init`, Adam 1e-4, no warm-up:
# `entropy-qN-a`), then 2,700 more from those (Adam 5e-5: `entropy-qN-b`), then 2,700 more
# (Adam 2.5e-5: `entropy-qN`, the shipped point).
# (The shipped points started from the base's checkpoint at step 9,120 of a longer plan;
# the finished base here differs from it only in its entropy model's quantiles, which the end
# of a build re-estimates.)
BASE=(--rate entropy --set model.rate.weight=150 --set train.lr=0.001 --set train.epochs=152
      --set train.steps_per_epoch=60)
FINE=(--rate entropy --set train.warmup_epochs=0 --set train.epochs=45 --set train.steps_per_epoch=60)
MODELS=(
  "entropy-base|${BASE[*]}"
)
for point in 1:600 2:300 3:150 4:75; do
  q=${point%%:*} weight=${point##*:}
  MODELS+=("entropy-q$q-a|${FINE[*]} --init $OUT/entropy-base --set train.lr=0.0001 --set model.rate.weight=$weight"
           "entropy-q$q-b|${FINE[*]} --init $OUT/entropy-q$q-a --set train.lr=0.00005 --set model.rate.weight=$weight"
           "entropy-q$q|${FINE[*]} --init $OUT/entropy-q$q-b --set train.lr=0.000025 --set model.rate.weight=$weight")
done
MODELS+=(
  "admm|--rate admm --coder cabac --set train.epochs=1000 --set train.time_limit=48"
  "importance|--rate importance --coder cabac --set train.epochs=1000 --set train.time_limit=30"
)
stream() {  # the models of one stream, in order
  for entry in "${MODELS[@]}"; do
    IFS='|' read -r name opts <<< "$entry"
    case " $* " in *" $name "*) ;; *) continue ;; esac
    if [[ "$ONLY" != "  " && "$ONLY" != *" $name "* ]]; then continue; fi
    # shellcheck disable=SC2086
    codec --threads 1 build $opts "${common[@]}" --out "$OUT/$name"
  done
}
mkdir -p "$OUT"
stream entropy-base > "$OUT.entropy.log" 2>&1   # every point starts from it
stream entropy-q4-a entropy-q4-b entropy-q4 entropy-q2-a entropy-q2-b entropy-q2 >> "$OUT.entropy.log" 2>&1 &
stream entropy-q3-a entropy-q3-b entropy-q3 entropy-q1-a entropy-q1-b entropy-q1 > "$OUT.entropy2.log" 2>&1 &
wait
stream admm importance > "$OUT.other.log" 2>&1
