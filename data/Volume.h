#pragma once
// A 3-D image in memory: voxels plus the geometry that places them in the scanner/MNI world.
// Voxels are a float32 tensor [D, H, W] = [nz, ny, nx]: the same memory order as a NIfTI file
// (i fastest), so reading and writing never transpose. Models see [B, C, D, H, W].
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>

namespace lddpm::data {

using Affine = std::array<double, 16>;  // row-major 4x4, voxel (i, j, k, 1) -> world (x, y, z, 1)

struct Volume {
  torch::Tensor data;  // [nz, ny, nx] float32, contiguous
  Affine affine{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  std::array<double, 3> spacing{1, 1, 1};  // mm along i, j, k

  std::int64_t nx() const { return data.size(2); }
  std::int64_t ny() const { return data.size(1); }
  std::int64_t nz() const { return data.size(0); }
};

// Identity affine scaled by `spacing`.
inline Affine scaledAffine(const std::array<double, 3>& spacing) {
  return {spacing[0], 0, 0, 0, 0, spacing[1], 0, 0, 0, 0, spacing[2], 0, 0, 0, 0, 1};
}

}  // namespace lddpm::data
