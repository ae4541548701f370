#!/usr/bin/env bash
# The downstream-segmentation experiment of the Lesion-DDPM paper on any store (docs/downstream.md):
# for each generator run, synthesise one FLAIR per training mask (lddpm sample --split train) and
# store them on the real masks (lddpm preprocess --samples); train the `seg` model on (a) the real
# training scans, (b) each synthetic set, (c) real + the --mix generators' synthetic sets, all with
# the same options; score every segmenter on the real test split (lddpm evaluate segmentation);
# write one Dice table, OUT/downstream.md and OUT/downstream.json. Reruns reuse every finished stage
# (OUT/.done-<stage>; delete one to redo that stage). Each step runs plain, or under mpirun with
# --ranks N (ranks split sampling, store building, training batches and scoring), or under any
# launcher prefix given with --launcher (e.g. --launcher "srun --mpi=pmix" inside an allocation).
#
#   bash launch/downstream.sh --store STORE --out DIR --generator lesion-ddpm=RUN_A \
#       [--generator pix2pix=RUN_B ...] [--mix NAME[,NAME...] | --mix all] [--ranks N | --launcher CMD]
#       [--seg-config FILE] [--sample-steps K] [--eta E] [--seed S] [--device cpu|cuda] [--lddpm BINARY]
#       [-- extra lddpm train options for seg]
#
# Exit codes: 0 done, 1 a step failed (its message names it), 2 usage error naming the option,
# 75 a training step stopped on a signal after checkpointing: rerun the same command to resume.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() { echo "downstream.sh: $*" >&2; echo "usage: bash launch/downstream.sh --store STORE --out DIR --generator NAME=RUN [...] (see the script's header)" >&2; exit 2; }
store="" out="" mix="" ranks=1 launcher="" seg_config="$root/launch/configs/seg.ini" sample_steps=0 eta=0 seed=0 device=cpu
lddpm=${LDDPM_BINARY:-$root/build/launch/lddpm}
names=() runs=() extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --store|--out|--generator|--mix|--ranks|--launcher|--seg-config|--sample-steps|--eta|--seed|--device|--lddpm)
      [ $# -ge 2 ] || usage "option '$1' needs a value"
      case $1 in
        --store) store=$2 ;; --out) out=$2 ;; --mix) mix=$2 ;; --ranks) ranks=$2 ;; --launcher) launcher=$2 ;;
        --seg-config) seg_config=$2 ;; --sample-steps) sample_steps=$2 ;; --eta) eta=$2 ;; --seed) seed=$2 ;;
        --device) device=$2 ;; --lddpm) lddpm=$2 ;;
        --generator)
          [[ $2 == ?*=?* ]] || usage "option '--generator': '$2' is not NAME=RUN"
          name=${2%%=*}
          [[ $name =~ ^[A-Za-z0-9._-]+$ && $name != real ]] ||
            usage "option '--generator': '$name' is not a usable name (letters, digits, . _ -; not 'real')"
          for n in "${names[@]}"; do [ "$n" != "$name" ] || usage "option '--generator': '$name' given twice"; done
          names+=("$name") runs+=("${2#*=}") ;;
      esac
      shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) usage "unknown option '$1'" ;;
  esac
done
[ -n "$store" ] || usage "option '--store' is required"
[ -n "$out" ] || usage "option '--out' is required"
[ ${#names[@]} -gt 0 ] || usage "option '--generator' is required (at least one NAME=RUN)"
[ -f "$store/manifest.json" ] || usage "option '--store': '$store' is not a complete store (no manifest.json)"
for r in "${runs[@]}"; do [ -d "$r/checkpoints" ] || usage "option '--generator': '$r' is not a run folder (no checkpoints/)"; done
[[ $ranks =~ ^[1-9][0-9]*$ ]] || usage "option '--ranks': '$ranks' is not a positive integer"
[ -f "$seg_config" ] || usage "option '--seg-config': no such file '$seg_config'"
[ -x "$lddpm" ] || usage "option '--lddpm': '$lddpm' is not an executable (build first, or give --lddpm)"
if [ -z "$mix" ]; then
  mix=${names[0]}
  for n in "${names[@]}"; do [ "$n" != lesion-ddpm ] || mix=lesion-ddpm; done
fi
mixes=()
if [ "$mix" = all ]; then
  mixes=("${names[@]}")
else
  IFS=, read -r -a mixes <<< "$mix"
  for m in "${mixes[@]}"; do
    printf '%s\n' "${names[@]}" | grep -qx -- "$m" || usage "option '--mix': '$m' is not a --generator name"
  done
fi

source "$root/launch/stage.sh"  # stage NAME COMMAND...: skipped when $out/.done-NAME exists
stage_begin "$out" "$lddpm" "$ranks" "$launcher"  # absolute $out, $start, the array `launch`

train_seg() {  # train_seg SET STORE
  stage "seg-$1" "${launch[@]}" train --config "$seg_config" --model seg --store "$2" \
    --split train --run "$out/seg/$1" "${extra[@]}"
}

# (b) and (c): one synthetic FLAIR per training mask, stored on the real masks.
for i in "${!names[@]}"; do
  n=${names[$i]}
  stage "sample-$n" "${launch[@]}" sample --run "${runs[$i]}" --store "$store" --split train \
    --out "$out/samples/$n" --steps "$sample_steps" --eta "$eta" --seed "$seed" \
    --device "$device"
  stage "store-$n" "${launch[@]}" preprocess --samples "$out/samples/$n" --source-store "$store" \
    --out "$out/stores/$n"
done
for m in "${mixes[@]}"; do
  stage "store-real+$m" "${launch[@]}" preprocess --samples "$out/samples/$m" \
    --source-store "$store" --with-real --out "$out/stores/real+$m"
done

train_seg real "$store"
for n in "${names[@]}"; do train_seg "$n" "$out/stores/$n"; done
for m in "${mixes[@]}"; do train_seg "real+$m" "$out/stores/real+$m"; done

evaluated=(--run "real=$out/seg/real")
for n in "${names[@]}"; do evaluated+=(--run "$n=$out/seg/$n"); done
for m in "${mixes[@]}"; do evaluated+=(--run "real+$m=$out/seg/real+$m"); done
stage evaluate "${launch[@]}" evaluate segmentation --store "$store" --split test \
  "${evaluated[@]}" --save-predictions --out "$out/evaluation" --log-level warn

# The table under its experiment's name, written whole or not at all.
{
  echo "# Downstream segmentation: seg trained on each set, tested on the real test split"
  echo
  echo "Store \`$store\`; generators: $(for i in "${!names[@]}"; do printf '%s=%s ' "${names[$i]}" "${runs[$i]}"; done)"
  echo "(rows: real = real training scans; NAME = NAME's synthetic scans of the training masks;"
  echo "real+NAME = both). Dice per test scan, mean ± sample sd; per-case values in downstream.json."
  echo
  cat "$out/evaluation/segmentation.md"
} > "$out/.downstream.md.tmp"
cp "$out/evaluation/segmentation.json" "$out/.downstream.json.tmp"
mv "$out/.downstream.json.tmp" "$out/downstream.json"
mv "$out/.downstream.md.tmp" "$out/downstream.md"
echo
cat "$out/downstream.md"
echo
echo "downstream finished in $(( $(date +%s) - start )) s; table in $out/downstream.md"
