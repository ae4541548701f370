#!/usr/bin/env bash
# docs/architecture.md layering, checked on the include graph: core/ includes no other layer; data/ and
# models/ include only core/; launch/engine/ (its own library) knows nothing of the commands; mpi.h
# and nccl.h appear only in distributed/ (and MPI tests).
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
fail=0
check() {  # check <folder> <forbidden include regex> <what>
  local hits
  hits=$(grep -rnE "#include *[<\"]($2)" "$1" --include='*.h' --include='*.cpp' 2>/dev/null)
  if [ -n "$hits" ]; then
    echo "layering: $1/ must not include $3:"; echo "$hits"; fail=1
  fi
}
check core 'data/|models/|distributed/|launch/' 'other layers'
check data 'models/|distributed/|launch/' 'models/, distributed/ or launch/'
check models 'data/|distributed/|launch/' 'data/, distributed/ or launch/'
check distributed 'data/|models/|launch/' 'data/, models/ or launch/'
check launch/engine 'launch/(Command|commands/|evaluation/|sweep/)' 'the commands, evaluate or sweep'
for dir in core data models launch; do check "$dir" '(mpi|nccl)\.h' 'mpi.h or nccl.h'; done
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
