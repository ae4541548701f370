#!/usr/bin/env bash
# The Lesion-DDPM paper's result table in one command, over seeds (docs/reproduce.md): on the
# phantom cohort (default) or an MSLesSeg folder (--data), for every seed train Lesion-DDPM,
# cond-DDPM and pix2pix under the same budget and matched capacity, and the two ablations of
# Lesion-DDPM (mask at the input only; lesion weight 0); sample every test mask with each and score
# the images against the real test scans (`lddpm evaluate images`, with the twin / constant /
# class-mean references); run the downstream-segmentation experiment (launch/downstream.sh:
# sample every training mask, train the `seg` U-Net on real / each synthetic set / real + each,
# Dice and lesion-wise F1 on the real test scans). launch/reproduce.py then writes OUT/results.md
# (mean ± sd over seeds, the paper's three claims checked), results.json, results.csv and
# montage.png (real | each generator | mask, the same slices). With --beyond SEEDS, those seeds also
# run launch/beyond.sh: segmenters trained on real + 1, 2, 4 synthetic sets of Lesion-DDPM made
# from the training masks again, from transplanted lesions and from new phantom subjects' masks
# (a table of its own in results.md).
#
#   bash launch/reproduce.sh [--out DIR] [--data MSLESSEG_DIR] [--seeds 0,1,2] [--steps N]
#       [--downsample F] [--train-subjects N] [--test-subjects N] [--ranks N | --launcher CMD]
#       [--device cpu|cuda] [--config FILE] [--seg-config FILE] [--options NAME=OPTIONS ...]
#       [--train-options OPTIONS] [--seg-options OPTIONS] [--no-ablations] [--lddpm BINARY]
#       [--beyond SEEDS] [--beyond-sizes 1,2,4] [--beyond-kinds resynth,transplant,extra]
#
# Every stage is a real `lddpm` command, run plain, under `mpirun -n N` (--ranks) or behind any
# launcher (--launcher "srun --mpi=pmix" inside an allocation; slurm/reproduce.sbatch). Reruns
# reuse every finished stage (OUT/.done-<stage>, and downstream's under OUT/seed-S/downstream);
# delete a marker to redo its stage. The default (phantom: 4 training subjects x 2 timepoints,
# 4 test subjects, 2 mm, --downsample 3; 200 generator steps; 3 seeds) is sized for a 2-core
# machine (docs/reproduce.md gives the measured time).
#
# Exit codes: 0 done, 1 a step failed (its message names it), 2 usage error naming the option,
# 75 a training step stopped on a signal after checkpointing: rerun the same command to resume.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The command as typed, for the results: words that need no quoting (seed lists, paths) as they are.
quote() { if [[ $1 =~ ^[A-Za-z0-9_./=,:+@%-]+$ ]]; then printf '%s' "$1"; else printf '%q' "$1"; fi; }
command_line="bash launch/reproduce.sh"
for word in "$@"; do command_line+=" $(quote "$word")"; done

usage() {
  echo "reproduce.sh: $*" >&2
  echo "usage: bash launch/reproduce.sh [--out DIR] [--data DIR] [--seeds LIST] ... (see the script's header)" >&2
  exit 2
}

out=$root/reproduce data="" seeds=0,1,2 steps=200 downsample=3 train_subjects=4 test_subjects=4
ranks=1 launcher="" device=cpu config=$root/launch/configs/demo.ini
seg_config=$root/launch/configs/seg.ini train_options="" seg_options="" ablations=1
lddpm=${LDDPM_BINARY:-$root/build/launch/lddpm}
beyond="" beyond_sizes=1,2,4 beyond_kinds=resynth,transplant,extra

# The generators and ablations: NAME and the `lddpm train` options added to --config for it. The
# baselines are widened to Lesion-DDPM's parameter count under demo.ini (within 4 %: cond-DDPM
# 1,151,091, pix2pix's generator 1,131,931 against 1,112,809; docs/models.md); give --options
# NAME="..." to match them under another configuration (`lddpm models` prints the counts).
names=(lesion-ddpm cond-ddpm pix2pix ablation-mask-input ablation-lesion-weight-0)
declare -A options=(
  [lesion-ddpm]=""
  [cond-ddpm]="--model cond-ddpm --base-channels 10 --groups 5 --attention-heads 5"
  [pix2pix]="--model pix2pix --base-channels 10 --groups 5 --attention-heads 5 --disc-channels 10"
  [ablation-mask-input]="--mask-sites input"
  [ablation-lesion-weight-0]="--lesion-weight 0"
)
generators=(lesion-ddpm cond-ddpm pix2pix)  # the ones the downstream experiment uses

while [ $# -gt 0 ]; do
  case $1 in
    --no-ablations) ablations=0; shift; continue ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    --out|--data|--seeds|--steps|--downsample|--train-subjects|--test-subjects|--ranks|--launcher|\
--device|--config|--seg-config|--options|--train-options|--seg-options|--lddpm|--beyond|\
--beyond-sizes|--beyond-kinds) ;;
    *) usage "unknown option '$1'" ;;
  esac
  [ $# -ge 2 ] || usage "option '$1' needs a value"
  case $1 in
    --out) out=$2 ;; --data) data=$2 ;; --seeds) seeds=$2 ;; --steps) steps=$2 ;;
    --downsample) downsample=$2 ;; --train-subjects) train_subjects=$2 ;;
    --test-subjects) test_subjects=$2 ;; --ranks) ranks=$2 ;; --launcher) launcher=$2 ;;
    --device) device=$2 ;; --config) config=$2 ;; --seg-config) seg_config=$2 ;;
    --train-options) train_options=$2 ;; --seg-options) seg_options=$2 ;; --lddpm) lddpm=$2 ;;
    --beyond) beyond=$2 ;; --beyond-sizes) beyond_sizes=$2 ;; --beyond-kinds) beyond_kinds=$2 ;;
    --options)
      [[ $2 == ?*=* ]] || usage "option '--options': '$2' is not NAME=OPTIONS"
      [ -n "${options[${2%%=*}]+set}" ] ||
        usage "option '--options': '${2%%=*}' is not one of: ${names[*]}"
      options[${2%%=*}]=${2#*=} ;;
  esac
  shift 2
done

# merge WORD...: `lddpm` options with a later `--key [value]` replacing an earlier one (lddpm
# refuses an option given twice), in first-seen order; the result in the array `merged`.
merge() {
  local -A value=()
  local keys=() words=("$@") i=0 k
  while [ $i -lt ${#words[@]} ]; do
    k=${words[$i]}
    [[ $k == --?* ]] || usage "'$k' in the train options is not an option (--name [value])"
    [ -n "${value[$k]+set}" ] || keys+=("$k")
    if [ $((i + 1)) -lt ${#words[@]} ] && [[ ${words[$((i + 1))]} != --* ]]; then
      value[$k]="=${words[$((i + 1))]}"; i=$((i + 2))
    else
      value[$k]=""; i=$((i + 1))  # a switch
    fi
  done
  merged=()
  for k in "${keys[@]}"; do
    merged+=("$k")
    [ -z "${value[$k]}" ] || merged+=("${value[$k]#=}")
  done
}

positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || usage "option '$1': '$2' is not a positive integer"; }
positive --steps "$steps"
positive --downsample "$downsample"
positive --train-subjects "$train_subjects"
positive --test-subjects "$test_subjects"
positive --ranks "$ranks"
[[ $seeds =~ ^[0-9]+(,[0-9]+)*$ ]] || usage "option '--seeds': '$seeds' is not a comma-separated list of seeds"
IFS=, read -r -a seed_list <<< "$seeds"
if [ -n "$beyond" ]; then  # beyond.sh checks sizes and kinds itself
  [[ $beyond =~ ^[0-9]+(,[0-9]+)*$ ]] || usage "option '--beyond': '$beyond' is not a comma-separated list of seeds"
  IFS=, read -r -a beyond_list <<< "$beyond"
  for s in "${beyond_list[@]}"; do
    [[ ,$seeds, == *,$s,* ]] || usage "option '--beyond': seed $s is not one of --seeds $seeds"
  done
fi
[[ $device == cpu || $device == cuda ]] || usage "option '--device': '$device' is not cpu or cuda"
[ -f "$config" ] || usage "option '--config': no such file '$config'"
[ -f "$seg_config" ] || usage "option '--seg-config': no such file '$seg_config'"
[ -z "$data" ] || [ -d "$data" ] || usage "option '--data': no such folder '$data'"
[ -x "$lddpm" ] || usage "option '--lddpm': '$lddpm' is not an executable (build first, or give --lddpm)"
images_suffix="" other_images_suffix=-no-ablations
[ "$ablations" = 1 ] ||
  { names=("${generators[@]}"); images_suffix=-no-ablations; other_images_suffix=""; }

for n in "${names[@]}"; do export "LDDPM_OPTIONS_${n//-/_}=${options[$n]}"; done
read -r -a extra_train <<< "$train_options"
read -r -a extra_seg <<< "$seg_options"
source "$root/launch/stage.sh"  # stage NAME COMMAND...: skipped when $out/.done-NAME exists
stage_begin "$out" "$lddpm" "$ranks" "$launcher"  # absolute $out, $start, the array `launch`

# What this run is, for the results' provenance (launch/reproduce.py copies it into results.json).
LDDPM_SETUP_OUT=$out/setup.json /usr/bin/python3 - "$command_line" "$seeds" "$steps" "$downsample" \
  "${data:-phantom}" "$ranks" "$launcher" "$device" "$config" "$seg_config" "$train_options" \
  "$seg_options" "$beyond" "$beyond_sizes" "$beyond_kinds" "${names[@]}" <<'PY'
import json, os, sys
keys = ["command", "seeds", "steps", "downsample", "data", "ranks", "launcher", "device", "config",
        "seg_config", "train_options", "seg_options", "beyond", "beyond_sizes", "beyond_kinds"]
setup = dict(zip(keys, sys.argv[1:16]))
setup["seeds"] = [int(s) for s in setup["seeds"].split(",")]
setup["beyond"] = [int(s) for s in setup["beyond"].split(",")] if setup["beyond"] else []
for k in ("steps", "downsample", "ranks"):
    setup[k] = int(setup[k])
setup["generators"] = {n: os.environ.get("LDDPM_OPTIONS_" + n.replace("-", "_"), "") for n in sys.argv[16:]}
path = os.environ["LDDPM_SETUP_OUT"]
with open(path + ".tmp", "w") as f:
    json.dump(setup, f, indent=1)
os.replace(path + ".tmp", path)
PY

# The cohort: the phantom (and its test subjects scanned again: the twin reference), or a folder.
twins=() phantom_options=""
if [ -z "$data" ]; then
  phantom_options="--train-subjects $train_subjects --timepoints 2 --voxel-size 2"  # beyond.sh's too
  read -r -a phantom_words <<< "$phantom_options"
  stage cohort "$lddpm" phantom --out "$out/cohort" "${phantom_words[@]}" \
    --test-subjects "$test_subjects" --seed 0 --twins --log-level warn
  data=$out/cohort
  stage twins "$lddpm" preprocess --data "$out/cohort/twins" --out "$out/twins" \
    --downsample "$downsample" --log-level warn
  twins=(--synthetic "twin=$out/twins")
fi
stage store "${launch[@]}" preprocess --data "$data" --out "$out/store" --downsample "$downsample" \
  --log-level warn

for seed in "${seed_list[@]}"; do
  dir=$out/seed-$seed
  evaluated=()
  for n in "${names[@]}"; do
    read -r -a own <<< "${options[$n]}"
    merge --seed "$seed" --steps "$steps" --device "$device" "${own[@]}" "${extra_train[@]}"
    stage "train-$n-$seed" "${launch[@]}" train --config "$config" --store "$out/store" \
      --run "$dir/runs/$n" "${merged[@]}"
    stage "sample-$n-$seed" "${launch[@]}" sample --run "$dir/runs/$n" --store "$out/store" \
      --split test --out "$dir/samples/$n" --sampler ddim --eta 1 --seed "$seed" \
      --device "$device" --log-level warn
    evaluated+=(--synthetic "$n=$dir/samples/$n/synthetic")
  done
  # The marker names the generator set, so adding the ablations later rescores the samples; the
  # other set's marker goes once images.json holds this set (and its time is no longer the run's).
  stage "images-$seed${images_suffix}" "$lddpm" evaluate images --real "$out/store" --split test \
    "${evaluated[@]}" "${twins[@]}" --out "$dir/images" --log-level warn
  rm -f "$out/.done-images-$seed${other_images_suffix}"

  merge --seed "$seed" --device "$device" "${extra_seg[@]}"
  downstream=()
  for n in "${generators[@]}"; do downstream+=(--generator "$n=$dir/runs/$n"); done
  # downstream.sh keeps its own stage markers under $dir/downstream.
  stage "downstream-$seed" bash "$root/launch/downstream.sh" --lddpm "$lddpm" --store "$out/store" \
    --out "$dir/downstream" "${downstream[@]}" --mix all --eta 1 --seed "$seed" \
    ${launcher:+--launcher "$launcher"} --ranks "$ranks" --seg-config "$seg_config" --device "$device" \
    -- "${merged[@]}"

  # Beyond the training masks: its marker (with its seconds) in the seed's folder, so the paper
  # table's stage sum stays that table's.
  if [[ ,$beyond, == *,$seed,* ]]; then
    stage_dir=$dir stage beyond bash "$root/launch/beyond.sh" --lddpm "$lddpm" --store "$out/store" \
      --run "$dir/runs/lesion-ddpm" --out "$dir/beyond" --shared "$out/beyond-shared" \
      --real-seg "$dir/downstream/seg/real" --resynth-1 "$dir/downstream/stores/lesion-ddpm" \
      --sizes "$beyond_sizes" --kinds "$beyond_kinds" ${phantom_options:+--phantom "$phantom_options"} \
      --seed "$seed" --eta 1 ${launcher:+--launcher "$launcher"} --ranks "$ranks" \
      --seg-config "$seg_config" --device "$device" -- "${merged[@]}"
  fi
done

/usr/bin/python3 "$root/launch/reproduce.py" --out "$out" --lddpm "$lddpm" --seconds "$(( $(date +%s) - start ))"
echo
cat "$out/results.md"
echo
echo "reproduce finished in $(( $(date +%s) - start )) s; results in $out/results.md"
