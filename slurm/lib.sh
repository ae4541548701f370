# Shared logic of the slurm/*.sbatch templates (docs/slurm.md): the guard against running outside
# an allocation, the environment every step gets (threads, NCCL, Open MPI), the srun line, and the
# requeue-on-preemption loop of `lddpm train`. Sourced by the templates, never run on its own.
#
# sbatch runs a *copy* of the batch script from slurmd's spool folder, so a template cannot find
# this file next to itself: it reads $LDDPM_SLURM_DIR/lib.sh, else $SLURM_SUBMIT_DIR/slurm/lib.sh
# (submitted from the repository root), else, outside SLURM, the one beside the template (only to
# print the guard's message). See the first lines after each template's #SBATCH block.

lddpm_log() { echo "lddpm-slurm[${SLURM_JOB_ID:-no job}]: $*" >&2; }

# The id `scontrol requeue` needs: an array task is JOBID_TASKID, a plain job its JOBID.
lddpm_job_id() {
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  else
    echo "${SLURM_JOB_ID}"
  fi
}

# Refuse to run outside an allocation: srun would start a new job (or fail) and the requeue
# logic would have no job to requeue. $1 = the template's name, for the message.
lddpm_require_allocation() {
  [ -n "${SLURM_JOB_ID:-}" ] && return 0
  cat >&2 <<MSG
lddpm-slurm: $1 is a SLURM batch script and needs an allocation (SLURM_JOB_ID is not set).
  Submit it with sbatch (its header lists the environment it needs): sbatch slurm/$1
  or run lddpm directly: mpirun -n N lddpm <command> ...   (docs/slurm.md, docs/training.md)
MSG
  exit 2
}

# Every named variable must be set: exit 2 with a message naming the first that is not.
lddpm_require_vars() {
  local template=$1 name
  shift
  for name in "$@"; do
    [ -n "${!name:-}" ] && continue
    lddpm_log "error: $template needs $name (see its header); set it in the shell that runs sbatch," \
      "which passes its environment to the job"
    exit 2
  done
}

# The environment every job step inherits. Values already set by the user or the site win.
lddpm_setup_env() {
  # The lddpm binary: a name on PATH (after `module load`) or an absolute path.
  export LDDPM_BIN=${LDDPM_BIN:-lddpm}
  # cpu | cuda: cuda gives each rank the GPU of its local rank (ranks per node = GPUs per node).
  export LDDPM_DEVICE=${LDDPM_DEVICE:-cuda}
  case "$LDDPM_DEVICE" in
    cpu | cuda) ;;
    *) lddpm_log "error: LDDPM_DEVICE must be cpu or cuda, not '$LDDPM_DEVICE'"; exit 2 ;;
  esac
  if ! command -v "$LDDPM_BIN" > /dev/null; then
    lddpm_log "error: LDDPM_BIN='$LDDPM_BIN' is not an executable (module load it, or set LDDPM_BIN=/path/to/lddpm)"
    exit 2
  fi

  # Threads: one OpenMP/intra-op pool of --cpus-per-task threads per rank. Since SLURM 22.05 srun
  # no longer inherits the job's --cpus-per-task: SRUN_CPUS_PER_TASK hands it on, else every rank
  # would be bound to one core.
  if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}
  fi

  if [ "$LDDPM_DEVICE" = cuda ]; then
    # NCCL_DEBUG: WARN prints only problems; INFO prints the rings/trees, transports (NVLink, IB,
    # sockets) and interfaces NCCL picked: set it once when bringing up a new cluster.
    export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
    # NCCL_SOCKET_IFNAME (bootstrap and socket transport interface, e.g. ib0, or ^lo,docker to
    # exclude) and NCCL_IB_HCA (which InfiniBand adapters, e.g. mlx5_0,mlx5_1) are site-specific:
    # left unset NCCL picks them itself; set them only if NCCL_DEBUG=INFO shows a wrong choice.
    # NCCL_IB_DISABLE=1 forces TCP when InfiniBand is broken (slow, but it runs).
    # TORCH_NCCL_ASYNC_ERROR_HANDLING / NCCL_ASYNC_ERROR_HANDLING are read by PyTorch's c10d,
    # which lddpm does not use: its NCCL backend has its own watchdog (--comm-timeout) that
    # aborts the communicator and the job instead of hanging. Setting them changes nothing.
  fi
  # Open MPI (the control plane, and the data plane with --device cpu): srun starts the ranks
  # through PMIx, so no mpirun and no hostfile. Sites with UCX set OMPI_MCA_pml=ucx in their
  # module; nothing is needed here.
}

# The start of every template: `lddpm_begin TEMPLATE [REQUIRED_VARIABLE...]`. Guards, checks
# the variables, sets the environment and logs what the job is about to do.
lddpm_begin() {
  lddpm_require_allocation "$1"
  lddpm_require_vars "$@"
  lddpm_setup_env
  lddpm_log "$1 on $(hostname -s): ${SLURM_NTASKS:-?} task(s) on ${SLURM_JOB_NUM_NODES:-?} node(s)," \
    "device $LDDPM_DEVICE, ${SLURM_CPUS_PER_TASK:-?} CPU(s) per task, restart ${SLURM_RESTART_COUNT:-0}," \
    "run ${LDDPM_RUN_DIR:--}, config ${LDDPM_CONFIG:--}, store ${LDDPM_STORE:--}"
}

# srun one lddpm step over every task of the allocation: `lddpm_srun train --config ...`.
# No --kill-on-bad-exit: all ranks exit 75 together after a checkpoint, and killing the slower
# ranks while they finalise would turn 75 into a signal exit; a failing rank aborts the job itself.
lddpm_srun() {
  srun --mpi=pmix "$LDDPM_BIN" "$@"
}

# Run a resumable step (lddpm train ... --resume auto) and act on its exit code:
#   0   finished: exit 0, no requeue.
#   75  stopped on SIGUSR2/SIGTERM after checkpointing: `scontrol requeue` this job (array task),
#       unless it was already requeued LDDPM_MAX_REQUEUES times (default 3, counted by SLURM's
#       SLURM_RESTART_COUNT); the requeued job reruns this script and resumes from the checkpoint.
#       Not when this shell got SIGTERM too: then SLURM itself is ending the whole job (scancel,
#       or a preemption that requeues on its own), and a requeue would undo a user's scancel.
#   other: the failure propagates as the job's exit code.
lddpm_run_requeueable() {
  lddpm_requeueable "lddpm $1" lddpm_srun "$@"
}

# The same for any command whose resumable steps exit 75 after checkpointing (launch/reproduce.sh
# in slurm/reproduce.sbatch): `lddpm_requeueable WHAT COMMAND...`, WHAT naming it in the log.
lddpm_requeueable() {
  local what=$1
  shift
  # A SIGTERM to the whole job must not kill this shell before the step has checkpointed: with a
  # trap, bash waits for srun and then goes on here.
  local terminated=0
  trap 'terminated=1; lddpm_log "SIGTERM: SLURM is ending this job; waiting for the step to checkpoint"' TERM
  local rc=0
  "$@" || rc=$?
  local restarts=${SLURM_RESTART_COUNT:-0} max=${LDDPM_MAX_REQUEUES:-3} id
  id=$(lddpm_job_id)
  case "$rc" in
    0)
      lddpm_log "finished (restart count $restarts)"
      exit 0
      ;;
    75)
      if [ "$terminated" -eq 1 ]; then
        lddpm_log "stopped after checkpointing while SLURM ends job $id (scancel or preemption):" \
          "not requeueing here. Submit the same script again to resume."
        exit 75
      fi
      if [ "$restarts" -ge "$max" ]; then
        lddpm_log "stopped after checkpointing, but job $id was already requeued $restarts time(s)" \
          "(LDDPM_MAX_REQUEUES=$max): not requeueing. Submit the same script again to resume."
        exit 75
      fi
      lddpm_log "stopped after checkpointing (exit 75): requeueing job $id (restart $((restarts + 1)) of at most $max)"
      if ! scontrol requeue "$id"; then
        lddpm_log "error: 'scontrol requeue $id' failed (does the cluster allow requeue? JobRequeue=1" \
          "or #SBATCH --requeue); submit the same script again to resume"
        exit 75
      fi
      # SLURM ends this instance of the script now; the requeued job starts it from the top.
      exit 0
      ;;
    *)
      lddpm_log "error: $what failed with exit code $rc"
      exit "$rc"
      ;;
  esac
}

# Run a step that is not resumable (preprocess, sample, evaluate); its exit code is the job's.
lddpm_run_once() {
  local rc=0
  lddpm_srun "$@" || rc=$?
  [ "$rc" -eq 0 ] || lddpm_log "error: lddpm $1 failed with exit code $rc"
  exit "$rc"
}
