#!/usr/bin/env bash
# The README's test command: install what is missing, build (Release, Ninja, ccache), run every
# test through ctest (unit, MPI under mpiexec -n 2/3, CLI, end-to-end, parser fuzzers, fault
# injection; labels in docs/architecture.md). Exit non-zero on any failure. LDDPM_JOBS sets the
# build parallelism (default: all cores). LDDPM_SANITIZERS picks the sanitizer trees built and run
# besides the normal build: default (ThreadSanitizer on the threaded tests, and AddressSanitizer +
# UBSan on the parsers, decoders and flat-buffer MPI tests and the fuzzers: tsan;asan-quick), tsan
# (the first only), all (tsan and ASan + UBSan on every unit, MPI and fuzz test of core/, data/ and
# distributed/, ~28 minutes more on 2 cores) or none. docs/architecture.md "Sanitizers".
#
#   bash launch/test.sh [ctest arguments...]      e.g. bash launch/test.sh -L mpi, -LE asan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LDDPM_BUILD_DIR:-$root/build}
jobs=${LDDPM_JOBS:-$(nproc)}

case "${LDDPM_SANITIZERS:-default}" in
  default) sanitizers="tsan;asan-quick" ;;
  tsan) sanitizers=tsan ;;
  all | 1) sanitizers="asan;tsan" ;;
  none | 0) sanitizers="" ;;
  *) echo "launch/test.sh: LDDPM_SANITIZERS='$LDDPM_SANITIZERS': expected default, tsan, all or none" >&2
     exit 2 ;;
esac
bash "$root/launch/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DLDDPM_SANITIZER_TESTS=$sanitizers"
cmake --build "$build" -j "$jobs"
cd "$build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j 1 "$@"
