#pragma once
// The synthetic Lesion-DDPM batch the benchmarks train on (ModelsBench, DataParallelBench): the
// image uniform in [-1, 1], three random binary anatomy channels and a lesion mask over ~10 % of
// the voxels, on the CPU, drawn from torch's global generator. A step's time does not depend on
// the values.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/Model.h"

namespace lddpm::bench {

inline models::Batch syntheticBatch(std::int64_t batch, const std::vector<std::int64_t>& grid) {
  const auto shape = [&](std::int64_t channels) {
    return std::vector<std::int64_t>{batch, channels, grid.at(0), grid.at(1), grid.at(2)};
  };
  models::Batch b;
  b.image = torch::rand(shape(1)) * 2 - 1;
  b.anatomy = (torch::rand(shape(3)) > 0.5).to(torch::kFloat32);
  b.lesion = (torch::rand(shape(1)) > 0.9).to(torch::kFloat32);
  return b;
}

}  // namespace lddpm::bench
