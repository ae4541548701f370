#include "distributed/Communicator.h"

#include <numeric>

#include "core/Error.h"
#include "distributed/LocalCommunicator.h"
#include "distributed/MpiCommunicator.h"
#include "distributed/World.h"
#if LDDPM_WITH_NCCL
#include "distributed/NcclCommunicator.h"
#endif

namespace lddpm::dist {

Backend parseBackend(const std::string& name) {
  if (name == "auto") return Backend::Auto;
  if (name == "local") return Backend::Local;
  if (name == "mpi") return Backend::Mpi;
  if (name == "nccl") return Backend::Nccl;
  LDDPM_THROW(core::UsageError, "option '--comm-backend': '", name,
              "' is not one of auto, local, mpi, nccl");
}

const char* backendName(Backend backend) {
  switch (backend) {
    case Backend::Auto:
      return "auto";
    case Backend::Local:
      return "local";
    case Backend::Mpi:
      return "mpi";
    case Backend::Nccl:
      return "nccl";
  }
  return "?";
}

void waitAll(const std::vector<WorkPtr>& works) {
  for (const WorkPtr& w : works) {
    if (w) w->wait();
  }
}

std::unique_ptr<Communicator> makeCommunicator(Backend backend, const World& world,
                                               const CommunicatorOptions& options,
                                               torch::Device device) {
  if (backend == Backend::Auto) {
    if (LDDPM_WITH_NCCL && device.is_cuda()) {
      backend = Backend::Nccl;
    } else {
      backend = world.size() > 1 ? Backend::Mpi : Backend::Local;
    }
  }
  switch (backend) {
    case Backend::Local:
      if (world.size() != 1) {
        LDDPM_THROW(core::UsageError,
                    "option '--comm-backend': 'local' needs a world of one "
                    "rank, this job has ",
                    world.size());
      }
      return std::make_unique<LocalCommunicator>();
    case Backend::Mpi:
      if (!world.usesMpi() && world.size() == 1) return std::make_unique<LocalCommunicator>();
      return std::make_unique<MpiCommunicator>(world, options);
    case Backend::Nccl:
#if LDDPM_WITH_NCCL
      return std::make_unique<NcclCommunicator>(world, options);
#else
      LDDPM_THROW(core::UsageError,
                  "option '--comm-backend': this build has no NCCL (configure "
                  "with a CUDA LibTorch and NCCL; see docs/distributed.md)");
#endif
    case Backend::Auto:
      break;
  }
  LDDPM_THROW(core::Error, "makeCommunicator: unreachable backend");
}

namespace detail {

std::vector<int64_t> resolveCounts(std::vector<int64_t> counts, int64_t total, int size,
                                   const char* what) {
  if (counts.empty()) {
    LDDPM_CHECK(total % size == 0, what, ": ", total, " elements do not split evenly over ", size,
                " ranks; pass counts");
    return std::vector<int64_t>(static_cast<size_t>(size), total / size);
  }
  LDDPM_CHECK(static_cast<int>(counts.size()) == size, what, ": ", counts.size(), " counts for ",
              size, " ranks");
  for (int64_t c : counts) LDDPM_CHECK(c >= 0, what, ": negative count ", c);
  const int64_t sum = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  LDDPM_CHECK(sum == total, what, ": counts sum to ", sum, " but the flat tensor has ", total,
              " elements");
  return counts;
}

std::vector<int64_t> offsetsOf(const std::vector<int64_t>& counts) {
  std::vector<int64_t> offsets(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
  return offsets;
}

}  // namespace detail
}  // namespace lddpm::dist
