#pragma once
// The BatchSource of `lddpm train`: the data::Loader over an HDF5 store, one global micro-batch of
// batch / accumulate samples per get(), this rank's slice of it. The loader's stream is a function
// of (seed, position) only, so the step alone fixes where a (resumed) run starts reading.
#include <memory>

#include "data/Loader.h"
#include "launch/engine/BatchSource.h"
#include "launch/engine/TrainConfig.h"

namespace lddpm::launch {

class StoreBatchSource : public BatchSource {
 public:
  StoreBatchSource(const TrainConfig& config, int rank, int worldSize);
  void start(std::int64_t step) override;
  models::Batch get(const std::vector<std::int64_t>& globalIndices) override;
  std::int64_t voxelsPerSample() const override;

  // The loader position a run at optimiser step `step` reads next.
  data::Cursor cursorAt(std::int64_t step) const;

 private:
  data::LoaderOptions options_;
  std::int64_t accumulate_;
  std::int64_t batchesPerEpoch_;
  std::int64_t voxels_;
  std::unique_ptr<data::Loader> loader_;
};

// Loader tissue labels [b, 1, D, H, W] (0 background, 1 CSF, 2 GM, 3 WM) as the models' one-hot
// anatomical mask [b, 3, D, H, W] float32 (background is all-zero).
torch::Tensor tissueOneHot(const torch::Tensor& tissue);

}  // namespace lddpm::launch
