#pragma once
// Where the training engine gets samples. A sample is named by its GLOBAL index
// g = step · batch + j (j < batch), and its content — which subject, which crop, which flips — is
// a function of (seed, g) only. Rank r of W asks for its own slice of each step's indices, so the
// union over ranks is the same global batch whatever W is (world-size invariance).
#include <cstdint>
#include <optional>
#include <vector>

#include "models/Model.h"

namespace lddpm::launch {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Called once before the first get(): the run starts (or resumes) at optimiser step `step`.
  virtual void start(std::int64_t step) {}
  // The samples with these global indices, stacked in order: image [n,1,D,H,W], anatomy
  // [n,Cm,D,H,W], lesion [n,1,D,H,W] on the CPU.
  virtual models::Batch get(const std::vector<std::int64_t>& globalIndices) = 0;
  // Hint: indices a later get() will ask for, so a prefetching source can start reading now.
  virtual void prefetch(const std::vector<std::int64_t>& globalIndices) {}
  // Voxels of one sample (for the voxels/s figure).
  virtual std::int64_t voxelsPerSample() const = 0;
  // The mean intensity of each voxel class over the samples' split, for a model that wants it
  // (ModelImpl::wantsClassIntensities); nullopt from a source that cannot tell.
  virtual std::optional<models::ClassIntensities> classIntensities() { return std::nullopt; }
};

// The global indices rank `rank` of `worldSize` trains on in micro-batch `micro` of `step`:
// the step's batch is split into `accumulate` consecutive micro-batches, each split evenly over
// the ranks in rank order.
inline std::vector<std::int64_t> localIndices(std::int64_t step, std::int64_t micro,
                                              std::int64_t batch, std::int64_t accumulate, int rank,
                                              int worldSize) {
  const std::int64_t perMicro = batch / accumulate;
  const std::int64_t perRank = perMicro / worldSize;
  std::vector<std::int64_t> out;
  out.reserve(static_cast<size_t>(perRank));
  const std::int64_t first = step * batch + micro * perMicro + rank * perRank;
  for (std::int64_t i = 0; i < perRank; ++i) out.push_back(first + i);
  return out;
}

}  // namespace lddpm::launch
