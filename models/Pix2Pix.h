#pragma once
// The pix2pix baseline (Isola et al. 2017) in 3-D: a U-Net generator mask -> FLAIR and a
// conditional PatchGAN discriminator, trained with L1 + least-squares adversarial losses.
#include <torch/torch.h>

#include "models/Model.h"
#include "models/PatchGan3D.h"
#include "models/UNet3D.h"

namespace lddpm::models {

struct Pix2PixOptions {
  TORCH_ARG(std::int64_t, anatomyChannels) = 3;
  TORCH_ARG(double, l1Weight) = 100.0;  // pix2pix's λ_L1
  TORCH_ARG(std::int64_t, discriminatorChannels) = 16;
  TORCH_ARG(std::int64_t, discriminatorLayers) = 3;
  // The generator draws the residual tanh(U(m)) around the class-mean image μ(m)
  // (ModelImpl::intensityPrior) instead of the image tanh(U(m)) itself.
  TORCH_ARG(bool, classMeanPrior) = false;
};

class Pix2PixImpl : public ModelImpl {
 public:
  // generator.inChannels() must be anatomyChannels + 1; it is used without timestep or mask inputs.
  Pix2PixImpl(const UNetOptions& generator, const Pix2PixOptions& options);

  // "discriminator": 0.5·(mean((D(m, x) - 1)²) + mean(D(m, G(m))²)), G(m) detached.
  // "generator": mean((D(m, G(m)) - 1)²) + λ_L1·mean|G(m) - x|.
  std::vector<ParameterGroup> parameterGroups() override;
  LossTerms loss(const Batch& batch, Generators& gens, const std::string& group) override;
  torch::Tensor synthesize(const Batch& condition, const SamplerOptions& sampler,
                           Generators& gens) override;
  std::int64_t sizeDivisor() const override;

  // G(m) = tanh(U(m)) in [-1, 1], or μ(m) + tanh(U(m)) with the class-mean prior (clamped to
  // [-1, 1] by synthesize only), for a condition [B, Cm + 1, D, H, W].
  torch::Tensor generate(const torch::Tensor& condition);
  torch::Tensor discriminate(const torch::Tensor& condition, const torch::Tensor& image);

 private:
  Pix2PixOptions options_;
  UNet3D generator_{nullptr};
  PatchGan3D discriminator_{nullptr};
};

}  // namespace lddpm::models
