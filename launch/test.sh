#!/usr/bin/env bash
# The README's test command: install what is missing, build (Release, Ninja, ccache), run every
# test through ctest (unit, MPI under mpiexec -n 2/3, CLI, end-to-end, parser fuzzers, fault
# injection; labels in docs/architecture.md). Exit non-zero on any failure. LDDPM_JOBS sets the
# build parallelism (default: all cores). LDDPM_SANITIZERS picks the sanitizer trees built and run
# besides the normal build: tsan (the default: ThreadSanitizer on the threaded tests, ~17 minutes
# on 2 cores), all (also AddressSanitizer + UBSan on the unit, MPI and fuzz tests, ~28 minutes
# more) or none.
#
#   bash launch/test.sh [ctest arguments...]      e.g. bash launch/test.sh -L mpi, -LE asan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LDDPM_BUILD_DIR:-$root/build}
jobs=${LDDPM_JOBS:-$(nproc)}

case "${LDDPM_SANITIZERS:-tsan}" in
  tsan) sanitizers=tsan ;;
  all | 1) sanitizers="asan;tsan" ;;
  none | 0) sanitizers="" ;;
  *) echo "launch/test.sh: LDDPM_SANITIZERS='$LDDPM_SANITIZERS': expected tsan, all or none" >&2
     exit 2 ;;
esac
bash "$root/launch/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DLDDPM_SANITIZER_TESTS=$sanitizers"
cmake --build "$build" -j "$jobs"
cd "$build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j 1 "$@"
