#include "launch/engine/StoreBatchSource.h"

#include "core/Error.h"
#include "data/Manifest.h"
#include "data/PatchSampler.h"

namespace lddpm::launch {

torch::Tensor tissueOneHot(const torch::Tensor& tissue) {
  const torch::Tensor t = tissue.to(torch::kLong);
  return torch::cat({t.eq(1), t.eq(2), t.eq(3)}, 1).to(torch::kFloat32);
}

StoreBatchSource::StoreBatchSource(const TrainConfig& config, int rank, int worldSize)
    : accumulate_(config.accumulate) {
  options_.store = config.store;
  options_.split = config.split;
  options_.patch = config.patch;
  options_.sampler.seed = config.seed;
  options_.sampler.batchSize = config.batch / config.accumulate;  // one global micro-batch
  options_.sampler.lesionFraction = config.lesionFraction;
  options_.sampler.flip = config.flips;
  options_.rank = rank;
  options_.worldSize = worldSize;
  options_.threads = config.prefetch;
  const data::Manifest manifest = data::readManifest(config.store);
  std::size_t subjects = 0;
  for (const auto& s : manifest.subjects) subjects += (s.split == config.split) ? 1 : 0;
  if (subjects == 0) {
    throw core::IoError(config.store, core::strCat("has no '", config.split,
                                                   "' subjects (option --split)"));
  }
  batchesPerEpoch_ = data::PatchSampler(subjects, options_.sampler).batchesPerEpoch();
  voxels_ = 1;
  for (int a = 0; a < 3; ++a) voxels_ *= config.patch > 0 ? config.patch : manifest.grid[a];
}

data::Cursor StoreBatchSource::cursorAt(std::int64_t step) const {
  const std::int64_t micro = step * accumulate_;
  return {micro / batchesPerEpoch_, (micro % batchesPerEpoch_) * options_.sampler.batchSize};
}

void StoreBatchSource::start(std::int64_t step) {
  options_.start = cursorAt(step);
  loader_ = std::make_unique<data::Loader>(options_);
}

models::Batch StoreBatchSource::get(const std::vector<std::int64_t>& globalIndices) {
  if (!loader_) start(0);
  data::Batch b = loader_->next();
  LDDPM_CHECK(b.image.size(0) == static_cast<std::int64_t>(globalIndices.size()), "loader gave ",
              b.image.size(0), " samples where the engine expected ", globalIndices.size());
  // The FLAIR channel is the one the models synthesise (channel 0 of the store's image).
  return {b.image.narrow(1, 0, 1).contiguous(), tissueOneHot(b.tissue), b.lesion.to(torch::kFloat32)};
}

std::int64_t StoreBatchSource::voxelsPerSample() const { return voxels_; }

}  // namespace lddpm::launch
