#pragma once
// The BatchSource of `lddpm train`: the data::Loader over an HDF5 store, one global micro-batch of
// batch / accumulate samples per get(), this rank's slice of it. It keeps BatchSource's contract:
// the content of a get() is a function of (seed, the global indices asked for) alone. Global
// index g lies in global micro-batch m = g / (batch / accumulate), which is loader position
// (m / batchesPerEpoch, (m mod batchesPerEpoch) · batch / accumulate); asking for the same
// indices twice (pix2pix's two parameter groups in one step) returns the same samples, and asking
// for any other position moves the loader there. For a CUDA run the batches are in pinned (page-
// locked) host memory, so the trainer's copies to the GPU are asynchronous.
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
  void prefetch(const std::vector<std::int64_t>& globalIndices) override;
  std::int64_t voxelsPerSample() const override;
  // data::classMeans of the store's --split (reads the split once).
  std::optional<models::ClassIntensities> classIntensities() override;

  // The loader position of global micro-batch `micro` (= step · accumulate + micro-batch).
  data::Cursor cursorOfMicroBatch(std::int64_t micro) const;
  // The loader position a run at optimiser step `step` reads next.
  data::Cursor cursorAt(std::int64_t step) const { return cursorOfMicroBatch(step * accumulate_); }

 private:
  // The loader position of `globalIndices`; core::Error unless they are exactly this rank's slice
  // of one global micro-batch.
  data::Cursor locate(const std::vector<std::int64_t>& globalIndices) const;
  void moveTo(const data::Cursor& cursor);

  data::LoaderOptions options_;
  std::int64_t accumulate_;
  std::int64_t microBatch_;  // global samples per micro-batch
  std::int64_t batchesPerEpoch_;
  std::int64_t voxels_;
  bool pinMemory_;  // CUDA runs: batches in pinned host memory (asynchronous copies)
  std::unique_ptr<data::Loader> loader_;
  std::vector<std::int64_t> lastIndices_;  // what the last get() returned, for a repeat
  models::Batch last_;
};

// Loader tissue labels [b, 1, D, H, W] (0 background, 1 CSF, 2 GM, 3 WM) as the models' one-hot
// anatomical mask [b, 3, D, H, W] float32 (background is all-zero).
torch::Tensor tissueOneHot(const torch::Tensor& tissue);

}  // namespace lddpm::launch
