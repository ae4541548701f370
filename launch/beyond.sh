#!/usr/bin/env bash
# Synthetic cohorts beyond the training masks (docs/reproduce.md "Beyond the training masks"): does
# a segmenter gain more from new lesion configurations than from the training masks synthesised
# again? For one trained Lesion-DDPM run, make K synthetic sets of each kind, each the size of the
# real training split:
#   resynth     the training masks sampled again with other noise (set 1: --resynth-1 if given)
#   transplant  each training anatomy with another patient's lesions moved into its white matter
#               (lddpm preprocess --transplant, seed j), then sampled
#   extra       the masks of new phantom subjects (lddpm phantom --seed 1000+j; --phantom only),
#               preprocessed onto the real store's grid, then sampled
# then train `seg` on real + the first k sets of each kind for every k of --sizes (the same seg
# options and steps for all), and score every segmenter, with --real-seg's, on the real test split.
# Writes OUT/beyond.md and OUT/beyond.json (lddpm evaluate segmentation's table and numbers).
#
#   bash launch/beyond.sh --store STORE --run LESION_DDPM_RUN --out DIR [--shared DIR]
#       [--real-seg SEG_RUN] [--resynth-1 STORE] [--sizes 1,2,4] [--kinds resynth,transplant,extra]
#       [--phantom "PHANTOM OPTIONS"] [--seed S] [--eta E] [--ranks N | --launcher CMD]
#       [--seg-config FILE] [--device cpu|cuda] [--lddpm BINARY] [-- extra lddpm train options for seg]
#
# --shared holds what does not depend on the generator (transplanted masks, extra cohorts and their
# stores), so several seeds share it (default OUT/shared). --phantom gives the `lddpm phantom`
# options the real cohort was made with (without --out, --seed, --test-subjects); without it the
# extra kind is left out. Reruns reuse every finished stage (OUT/.done-<stage>, --shared's too).
#
# Exit codes: 0 done, 1 a step failed (its message names it), 2 usage error naming the option,
# 75 a training step stopped on a signal after checkpointing: rerun the same command to resume.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() { echo "beyond.sh: $*" >&2; echo "usage: bash launch/beyond.sh --store STORE --run RUN --out DIR [...] (see the script's header)" >&2; exit 2; }
store="" run="" out="" shared="" real_seg="" resynth_1="" sizes=1,2,4 kinds=resynth,transplant,extra
phantom="" seed=0 eta=1 ranks=1 launcher="" seg_config="$root/launch/configs/seg.ini" device=cpu
lddpm=${LDDPM_BINARY:-$root/build/launch/lddpm}
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    --store|--run|--out|--shared|--real-seg|--resynth-1|--sizes|--kinds|--phantom|--seed|--eta|\
--ranks|--launcher|--seg-config|--device|--lddpm) ;;
    *) usage "unknown option '$1'" ;;
  esac
  [ $# -ge 2 ] || usage "option '$1' needs a value"
  case $1 in
    --store) store=$2 ;; --run) run=$2 ;; --out) out=$2 ;; --shared) shared=$2 ;;
    --real-seg) real_seg=$2 ;; --resynth-1) resynth_1=$2 ;; --sizes) sizes=$2 ;; --kinds) kinds=$2 ;;
    --phantom) phantom=$2 ;; --seed) seed=$2 ;; --eta) eta=$2 ;; --ranks) ranks=$2 ;;
    --launcher) launcher=$2 ;; --seg-config) seg_config=$2 ;; --device) device=$2 ;; --lddpm) lddpm=$2 ;;
  esac
  shift 2
done
[ -n "$store" ] || usage "option '--store' is required"
[ -n "$run" ] || usage "option '--run' is required"
[ -n "$out" ] || usage "option '--out' is required"
[ -f "$store/manifest.json" ] || usage "option '--store': '$store' is not a complete store (no manifest.json)"
[ -d "$run/checkpoints" ] || usage "option '--run': '$run' is not a run folder (no checkpoints/)"
[ -z "$real_seg" ] || [ -d "$real_seg/checkpoints" ] || usage "option '--real-seg': '$real_seg' is not a run folder"
[ -z "$resynth_1" ] || [ -f "$resynth_1/manifest.json" ] || usage "option '--resynth-1': '$resynth_1' is not a complete store"
[[ $sizes =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || usage "option '--sizes': '$sizes' is not a comma-separated list of positive integers"
[[ $seed =~ ^[0-9]+$ ]] || usage "option '--seed': '$seed' is not a non-negative integer"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || usage "option '--ranks': '$ranks' is not a positive integer"
[ -f "$seg_config" ] || usage "option '--seg-config': no such file '$seg_config'"
[ -x "$lddpm" ] || usage "option '--lddpm': '$lddpm' is not an executable (build first, or give --lddpm)"
IFS=, read -r -a size_list <<< "$sizes"
IFS=, read -r -a kind_list <<< "$kinds"
for k in "${kind_list[@]}"; do
  [[ $k == resynth || $k == transplant || $k == extra ]] || usage "option '--kinds': '$k' is not resynth, transplant or extra"
done
if [ -z "$phantom" ]; then  # new phantom subjects only beside a phantom cohort
  kept=()
  for k in "${kind_list[@]}"; do [ "$k" = extra ] || kept+=("$k"); done
  [ ${#kept[@]} -eq ${#kind_list[@]} ] || echo "beyond.sh: no --phantom options: the extra kind is left out" >&2
  kind_list=("${kept[@]}")
fi
[ ${#kind_list[@]} -gt 0 ] || usage "option '--kinds': nothing left to run"
sets=0
for k in "${size_list[@]}"; do [ "$k" -le "$sets" ] || sets=$k; done

source "$root/launch/stage.sh"  # stage NAME COMMAND...: skipped when $stage_dir/.done-NAME exists
stage_begin "$out" "$lddpm" "$ranks" "$launcher"  # absolute $out, $start, the array `launch`
shared=${shared:-$out/shared}
mkdir -p "$shared"
shared=$(cd "$shared" && pwd)

# The real store's preprocessing, as `lddpm preprocess` options (an extra cohort must match it).
read -r -a store_options <<< "$(/usr/bin/python3 - "$store/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
p = m["parameters"]
print(f"--channels {','.join(p['channels'])} --downsample {p['downsample']} "
      f"--grid {'x'.join(str(g) for g in m['grid'])} --zmax {p['zmax']} "
      f"--index-stride {p['index_stride']} --index-window {p['index_window']} "
      f"--compression {p['compression']} --chunk {p['chunk']}")
PY
)"

train_scans=$(/usr/bin/python3 -c 'import json, sys; print(sum(s["split"] == "train" for s in json.load(open(sys.argv[1]))["subjects"]))' "$store/manifest.json")

# sample_set NAME MASK_STORE SUFFIX SAMPLE_SEED: Lesion-DDPM's FLAIR for every training mask of
# MASK_STORE, stored as OUT/stores/NAME (ids <id>SUFFIX).
sample_set() {
  stage "sample-$1" "${launch[@]}" sample --run "$run" --store "$2" --split train \
    --out "$out/samples/$1" --eta "$eta" --seed "$4" --device "$device" --log-level warn
  stage "store-$1" "${launch[@]}" preprocess --samples "$out/samples/$1" --source-store "$2" \
    --id-suffix "$3" --out "$out/stores/$1" --log-level warn
}

# The synthetic sets: set_store[KIND-j] is the store of set j of KIND.
declare -A set_store
for j in $(seq 1 "$sets"); do
  for kind in "${kind_list[@]}"; do
    case $kind in
      resynth)
        if [ "$j" = 1 ] && [ -n "$resynth_1" ]; then set_store[resynth-1]=$resynth_1; continue; fi
        sample_set "resynth-$j" "$store" "_syn$j" $((seed + 1000 * j)) ;;
      transplant)
        stage_dir=$shared stage "transplant-$j" "$lddpm" preprocess --transplant "$store" \
          --seed "$j" --id-suffix "_tp$j" --out "$shared/transplant-$j" --log-level warn
        sample_set "transplant-$j" "$shared/transplant-$j" _syn $((seed + 1000 * j)) ;;
      extra)
        read -r -a phantom_options <<< "$phantom"
        stage_dir=$shared stage "extra-cohort-$j" "$lddpm" phantom --out "$shared/extra-cohort-$j" \
          "${phantom_options[@]}" --test-subjects 0 --seed $((1000 + j)) --log-level warn
        stage_dir=$shared stage "extra-store-$j" "${launch[@]}" preprocess \
          --data "$shared/extra-cohort-$j" "${store_options[@]}" --out "$shared/extra-store-$j" \
          --log-level warn
        sample_set "extra-$j" "$shared/extra-store-$j" "_extra${j}_syn" $((seed + 1000 * j)) ;;
    esac
    set_store[$kind-$j]=$out/stores/$kind-$j
  done
done

# real + the first k sets of each kind, and a segmenter on each.
evaluated=()
[ -z "$real_seg" ] || evaluated+=(--run "real=$real_seg")
for kind in "${kind_list[@]}"; do
  for k in "${size_list[@]}"; do
    name=real+$kind-${k}x
    inputs=(--merge "$store")
    for j in $(seq 1 "$k"); do inputs+=(--merge "${set_store[$kind-$j]}"); done
    stage "store-$name" "${launch[@]}" preprocess "${inputs[@]}" --split train \
      --out "$out/stores/$name" --log-level warn
    stage "seg-$name" "${launch[@]}" train --config "$seg_config" --model seg \
      --store "$out/stores/$name" --split train --run "$out/seg/$name" "${extra[@]}"
    evaluated+=(--run "$name=$out/seg/$name")
  done
done
stage evaluate "${launch[@]}" evaluate segmentation --store "$store" --split test \
  "${evaluated[@]}" --out "$out/evaluation" --log-level warn

{
  echo "# Beyond the training masks: seg trained on real + k synthetic sets of each kind"
  echo
  echo "Store \`$store\`; Lesion-DDPM run \`$run\`; each set holds one scan per real training scan ($train_scans)."
  echo "(real+KIND-kx = the real training scans + k sets of KIND: resynth = the training masks"
  echo "sampled again, transplant = training anatomies with another patient's lesions, extra = new"
  echo "phantom subjects' masks.) Dice per test scan, mean ± sample sd; per-case values in beyond.json."
  echo
  cat "$out/evaluation/segmentation.md"
} > "$out/.beyond.md.tmp"
cp "$out/evaluation/segmentation.json" "$out/.beyond.json.tmp"
mv "$out/.beyond.json.tmp" "$out/beyond.json"
mv "$out/.beyond.md.tmp" "$out/beyond.md"
echo
cat "$out/beyond.md"
echo
echo "beyond finished in $(( $(date +%s) - start )) s; table in $out/beyond.md"
