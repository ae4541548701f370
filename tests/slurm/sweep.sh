#!/usr/bin/env bash
# A 3-task sweep on a real single-node SLURM cluster (tests/slurm/cluster.sh): `lddpm sweep`
# expands a grid into a job array over slurm/train.sbatch, the tasks train, and `lddpm sweep
# status` / `lddpm sweep collect` see every run finished and write S/results.{md,csv,json}.
# Skips (exit 77) when this build has no `lddpm sweep` (it comes from the sweep branch).
#   sweep.sh LDDPM_BINARY REPO_ROOT
set -euo pipefail
source "$(dirname "$0")/harness.sh" slurm-sweep "$1" "$2"
if ! "$lddpm" sweep --help > /dev/null 2>&1; then
  say "SKIP: this lddpm has no 'sweep' command ('lddpm sweep --help' fails)"
  exit 77
fi
harness_start
make_store
t0=$SECONDS

cat > grid.ini <<INI
[sweep]
name = tiny
ranks = 1
[base]
store = $work/store
steps = 4
batch = 2
patch = 16
warmup = 1
log-every = 1
base-channels = 4
channel-mult = 1,2
attention-levels =
groups = 2
timesteps = 20
[grid]
lr = 1e-3, 2e-3, 4e-3
INI
# The real template; the test cluster's resources (one node, 1 core per task, no GPU) as sbatch
# options after the command, which override its #SBATCH lines as they would on a CPU partition.
"$lddpm" sweep --grid grid.ini --template "$repo/slurm/train.sbatch" --out S \
  --sbatch "sbatch ${test_resources[*]/--ntasks-per-node=2/--ntasks-per-node=1}" > submit.txt 2>&1 ||
  fail "lddpm sweep failed: $(cat submit.txt)"
cat submit.txt >&2

# Wait until SLURM has nothing left of the sweep (3 tasks, 2 at a time on 2 cores).
for i in $(seq 1 360); do
  [ -z "$(squeue -h -o %i)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h -o %i)" ] || fail "the sweep's jobs did not end within 180 s: $(squeue)"
"$lddpm" sweep status S > status.txt 2>&1 || fail "lddpm sweep status failed: $(cat status.txt)"
cat status.txt >&2
finished=$(find S -name status.json -exec grep -l '"state": *"finished"' {} + | wc -l)
[ "$finished" -eq 3 ] || fail "$finished of 3 runs finished"
[ "$(grep -l "finished (restart count 0)" S/logs/*_*.out | wc -l)" -eq 3 ] ||
  fail "not every array task's log (S/logs/%A_%a.out) says finished"
"$lddpm" sweep collect S > collect.txt 2>&1 || fail "lddpm sweep collect failed: $(cat collect.txt)"
for f in results.md results.csv results.json; do
  [ -s "S/$f" ] || fail "lddpm sweep collect wrote no S/$f"
done
[ "$(grep -c . S/results.csv)" -eq 4 ] || fail "results.csv does not have a header and 3 rows: $(cat S/results.csv)"
say "ok: 3-task sweep array trained, status and collect see 3 finished runs ($((SECONDS - t0)) s of jobs)"
