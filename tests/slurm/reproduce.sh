#!/usr/bin/env bash
# The paper's table through slurm/reproduce.sbatch on a real single-node cluster (tests/slurm/
# cluster.sh), at the tiny size of ReproduceEndToEnd with one seed and without the ablations: one
# 2-task job in which every stage of launch/reproduce.sh is an `srun --mpi=pmix` step. Checks that
# the job completed, that the stages ran as 2-rank srun steps, that the tables were written with
# every generator, and that the arguments after the script reached reproduce.sh (quotes kept).
#   reproduce.sh LDDPM_BINARY REPO_ROOT
set -euo pipefail
source "$(dirname "$0")/harness.sh" slurm-reproduce "$1" "$2"

harness_start
t0=$SECONDS
export LDDPM_OUT=$work/rep
tiny="--base-channels 4 --channel-mult 1,2 --attention-levels 1 --attention-heads 1 --groups 2"
tiny+=" --modulation-hidden 4 --disc-channels 4 --patch 16 --batch 2 --warmup 1 --checkpoint-every 2"
seg="--steps 3 --checkpoint-every 3 --log-every 1 --base-channels 4 --channel-mult 1,2 --groups 2"
seg+=" --patch 16 --batch 2 --warmup 1 --log-level warn"
job=$(sbatch --parsable "${test_resources[@]}" --time=20 --output="$work/reproduce-%j.out" \
  "$repo/slurm/reproduce.sbatch" --train-subjects 2 --test-subjects 2 --downsample 4 --seeds 0 \
  --steps 2 --no-ablations --train-options "$tiny" --seg-options "$seg") ||
  fail "sbatch reproduce.sbatch was refused"
wait_job "$job" 840
expect_completed "$job" "reproduce.sbatch"
log=reproduce-$job.out
for f in results.md results.json results.csv montage.png; do
  [ -s "rep/$f" ] || fail "reproduce.sbatch wrote no rep/$f"
done
grep -q "reproduce finished in" "$log" || fail "no 'reproduce finished' line in $log"
python3 - <<'PY' || fail "results.json does not describe the srun run"
import json
r = json.load(open("rep/results.json"))
s = r["setup"]
assert s["launcher"] == "srun --mpi=pmix", s["launcher"]
assert s["seeds"] == [0] and s["steps"] == 2, s
assert "--base-channels 4" in s["train_options"] and "--steps 3" in s["seg_options"], s
assert sorted(s["generators"]) == ["cond-ddpm", "lesion-ddpm", "pix2pix"], s["generators"]
PY
# The 2-rank training stages log their world: every one of the three ran on 2 ranks.
[ "$(grep -c '"world_size": 2' rep/seed-0/runs/*/status.json | grep -c ':1$')" -eq 3 ] ||
  fail "not every generator trained on 2 srun ranks: $(grep -H world_size rep/seed-0/runs/*/status.json)"
for n in lesion-ddpm cond-ddpm pix2pix real+lesion-ddpm; do
  grep -q "^| \(\*\*\)\?$n" rep/results.md || fail "results.md has no row for $n"
done
say "ok: reproduce.sbatch ran launch/reproduce.sh's stages as 2-task srun steps in one job" \
  "($((SECONDS - t0)) s)"
