// Deterministic sample plans: see PatchSampler.h and docs/store.md "Loader".
#include "data/PatchSampler.h"

#include <algorithm>
#include <numeric>

#include "core/Error.h"
#include "core/Rng.h"

namespace lddpm::data {
namespace {

// A portable stream of 64-bit values (SplitMix64 over a counter). std::uniform_*_distribution
// differ between standard libraries; these conversions are spelled out so plans are identical
// everywhere.
class Stream {
 public:
  explicit Stream(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() { return core::splitmix64(state_++); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>(uniform() * static_cast<double>(n));
  }

 private:
  std::uint64_t state_;
};

}  // namespace

void SamplerOptions::validate() const {
  // data/ knows no command line: the messages name the quantity; the commands validate their
  // own options (--batch, --lesion-fraction) before they get here.
  if (batchSize < 1)
    LDDPM_THROW(core::UsageError, "the batch per rank must be positive, got ", batchSize);
  if (repeats < 1)
    LDDPM_THROW(core::UsageError, "repeats per subject must be positive, got ", repeats);
  if (!(lesionFraction >= 0 && lesionFraction <= 1)) {
    LDDPM_THROW(core::UsageError, "lesion fraction must be in [0, 1], got ", lesionFraction);
  }
}

PatchSampler::PatchSampler(std::size_t subjects, SamplerOptions options)
    : subjects_(subjects),
      options_(options),
      epochSize_(static_cast<std::int64_t>(subjects) * options.repeats) {
  options_.validate();
  LDDPM_CHECK(subjects_ > 0, "the store holds no subjects to sample from");
  if (batchesPerEpoch() == 0) {
    LDDPM_THROW(core::UsageError, "a batch of ", options_.batchSize,
                " per rank is larger than an epoch (", epochSize_, " samples = ", subjects_,
                " subjects x ", options_.repeats, " repeats): lower --batch or add subjects");
  }
}

std::vector<std::int64_t> PatchSampler::order(std::int64_t epoch) const {
  std::vector<std::int64_t> order(static_cast<std::size_t>(epochSize_));
  std::iota(order.begin(), order.end(), 0);
  Stream s(core::deriveSeed(options_.seed, core::RngStream::DataOrder,
                            {static_cast<std::uint64_t>(epoch)}));
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[s.below(i)]);  // Fisher-Yates
  return order;
}

SamplePlan PatchSampler::plan(std::int64_t epoch, std::int64_t globalIndex,
                              const std::vector<std::int64_t>& order) const {
  SamplePlan p;
  p.epoch = epoch;
  p.globalIndex = globalIndex;
  p.subject = static_cast<std::size_t>(order.at(static_cast<std::size_t>(globalIndex)) %
                                       static_cast<std::int64_t>(subjects_));
  const auto e = static_cast<std::uint64_t>(epoch), i = static_cast<std::uint64_t>(globalIndex);
  Stream centre(core::deriveSeed(options_.seed, core::RngStream::PatchCentre, {e, i}));
  p.lesionCentred = centre.uniform() < options_.lesionFraction;
  p.centreDraw = centre.next();
  for (double& j : p.jitter) j = centre.uniform();
  Stream augment(core::deriveSeed(options_.seed, core::RngStream::Augment, {e, i}));
  const bool flip = augment.uniform() < 0.5;
  const double gain = 0.9 + 0.2 * augment.uniform(), bias = -0.1 + 0.2 * augment.uniform();
  p.flipX = options_.flip && flip;
  if (options_.intensity) {
    p.gain = gain;
    p.bias = bias;
  }
  return p;
}

std::pair<std::int64_t, std::int64_t> PatchSampler::rankSlice(std::int64_t n, int rank,
                                                              int worldSize) {
  const std::int64_t base = n / worldSize, extra = n % worldSize;
  const std::int64_t begin = rank * base + std::min<std::int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

std::vector<SamplePlan> PatchSampler::rankBatch(const Cursor& cursor, int rank,
                                                int worldSize) const {
  return rankBatch(cursor, rank, worldSize, order(cursor.epoch));
}

std::vector<SamplePlan> PatchSampler::rankBatch(const Cursor& cursor, int rank, int worldSize,
                                                const std::vector<std::int64_t>& order) const {
  LDDPM_CHECK(rank >= 0 && rank < worldSize, "rank ", rank, " outside world size ", worldSize);
  LDDPM_CHECK(static_cast<std::int64_t>(order.size()) == epochSize_, "sample order of ",
              order.size(), " for an epoch of ", epochSize_);
  const auto [begin, end] = rankSlice(options_.batchSize, rank, worldSize);
  std::vector<SamplePlan> plans;
  for (std::int64_t k = begin; k < end; ++k)
    plans.push_back(plan(cursor.epoch, cursor.index + k, order));
  return plans;
}

Cursor PatchSampler::advance(const Cursor& cursor) const {
  Cursor next{cursor.epoch, cursor.index + options_.batchSize};
  if (next.index + options_.batchSize > epochSize_) next = {cursor.epoch + 1, 0};
  return next;
}

PatchSampler::Centre PatchSampler::centreOf(const SamplePlan& plan, std::int64_t indexCells,
                                            std::int64_t lesionVoxels) {
  if (plan.lesionCentred && lesionVoxels > 0)
    return {Centre::From::LesionVoxel, plan.centreDraw % static_cast<std::uint64_t>(lesionVoxels)};
  if (indexCells > 0)
    return {Centre::From::IndexCell, plan.centreDraw % static_cast<std::uint64_t>(indexCells)};
  return {};
}

std::array<std::int64_t, 3> PatchSampler::patchStart(const SamplePlan& plan, const Centre& centre,
                                                     const std::array<std::int32_t, 3>& zyx,
                                                     std::int64_t stride,
                                                     const std::array<std::int64_t, 3>& grid,
                                                     std::int64_t patch) {
  std::array<std::int64_t, 3> at{grid[0] / 2, grid[1] / 2, grid[2] / 2};
  for (int a = 0; a < 3; ++a) {
    if (centre.from == Centre::From::LesionVoxel) {
      at[a] = zyx[a];
    } else if (centre.from == Centre::From::IndexCell) {
      // Index rows are cell centres at stride/2 + k*stride: a uniform point of the cell.
      at[a] = zyx[a] - stride / 2 +
              static_cast<std::int64_t>(plan.jitter[a] * static_cast<double>(stride));
    }
  }
  std::array<std::int64_t, 3> start{};
  for (int a = 0; a < 3; ++a)
    start[a] = std::clamp<std::int64_t>(at[a] - patch / 2, 0, grid[a] - patch);
  return start;
}

std::array<std::int64_t, 3> PatchSampler::patchStart(
    const SamplePlan& plan, const torch::Tensor& patchIndex, const torch::Tensor& lesionVoxels,
    std::int64_t stride, const std::array<std::int64_t, 3>& grid, std::int64_t patch) {
  const Centre centre = centreOf(plan, patchIndex.size(0), lesionVoxels.size(0));
  const bool lesion = centre.from == Centre::From::LesionVoxel;
  std::array<std::int32_t, 3> zyx{};
  if (centre.from != Centre::From::GridCentre) {
    const auto* table = (lesion ? lesionVoxels : patchIndex).data_ptr<std::int32_t>();
    for (int a = 0; a < 3; ++a) zyx[a] = table[centre.row * (lesion ? 3 : 4) + a];
  }
  return patchStart(plan, centre, zyx, stride, grid, patch);
}

}  // namespace lddpm::data
