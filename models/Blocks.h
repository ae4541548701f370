#pragma once
// The 3-D U-Net building blocks: sinusoidal timestep embedding, spatially-adaptive mask modulation
// (SPADE-style γ, β from the mask on the level's grid), ResBlock3D, down/up sampling and
// self-attention. Every tensor a block creates takes its options from the block's input.
#include <torch/torch.h>

#include <array>
#include <cstdint>

#include "models/Conv3d.h"

namespace lddpm::models {

// Sinusoidal embedding of integer timesteps t [B] -> [B, dim] (Transformer / DDPM style), with
// the dtype and device of `like`. Computed in float32 whatever `like` is: bf16 cannot tell
// neighbouring timesteps near T = 1000 apart.
torch::Tensor sinusoidalEmbedding(const torch::Tensor& t, std::int64_t dim,
                                  const torch::Tensor& like);

// t [B] -> [B, 4 * dim]: the sinusoidal embedding through Linear-SiLU-Linear.
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbeddingImpl(std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& t, const torch::Tensor& like);
  std::int64_t outDim() const { return 4 * dim_; }

 private:
  std::int64_t dim_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// One modulation site's maps, h -> h * scale + shift with scale = 1 + γ and shift = β
// ([B, C, D, H, W] each): what a (γ, β) convolution of the mask gives, in the form applied.
struct ModulationMaps {
  torch::Tensor scale, shift;
};
// gammaBeta = [γ, β] along channels ([B, 2C, ...]) -> {1 + γ, β}; β is a view into gammaBeta.
ModulationMaps modulationMaps(const torch::Tensor& gammaBeta);
// h [B, C, D, H, W] -> h * (1 + γ) + β.
torch::Tensor modulate(const torch::Tensor& h, const ModulationMaps& maps);

// Spatially-adaptive modulation (SPADE): h [B, C, D, H, W] normalised, mask [B, Cm, D, H, W] on
// the same grid -> h * (1 + γ(mask)) + β(mask), with γ, β from two 3x3x3 convolutions of the mask
// of its own. The γ, β convolution starts at zero, so an untrained modulation is the identity and
// the block starts as its unconditioned self.
class MaskModulationImpl : public torch::nn::Module {
 public:
  MaskModulationImpl(std::int64_t channels, std::int64_t maskChannels, std::int64_t hidden);
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& mask);
  ModulationMaps maps(const torch::Tensor& mask);  // forward = modulate(h, maps(mask))

 private:
  Conv3d shared_{nullptr}, gammaBeta_{nullptr};
};
TORCH_MODULE(MaskModulation);

// The mask features that all modulations of one U-Net level share (UNetOptions
// sharedMaskEmbedding): mask [B, Cm, D, H, W] -> SiLU(conv3(SiLU(conv3(mask)))) [B, hidden, ...],
// the same 5x5x5 receptive field on the mask as a MaskModulation's two convolutions. Each block
// then needs only a 1x1x1 convolution hidden -> (γ, β): the per-block 3x3x3 convolutions at full
// resolution were about half the FLOPs of the demo network (docs/models.md).
class MaskEmbeddingImpl : public torch::nn::Module {
 public:
  MaskEmbeddingImpl(std::int64_t maskChannels, std::int64_t hidden);
  torch::Tensor forward(const torch::Tensor& mask);

 private:
  Conv3d conv1_{nullptr}, conv2_{nullptr};
};
TORCH_MODULE(MaskEmbedding);

struct ResBlock3DOptions {
  ResBlock3DOptions(std::int64_t inChannels, std::int64_t outChannels)
      : inChannels_(inChannels), outChannels_(outChannels) {}
  TORCH_ARG(std::int64_t, inChannels);
  TORCH_ARG(std::int64_t, outChannels);
  TORCH_ARG(std::int64_t, embedDim) = 0;      // 0: no timestep embedding
  TORCH_ARG(std::int64_t, maskChannels) = 0;  // 0: no mask modulation
  TORCH_ARG(std::int64_t, modulationHidden) = 32;
  // false: `mask` is the mask itself and each of the two modulations has its own
  // MaskModulation; true: `mask` is the level's MaskEmbedding output (modulationHidden channels)
  // and one zero-initialised 1x1x1 convolution gives both modulations' (γ, β).
  TORCH_ARG(bool, sharedMaskEmbedding) = false;
  TORCH_ARG(std::int64_t, groups) = 8;
  TORCH_ARG(double, dropout) = 0.0;
};

// GroupNorm -> [modulate] -> SiLU -> conv3 -> + proj(emb) -> GroupNorm -> [modulate] -> SiLU ->
// dropout -> conv3 (zero-initialised, so each block starts as the identity), plus a residual
// (1x1 conv when the width changes). x [B, Cin, D, H, W] -> [B, Cout, D, H, W]; emb [B, E] and
// mask [B, Cm, D, H, W] (or the level's mask embedding [B, hidden, D, H, W] when
// sharedMaskEmbedding) are undefined tensors when the block has no such input.
class ResBlock3DImpl : public torch::nn::Module {
 public:
  // The maps of the block's two modulation sites (after norm1 and after norm2).
  using Maps = std::array<ModulationMaps, 2>;

  explicit ResBlock3DImpl(const ResBlock3DOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb,
                        const torch::Tensor& mask);
  // forward = shortcut(x) + branch(x, emb, mask). Activation checkpointing recomputes the branch
  // only, so x has one consumer inside the recomputed graph and its gradient terms are summed in
  // the same order as without checkpointing: bitwise-equal gradients.
  torch::Tensor shortcut(const torch::Tensor& x);
  torch::Tensor branch(const torch::Tensor& x, const torch::Tensor& emb, const torch::Tensor& mask);

  bool modulated() const { return !mod1_.is_empty() || !modGammaBeta_.is_empty(); }
  // The maps for `mask` (what forward takes): a function of the mask alone, so a sampler computes
  // them once per case and reuses them at every step (UNet3DImpl::condition). Only modulated().
  Maps modulationMaps(const torch::Tensor& mask);
  // forward with maps from modulationMaps instead of the mask: the same operations on the same
  // values, so the same bits.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb, const Maps& maps);
  const ResBlock3DOptions& options() const { return options_; }

 private:
  ResBlock3DOptions options_;
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  Conv3d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear embProj_{nullptr};
  MaskModulation mod1_{nullptr}, mod2_{nullptr};  // per-block modulation
  Conv3d modGammaBeta_{nullptr};                  // shared embedding: [γ1, β1, γ2, β2]

  // The branch with the maps given (`maps`), or made from the mask as it goes (nullptr).
  torch::Tensor branchWith(const torch::Tensor& x, const torch::Tensor& emb,
                           const torch::Tensor& mask, const Maps* maps);
};
TORCH_MODULE(ResBlock3D);

// Halves each side with a stride-2 3x3x3 convolution: [B, C, D, H, W] -> [B, C, D/2, H/2, W/2].
class Downsample3DImpl : public torch::nn::Module {
 public:
  explicit Downsample3DImpl(std::int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Conv3d conv_{nullptr};
};
TORCH_MODULE(Downsample3D);

// Doubles each side: nearest-neighbour upsampling then a 3x3x3 convolution (no checkerboard
// artefacts of a transposed convolution). [B, C, D, H, W] -> [B, C, 2D, 2H, 2W].
class Upsample3DImpl : public torch::nn::Module {
 public:
  explicit Upsample3DImpl(std::int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Conv3d conv_{nullptr};
};
TORCH_MODULE(Upsample3D);

// Multi-head self-attention over all N = D*H*W voxels, residual, output projection
// zero-initialised. Memory grows as N^2 per head: use at the coarsest levels only.
class AttentionBlock3DImpl : public torch::nn::Module {
 public:
  AttentionBlock3DImpl(std::int64_t channels, std::int64_t heads, std::int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::int64_t heads_;
  torch::nn::GroupNorm norm_{nullptr};
  Conv3d qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(AttentionBlock3D);

namespace detail {
// Sets every parameter of `module` to zero (used for the last layer of residual branches).
void zeroParameters(torch::nn::Module& module);
}  // namespace detail

}  // namespace lddpm::models
