#include "distributed/World.h"

#include <sched.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/MpiCheck.h"

namespace lddpm::dist {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

int parsePositive(const char* text) {
  if (!text) return 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  return (end && *end == '\0' && v > 0 && v < 1 << 20) ? static_cast<int>(v) : 0;
}

int affinityCoreCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string hostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

World* gWorld = nullptr;

}  // namespace

namespace detail {
[[noreturn]] void throwMpiError(int code, const char* expr, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  int rank = -1;
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  LDDPM_THROW(MpiError, expr, " failed at ", file, ":", line, " on ", hostName(), " rank ", rank,
              ": ", text);
}
}  // namespace detail

bool launchedByMpiLauncher() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK") || env("PMI_SIZE");
}

int chooseThreadCount(int requested, const char* slurmCpusPerTask, const char* ompNumThreads,
                      int affinityCores, int machineCores, int localSize) {
  if (requested > 0) return requested;
  if (int v = parsePositive(slurmCpusPerTask)) return v;
  if (int v = parsePositive(ompNumThreads)) return v;
  affinityCores = std::max(1, affinityCores);
  if (affinityCores < machineCores) return affinityCores;  // launcher bound us already
  return std::max(1, affinityCores / std::max(1, localSize));
}

World& World::init(int* argc, char*** argv) {
  if (gWorld) return *gWorld;
  gWorld = new World();  // lives for the whole process; finalize() runs MPI_Finalize
  World& w = *gWorld;
  w.host_ = hostName();
  if (launchedByMpiLauncher()) {
    int provided = 0;
    LDDPM_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    w.mpi_ = true;
    w.threadLevel_ = provided;
    LDDPM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank_));
    LDDPM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size_));
    MPI_Comm node = MPI_COMM_NULL;
    LDDPM_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank_, MPI_INFO_NULL, &node));
    LDDPM_MPI_CHECK(MPI_Comm_rank(node, &w.localRank_));
    LDDPM_MPI_CHECK(MPI_Comm_size(node, &w.localSize_));
    MPI_Comm_free(&node);
  }
  const int slurmTasks = parsePositive(env("SLURM_NTASKS"));
  if (env("SLURM_STEP_ID") && slurmTasks > 1 && w.size_ == 1) {
    LDDPM_THROW(core::Error, "started by srun as one of ", slurmTasks,
                " tasks, but no MPI plugin connected them (world size 1). Launch with "
                "`srun --mpi=pmix lddpm ...` (see docs/slurm.md)");
  }
  core::Log::configure(
      core::LogConfig{w.rank_, w.size_, core::Log::config().level, core::Log::config().allRanks});
  return w;
}

World& World::get() {
  if (!gWorld) {
    gWorld = new World();
    gWorld->host_ = hostName();
  }
  return *gWorld;
}

World::~World() = default;

int World::configureThreads(int requested) {
  threads_ = chooseThreadCount(
      requested, env("SLURM_CPUS_PER_TASK"), env("OMP_NUM_THREADS"), affinityCoreCount(),
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency())), localSize_);
  torch::set_num_threads(threads_);
  return threads_;
}

std::vector<RankInfo> World::allgatherRankInfo(const RankInfo& mine) const {
  if (!mpi_ || size_ == 1) return {mine};
  // Fixed-size records: rank, localRank, threads, host[192], device[32].
  constexpr int kHost = 192;
  constexpr int kDevice = 32;
  constexpr int kRecord = 3 * sizeof(int) + kHost + kDevice;
  std::vector<char> send(kRecord, 0);
  const int ints[3] = {mine.rank, mine.localRank, mine.threads};
  std::memcpy(send.data(), ints, sizeof ints);
  std::strncpy(send.data() + sizeof ints, mine.host.c_str(), kHost - 1);
  std::strncpy(send.data() + sizeof ints + kHost, mine.device.c_str(), kDevice - 1);
  std::vector<char> recv(static_cast<size_t>(kRecord) * static_cast<size_t>(size_));
  LDDPM_MPI_CHECK(MPI_Allgather(send.data(), kRecord, MPI_CHAR, recv.data(), kRecord, MPI_CHAR,
                                MPI_COMM_WORLD));
  std::vector<RankInfo> all(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    const char* rec = recv.data() + static_cast<size_t>(r) * kRecord;
    int got[3];
    std::memcpy(got, rec, sizeof got);
    all[static_cast<size_t>(r)] = RankInfo{got[0], got[1], got[2], std::string(rec + sizeof got),
                                           std::string(rec + sizeof got + kHost)};
  }
  return all;
}

void World::barrier() const {
  if (mpi_) LDDPM_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void World::abort(int exitCode) const {
  if (mpi_ && size_ > 1 && !finalized_) MPI_Abort(MPI_COMM_WORLD, exitCode);
  std::_Exit(exitCode);
}

void World::finalize() {
  if (mpi_ && !finalized_) {
    finalized_ = true;
    MPI_Finalize();
  }
}

}  // namespace lddpm::dist
