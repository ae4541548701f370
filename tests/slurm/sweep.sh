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

# The template with the test cluster's resources in its #SBATCH block (one node, 1 core per
# task, no GPU): an array task gets no sbatch command-line options, and SLURM has no input
# environment variables for nodes or tasks. Everything after the block is the real template.
sed -e 's/^#SBATCH --nodes=.*/#SBATCH --nodes=1/' \
    -e 's/^#SBATCH --ntasks-per-node=.*/#SBATCH --ntasks-per-node=1/' \
    -e 's/^#SBATCH --cpus-per-task=.*/#SBATCH --cpus-per-task=1/' \
    -e 's/^#SBATCH --gpus-per-node=.*/#SBATCH --gpus-per-node=0/' \
    -e 's/^#SBATCH --time=.*/#SBATCH --time=10/' \
    "$repo/slurm/train.sbatch" > train.sbatch
cmp -s <(grep -v '^#SBATCH' train.sbatch) <(grep -v '^#SBATCH' "$repo/slurm/train.sbatch") ||
  fail "the test template differs from slurm/train.sbatch outside its #SBATCH lines"

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
"$lddpm" sweep --grid grid.ini --template "$work/train.sbatch" --out S > submit.txt 2>&1 ||
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
"$lddpm" sweep collect S > collect.txt 2>&1 || fail "lddpm sweep collect failed: $(cat collect.txt)"
for f in results.md results.csv results.json; do
  [ -s "S/$f" ] || fail "lddpm sweep collect wrote no S/$f"
done
[ "$(grep -c . S/results.csv)" -eq 4 ] || fail "results.csv does not have a header and 3 rows: $(cat S/results.csv)"
say "ok: 3-task sweep array trained, status and collect see 3 finished runs ($((SECONDS - t0)) s of jobs)"
