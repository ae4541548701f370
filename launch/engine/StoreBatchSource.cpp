#include "launch/engine/StoreBatchSource.h"

#include "core/Error.h"
#include "data/ClassMeans.h"
#include "data/Manifest.h"
#include "data/PatchSampler.h"

namespace lddpm::launch {

torch::Tensor tissueOneHot(const torch::Tensor& tissue) {
  const torch::Tensor t = tissue.to(torch::kLong);
  return torch::cat({t.eq(1), t.eq(2), t.eq(3)}, 1).to(torch::kFloat32);
}

StoreBatchSource::StoreBatchSource(const TrainConfig& config, int rank, int worldSize)
    : options_(config.data),
      accumulate_(config.accumulate),
      microBatch_(config.batch / config.accumulate),
      pinMemory_(config.device == "cuda") {
  options_.sampler.seed = config.seed;
  options_.sampler.batchSize = microBatch_;  // one global micro-batch
  options_.rank = rank;
  options_.worldSize = worldSize;
  const data::Manifest manifest = data::readManifest(options_.store);
  const std::size_t subjects = manifest.casesOf(options_.split, /*limit=*/0, options_.store).size();
  batchesPerEpoch_ = data::PatchSampler(subjects, options_.sampler).batchesPerEpoch();
  voxels_ = 1;
  for (int a = 0; a < 3; ++a) voxels_ *= options_.patch > 0 ? options_.patch : manifest.grid[a];
}

data::Cursor StoreBatchSource::cursorOfMicroBatch(std::int64_t micro) const {
  return {micro / batchesPerEpoch_, (micro % batchesPerEpoch_) * microBatch_};
}

data::Cursor StoreBatchSource::locate(const std::vector<std::int64_t>& globalIndices) const {
  LDDPM_CHECK(!globalIndices.empty(), "StoreBatchSource: asked for no samples");
  const std::int64_t micro = globalIndices.front() / microBatch_;
  const auto [begin, end] =
      data::PatchSampler::rankSlice(microBatch_, options_.rank, options_.worldSize);
  bool slice = static_cast<std::int64_t>(globalIndices.size()) == end - begin;
  for (std::size_t i = 0; slice && i < globalIndices.size(); ++i) {
    slice = globalIndices[i] == micro * microBatch_ + begin + static_cast<std::int64_t>(i);
  }
  LDDPM_CHECK(slice, "StoreBatchSource: global indices ", globalIndices.front(), "..",
              globalIndices.back(), " are not rank ", options_.rank,
              "'s slice of one micro-batch of ", microBatch_, " samples");
  return cursorOfMicroBatch(micro);
}

void StoreBatchSource::moveTo(const data::Cursor& cursor) {
  if (loader_ && loader_->cursor() == cursor) return;
  options_.start = cursor;
  loader_.reset();  // joins its prefetch threads before a new loader starts its own
  loader_ = std::make_unique<data::Loader>(options_);
}

void StoreBatchSource::start(std::int64_t step) { moveTo(cursorAt(step)); }

std::optional<models::ClassIntensities> StoreBatchSource::classIntensities() {
  const data::ClassMeans m = data::classMeans(options_.store, data::parseSplit(options_.split));
  return models::ClassIntensities{m.background, m.csf, m.greyMatter, m.whiteMatter, m.lesion};
}

void StoreBatchSource::prefetch(const std::vector<std::int64_t>& globalIndices) {
  moveTo(locate(globalIndices));
}

models::Batch StoreBatchSource::get(const std::vector<std::int64_t>& globalIndices) {
  if (globalIndices == lastIndices_) return last_;
  moveTo(locate(globalIndices));
  data::Batch b = loader_->next();
  LDDPM_CHECK(b.image.size(0) == static_cast<std::int64_t>(globalIndices.size()), "loader gave ",
              b.image.size(0), " samples where the engine expected ", globalIndices.size());
  // The FLAIR channel is the one the models synthesise (channel 0 of the store's image).
  last_ = {b.image.narrow(1, 0, 1).contiguous(), tissueOneHot(b.tissue),
           b.lesion.to(torch::kFloat32)};
  if (pinMemory_) {  // page-locked, so the trainer's copies to the GPU run asynchronously
    last_ = {last_.image.pin_memory(), last_.anatomy.pin_memory(), last_.lesion.pin_memory()};
  }
  lastIndices_ = globalIndices;
  return last_;
}

std::int64_t StoreBatchSource::voxelsPerSample() const { return voxels_; }

}  // namespace lddpm::launch
