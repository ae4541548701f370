#pragma once
// The one 3-D U-Net behind every model. Switches in UNetOptions make it the Lesion-DDPM denoiser
// (timestep + mask at the input and by modulation at every level), the cond-ddpm denoiser (mask at
// the input only), the pix2pix generator and the segmenter (neither timestep nor mask).
#include <torch/torch.h>

#include <unordered_map>
#include <vector>

#include "models/Blocks.h"
#include "models/UNetOptions.h"

namespace lddpm::models {

// What a mask contributes to a forward pass: the mask in the network's dtype, the mask (or its
// shared embedding) on every level's grid, and the (scale, shift) maps of modulated blocks. All
// are functions of the mask alone, not of x_t or t, so a sampler makes them once per batch of
// cases and reuses them at every denoising step (UNet3DImpl::condition).
struct MaskCondition {
  torch::Tensor mask;                 // [B, maskChannels, D, H, W]; undefined without a mask
  std::vector<torch::Tensor> levels;  // per level: what its modulated blocks take
  // The maps of the modulated blocks that fit the budget; a block missing here makes its maps
  // from levels[l] at every call.
  std::unordered_map<const ResBlock3DImpl*, ResBlock3DImpl::Maps> maps;
  std::int64_t mapBytes = 0;  // held by `maps`
};

class UNet3DImpl : public torch::nn::Module {
 public:
  explicit UNet3DImpl(const UNetOptions& options);

  // x [B, in, D, H, W] -> [B, out, D, H, W]. t [B] int64 timesteps (undefined unless useTimestep);
  // mask [B, maskChannels, D, H, W] (undefined when maskChannels == 0). D, H, W must be divisible
  // by options().sizeDivisor().
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t = {},
                        const torch::Tensor& mask = {});
  // The same with the mask's part made beforehand by condition(): the same operations on the
  // same values, so the same bits, without the modulation convolutions of the blocks whose maps
  // `condition` holds (about half a Lesion-DDPM step's FLOPs; docs/models.md).
  torch::Tensor forwardWith(const torch::Tensor& x, const torch::Tensor& t,
                            const MaskCondition& condition);
  // The mask's part of a forward pass in `dtype`. Blocks' maps are kept in forward order while
  // their total stays within `mapBudgetBytes` (0: none; they take 2 (Cin + Cout) channels per
  // block at the block's grid).
  MaskCondition condition(const torch::Tensor& mask, torch::ScalarType dtype,
                          std::int64_t mapBudgetBytes = 0);

  const UNetOptions& options() const { return options_; }

 private:
  struct Level {
    std::vector<ResBlock3D> blocks;
    std::vector<AttentionBlock3D> attention;  // one per block, or empty
  };
  torch::Tensor runBlock(ResBlock3D& block, const torch::Tensor& h, const torch::Tensor& emb,
                         const MaskCondition& condition, std::int64_t level, bool site,
                         bool checkpointed);
  // Every ResBlock in forward order with its level and whether its mask site is on.
  template <typename F>
  void forEachBlock(F&& f);

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
