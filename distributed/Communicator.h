#pragma once
// Collectives over torch tensors behind one small interface, with asynchronous handles, so the
// training engine, the data-parallel reducer and the sharded optimiser never see MPI or NCCL.
// Backends: Local (world of one, no work at all), MPI (CPU tensors, one communication thread),
// NCCL (CUDA tensors; compiled only when LDDPM_WITH_NCCL). Modelled on PyTorch c10d's Backend.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lddpm::dist {

class World;

enum class Backend { Auto, Local, Mpi, Nccl };
enum class ReduceOp { Sum, Avg };

// "auto" | "local" | "mpi" | "nccl"; throws core::UsageError naming --comm-backend otherwise.
Backend parseBackend(const std::string& name);
const char* backendName(Backend backend);

// A collective in flight. wait() blocks until it finished and rethrows its error, if any; after
// wait() the output tensors hold the result. For CUDA tensors (NCCL) wait() instead orders the
// caller's current stream after the collective, without blocking the host, as c10d does.
// Handles may be dropped without waiting only when a later wait() on the same communicator
// follows (collectives complete in issue order).
class Work {
 public:
  virtual ~Work() = default;
  virtual bool isCompleted() = 0;
  virtual void wait() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// Waits for every handle in order (the first error wins).
void waitAll(const std::vector<WorkPtr>& works);

// Settings shared by all backends (distributed/DistributedOptions.h fills them from the CLI).
struct CommunicatorOptions {
  // A collective that has not finished after this many seconds aborts the whole job (MPI_Abort /
  // ncclCommAbort) with a message naming it and the step. 0 disables the watchdog.
  double timeoutSeconds = 600.0;
  // MPI: run collectives on a dedicated thread (overlap with compute). Needs MPI_THREAD_MULTIPLE;
  // without it, or when false, collectives run synchronously in the calling thread.
  bool commThread = true;
  // MPI with the thread: a collective of at most this many bytes that finds nothing queued or
  // running runs in the calling thread instead (the hand-off's wake-ups cost more than a small
  // collective). 0: every collective goes through the thread.
  std::int64_t inlineBytes = std::int64_t{1} << 20;
};

// Every collective is issued by every rank in the same order, on contiguous tensors of one dtype
// that live on the backend's device (CPU for MPI, the rank's GPU for NCCL). Uneven splits: the
// flat tensors are partitioned in rank order by `counts` (elements per rank, sum = input numel).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual Backend backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Where the tensors of every collective must live: the CPU for Local and MPI, this rank's GPU
  // for NCCL. Control-plane values (loss sums, flags, norms) are moved here and back.
  virtual torch::Device device() const { return torch::kCPU; }

  // In place on every rank: tensor ← Σ_r tensor_r (or the mean).
  virtual WorkPtr allreduce(torch::Tensor tensor, ReduceOp op) = 0;
  // input [Σ counts] on every rank → output [counts[rank]]: rank r receives the reduction of the
  // r-th slice. Empty `counts` = equal slices (input numel divisible by size).
  virtual WorkPtr reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                                std::vector<int64_t> counts = {}) = 0;
  // input [counts[rank]] → output [Σ counts], slices in rank order. Empty counts = equal slices.
  virtual WorkPtr allgather(torch::Tensor output, torch::Tensor input,
                            std::vector<int64_t> counts = {}) = 0;
  // In place: every rank's tensor ← root's tensor.
  virtual WorkPtr broadcast(torch::Tensor tensor, int root) = 0;
  virtual WorkPtr barrier() = 0;

  // The training step, reported by the watchdog when a collective stalls (-1: not training).
  virtual void setStep(int64_t step) { step_ = step; }
  int64_t step() const { return step_; }

 protected:
  int64_t step_ = -1;
};

// Backend::Auto picks NCCL when this build has it and `device` is CUDA, MPI when the world has
// more than one rank, Local otherwise. Asking for a backend this build or world cannot provide
// throws core::UsageError naming --comm-backend.
std::unique_ptr<Communicator> makeCommunicator(Backend backend, const World& world,
                                               const CommunicatorOptions& options = {},
                                               torch::Device device = torch::kCPU);

namespace detail {
// Equal split of `total` over `size` ranks when `counts` is empty; otherwise checks that counts
// has one non-negative entry per rank summing to `total`. Throws core::Error naming `what`.
std::vector<int64_t> resolveCounts(std::vector<int64_t> counts, int64_t total, int size,
                                   const char* what);
// Exclusive prefix sum: offsets[r] = Σ_{q<r} counts[q].
std::vector<int64_t> offsetsOf(const std::vector<int64_t>& counts);
}  // namespace detail

}  // namespace lddpm::dist
