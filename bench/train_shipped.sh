#!/usr/bin/env bash
# Train the models shipped in the package (docs/models.md), as they were trained: two streams
# of `codec build` on BSDS500's 200 training images, one thread each (2-core machine), each build
# bounded by train.time_limit (minutes; the plan is fixed after the first epoch, so a loaded
# machine runs over it) and evaluated on Kodak with real files at the end.
# Usage: bench/train_shipped.sh [OUT_DIR] [ONLY...]   (default runs/ship; ONLY: model names)
# CODEC_DATA points at the data (default ../shared/data).
set -euo pipefail
OUT=${1:-runs/ship}
shift || true
ONLY=" ${*:-} "
DATA=${CODEC_DATA:-../shared/data}
common=(--preset cpu --data "$DATA/bsds500/train" --val "$DATA/kodak" --set train.epochs=1000)
# name | minutes | build options. Quality 1..4 of `entropy` = weight 600, 300, 150, 75
# (1/λ of CompressAI's λ 0.0018 … 0.013).
MODELS=(
  "entropy-q1|24|--rate entropy --set model.rate.weight=600"
  "entropy-q2|20|--rate entropy --set model.rate.weight=300"
  "entropy-q3|20|--rate entropy --set model.rate.weight=150"
  "entropy-q4|20|--rate entropy --set model.rate.weight=75"
  "admm|48|--rate admm --coder cabac"
  "importance|35|--rate importance --coder cabac"
)
build() {  # name minutes options...
  local name=$1 minutes=$2
  shift 2
  codec --threads 1 build "$@" "${common[@]}" --set train.time_limit="$minutes" --out "$OUT/$name"
}
stream() {  # the models of one stream, in order
  for entry in "${MODELS[@]}"; do
    IFS='|' read -r name minutes opts <<< "$entry"
    case " $* " in *" $name "*) ;; *) continue ;; esac
    if [[ "$ONLY" != "  " && "$ONLY" != *" $name "* ]]; then continue; fi
    # shellcheck disable=SC2086
    build "$name" "$minutes" $opts
  done
}
mkdir -p "$OUT"
stream entropy-q1 entropy-q2 entropy-q3 entropy-q4 > "$OUT.entropy.log" 2>&1 &
stream admm importance > "$OUT.other.log" 2>&1 &
wait
