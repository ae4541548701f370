#pragma once
// Options of the one 3-D U-Net behind every model (lesion-ddpm, cond-ddpm, the pix2pix generator,
// the segmenter): widths, depth, attention, and the switches that say where the conditioning mask
// enters and which levels recompute their activations in backward. Defaults: docs/models.md.
#include <torch/arg.h>

#include <cstdint>
#include <vector>

namespace lddpm::models {

struct UNetOptions {
  UNetOptions() = default;
  UNetOptions(std::int64_t inChannels, std::int64_t outChannels)
      : inChannels_(inChannels), outChannels_(outChannels) {}

  // Channels of the image the network transforms ([B, in, D, H, W] -> [B, out, D, H, W]).
  TORCH_ARG(std::int64_t, inChannels) = 1;
  TORCH_ARG(std::int64_t, outChannels) = 1;
  // Width of level 0; level l has baseChannels * channelMultipliers[l] channels. The number of
  // multipliers is the number of levels: volumes must be divisible by 2^(levels - 1).
  TORCH_ARG(std::int64_t, baseChannels) = 32;
  TORCH_ARG(std::vector<std::int64_t>, channelMultipliers) = std::vector<std::int64_t>{1, 2, 2, 4};
  TORCH_ARG(std::int64_t, blocksPerLevel) = 1;
  // Levels (0 = finest) whose encoder and decoder blocks are followed by self-attention; the
  // bottleneck carries attention whenever this list is non-empty. Attention is over every voxel of
  // the level, so only coarse levels are affordable in 3-D.
  TORCH_ARG(std::vector<std::int64_t>, attentionLevels) = std::vector<std::int64_t>{3};
  TORCH_ARG(std::int64_t, attentionHeads) = 4;
  TORCH_ARG(std::int64_t, groups) = 8;  // GroupNorm groups; every width must be divisible by it
  TORCH_ARG(double, dropout) = 0.0;
  // A timestep embedding feeds every ResBlock (diffusion denoisers); off for pix2pix and seg.
  TORCH_ARG(bool, useTimestep) = true;

  // Conditioning mask [B, maskChannels, D, H, W]; 0 means the network takes no mask.
  TORCH_ARG(std::int64_t, maskChannels) = 0;
  // Where the mask enters (docs/models.md): concatenated to the input, and/or by
  // spatially-adaptive modulation of the GroupNorm output in encoder, bottleneck, decoder blocks.
  TORCH_ARG(bool, maskAtInput) = true;
  TORCH_ARG(bool, maskInEncoder) = false;
  TORCH_ARG(bool, maskInBottleneck) = false;
  TORCH_ARG(bool, maskInDecoder) = false;
  TORCH_ARG(std::int64_t, modulationHidden) = 32;  // channels of the mask -> (γ, β) convolution
  // false: every modulation convolves the mask itself (SPADE, two 3x3x3 convolutions each);
  // true: one MaskEmbedding per level shared by that level's blocks, a 1x1x1 (γ, β) per block.
  TORCH_ARG(bool, sharedMaskEmbedding) = false;

  // Levels whose blocks recompute their activations in backward instead of keeping them
  // (ActivationCheckpoint.h); the bottleneck counts as the coarsest level.
  TORCH_ARG(std::vector<std::int64_t>, checkpointLevels) = std::vector<std::int64_t>{};

  // TORCH_ARG leaves the section private; the derived quantities below are public.
 public:
  std::int64_t levels() const { return static_cast<std::int64_t>(channelMultipliers_.size()); }
  std::int64_t channelsAt(std::int64_t level) const {
    return baseChannels_ * channelMultipliers_.at(static_cast<std::size_t>(level));
  }
  // Side lengths must be divisible by this (one halving per level below the first).
  std::int64_t sizeDivisor() const { return std::int64_t{1} << (levels() - 1); }
  bool anyModulation() const { return maskInEncoder_ || maskInBottleneck_ || maskInDecoder_; }
};

}  // namespace lddpm::models
