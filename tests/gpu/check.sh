#!/usr/bin/env bash
# The GPU check of docs/gpu.md, in one run on a machine with a CUDA GPU, a PyTorch wheel
# (its LibTorch), nvcc and the nvidia-nccl wheel, but no MPI/HDF5/Boost/nifticlib:
#   1. unpack the Debian 12 packages fetched by tests/gpu/fetch-debs.sh into a prefix;
#   2. configure + build lesion-ddpm with CUDA and NCCL on; check one libtorch and one libnccl;
#   3. run the gpu-labelled tests;
#   4. a Lesion-DDPM training step in fp32 and bf16 (step time, peak CUDA memory, model FLOP rate
#      vs one large bf16 conv3d in the same process);
#   5. NCCL communicator init + allreduce bandwidth at world size 1 (`lddpm bench comm`);
#   6. train the demo configuration on the GPU from a prebuilt store, then sample its test masks
#      with DDPM (all T steps) and DDIM (K = 10, 25, 50) and evaluate each: seconds per volume and
#      image metrics side by side (docs/BENCHMARKS.md).
# Every stage logs to <stage>.log and goes on after a failure; the logs are re-packed into
# $OUT/logs.tar.gz after each stage (a device runner may bring back only a few files) and the
# summary table, kept in $OUT/summary.md, is printed last. A test that crashes is rerun under gdb
# (when the machine has it) for a backtrace.
#   OUT=dir bash tests/gpu/check.sh [DEBS_DIR [STORE_DIR]]
# Defaults: .gpu-debs and .gpu-data/store (both git-ignored). Knobs: LDDPM_TORCH_PREFIX (a
# share/cmake prefix holding Torch), NCCL_ROOT, LDDPM_GPU_STAGES (space-separated subset of
# "deps configure build tests bench comm pipeline"), LDDPM_TRAIN_STEPS (default 400),
# LDDPM_GPU_SAMPLERS (default "ddpm:200 ddim:10 ddim:25 ddim:50"), LDDPM_GPU_DEVICE (cuda).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/gpu-out}
logs=${LDDPM_GPU_LOGS:-$root/build-gpu-logs}
debs=${1:-$root/.gpu-debs}
store=${2:-$root/.gpu-data/store}
deps=${LDDPM_DEPS_PREFIX:-$root/build-gpu-deps}
build=${LDDPM_BUILD_DIR:-$root/build-gpu}
stages=${LDDPM_GPU_STAGES:-deps configure build tests bench comm pipeline}
train_steps=${LDDPM_TRAIN_STEPS:-400}
samplers=${LDDPM_GPU_SAMPLERS:-ddpm:200 ddim:10 ddim:25 ddim:50}
device=${LDDPM_GPU_DEVICE:-cuda}  # cpu: rehearse the pipeline stage on a machine without a GPU
arch=x86_64-linux-gnu
export root out logs debs store deps build arch device
mkdir -p "$out" "$logs"
summary="$out/summary.md"
printf '| stage | result |\n|---|---|\n' > "$summary"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

note() { printf '| %s | %s |\n' "$1" "$2" >> "$summary"; }
want() { [[ " $stages " == *" $1 "* ]]; }

# stage NAME TIMEOUT_S CMD...: runs CMD with its output in $OUT/NAME.log, records ok/FAILED.
stage() {
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T))"
  local t0=$SECONDS rc=0
  # Functions run in a child bash (timeout cannot run them): they and the settings are exported.
  timeout "$limit" bash -c '"$@"' stage "$@" > "$logs/$name.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    note "$name" "ok, $((SECONDS - t0)) s"
  else
    note "$name" "FAILED (exit $rc after $((SECONDS - t0)) s; $name.log)"
    tail -n 25 "$logs/$name.log"
    if [ "$rc" -ge 128 ] && [ "$rc" -ne 137 ] && [ -x "$1" ] && command -v gdb > /dev/null; then
      timeout 300 gdb -batch -ex run -ex bt --args "$@" > "$logs/$name.gdb.log" 2>&1
      grep -A 30 '^Thread .* received signal\|^Program received signal' "$logs/$name.gdb.log" | head -40
    fi
  fi
  tar czf "$out/logs.tar.gz" -C "$logs" . 2> /dev/null
  return "$rc"
}

# --- 0. what machine this is --------------------------------------------------------------------
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  "${CXX:-c++}" --version 2>&1 | head -1
  ldd --version 2>&1 | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  nproc
} > "$logs/machine.log" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

# --- 1. Debian packages into a prefix -----------------------------------------------------------
unpack_deps() {
  rm -rf "$deps" "$deps.fallback"
  mkdir -p "$deps" "$deps.fallback"
  local d name
  for d in "$debs"/*.deb; do
    name=$(basename "$d"); name=${name%%_*}
    if grep -qx "$name" "$debs/direct.txt"; then
      dpkg-deb -x "$d" "$deps"
    else
      dpkg-deb -x "$d" "$deps.fallback"
    fi
  done
  # Transitive libraries only where the machine lacks that soname: its own (newer) copies win.
  local lib soname added=0
  for lib in "$deps.fallback/usr/lib/$arch"/*.so.* "$deps.fallback/lib/$arch"/*.so.*; do
    [ -f "$lib" ] && [ ! -L "$lib" ] || continue
    soname=$(objdump -p "$lib" 2>/dev/null | awk '/SONAME/ {print $2}')
    [ -n "$soname" ] || continue
    if ! ldconfig -p | grep -q "^[[:space:]]*$soname "; then
      cp "$lib" "$deps/usr/lib/$arch/$soname" && added=$((added + 1)) && echo "  + $soname"
    fi
  done
  # Debian's -dev symlinks may point at absolute paths (libz.so -> /lib/.../libz.so.1.2.13) that
  # differ here: repoint dangling ones at this machine's library of the same name.
  local link target found
  for link in "$deps/usr/lib/$arch"/*.so; do
    [ -L "$link" ] && [ ! -e "$link" ] || continue
    target=$(readlink "$link")
    found=$(ls /lib/$arch/"$(basename "$link")".[0-9]* /usr/lib/$arch/"$(basename "$link")".[0-9]* \
            "$deps/usr/lib/$arch/$(basename "$link")".[0-9]* 2>/dev/null | head -1)
    if [ -n "$found" ]; then ln -sf "$found" "$link" && echo "  $(basename "$link") -> $found (was $target)"; fi
  done
  echo "unpacked $(ls "$debs"/*.deb | wc -l) packages; $added transitive libraries the machine lacks"
}
export -f unpack_deps
# Open MPI and PMIx find their components and help files under their install prefix.
export OPAL_PREFIX="$deps/usr"
export PMIX_PREFIX="$deps/usr"
export LD_LIBRARY_PATH="$deps/usr/lib/$arch:$deps/usr/lib/$arch/hdf5/serial:$deps/usr/lib/$arch/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$deps/usr/bin:$PATH"
if want deps; then stage deps 300 unpack_deps; fi

# --- 2. configure + build -----------------------------------------------------------------------
torch_prefix=${LDDPM_TORCH_PREFIX:-$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)}
nccl_root=${NCCL_ROOT:-$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)}
export NCCL_ROOT="$nccl_root"
# The wheel's libnccl is found through torch's RPATH; the tests and lddpm need it on the path too.
[ -n "$nccl_root" ] && export LD_LIBRARY_PATH="$nccl_root/lib:$LD_LIBRARY_PATH"
torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
[ -n "$torch_lib" ] && export LD_LIBRARY_PATH="$torch_lib:$LD_LIBRARY_PATH"
if command -v nvcc > /dev/null; then
  export CUDACXX=${CUDACXX:-$(command -v nvcc)}
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$CUDACXX")")}
fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

configure() {
  local libdir="$deps/usr/lib/$arch"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$deps/usr;$torch_prefix" \
    -DCMAKE_LIBRARY_PATH="$libdir;$libdir/hdf5/serial" \
    -DCMAKE_INCLUDE_PATH="$deps/usr/include;$deps/usr/include/hdf5/serial" \
    -DCMAKE_LIBRARY_ARCHITECTURE="$arch" \
    -DMPI_C_COMPILER=NOTFOUND -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_SKIP_GUESSING=ON \
    -DMPI_C_HEADER_DIR="$libdir/openmpi/include" -DMPI_C_LIB_NAMES=mpi \
    -DMPI_mpi_LIBRARY="$libdir/openmpi/lib/libmpi.so" -DMPIEXEC_EXECUTABLE="$deps/usr/bin/mpiexec.openmpi" \
    -DHDF5_C_COMPILER_EXECUTABLE=/nonexistent/h5cc -DHDF5_C_INCLUDE_DIR="$deps/usr/include/hdf5/serial" \
    -DHDF5_C_LIBRARY_hdf5="$libdir/hdf5/serial/libhdf5.so" \
    -DHDF5_hdf5_LIBRARY_RELEASE="$libdir/hdf5/serial/libhdf5.so" \
    -DBoost_DIR="$libdir/cmake/Boost-1.74.0" -DBoost_NO_SYSTEM_PATHS=ON \
    -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" \
    -DGTest_DIR="$libdir/cmake/GTest" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
    -DCMAKE_CUDA_ARCHITECTURES=90 ${LDDPM_CMAKE_ARGS:-} "$@"
}
build_targets() {
  cmake --build "$build" -j "$(nproc)" -- -k 0 \
    lddpm NcclCommunicatorTest CudaModelsTest TrainerCudaTest ModelsBench
}
link_check() {
  ldd "$build/launch/lddpm" | grep -E 'nccl|libtorch|libc10|libmpi|hdf5|cudart'
  local n_nccl n_torch
  n_nccl=$(ldd "$build/launch/lddpm" | grep -c 'libnccl')
  n_torch=$(ldd "$build/launch/lddpm" | grep -c 'libtorch_cpu')
  echo "libnccl copies: $n_nccl, libtorch_cpu copies: $n_torch"
  "$build/launch/lddpm" info
  [ "$n_nccl" -le 1 ] && [ "$n_torch" -eq 1 ]
}
export torch_prefix
export -f configure build_targets link_check
if want configure; then
  stage configure 300 configure
  grep -E 'lesion-ddpm .*CUDA=|Torch|NCCL' "$logs/configure.log" | tail -3
fi
if want build; then
  stage build 330 build_targets
  stage link 60 link_check
fi

# --- 3. gpu-labelled tests ----------------------------------------------------------------------
if want tests; then
  for t in distributed/NcclCommunicatorTest models/CudaModelsTest launch/TrainerCudaTest; do
    name=$(basename "$t")
    stage "test-$name" 600 "$build/tests/$t"
    grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$logs/test-$name.log" | tr '\n' ' ' ; echo
  done
fi

# --- 4. one training step: fp32 vs bf16 ---------------------------------------------------------
bench_json() { python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(sys.argv[2].format(**d))' "$@"; }
if want bench; then
  for size in "64 2 32" "96 2 64"; do
    read -r side batch base <<< "$size"
    for prec in fp32 bf16; do
      flag=(); [ "$prec" = bf16 ] && flag=(--bf16)
      name="step-$side-b$batch-c$base-$prec"
      if stage "$name" 300 "$build/tests/bench/models/ModelsBench" --mode flops --device cuda \
          --side "$side" --batch "$batch" --base "$base" --steps 5 --json "${flag[@]}"; then
        note "$name" "$(bench_json "$logs/$name.log" 'step {step_s:.4f} s, peak {peak_mib:.0f} MiB, model {model_gflops:.0f} GFLOP/s = {ratio:.2f} x bf16 conv3d ({conv_gflops:.0f} GFLOP/s)')"
      fi
    done
  done
fi

# --- 5. NCCL at world size 1 --------------------------------------------------------------------
if want comm; then
  if stage comm-nccl 300 "$build/launch/lddpm" bench comm --device cuda --comm-backend nccl \
      --min-bytes 1M --max-bytes 1G --factor 8 --iters 20 --out "$logs/comm"; then
    tail -n 12 "$logs/comm-nccl.log"
  fi
fi

# --- 6. train on the GPU, DDPM vs DDIM ----------------------------------------------------------
lddpm="$build/launch/lddpm"
work="$root/build-gpu-run"
sample_and_score() {  # NAME SAMPLER STEPS
  local name=$1 sampler=$2 steps=$3
  "$lddpm" sample --run "$work/run" --store "$store" --split test --device "$device" \
    --sampler "$sampler" --steps "$steps" --out "$work/$name" &&
  "$lddpm" evaluate images --real "$work/$name/real" --synthetic "$work/$name/synthetic" \
    --mask "$work/$name/lesion" --brain-mask "$work/$name/brain" --out "$work/$name/eval"
}
export lddpm work
export -f sample_and_score
if want pipeline; then
  rm -rf "$work"; mkdir -p "$work"
  bf16=false; [ "$device" = cuda ] && bf16=true
  if stage train-gpu 420 "$lddpm" train --config "$root/launch/configs/demo.ini" --store "$store" \
      --run "$work/run" --device "$device" --bf16 "$bf16" --steps "$train_steps" --batch 8 \
      --checkpoint-every "$train_steps" --log-every 50; then
    note train-gpu "$(python3 - "$work/run/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = rows[-1]
print(f"{last['step']} steps, loss {last['loss']:.3f}, {last.get('samples_per_s', 0):.1f} samples/s, "
      f"data wait {100 * last.get('data_wait', 0):.1f} %")
EOF
)"
    names=()
    for spec in $samplers; do
      sampler=${spec%%:*}; steps=${spec##*:}; name="$sampler$steps"; names+=("$name")
      stage "sample-$name" 300 sample_and_score "$name" "$sampler" "$steps"
    done
    python3 - "$work" "${names[@]}" >> "$summary" <<'EOF'
import json, os, sys
work = sys.argv[1]
print("\n| sampler | steps | s/volume | MAE | PSNR (dB) | SSIM | lesion MAE |\n|---|---:|---:|---:|---:|---:|---:|")
for name in sys.argv[2:]:
    try:
        s = json.load(open(os.path.join(work, name, "sampling.json")))
        m = json.load(open(os.path.join(work, name, "eval", "images.json")))
        g = lambda k: f"{m['mean'][k]:.4g} ± {m['sd'][k]:.2g}" if m['mean'].get(k) is not None else "n/a"
        print(f"| {s['sampler']} | {s['steps']} | {s['seconds_per_volume']:.2f} | {g('mae')} | {g('psnr')} | {g('ssim')} | {g('lesion_mae')} |")
    except Exception as e:  # keep the table going; the stage logs say why
        print(f"| {name} | - | - | missing: {e} | | | |")
EOF
  fi
fi

echo
echo "# GPU check on ${gpu_name:-unknown GPU} ($(date -u +%F))"
cat "$summary"
