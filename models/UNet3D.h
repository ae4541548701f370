#pragma once
// The one 3-D U-Net behind every model. Switches in UNetOptions make it the Lesion-DDPM denoiser
// (timestep + mask at the input and by modulation at every level), the cond-ddpm denoiser (mask at
// the input only), the pix2pix generator and the segmenter (neither timestep nor mask).
#include <torch/torch.h>

#include <vector>

#include "models/Blocks.h"
#include "models/UNetOptions.h"

namespace lddpm::models {

class UNet3DImpl : public torch::nn::Module {
 public:
  explicit UNet3DImpl(const UNetOptions& options);

  // x [B, in, D, H, W] -> [B, out, D, H, W]. t [B] int64 timesteps (undefined unless useTimestep);
  // mask [B, maskChannels, D, H, W] (undefined when maskChannels == 0). D, H, W must be divisible
  // by options().sizeDivisor().
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t = {},
                        const torch::Tensor& mask = {});

  const UNetOptions& options() const { return options_; }

 private:
  struct Level {
    std::vector<ResBlock3D> blocks;
    std::vector<AttentionBlock3D> attention;  // one per block, or empty
  };
  torch::Tensor runBlock(ResBlock3D& block, const torch::Tensor& h, const torch::Tensor& emb,
                         const torch::Tensor& mask, bool checkpointed);

  UNetOptions options_;
  TimestepEmbedding timeEmbed_{nullptr};
  // sharedMaskEmbedding: one per level (index = level), null at levels no modulated block uses.
  std::vector<MaskEmbedding> maskEmbed_;
  Conv3d inConv_{nullptr}, outConv_{nullptr};
  torch::nn::GroupNorm outNorm_{nullptr};
  std::vector<Level> encoder_, decoder_;  // index = level (decoder_[l] runs after decoder_[l+1])
  std::vector<Downsample3D> down_;        // after encoder level l < levels - 1
  std::vector<Upsample3D> up_;            // at the end of decoder level l > 0 (index l - 1)
  ResBlock3D mid1_{nullptr}, mid2_{nullptr};
  AttentionBlock3D midAttention_{nullptr};
};
TORCH_MODULE(UNet3D);

}  // namespace lddpm::models
