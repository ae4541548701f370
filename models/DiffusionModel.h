#pragma once
// A mask-conditioned denoising diffusion model: the 3-D U-Net denoiser, its noise schedule and its
// loss. With mask modulation at every level and the lesion-weighted L1 it is `lesion-ddpm`; with
// the mask at the input only and λ = 0 it is the Med-DDPM baseline `cond-ddpm`.
#include <torch/torch.h>

#include "models/Diffusion.h"
#include "models/Model.h"
#include "models/UNet3D.h"

namespace lddpm::models {

struct DiffusionOptions {
  TORCH_ARG(std::int64_t, timesteps) = 1000;
  TORCH_ARG(Prediction, prediction) = Prediction::Epsilon;
  TORCH_ARG(LossWeighting, weighting) = LossWeighting::Uniform;
  TORCH_ARG(double, snrGamma) = 5.0;  // γ of Min-SNR-γ
  // Train only on these K timesteps of the T (Fast-DDPM), spaced as `spacing`, and sample with
  // them; 0 trains on all T.
  TORCH_ARG(std::int64_t, trainSteps) = 0;
  TORCH_ARG(Spacing, spacing) = Spacing::Uniform;
  TORCH_ARG(double, lesionWeight) = 4.0;  // λ: weight 1 + λ on lesion voxels of the error
  TORCH_ARG(double, x0Weight) = 0.0;      // weight of the lesion-weighted x̂0 L1 term (0: off)
  TORCH_ARG(std::int64_t, anatomyChannels) = 3;
  // Diffuse the residual x0 − μ(mask) around the class-mean image μ (the mean training intensity
  // of each voxel's class, ModelImpl::intensityPrior) instead of x0 itself; samples add μ back.
  TORCH_ARG(bool, classMeanPrior) = false;
};

class DiffusionModelImpl : public ModelImpl {
 public:
  // unet.maskChannels() must be anatomyChannels + 1 (anatomy and lesion).
  DiffusionModelImpl(const std::string& name, const UNetOptions& unet,
                     const DiffusionOptions& diffusion);

  // Draws t (uniform over the T steps, or over the K training steps) and ε ~ N(0, I) per sample
  // from gens, in that order. With the class-mean prior, x0 below is the residual x0 − μ(mask).
  // total = mean_b w(t_b) · L1_b + x0Weight · mean_b w0(t_b) · X0_b with L1_b = mean((1 +
  // λ·lesion)|f(x_t, t, mask) - target|) of sample b, X0_b the same on x̂0 vs x0, w the loss
  // weighting in the prediction's space and w0 in x0 space (both 1 when uniform). Parts:
  // "target_l1" = mean_b L1_b, and "x0_l1" = mean_b X0_b when x0Weight > 0.
  LossTerms loss(const Batch& batch, Generators& gens, const std::string& group = "model") override;
  torch::Tensor synthesize(const Batch& condition, const SamplerOptions& sampler,
                           Generators& gens) override;
  std::int64_t sizeDivisor() const override { return unet_->options().sizeDivisor(); }

  // The raw network output (ε̂, v̂, x̂0 or edm's F) at (x_t [B, 1, ...], t [B], condition
  // [B, Cm + 1, ...]). With the class-mean prior x_t and x̂0 are of the residual x0 − μ(condition)
  // (intensityPrior); add μ to an x̂0 to compare it with an image.
  torch::Tensor denoise(const torch::Tensor& xt, const torch::Tensor& t,
                        const torch::Tensor& condition);
  // The same with the condition's part made beforehand (UNet3DImpl::condition): the same bits.
  torch::Tensor denoise(const torch::Tensor& xt, const torch::Tensor& t,
                        const MaskCondition& condition);
  const NoiseSchedule& schedule() const { return schedule_; }
  const DiffusionOptions& options() const { return options_; }
  // The timesteps training draws from, ascending: all T (draw i is t = i), or the K of trainSteps.
  const std::vector<std::int64_t>& trainingTimesteps() const { return trainingTimesteps_; }
  // The sampler options a caller asked for, fitted to this model: the model's spacing, and a
  // UsageError for a DDPM sampler over all T when the model trained on K steps only.
  SamplerOptions samplerFor(const SamplerOptions& asked) const;
  UNet3D& unet() { return unet_; }

 private:
  DiffusionOptions options_;
  NoiseSchedule schedule_;
  std::vector<std::int64_t> trainingTimesteps_;
  UNet3D unet_{nullptr};
};

}  // namespace lddpm::models
