#!/usr/bin/env bash
# Preemption and requeue on a real single-node SLURM cluster (tests/slurm/cluster.sh), through
# slurm/train.sbatch:
#  1. a 2-rank training job gets SIGUSR2 on its steps mid-run (`scancel --signal=USR2`, what
#     `--signal=USR2@120` does before the time limit): lddpm checkpoints and exits 75, the batch
#     script requeues the job, the requeued job (SLURM_RESTART_COUNT 1, same log file) resumes
#     from the checkpoint and finishes; its exported weights (EMA and raw) are bit-identical to an
#     uninterrupted job with the same options on the same 2 ranks;
#  2. the requeue logic with a stand-in binary: exit 75 requeues until LDDPM_MAX_REQUEUES, then
#     the job fails with 75 and a message; any other exit code fails the job without requeue; a
#     plain scancel (SIGTERM to the batch shell too) is not undone by a requeue; array tasks are
#     requeued one by one as JOBID_TASKID.
# A requeued job waits for a BeginTime ~2 min ahead (SLURM's requeue delay); the test moves it to
# now (`scontrol update StartTime=now`) so CI does not wait.
#   preempt.sh LDDPM_BINARY REPO_ROOT
set -euo pipefail
source "$(dirname "$0")/harness.sh" slurm-preempt "$1" "$2"
harness_start
make_store
t0=$SECONDS
steps=16
write_train_ini train.ini "$steps" checkpoint-every=4 keep-checkpoints=5
export LDDPM_CONFIG=$work/train.ini

# Once the job is pending again after a requeue, let it start now instead of after SLURM's
# requeue delay. Fails the test if it is not requeued within SECONDS.
wait_requeued() {
  local job=$1 restarts=$2 seconds=$3 i
  for i in $(seq 1 $((seconds * 2))); do
    if [ "$(job_field "$job" Restarts)" = "$restarts" ] && [ "$(job_field "$job" JobState)" = PENDING ]; then
      # Not before the old instance's step daemons are gone and a new second has begun: slurmd
      # refuses a job credential created in the same second as the revoked one ("Job
      # credential revoked"), the race SLURM's requeue delay exists to avoid.
      for i in $(seq 1 60); do [ -z "$(cluster_stepd_pids)" ] && break; sleep 0.5; done
      sleep 2
      scontrol update JobId="$job" StartTime=now || fail "cannot move job $job's start time"
      return 0
    fi
    sleep 0.5
  done
  fail "job $job was not requeued (restart $restarts) within ${seconds}s: state $(job_field "$job" JobState)"
}

# --- 1. preempted run: signal its steps once a few steps are logged (the handler is installed)
pre=$(LDDPM_RUN_DIR=$work/pre submit train.sbatch --output="$work/pre-%j.out")
# (16 steps leave room for the signal to land before the end even when a step takes 0.1 s.)
for i in $(seq 1 600); do
  [ -f pre/metrics.jsonl ] && [ "$(wc -l < pre/metrics.jsonl)" -ge 2 ] && break
  sleep 0.1
done
[ -f pre/metrics.jsonl ] && [ "$(wc -l < pre/metrics.jsonl)" -ge 2 ] || fail "the job logged no steps within 60 s"
scancel --signal=USR2 "$pre" || fail "scancel --signal=USR2 $pre failed"
signalled_at=$(wc -l < pre/metrics.jsonl)
wait_requeued "$pre" 1 60
wait_job "$pre" 240
expect_completed "$pre" "the preempted train.sbatch job"
log=pre-$pre.out
[ "$(job_field "$pre" Restarts)" = 1 ] || fail "job $pre restarted $(job_field "$pre" Restarts) times, not once"
stop_step=$(sed -n 's/.*stopped on a signal at step \([0-9]*\) after checkpointing.*/\1/p' "$log" | head -1)
[ -n "$stop_step" ] || fail "lddpm did not report stopping on the signal"
[ "$stop_step" -lt "$steps" ] || fail "the signal arrived only after the last step"
grep -q "stopped after checkpointing (exit 75): requeueing job $pre (restart 1 of at most 3)" "$log" ||
  fail "train.sbatch did not requeue on exit 75"
grep -q "restart 1, run $work/pre" "$log" || fail "the requeued job did not run with restart count 1 in the same log"
grep -q "resumed from .*step-$(printf %08d "$stop_step") at step $stop_step" "$log" ||
  fail "the requeued job did not resume from the checkpoint of step $stop_step"
grep -q "finished (restart count 1)" "$log" || fail "the requeued job did not finish"
grep -q '"state": "finished"' pre/status.json || fail "run not finished: $(cat pre/status.json)"
[ "$(wc -l < pre/metrics.jsonl)" -eq "$steps" ] || fail "metrics.jsonl has $(wc -l < pre/metrics.jsonl) rows, not $steps"
say "preempted at step $stop_step (signal sent after $signalled_at logged steps), requeued, resumed, finished"

# --- reference: the same options, uninterrupted, same 2 ranks
ref=$(LDDPM_RUN_DIR=$work/ref submit train.sbatch --output="$work/ref-%j.out")
wait_job "$ref" 240
expect_completed "$ref" "the uninterrupted train.sbatch job"
[ "$(job_field "$ref" Restarts)" = 0 ] || fail "the reference job was requeued"
for weights in ema model; do
  "$lddpm" export --run pre --out "pre-$weights.pt" --weights "$weights" > /dev/null
  "$lddpm" export --run ref --out "ref-$weights.pt" --weights "$weights" > /dev/null
  cmp "pre-$weights.pt" "ref-$weights.pt" ||
    fail "$weights weights of the preempted run differ from the uninterrupted run"
done
say "preempted + requeued run is bit-identical to the uninterrupted run (EMA and raw weights)"

# --- 2. requeue logic with a stand-in lddpm: exit 75 every time, LDDPM_MAX_REQUEUES=1
# FAKE_MODE=term: run until SIGTERM, then exit 75 as lddpm does after its checkpoint.
cat > fake-lddpm <<'SH'
#!/bin/sh
if [ "${FAKE_MODE:-}" = term ]; then
  trap 'exit 75' TERM
  touch "$FAKE_READY"
  while :; do sleep 0.2; done
fi
exit "${FAKE_EXIT:-75}"
SH
chmod +x fake-lddpm
loop=$(LDDPM_BIN=$work/fake-lddpm LDDPM_RUN_DIR=$work/fake LDDPM_MAX_REQUEUES=1 submit train.sbatch \
  --output="$work/loop-%j.out")
wait_requeued "$loop" 1 30
wait_job "$loop" 30
[ "$(job_field "$loop" Restarts)" = 1 ] || fail "the limit did not stop requeueing at 1"
[ "$(job_field "$loop" ExitCode)" = 75:0 ] || fail "job over the limit ended $(job_field "$loop" ExitCode), not 75:0"
grep -q "already requeued 1 time(s) (LDDPM_MAX_REQUEUES=1): not requeueing" "loop-$loop.out" ||
  fail "no message about the requeue limit"
# An array task (lddpm sweep's case) is requeued by its JOBID_TASKID, on its own.
arr=$(LDDPM_BIN=$work/fake-lddpm LDDPM_RUN_DIR=$work/fake LDDPM_MAX_REQUEUES=1 submit train.sbatch \
  --array=0-1 --output="$work/arr-%A_%a.out")
for t in 0 1; do
  wait_requeued "${arr}_$t" 1 30
done
for t in 0 1; do
  wait_job "${arr}_$t" 30
  [ "$(job_field "${arr}_$t" Restarts)" = 1 ] && [ "$(job_field "${arr}_$t" ExitCode)" = 75:0 ] ||
    fail "array task ${arr}_$t: $(job_field "${arr}_$t" Restarts) requeue(s), exit $(job_field "${arr}_$t" ExitCode)"
  grep -q "requeueing job ${arr}_$t (restart 1 of at most 1)" "arr-${arr}_$t.out" ||
    fail "array task ${arr}_$t was not requeued by its array id"
done
# Any other exit code: the job fails with it, no requeue.
bad=$(FAKE_EXIT=3 LDDPM_BIN=$work/fake-lddpm LDDPM_RUN_DIR=$work/fake submit train.sbatch \
  --output="$work/bad-%j.out")
wait_job "$bad" 30
[ "$(job_field "$bad" ExitCode)" = 3:0 ] && [ "$(job_field "$bad" Restarts)" = 0 ] ||
  fail "exit 3 ended the job with $(job_field "$bad" ExitCode), restarts $(job_field "$bad" Restarts)"
# scancel (SIGTERM to the whole job, the batch shell included): the step still exits 75, but
# the script must not requeue, or it would undo the cancellation.
term=$(FAKE_MODE=term FAKE_READY=$work/term.ready LDDPM_BIN=$work/fake-lddpm LDDPM_RUN_DIR=$work/fake \
  submit train.sbatch --output="$work/term-%j.out")
for i in $(seq 1 120); do [ -f term.ready ] && break; sleep 0.25; done
[ -f term.ready ] || fail "the stand-in step of job $term did not start within 30 s"
scancel "$term"
wait_job "$term" 60
[ "$(job_field "$term" JobState)" = CANCELLED ] && [ "$(job_field "$term" Restarts)" = 0 ] ||
  fail "scancel ended job $term $(job_field "$term" JobState) after $(job_field "$term" Restarts) requeue(s)"
grep -q "while SLURM ends job $term (scancel or preemption): not requeueing" "term-$term.out" ||
  fail "no message that a cancelled job is not requeued"
say "ok: preemption -> checkpoint -> exit 75 -> requeue -> resume -> bit-identical; requeue limit;" \
  "array tasks; failures propagate; scancel is not requeued ($((SECONDS - t0)) s of jobs)"
