# Sourced by launch/demo.sh, downstream.sh, reproduce.sh and beyond.sh. `stage NAME COMMAND...` runs
# COMMAND unless $stage_dir/.done-NAME says it finished before; on success it writes the seconds
# it took there. A failed or interrupted command leaves no marker, so the next run redoes it.
stage() {
  local name=$1; shift
  if [ -f "$stage_dir/.done-$name" ]; then
    echo "== $name: done before, reused (delete $stage_dir/.done-$name to redo)"
    return
  fi
  echo "== $name"
  local t0; t0=$(date +%s)
  "$@"
  echo "$(( $(date +%s) - t0 ))" > "$stage_dir/.done-$name"
}

# launch_prefix LDDPM RANKS LAUNCHER: sets the array `launch` to start LDDPM plain, under
# `mpirun -n RANKS` when RANKS > 1, or behind LAUNCHER (a prefix split at spaces, e.g.
# "srun --mpi=pmix") when that is given.
launch_prefix() {
  local lddpm=$1 ranks=$2 launcher=$3
  launch=("$lddpm")
  if [ -n "$launcher" ]; then
    read -r -a launch <<< "$launcher"
    launch+=("$lddpm")
  elif [ "$ranks" -gt 1 ]; then
    launch=(mpirun -n "$ranks" --oversubscribe)
    [ "$(id -u)" -ne 0 ] || launch+=(--allow-run-as-root)
    launch+=("$lddpm")
  fi
}

# stage_begin DIR LDDPM RANKS LAUNCHER: the set-up of a staged pipeline (reproduce.sh, beyond.sh,
# downstream.sh): creates DIR and sets `out` to its absolute path, `stage_dir` to it, `start` to
# now (for the closing "finished in N s") and the array `launch` as launch_prefix does.
stage_begin() {
  mkdir -p "$1"
  out=$(cd "$1" && pwd)
  stage_dir=$out
  start=$(date +%s)
  launch_prefix "$2" "$3" "$4"
}
