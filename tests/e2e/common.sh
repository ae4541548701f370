# Sourced by the end-to-end scripts after they set e2e_name and mpiexec: a scratch folder
# (removed on exit unless LDDPM_E2E_KEEP=1) as the working directory, Open MPI allowed to run as root (the CI runs as
# root), that mpiexec first on PATH, and the helpers fail and expect_usage.
work=$(mktemp -d "/tmp/lddpm-$e2e_name.XXXXXX")
# LDDPM_E2E_KEEP=1 keeps it (its path is printed) to look into a failure.
if [ "${LDDPM_E2E_KEEP:-0}" = 1 ]; then
  echo "e2e $e2e_name: scratch folder $work (kept)" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PATH="$(dirname "$mpiexec"):$PATH"
fail() { echo "e2e $e2e_name: FAIL: $*" >&2; exit 1; }
expect_usage() {  # expect_usage OPTION COMMAND...: exit 2 and a message naming OPTION
  local code=0
  "${@:2}" > out.txt 2>&1 || code=$?
  [ "$code" -eq 2 ] || { cat out.txt >&2; fail "exit $code (not 2) for: ${*:2}"; }
  grep -q -- "$1" out.txt || { cat out.txt >&2; fail "message does not name $1"; }
}
