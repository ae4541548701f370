#!/usr/bin/env bash
# SLURM's own time limit on a real single-node cluster (tests/slurm/cluster.sh), through
# slurm/train.sbatch: a 2-rank training job submitted with --time=1 (one minute) and the
# template's signal brought forward to --signal=USR2@40 (the template's USR2, sent 40 s before
# the limit instead of 120 s before 24 h) is signalled by slurmctld itself, never by this test:
# lddpm checkpoints and exits 75, the batch script requeues the job, the requeued job (again one
# minute) resumes, and so on until the run has finished. Its exported weights (EMA and raw) must
# be bit-identical to an uninterrupted job with the same options on the same 2 ranks.
#
# slurmctld checks time limits and sends --signal about every 30 s, so the training is sized to
# outlast that (about 50 s uninterrupted, measured on this machine first) and the whole test
# takes a few minutes: a benchmark-size check run by hand, not by the test command (docs/slurm.md,
# docs/BENCHMARKS.md "Reliability").
#   timelimit.sh LDDPM_BINARY REPO_ROOT
set -euo pipefail
source "$(dirname "$0")/harness.sh" slurm-timelimit "$1" "$2"
harness_start
make_store
t0=$SECONDS

# Size the run: seconds per step of this configuration on 2 ranks, then ~50 s of steps: longer
# than the latest first signal (20 s + one 30 s check period), so the first job is always cut.
write_train_ini calibrate.ini 6 checkpoint-every=1000
OMP_NUM_THREADS=1 mpiexec -n 2 --oversubscribe "$lddpm" train --config calibrate.ini --run calibrate \
  --threads 1 --log-level warn || fail "calibration run failed"
per_step=$(python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(sum(r["step_seconds"] for r in rows[1:]) / (len(rows) - 1))' calibrate/metrics.jsonl)
steps=$(python3 -c "import math; print(10 * max(3, math.ceil(5.0 / $per_step)))")
say "a step takes ${per_step} s: $steps steps (~50 s uninterrupted)"
write_train_ini train.ini "$steps" checkpoint-every=1000000 keep-checkpoints=2
export LDDPM_CONFIG=$work/train.ini LDDPM_MAX_REQUEUES=20
limited=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0)

# --- the job that runs out of time, as often as it takes
job=$(LDDPM_RUN_DIR=$work/limited sbatch --parsable "${limited[@]}" --time=1 --signal=USR2@40 \
  --output="$work/limited-%j.out" "$repo/slurm/train.sbatch") || fail "sbatch refused the time-limited job"
restarts=0
for i in $(seq 1 1200); do  # 10 min at most
  state=$(job_field "$job" JobState)
  case "$state" in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
  esac
  now=$(job_field "$job" Restarts)
  if [ "$state" = PENDING ] && [ "${now:-0}" -gt "$restarts" ]; then
    # Requeued: start it now instead of after SLURM's requeue delay (see preempt.sh).
    for k in $(seq 1 60); do [ -z "$(cluster_stepd_pids)" ] && break; sleep 0.5; done
    sleep 2
    scontrol update JobId="$job" StartTime=now || fail "cannot move job $job's start time"
    restarts=$now
    say "requeued after SLURM's signal (restart $restarts, $((SECONDS - t0)) s)"
  fi
  sleep 0.5
done
expect_completed "$job" "the time-limited train.sbatch job"
log=limited-$job.out
n=$(job_field "$job" Restarts)
[ "$n" -ge 1 ] || fail "the job finished without ever running out of time (steps too few?)"
[ "$(grep -c "stopped on a signal at step" "$log")" -eq "$n" ] ||
  fail "$n requeue(s) but $(grep -c "stopped on a signal at step" "$log") signal stop(s) in $log"
[ "$(grep -c "stopped after checkpointing (exit 75): requeueing job $job" "$log")" -eq "$n" ] ||
  fail "train.sbatch did not requeue after every signal"
grep -q "finished (restart count $n)" "$log" || fail "the last requeued job did not finish"
[ "$(wc -l < limited/metrics.jsonl)" -eq "$steps" ] ||
  fail "metrics.jsonl has $(wc -l < limited/metrics.jsonl) rows, not $steps"
say "SLURM signalled the job $n time(s) at its time limit; requeued and resumed each time"

# --- reference: the same options, uninterrupted, same 2 ranks
ref=$(LDDPM_RUN_DIR=$work/ref sbatch --parsable "${limited[@]}" --time=10 \
  --output="$work/ref-%j.out" "$repo/slurm/train.sbatch") || fail "sbatch refused the reference job"
wait_job "$ref" 400
expect_completed "$ref" "the uninterrupted train.sbatch job"
for weights in ema model; do
  "$lddpm" export --run limited --out "limited-$weights.pt" --weights "$weights" > /dev/null
  "$lddpm" export --run ref --out "ref-$weights.pt" --weights "$weights" > /dev/null
  cmp "limited-$weights.pt" "ref-$weights.pt" ||
    fail "$weights weights of the time-limited run differ from the uninterrupted run"
done
say "ok: $steps steps over $((n + 1)) one-minute jobs (SLURM's own USR2 at its time limit, requeue," \
  "resume) bit-identical to one uninterrupted job ($((SECONDS - t0)) s)"
