#pragma once
// What every rank samples, and in which order, as a pure function of (seed, epoch, global sample
// index): the epoch's sample order, each sample's subject, whether its patch is centred on a
// lesion voxel, where, and its augmentation. Rank r takes a contiguous slice of each global
// batch, so the union over ranks is the same global batch at any world size and a cursor
// (epoch, index) restores the exact continuation. No I/O here: Loader.h does the reading.
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/Json.h"

namespace lddpm::data {

struct SamplerOptions {
  std::uint64_t seed = 0;
  std::int64_t batchSize = 2;    // global batch (all ranks together)
  std::int64_t repeats = 1;      // samples drawn from each subject per epoch
  double lesionFraction = 0.33;  // probability that a patch is centred on a lesion voxel
  bool flip = false;             // left-right flip (x axis) with probability 1/2
  bool intensity = false;        // brain intensities * U[0.9, 1.1] + U[-0.1, 0.1], clipped

  void validate() const;  // UsageError naming the option
};

// Position in the sample stream: the global index of the first sample of the next global batch
// within `epoch`. Saved in checkpoints; restoring it continues the stream exactly.
struct Cursor {
  std::int64_t epoch = 0;
  std::int64_t index = 0;
  core::Json toJson() const { return {{"epoch", epoch}, {"index", index}}; }
  static Cursor fromJson(const core::Json& j) {
    return {j.at("epoch").get<std::int64_t>(), j.at("index").get<std::int64_t>()};
  }
  bool operator==(const Cursor& o) const { return epoch == o.epoch && index == o.index; }
};

// Every random decision about one sample.
struct SamplePlan {
  std::int64_t epoch = 0;
  std::int64_t globalIndex = 0;
  std::size_t subject = 0;  // index into the loader's subject list
  bool lesionCentred = false;
  std::uint64_t centreDraw = 0;    // picks the lesion voxel or the patch-index row
  std::array<double, 3> jitter{};  // in [0, 1): offset inside the patch-index cell
  bool flipX = false;
  double gain = 1.0, bias = 0.0;
};

class PatchSampler {
 public:
  PatchSampler(std::size_t subjects, SamplerOptions options);

  std::int64_t epochSize() const { return epochSize_; }
  // Whole global batches per epoch; the incomplete tail of an epoch is dropped, so every global
  // batch has exactly batchSize samples.
  std::int64_t batchesPerEpoch() const { return epochSize_ / options_.batchSize; }
  // Permutation of [0, epochSize) for this epoch; sample i draws subject order[i] % subjects.
  std::vector<std::int64_t> order(std::int64_t epoch) const;
  SamplePlan plan(std::int64_t epoch, std::int64_t globalIndex,
                  const std::vector<std::int64_t>& order) const;
  // This rank's plans for the global batch at `cursor`.
  std::vector<SamplePlan> rankBatch(const Cursor& cursor, int rank, int worldSize) const;
  // The same with `order` = order(cursor.epoch), for a caller that draws many batches: the order
  // costs O(subjects x repeats) (200 us a batch at 100 000 subjects), so make it once per epoch.
  std::vector<SamplePlan> rankBatch(const Cursor& cursor, int rank, int worldSize,
                                    const std::vector<std::int64_t>& order) const;
  // The cursor one global batch later (next epoch after the last whole batch).
  Cursor advance(const Cursor& cursor) const;

  // [begin, end) of rank r's share of a batch of n: n / world each, the first n % world ranks
  // one more. Ranks with an empty share get empty batches (the trainer weights by share size).
  static std::pair<std::int64_t, std::int64_t> rankSlice(std::int64_t n, int rank, int worldSize);

  // What centres the patch of `plan`, given a subject's N patch-index cells and L lesion voxels:
  // a lesion voxel (a lesion-centred plan of a scan with lesions), else a point drawn uniformly
  // in a patch-index cell, else (no index) the grid's centre; and which row of that table.
  struct Centre {
    enum class From { LesionVoxel, IndexCell, GridCentre } from = From::GridCentre;
    std::uint64_t row = 0;
  };
  static Centre centreOf(const SamplePlan& plan, std::int64_t indexCells,
                         std::int64_t lesionVoxels);
  // Start corner of the patch of edge `patch` in a grid [D, H, W], centred as `centre` says on
  // `zyx`, that row's (z, y, x) (a lesion voxel, or a cell centre of cells of `stride`; unused for
  // the grid's centre), then clamped so the patch lies inside the grid.
  static std::array<std::int64_t, 3> patchStart(const SamplePlan& plan, const Centre& centre,
                                                const std::array<std::int32_t, 3>& zyx,
                                                std::int64_t stride,
                                                const std::array<std::int64_t, 3>& grid,
                                                std::int64_t patch);
  // The same from a subject's whole tables: patchIndex [N, 4], lesionVoxels [L, 3] (int32).
  static std::array<std::int64_t, 3> patchStart(
      const SamplePlan& plan, const torch::Tensor& patchIndex, const torch::Tensor& lesionVoxels,
      std::int64_t stride, const std::array<std::int64_t, 3>& grid, std::int64_t patch);

  const SamplerOptions& options() const { return options_; }

 private:
  std::size_t subjects_;
  SamplerOptions options_;
  std::int64_t epochSize_;
};

}  // namespace lddpm::data
