#!/usr/bin/env bash
# SLURM end to end through the real templates on a real single-node cluster (tests/slurm/
# cluster.sh): preprocess.sbatch -> train.sbatch -> sample.sbatch -> evaluate.sbatch, each a
# 2-task job (evaluate: 1 task) chained with --dependency=afterok as a user would submit them,
# at tiny sizes. Checks each stage's outputs, the exit codes SLURM recorded, and the guards: a
# template run outside an allocation, and one submitted without LDDPM_CONFIG, exit 2 with a
# message naming what is missing.
#   pipeline.sh LDDPM_BINARY REPO_ROOT
set -euo pipefail
source "$(dirname "$0")/harness.sh" slurm-pipeline "$1" "$2"

rc=0
out=$(env -u SLURM_JOB_ID bash "$repo/slurm/train.sbatch" 2>&1) || rc=$?
[ "$rc" -eq 2 ] || fail "train.sbatch outside an allocation exited $rc, not 2"
echo "$out" | grep -q "needs an allocation (SLURM_JOB_ID is not set)" ||
  fail "no guard message outside an allocation: $out"

harness_start
make_cohort
t0=$SECONDS
export LDDPM_DATA=$work/cohort LDDPM_STORE=$work/store LDDPM_RUN_DIR=$work/run
printf 'downsample = 4\nlog-level = warn\n' > preprocess.ini
pre=$(LDDPM_CONFIG=$work/preprocess.ini submit preprocess.sbatch --output="$work/preprocess-%j.out")
write_train_ini train.ini 6 checkpoint-every=3
train=$(LDDPM_CONFIG=$work/train.ini submit train.sbatch --dependency="afterok:$pre" \
  --output="$work/train-%j.out")
printf 'split = test\nsteps = 3\nlog-level = warn\n' > sample.ini
sample=$(LDDPM_CONFIG=$work/sample.ini submit sample.sbatch --dependency="afterok:$train" \
  --output="$work/sample-%j.out")
evaluate=$(LDDPM_CONFIG= submit evaluate.sbatch --ntasks-per-node=1 --dependency="afterok:$sample" \
  --output="$work/evaluate-%j.out")
# The guard inside an allocation: no LDDPM_CONFIG -> exit 2 naming it, before any srun.
noconfig=$(LDDPM_CONFIG= submit train.sbatch --output="$work/noconfig-%j.out")

wait_job "$pre" 90
expect_completed "$pre" "preprocess.sbatch"
[ -f store/manifest.json ] || fail "preprocess.sbatch wrote no store/manifest.json"
[ "$(ls store/shard-*.h5 | wc -l)" -eq 2 ] || fail "expected one shard per task (2): $(ls store)"
grep -q "preprocess.sbatch on .*: 2 task(s) on 1 node(s)" "preprocess-$pre.out" ||
  fail "preprocess.sbatch's log does not show 2 tasks"

wait_job "$train" 120
expect_completed "$train" "train.sbatch"
grep -q '"state": "finished"' run/status.json || fail "run not finished: $(cat run/status.json)"
grep -q '"world_size": 2' run/status.json || fail "run did not train on 2 ranks"
[ "$(wc -l < run/metrics.jsonl)" -eq 6 ] || fail "metrics.jsonl does not have 6 rows"
[ -d run/checkpoints/step-00000006 ] || fail "no final checkpoint"
grep -q "finished (restart count 0)" "train-$train.out" || fail "train.sbatch did not report finished"

wait_job "$sample" 120
expect_completed "$sample" "sample.sbatch"
[ "$(ls run/samples/synthetic/*.nii.gz | wc -l)" -eq 1 ] || fail "sample.sbatch wrote no volume"

wait_job "$evaluate" 60
expect_completed "$evaluate" "evaluate.sbatch"
[ -f run/evaluation/images.json ] || fail "evaluate.sbatch wrote no run/evaluation/images.json"

wait_job "$noconfig" 30
[ "$(job_field "$noconfig" ExitCode)" = 2:0 ] ||
  fail "train.sbatch without LDDPM_CONFIG ended with $(job_field "$noconfig" ExitCode), not 2:0"
grep -q "train.sbatch needs LDDPM_CONFIG" "noconfig-$noconfig.out" ||
  fail "no message naming LDDPM_CONFIG: $(cat "noconfig-$noconfig.out")"

say "ok: guard outside an allocation, preprocess -> train -> sample -> evaluate as 2-task jobs" \
  "chained with afterok, missing LDDPM_CONFIG exits 2 ($((SECONDS - t0)) s of jobs)"
