# Shared by the tests in tests/slurm (sourced, after `set -euo pipefail`): a private temp folder, a
# real single-node SLURM cluster (cluster.sh) that is stopped on every exit path, job helpers with
# timeouts, and diagnostics (daemon logs, job records, job logs) printed when a test fails.
#
#   source harness.sh NAME LDDPM_BINARY REPO_ROOT
#   harness_start            # temp dir in $work, cluster up, environment for the templates
#   submit TEMPLATE [sbatch options...]   # prints the job id; test-cluster resources
#   wait_job JOB SECONDS     # until the job has ended; fails the test on timeout

test_name=$1
lddpm=$(readlink -f "$2")
repo=$(cd "$3" && pwd)
work=""

say() { echo "$test_name: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

# Prints what a failure needs to be understood: every job SLURM knows, the daemons' logs, and
# the job logs and run states in the work folder.
diagnostics() {
  say "---- diagnostics (work folder $work) ----"
  if [ -n "${SLURM_CONF:-}" ]; then
    squeue -a 2>&1 | sed 's/^/squeue: /' >&2 || true
    scontrol -o show job 2>&1 | sed 's/^/job: /' >&2 || true
    tail -n 40 "$CLUSTER_DIR/log/slurmctld.log" 2>&1 | sed 's/^/slurmctld: /' >&2 || true
    tail -n 40 "$CLUSTER_DIR/log/slurmd.log" 2>&1 | sed 's/^/slurmd: /' >&2 || true
  fi
  local f
  for f in "$work"/*.out "$work"/*/status.json; do
    [ -f "$f" ] || continue
    say "---- $f"
    tail -n 60 "$f" >&2
  done
}

harness_finish() {
  local rc=$?
  trap - EXIT INT TERM
  [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || diagnostics
  cluster_stop || rc=1
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; then
    rm -rf "$work"
  else
    say "work folder kept: $work"
  fi
  exit "$rc"
}

harness_start() {
  [ "$(id -u)" -eq 0 ] || { say "SKIP: the test cluster's daemons (munged, slurmd) need root"; exit 77; }
  work=$(mktemp -d "/tmp/lddpm-$test_name.XXXXXX")
  # shellcheck source=tests/slurm/cluster.sh
  source "$repo/tests/slurm/cluster.sh"
  trap harness_finish EXIT
  trap 'fail "interrupted"' INT TERM
  cluster_start "$work/cluster" || fail "the test cluster did not start"
  cd "$work"
  # What the templates read (sbatch hands the environment to the job). CI runs as root: Open MPI
  # refuses root without these.
  export LDDPM_BIN=$lddpm LDDPM_SLURM_DIR=$repo/slurm LDDPM_DEVICE=cpu
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  unset LDDPM_RUN_DIR LDDPM_CONFIG LDDPM_STORE LDDPM_MAX_REQUEUES
}

# The templates ask for 2 nodes x 4 GPUs; the test cluster is one node with 2 cores and no GPU:
# command-line options override the #SBATCH lines, exactly as a user would on a CPU partition.
test_resources=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 --time=10)

submit() {
  local template=$1
  shift
  sbatch --parsable "${test_resources[@]}" "$@" "$repo/slurm/$template" ||
    fail "sbatch $template was refused"
}

# One field of a job's record (`scontrol show job`; the test cluster keeps ended jobs for an hour
# and has no accounting database, so sacct is not available).
job_field() {
  scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# Wait until the job has ended (any final state); fail the test after SECONDS.
wait_job() {
  local job=$1 seconds=$2 state i
  for i in $(seq 1 $((seconds * 2))); do
    state=$(job_field "$job" JobState)
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        return 0 ;;
    esac
    sleep 0.5
  done
  fail "job $job did not end within ${seconds}s (state $(job_field "$job" JobState))"
}

# The job ended COMPLETED with exit code 0:0.
expect_completed() {
  local job=$1 what=$2
  [ "$(job_field "$job" JobState)" = COMPLETED ] && [ "$(job_field "$job" ExitCode)" = 0:0 ] ||
    fail "$what (job $job) ended $(job_field "$job" JobState) with exit code $(job_field "$job" ExitCode)"
}

# A tiny phantom cohort and its store, made directly (not the subject of the job tests).
make_cohort() {
  "$lddpm" phantom --out cohort --train-subjects 2 --test-subjects 1 --timepoints 1 --voxel-size 2 \
    --seed 3 --log-level warn > /dev/null
}
make_store() {
  make_cohort
  "$lddpm" preprocess --data cohort --out store --downsample 4 --log-level warn > /dev/null
}

# A tiny Lesion-DDPM training configuration: `write_train_ini FILE STEPS [KEY=VALUE...]`.
write_train_ini() {
  local file=$1 steps=$2
  shift 2
  {
    echo "store = $work/store"
    echo "steps = $steps"
    echo "batch = 2"
    echo "patch = 16"
    echo "warmup = 1"
    echo "log-every = 1"
    echo "base-channels = 4"
    echo "channel-mult = 1,2"
    echo "attention-levels ="
    echo "groups = 2"
    echo "timesteps = 20"
    echo "log-level = info"
    local kv
    for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
  } > "$file"
}
