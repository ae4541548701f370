#pragma once
// Who and where this process is: rank, world size, local rank on the node, host, and the number
// of torch intra-op threads it should use. MPI is initialised once, here, when the process was
// started by a launcher (mpirun/mpiexec, srun --mpi=pmix); a plain start is a world of one and
// never touches MPI. Launcher variables (OMPI_*, PMIX_*, SLURM_*) are read only in distributed/.
#include <string>
#include <vector>

namespace lddpm::dist {

struct RankInfo {
  int rank = 0;
  int localRank = 0;
  int threads = 1;
  std::string host;
  std::string device = "cpu";
};

class World {
 public:
  // Initialises the process-wide world (MPI when launched by a launcher). Call once, first thing
  // in main. Throws core::Error when launched by srun without an MPI plugin (each task would
  // otherwise believe it is rank 0 of 1).
  static World& init(int* argc, char*** argv);
  // The initialised world; a local world of one if init() was never called (unit tests).
  static World& get();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int localRank() const { return localRank_; }
  int localSize() const { return localSize_; }
  const std::string& host() const { return host_; }
  bool usesMpi() const { return mpi_; }
  // The MPI thread level granted (MPI_THREAD_* value), -1 without MPI.
  int threadLevel() const { return threadLevel_; }

  // Chooses and applies torch's intra-op thread count (see chooseThreadCount); returns it.
  int configureThreads(int requested);
  int threads() const { return threads_; }

  // Every rank's info, gathered on every rank (rank order).
  std::vector<RankInfo> allgatherRankInfo(const RankInfo& mine) const;
  void barrier() const;
  // Brings the whole job down (MPI_Abort when size > 1) — used when one rank fails, so the others
  // do not wait forever in a collective.
  [[noreturn]] void abort(int exitCode) const;
  // MPI_Finalize when MPI was initialised; idempotent. Called by main on every normal exit.
  void finalize();

  World(const World&) = delete;
  World& operator=(const World&) = delete;
  ~World();

 private:
  World() = default;
  int rank_ = 0;
  int size_ = 1;
  int localRank_ = 0;
  int localSize_ = 1;
  int threads_ = 1;
  int threadLevel_ = -1;
  bool mpi_ = false;
  bool finalized_ = false;
  std::string host_;
};

// Thread-count policy, pure for testing. First match wins:
//   requested > 0 (--threads) · SLURM_CPUS_PER_TASK · OMP_NUM_THREADS ·
//   cores this process may run on (affinity) — divided among the node's ranks unless the launcher
//   already bound each rank to its own cores (affinity smaller than the machine).
int chooseThreadCount(int requested, const char* slurmCpusPerTask, const char* ompNumThreads,
                      int affinityCores, int machineCores, int localSize);

// True when the environment says a launcher started us (Open MPI, PMIx, PMI2/Hydra).
bool launchedByMpiLauncher();

}  // namespace lddpm::dist
