#!/usr/bin/env bash
# Paper-size CAE + ADMM builds at two rates, trained one after the other on one GPU, each for
# MINUTES (train.time_limit), then evaluated on VAL with real files. One at a time: two builds
# sharing the lent H200 ran at 0.96 s/step each, one alone at 0.11 s/step. Used for the issue-2 RD points
# in bench/RESULTS.md; needs a CUDA machine with the project importable.
#
#   bench/gpu_builds.sh TRAIN_DIR VAL_DIR OUT_DIR MINUTES [extra codec build options…]
set -u
train=$1 val=$2 out=$3 minutes=$4
shift 4
mkdir -p "$out"
build() {  # NAME [options…]
  local name=$1
  shift
  "${PYTHON:-python3}" -m codec_lab.cli.app build --rate admm --preset paper --data "$train" --val "$val" \
    --out "$out/$name" --set train.epochs=100 --set train.steps_per_epoch=40 \
    --set train.time_limit="$minutes" --set model.decoder.output_bn=false "$@" \
    >"$out/$name.log" 2>&1
  echo "$name: exit $?"
}
build admm-gpu-l32 --set model.encoder.latent_channels=32 --set model.rate.keep=0.2 "$@"
build admm-gpu-l16 --set model.encoder.latent_channels=16 --set model.rate.keep=0.3 "$@"
