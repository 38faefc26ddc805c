#!/usr/bin/env bash
# Does learning the degraded condition cost the ordinary classes quality? Monoliths on Fashion-MNIST, trained with and
# without --degraded-condition for the same steps and seeds, each scored by `islands eval` (FID and KID of class-
# balanced samples against the test split, in the project's classifier features). Only the public CLI is used.
# Rerunning resumes: finished trainings and evaluations are kept.
#   usage: docs/experiments/degraded-condition/run.sh [OUT]   (env: ISLANDS, STEPS, SEEDS, COUNT, CHANNELS)
set -euo pipefail
islands=${ISLANDS:-./islands}
out=${1:-runs/degraded-condition}
steps=${STEPS:-600}
seeds=${SEEDS:-3}
count=${COUNT:-1000}
channels=${CHANNELS:-16}
mkdir -p "$out"
[ -f "$out/data/manifest.json" ] || "$islands" data import --source fashion-mnist --out "$out/data"
for seed in $(seq 0 $((seeds - 1))); do
  for variant in plain degraded; do
    run="$out/$variant-$seed"
    flag=()
    [ "$variant" = degraded ] && flag=(--degraded-condition)
    if [ ! -f "$run.train.json" ]; then
      "$islands" train expert --data "$out/data" --steps "$steps" --batch 64 --seed "$seed" --base-channels "$channels" \
        --checkpoint-every $((steps / 4)) "${flag[@]}" --out "$run" --json > "$run.train.tmp" && mv "$run.train.tmp" "$run.train.json"
    fi
    if [ ! -f "$run.eval.json" ]; then
      "$islands" eval --model "$run" --count "$count" --seed "$seed" --json > "$run.eval.tmp" && mv "$run.eval.tmp" "$run.eval.json"
    fi
  done
done

# mean and sample sd of FID per variant; whether the difference of the means lies within the plain runs' seed-to-seed sd
for variant in plain degraded; do
  jq -s --arg v "$variant" '{variant: $v, fid: map(.fid), kid: map(.kid)}' "$out/$variant"-*.eval.json
done | jq -s '
  def mean: add / length;
  def sd: (mean) as $m | (map((. - $m) * (. - $m)) | add / (length - 1)) | sqrt;
  (map({(.variant): {fid: .fid, fidMean: (.fid | mean), fidSd: (.fid | sd), kidMean: (.kid | mean)}}) | add) as $r
  | $r + {difference: ($r.degraded.fidMean - $r.plain.fidMean),
          withinPlainSeedSpread: ((($r.degraded.fidMean - $r.plain.fidMean) | fabs) <= $r.plain.fidSd)}' \
  > "$out/summary.json"
cat "$out/summary.json"
