#pragma once
// The pix2pix discriminator in 3-D: a PatchGAN that scores overlapping patches of (mask, image)
// pairs as real or synthetic, so the generator is pushed towards realistic local texture.
#include <torch/torch.h>

#include <cstdint>

namespace lddpm::models {

struct PatchGan3DOptions {
  explicit PatchGan3DOptions(std::int64_t inChannels) : inChannels_(inChannels) {}
  TORCH_ARG(std::int64_t, inChannels);
  TORCH_ARG(std::int64_t, baseChannels) = 16;
  // Stride-2 layers; each halves the grid, so the score map is 1/2^layers of the input per side.
  TORCH_ARG(std::int64_t, layers) = 3;
  TORCH_ARG(std::int64_t, groups) = 8;
};

// [B, in, D, H, W] -> [B, 1, D/2^layers, H/2^layers, W/2^layers] raw scores (least-squares GAN:
// no sigmoid). 3x3x3 kernels rather than pix2pix's 4x4x4: 27 vs 64 taps in 3-D for the same
// receptive-field growth per stride-2 layer give or take a voxel, and odd kernels keep grids exact.
// GroupNorm rather than BatchNorm: 3-D batches are 1-2 volumes.
class PatchGan3DImpl : public torch::nn::Module {
 public:
  explicit PatchGan3DImpl(const PatchGan3DOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Sequential net_{nullptr};
};
TORCH_MODULE(PatchGan3D);

}  // namespace lddpm::models
