#pragma once
// Connected-component labelling of binary volumes: shared by the lesion-wise scores of
// models/Metrics.h and the lesion transplant of data/LesionTransplant.h, which may not include
// each other (docs/architecture.md).
#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace lddpm::core {

// 26-connected components of a binary volume [D, H, W] (nonzero = foreground), as
// scipy.ndimage.label with a full 3×3×3 structure: int32 labels on the CPU, 0 background, 1..n
// in raster order of each component's first voxel. Returns (labels, n).
std::pair<torch::Tensor, std::int64_t> connectedComponents(const torch::Tensor& mask);

}  // namespace lddpm::core
