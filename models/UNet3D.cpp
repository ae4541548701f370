#include "models/UNet3D.h"

#include <algorithm>
#include <string>

#include "core/Error.h"
#include "models/ActivationCheckpoint.h"

namespace lddpm::models {

namespace nn = torch::nn;

namespace {
bool contains(const std::vector<std::int64_t>& list, std::int64_t value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}
}  // namespace

UNet3DImpl::UNet3DImpl(const UNetOptions& options) : options_(options) {
  const auto& o = options_;
  LDDPM_CHECK(o.levels() >= 1, "UNet3D: channelMultipliers must name at least one level");
  LDDPM_CHECK(o.blocksPerLevel() >= 1, "UNet3D: blocksPerLevel must be >= 1");
  const bool hasMask = o.maskChannels() > 0;
  const std::int64_t embedDim = o.useTimestep() ? 4 * o.baseChannels() : 0;
  if (o.useTimestep())
    timeEmbed_ = register_module("time_embed", TimestepEmbedding(o.baseChannels()));

  auto block = [&](std::int64_t in, std::int64_t out, bool modulated) {
    return ResBlock3D(ResBlock3DOptions(in, out)
                          .embedDim(embedDim)
                          .maskChannels(hasMask && modulated ? o.maskChannels() : 0)
                          .modulationHidden(o.modulationHidden())
                          .sharedMaskEmbedding(o.sharedMaskEmbedding())
                          .groups(o.groups())
                          .dropout(o.dropout()));
  };

  // A level's embedding exists only where a block uses it: a parameter without gradient would
  // stall data parallelism's gradient buckets.
  maskEmbed_.resize(static_cast<std::size_t>(o.levels()), MaskEmbedding(nullptr));
  for (std::int64_t l = 0; hasMask && o.sharedMaskEmbedding() && l < o.levels(); ++l) {
    if (o.maskInEncoder() || o.maskInDecoder() || (o.maskInBottleneck() && l == o.levels() - 1)) {
      maskEmbed_[static_cast<std::size_t>(l)] = register_module(
          "mod_embed" + std::to_string(l), MaskEmbedding(o.maskChannels(), o.modulationHidden()));
    }
  }

  const std::int64_t inputChannels =
      o.inChannels() + (hasMask && o.maskAtInput() ? o.maskChannels() : 0);
  inConv_ = register_module(
      "in_conv", Conv3d(nn::Conv3dOptions(inputChannels, o.baseChannels(), 3).padding(1)));

  // Encoder; skipChannels records the width of every tensor the decoder will concatenate back.
  std::vector<std::int64_t> skipChannels{o.baseChannels()};
  std::int64_t ch = o.baseChannels();
  for (std::int64_t l = 0; l < o.levels(); ++l) {
    Level level;
    const bool attend = contains(o.attentionLevels(), l);
    for (std::int64_t i = 0; i < o.blocksPerLevel(); ++i) {
      const std::string name = "enc" + std::to_string(l) + "_block" + std::to_string(i);
      level.blocks.push_back(register_module(name, block(ch, o.channelsAt(l), o.maskInEncoder())));
      ch = o.channelsAt(l);
      if (attend) {
        level.attention.push_back(
            register_module("enc" + std::to_string(l) + "_attn" + std::to_string(i),
                            AttentionBlock3D(ch, o.attentionHeads(), o.groups())));
      }
      skipChannels.push_back(ch);
    }
    encoder_.push_back(std::move(level));
    if (l + 1 < o.levels()) {
      down_.push_back(register_module("down" + std::to_string(l), Downsample3D(ch)));
      skipChannels.push_back(ch);
    }
  }

  mid1_ = register_module("mid_block1", block(ch, ch, o.maskInBottleneck()));
  if (!o.attentionLevels().empty()) {
    midAttention_ =
        register_module("mid_attn", AttentionBlock3D(ch, o.attentionHeads(), o.groups()));
  }
  mid2_ = register_module("mid_block2", block(ch, ch, o.maskInBottleneck()));

  // Decoder: blocksPerLevel + 1 blocks per level, each eating one skip tensor.
  decoder_.resize(static_cast<std::size_t>(o.levels()));
  up_.resize(static_cast<std::size_t>(o.levels() - 1), Upsample3D(nullptr));
  for (std::int64_t l = o.levels() - 1; l >= 0; --l) {
    Level& level = decoder_[static_cast<std::size_t>(l)];
    const bool attend = contains(o.attentionLevels(), l);
    for (std::int64_t i = 0; i <= o.blocksPerLevel(); ++i) {
      const std::int64_t skip = skipChannels.back();
      skipChannels.pop_back();
      const std::string name = "dec" + std::to_string(l) + "_block" + std::to_string(i);
      level.blocks.push_back(
          register_module(name, block(ch + skip, o.channelsAt(l), o.maskInDecoder())));
      ch = o.channelsAt(l);
      if (attend) {
        level.attention.push_back(
            register_module("dec" + std::to_string(l) + "_attn" + std::to_string(i),
                            AttentionBlock3D(ch, o.attentionHeads(), o.groups())));
      }
    }
    if (l > 0)
      up_[static_cast<std::size_t>(l - 1)] =
          register_module("up" + std::to_string(l), Upsample3D(ch));
  }

  outNorm_ = register_module("out_norm", nn::GroupNorm(o.groups(), ch));
  outConv_ =
      register_module("out_conv", Conv3d(nn::Conv3dOptions(ch, o.outChannels(), 3).padding(1)));
  // Zero output: a denoiser starts by predicting ε = 0, the mean of its target, which keeps the
  // first steps' loss (and gradients) well scaled.
  detail::zeroParameters(*outConv_);
}

template <typename F>
void UNet3DImpl::forEachBlock(F&& f) {
  const auto& o = options_;
  for (std::int64_t l = 0; l < o.levels(); ++l) {
    for (auto& block : encoder_[static_cast<std::size_t>(l)].blocks) f(block, l, o.maskInEncoder());
  }
  f(mid1_, o.levels() - 1, o.maskInBottleneck());
  f(mid2_, o.levels() - 1, o.maskInBottleneck());
  for (std::int64_t l = o.levels() - 1; l >= 0; --l) {
    for (auto& block : decoder_[static_cast<std::size_t>(l)].blocks) f(block, l, o.maskInDecoder());
  }
}

MaskCondition UNet3DImpl::condition(const torch::Tensor& mask, torch::ScalarType dtype,
                                    std::int64_t mapBudgetBytes) {
  const auto& o = options_;
  MaskCondition c;
  c.levels.resize(static_cast<std::size_t>(o.levels()));
  if (o.maskChannels() == 0) return c;
  LDDPM_CHECK(mask.defined(), "UNet3D: built for a ", o.maskChannels(),
              "-channel mask but none given");
  LDDPM_CHECK(mask.dim() == 5 && mask.size(1) == o.maskChannels(), "UNet3D: mask must be [B, ",
              o.maskChannels(), ", D, H, W], got ", mask.sizes());
  c.mask = mask.to(dtype);
  if (!o.anyModulation()) return c;
  // The mask on every level's grid, by average pooling: a lesion smaller than a coarse voxel
  // survives as a fraction instead of vanishing as it would under nearest-neighbour resizing.
  // With shared embeddings, what the level's blocks receive is the embedding of that mask.
  for (std::int64_t l = 0; l < o.levels(); ++l) {
    auto& level = c.levels[static_cast<std::size_t>(l)];
    level = l == 0 ? c.mask : torch::avg_pool3d(c.mask, std::int64_t{1} << l);
    if (o.sharedMaskEmbedding()) {
      auto& embed = maskEmbed_[static_cast<std::size_t>(l)];
      level = embed.is_empty() ? torch::Tensor() : embed(level);
    }
  }
  if (mapBudgetBytes <= 0) return c;
  const auto elementSize = static_cast<std::int64_t>(c10::elementSize(dtype));
  forEachBlock([&](ResBlock3D& block, std::int64_t l, bool site) {
    if (!site || !block->modulated()) return;
    const torch::Tensor& m = c.levels[static_cast<std::size_t>(l)];
    const std::int64_t bytes = 2 *
                               (block->options().inChannels() + block->options().outChannels()) *
                               (m.numel() / m.size(1)) * elementSize;
    if (c.mapBytes + bytes > mapBudgetBytes) return;  // a later, coarser block may still fit
    ResBlock3DImpl::Maps maps = block->modulationMaps(m);
    for (auto& site : maps) site.shift = site.shift.contiguous();  // not a view of [γ, β]
    c.mapBytes += bytes;
    c.maps.emplace(block.get(), std::move(maps));
  });
  return c;
}

torch::Tensor UNet3DImpl::runBlock(ResBlock3D& block, const torch::Tensor& h,
                                   const torch::Tensor& emb, const MaskCondition& condition,
                                   std::int64_t level, bool site, bool checkpointed) {
  if (site) {
    const auto made = condition.maps.find(block.get());
    if (made != condition.maps.end()) return block->forward(h, emb, made->second);
  }
  const torch::Tensor mask =
      site ? condition.levels[static_cast<std::size_t>(level)] : torch::Tensor();
  if (!checkpointed) return block->forward(h, emb, mask);
  // Only the residual branch is recomputed (ResBlock3DImpl::branch says why); its parameters are
  // the block's minus the shortcut's.
  ResBlock3D b = block;  // the stage holds its own reference: backward runs after we return
  auto stage = [b](const torch::autograd::variable_list& in) mutable {
    return torch::autograd::variable_list{b->branch(in[0], in[1], in[2])};
  };
  std::vector<torch::Tensor> branchParameters;
  for (const auto& item : block->named_parameters()) {
    if (item.key().rfind("skip.", 0) != 0) branchParameters.push_back(item.value());
  }
  return block->shortcut(h) + checkpoint(stage, {h, emb, mask}, branchParameters)[0];
}

torch::Tensor UNet3DImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                  const torch::Tensor& mask) {
  return forwardWith(x, t, condition(mask, x.scalar_type()));
}

torch::Tensor UNet3DImpl::forwardWith(const torch::Tensor& x, const torch::Tensor& t,
                                      const MaskCondition& condition) {
  const auto& o = options_;
  LDDPM_CHECK(x.dim() == 5 && x.size(1) == o.inChannels(), "UNet3D: input must be [B, ",
              o.inChannels(), ", D, H, W], got ", x.sizes());
  for (int d = 2; d < 5; ++d) {
    LDDPM_CHECK(x.size(d) % o.sizeDivisor() == 0, "UNet3D: volume ", x.sizes().slice(2),
                " not divisible by ", o.sizeDivisor(), " (", o.levels(), " levels)");
  }
  const bool hasMask = o.maskChannels() > 0;
  const torch::Tensor& m = condition.mask;
  LDDPM_CHECK(!hasMask || (m.defined() && m.size(0) == x.size(0) &&
                           m.sizes().slice(2) == x.sizes().slice(2)),
              "UNet3D: mask must be [", x.size(0), ", ", o.maskChannels(), ", ", x.sizes().slice(2),
              "], got ", m.defined() ? m.sizes() : at::IntArrayRef{});
  LDDPM_CHECK(condition.levels.size() == static_cast<std::size_t>(o.levels()),
              "UNet3D: a mask condition of another network");
  LDDPM_CHECK(!o.useTimestep() || (t.defined() && t.dim() == 1 && t.size(0) == x.size(0)),
              "UNet3D: timesteps must be [B] with B = ", x.size(0));

  const torch::Tensor emb = o.useTimestep() ? timeEmbed_(t, x) : torch::Tensor();
  const auto ckpt = [&](std::int64_t level) { return contains(o.checkpointLevels(), level); };

  torch::Tensor h = inConv_(hasMask && o.maskAtInput() ? torch::cat({x, m}, 1) : x);
  std::vector<torch::Tensor> skips{h};
  for (std::int64_t l = 0; l < o.levels(); ++l) {
    Level& level = encoder_[static_cast<std::size_t>(l)];
    for (std::size_t i = 0; i < level.blocks.size(); ++i) {
      h = runBlock(level.blocks[i], h, emb, condition, l, o.maskInEncoder(), ckpt(l));
      if (!level.attention.empty()) h = level.attention[i](h);
      skips.push_back(h);
    }
    if (l + 1 < o.levels()) {
      h = down_[static_cast<std::size_t>(l)](h);
      skips.push_back(h);
    }
  }

  const std::int64_t coarsest = o.levels() - 1;
  h = runBlock(mid1_, h, emb, condition, coarsest, o.maskInBottleneck(), ckpt(coarsest));
  if (!midAttention_.is_empty()) h = midAttention_(h);
  h = runBlock(mid2_, h, emb, condition, coarsest, o.maskInBottleneck(), ckpt(coarsest));

  for (std::int64_t l = coarsest; l >= 0; --l) {
    Level& level = decoder_[static_cast<std::size_t>(l)];
    for (std::size_t i = 0; i < level.blocks.size(); ++i) {
      h = torch::cat({h, skips.back()}, 1);
      skips.pop_back();
      h = runBlock(level.blocks[i], h, emb, condition, l, o.maskInDecoder(), ckpt(l));
      if (!level.attention.empty()) h = level.attention[i](h);
    }
    if (l > 0) h = up_[static_cast<std::size_t>(l - 1)](h);
  }
  return outConv_(torch::silu(outNorm_(h)));
}

}  // namespace lddpm::models
