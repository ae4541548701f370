#include "models/Blocks.h"

#include <cmath>
#include <vector>

#include "core/Error.h"

namespace lddpm::models {

namespace nn = torch::nn;

namespace detail {
void zeroParameters(nn::Module& module) {
  torch::NoGradGuard noGrad;
  for (auto& p : module.parameters()) p.zero_();
}
}  // namespace detail

namespace {
Conv3d conv3(std::int64_t in, std::int64_t out) {
  return Conv3d(nn::Conv3dOptions(in, out, 3).padding(1));
}
}  // namespace

torch::Tensor sinusoidalEmbedding(const torch::Tensor& t, std::int64_t dim,
                                  const torch::Tensor& like) {
  LDDPM_CHECK(t.dim() == 1, "sinusoidalEmbedding: timesteps must be [B], got ", t.sizes());
  LDDPM_CHECK(dim % 2 == 0, "sinusoidalEmbedding: dim must be even, got ", dim);
  const std::int64_t half = dim / 2;
  const auto f32 = like.options().dtype(torch::kFloat32);
  const auto freqs =
      torch::exp(torch::arange(half, f32) * (-std::log(10000.0) / static_cast<double>(half)));
  const auto args = t.to(f32).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  return torch::cat({torch::cos(args), torch::sin(args)}, 1).to(like.scalar_type());
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(std::int64_t dim) : dim_(dim) {
  fc1_ = register_module("fc1", nn::Linear(dim, 4 * dim));
  fc2_ = register_module("fc2", nn::Linear(4 * dim, 4 * dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& t, const torch::Tensor& like) {
  return fc2_(torch::silu(fc1_(sinusoidalEmbedding(t, dim_, like))));
}

ModulationMaps modulationMaps(const torch::Tensor& gammaBeta) {
  const auto gb = gammaBeta.chunk(2, /*dim=*/1);
  return {1 + gb[0], gb[1]};
}

torch::Tensor modulate(const torch::Tensor& h, const ModulationMaps& maps) {
  return h * maps.scale + maps.shift;
}

MaskModulationImpl::MaskModulationImpl(std::int64_t channels, std::int64_t maskChannels,
                                       std::int64_t hidden) {
  shared_ = register_module("shared", conv3(maskChannels, hidden));
  gammaBeta_ = register_module("gamma_beta", conv3(hidden, 2 * channels));
  detail::zeroParameters(*gammaBeta_);
}

ModulationMaps MaskModulationImpl::maps(const torch::Tensor& mask) {
  return modulationMaps(gammaBeta_(torch::silu(shared_(mask))));
}

torch::Tensor MaskModulationImpl::forward(const torch::Tensor& h, const torch::Tensor& mask) {
  return modulate(h, maps(mask));
}

MaskEmbeddingImpl::MaskEmbeddingImpl(std::int64_t maskChannels, std::int64_t hidden) {
  conv1_ = register_module("conv1", conv3(maskChannels, hidden));
  conv2_ = register_module("conv2", conv3(hidden, hidden));
}

torch::Tensor MaskEmbeddingImpl::forward(const torch::Tensor& mask) {
  return torch::silu(conv2_(torch::silu(conv1_(mask))));
}

ResBlock3DImpl::ResBlock3DImpl(const ResBlock3DOptions& options) : options_(options) {
  const auto in = options.inChannels(), out = options.outChannels();
  norm1_ = register_module("norm1", nn::GroupNorm(options.groups(), in));
  conv1_ = register_module("conv1", conv3(in, out));
  norm2_ = register_module("norm2", nn::GroupNorm(options.groups(), out));
  conv2_ = register_module("conv2", conv3(out, out));
  detail::zeroParameters(*conv2_);
  if (in != out) skip_ = register_module("skip", Conv3d(nn::Conv3dOptions(in, out, 1)));
  if (options.embedDim() > 0)
    embProj_ = register_module("emb_proj", nn::Linear(options.embedDim(), out));
  if (options.maskChannels() > 0 && options.sharedMaskEmbedding()) {
    // One consumer of the shared embedding per block: activation checkpointing then sums its
    // gradient in the same order as the plain network (ResBlock3DImpl::branch).
    modGammaBeta_ = register_module(
        "mod_gamma_beta", Conv3d(nn::Conv3dOptions(options.modulationHidden(), 2 * (in + out), 1)));
    detail::zeroParameters(*modGammaBeta_);
  } else if (options.maskChannels() > 0) {
    mod1_ = register_module("mod1",
                            MaskModulation(in, options.maskChannels(), options.modulationHidden()));
    mod2_ = register_module(
        "mod2", MaskModulation(out, options.maskChannels(), options.modulationHidden()));
  }
}

torch::Tensor ResBlock3DImpl::forward(const torch::Tensor& x, const torch::Tensor& emb,
                                      const torch::Tensor& mask) {
  return shortcut(x) + branch(x, emb, mask);
}

torch::Tensor ResBlock3DImpl::shortcut(const torch::Tensor& x) {
  return skip_.is_empty() ? x : skip_(x);
}

torch::Tensor ResBlock3DImpl::branch(const torch::Tensor& x, const torch::Tensor& emb,
                                     const torch::Tensor& mask) {
  return branchWith(x, emb, mask, nullptr);
}

torch::Tensor ResBlock3DImpl::forward(const torch::Tensor& x, const torch::Tensor& emb,
                                      const Maps& maps) {
  return shortcut(x) + branchWith(x, emb, {}, &maps);
}

ResBlock3DImpl::Maps ResBlock3DImpl::modulationMaps(const torch::Tensor& mask) {
  LDDPM_CHECK(modulated(), "ResBlock3D: modulation maps of a block without mask modulation");
  LDDPM_CHECK(mask.defined(), "ResBlock3D: built with mask modulation but no mask given");
  if (!mod1_.is_empty()) return {mod1_->maps(mask), mod2_->maps(mask)};
  LDDPM_CHECK(mask.size(1) == options_.modulationHidden(), "ResBlock3D: expected the level's ",
              options_.modulationHidden(), "-channel mask embedding, got ", mask.sizes());
  const auto gammaBeta =
      modGammaBeta_(mask).split({2 * options_.inChannels(), 2 * options_.outChannels()}, /*dim=*/1);
  return {models::modulationMaps(gammaBeta[0]), models::modulationMaps(gammaBeta[1])};
}

torch::Tensor ResBlock3DImpl::branchWith(const torch::Tensor& x, const torch::Tensor& emb,
                                         const torch::Tensor& mask, const Maps* maps) {
  LDDPM_CHECK(embProj_.is_empty() || emb.defined(),
              "ResBlock3D: built with a timestep embedding but none given");
  LDDPM_CHECK(maps == nullptr || modulated(), "ResBlock3D: modulation maps given to a block ",
              "without mask modulation");
  // Per-block modulation computes each site's maps where it is used (as the checkpointed and
  // plain networks always have); the shared embedding's one 1x1 convolution gives both at once.
  Maps own;
  if (maps == nullptr && !modGammaBeta_.is_empty()) {
    own = modulationMaps(mask);
    maps = &own;
  }
  const auto site = [&](torch::Tensor h, int i) {
    if (maps != nullptr) return modulate(h, (*maps)[static_cast<std::size_t>(i)]);
    if (mod1_.is_empty()) return h;
    LDDPM_CHECK(mask.defined(), "ResBlock3D: built with mask modulation but no mask given");
    return i == 0 ? mod1_(h, mask) : mod2_(h, mask);
  };
  auto h = site(norm1_(x), 0);
  h = conv1_(torch::silu(h));
  if (!embProj_.is_empty()) {
    const auto e = embProj_(torch::silu(emb));  // [B, Cout]
    h = h + e.view({e.size(0), e.size(1), 1, 1, 1});
  }
  h = torch::silu(site(norm2_(h), 1));
  if (options_.dropout() > 0) h = torch::dropout(h, options_.dropout(), is_training());
  return conv2_(h);
}

Downsample3DImpl::Downsample3DImpl(std::int64_t channels) {
  conv_ = register_module("conv",
                          Conv3d(nn::Conv3dOptions(channels, channels, 3).stride(2).padding(1)));
}

torch::Tensor Downsample3DImpl::forward(const torch::Tensor& x) { return conv_(x); }

Upsample3DImpl::Upsample3DImpl(std::int64_t channels) {
  conv_ = register_module("conv", conv3(channels, channels));
}

torch::Tensor Upsample3DImpl::forward(const torch::Tensor& x) {
  return conv_(torch::upsample_nearest3d(x, {x.size(2) * 2, x.size(3) * 2, x.size(4) * 2}));
}

AttentionBlock3DImpl::AttentionBlock3DImpl(std::int64_t channels, std::int64_t heads,
                                           std::int64_t groups)
    : heads_(heads) {
  LDDPM_CHECK(channels % heads == 0, "AttentionBlock3D: ", channels, " channels not divisible by ",
              heads, " heads");
  norm_ = register_module("norm", nn::GroupNorm(groups, channels));
  qkv_ = register_module("qkv", Conv3d(nn::Conv3dOptions(channels, 3 * channels, 1)));
  proj_ = register_module("proj", Conv3d(nn::Conv3dOptions(channels, channels, 1)));
  detail::zeroParameters(*proj_);
}

torch::Tensor AttentionBlock3DImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), c = x.size(1), n = x.size(2) * x.size(3) * x.size(4);
  const auto headDim = c / heads_;
  // [B, 3C, N] -> three [B * heads, headDim, N]
  const auto qkv = qkv_(norm_(x)).reshape({b * heads_, 3 * headDim, n}).chunk(3, /*dim=*/1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  const auto weights =
      torch::softmax(torch::bmm(qkv[0].transpose(1, 2), qkv[1]) * scale, -1);  // [BH, N, N]
  const auto out = torch::bmm(qkv[2], weights.transpose(1, 2));                // [BH, headDim, N]
  return x + proj_(out.reshape(x.sizes()));
}

}  // namespace lddpm::models
