#include "models/DiffusionModel.h"

#include <algorithm>

#include "core/Error.h"
#include "core/Log.h"
#include "models/Conv3d.h"

namespace lddpm::models {

DiffusionModelImpl::DiffusionModelImpl(const std::string& name, const UNetOptions& unet,
                                       const DiffusionOptions& diffusion)
    : ModelImpl(name),
      options_(diffusion),
      schedule_(diffusion.timesteps()),
      trainingTimesteps_(timestepSubsequence(
          diffusion.timesteps(),
          diffusion.trainSteps() > 0 ? diffusion.trainSteps() : diffusion.timesteps(),
          diffusion.trainSteps() > 0 ? diffusion.spacing() : Spacing::Uniform)) {
  // Ascending, so that with all T steps a draw i is timestep i.
  std::reverse(trainingTimesteps_.begin(), trainingTimesteps_.end());
  LDDPM_CHECK(unet.maskChannels() == diffusion.anatomyChannels() + 1, name, ": the U-Net takes ",
              unet.maskChannels(), " mask channels but anatomy + lesion is ",
              diffusion.anatomyChannels() + 1);
  unet_ = register_module("unet", UNet3D(unet));
  if (diffusion.classMeanPrior()) addClassMeanPrior(diffusion.anatomyChannels());
}

torch::Tensor DiffusionModelImpl::denoise(const torch::Tensor& xt, const torch::Tensor& t,
                                          const torch::Tensor& condition) {
  return denoise(xt, t, unet_->condition(condition, xt.scalar_type()));
}

torch::Tensor DiffusionModelImpl::denoise(const torch::Tensor& xt, const torch::Tensor& t,
                                          const MaskCondition& condition) {
  return unet_->forwardWith(networkInput(schedule_, options_.prediction(), xt, t), t, condition);
}

LossTerms DiffusionModelImpl::loss(const Batch& batch, Generators& gens, const std::string& group) {
  LDDPM_CHECK(group == "model", name(), " has one parameter group, 'model'; asked for '", group,
              "'");
  detail::checkBatch(batch, options_.anatomyChannels(), name(), /*needImage=*/true);
  const auto& o = options_;
  const auto mask = batch.condition(batch.image);
  const auto x0 = o.classMeanPrior() ? batch.image - intensityPrior(mask) : batch.image;
  const auto index = randintFrom(gens, static_cast<std::int64_t>(trainingTimesteps_.size()),
                                 x0.size(0), torch::kCPU);
  const auto t =
      torch::tensor(trainingTimesteps_, torch::kInt64).index_select(0, index).to(x0.device());
  const auto noise = randnFrom(gens, x0.sizes(), x0.options());
  const auto xt = qSample(schedule_, x0, t, noise);
  const auto output = denoise(xt, t, mask);

  const auto target = predictionTarget(schedule_, o.prediction(), x0, t, noise);
  const auto error = lesionWeightedL1PerSample(output, target, batch.lesion, o.lesionWeight());
  const auto weights =
      lossWeights(schedule_, o.weighting(), o.snrGamma(), o.prediction(), t, error);
  LossTerms terms;
  terms.total = (weights * error).mean();
  terms.parts.emplace_back("target_l1", error.detach().mean());
  if (o.x0Weight() > 0) {
    const auto x0Hat = predictX0(schedule_, o.prediction(), xt, t, output);
    const auto recon = lesionWeightedL1PerSample(x0Hat, x0, batch.lesion, o.lesionWeight());
    const auto x0Weights =
        lossWeights(schedule_, o.weighting(), o.snrGamma(), Prediction(Prediction::X0), t, recon);
    terms.parts.emplace_back("x0_l1", recon.detach().mean());
    terms.total = terms.total + o.x0Weight() * (x0Weights * recon).mean();
  }
  return terms;
}

SamplerOptions DiffusionModelImpl::samplerFor(const SamplerOptions& asked) const {
  SamplerOptions sampler = asked;
  sampler.spacing(options_.spacing());
  const std::int64_t k = options_.trainSteps();
  if (k > 0 && sampler.kind() == SamplerKind::Ddpm) {
    LDDPM_THROW(core::UsageError, name(), " trained on ", k, " of its ", options_.timesteps(),
                " timesteps only (--train-steps): sample with the DDIM sampler over those steps "
                "(--sampler ddim --steps ",
                k, "; --eta 1 for ancestral noise)");
  }
  if (k > 0 && sampler.steps() != k) {
    LDDPM_LOG(Warn) << name() << " trained on " << k
                    << " timesteps (--train-steps) but samples with " << sampler.steps()
                    << ": the sampler visits timesteps the model never saw";
  }
  return sampler;
}

torch::Tensor DiffusionModelImpl::synthesize(const Batch& condition, const SamplerOptions& asked,
                                             Generators& gens) {
  const SamplerOptions sampler = samplerFor(asked);
  detail::checkBatch(condition, options_.anatomyChannels(), name(), /*needImage=*/false);
  const auto like =
      torch::empty({0}, condition.lesion.options().dtype(parameters().front().scalar_type()));
  const auto mask = condition.condition(like);
  auto shape = mask.sizes().vec();
  shape[1] = 1;
  // The mask's part of every step, made once (in inference, as the steps are: the same kernels,
  // so the same bits as making it at every step).
  MaskCondition cached;
  {
    InferenceScope inference;
    cached = unet_->condition(mask, mask.scalar_type(), sampler.conditionCacheBytes());
  }
  LDDPM_LOG(Debug) << name() << ": modulation maps of " << cached.maps.size()
                   << " blocks made once for " << mask.size(0) << " case(s), "
                   << (cached.mapBytes >> 20) << " MiB (budget "
                   << (sampler.conditionCacheBytes() >> 20) << " MiB)";
  const Denoiser denoiser = [&](const torch::Tensor& xt, const torch::Tensor& t) {
    return denoise(xt, t, cached);
  };
  const auto x =
      sample(schedule_, options_.prediction(), denoiser, shape, mask.options(), sampler, gens);
  return options_.classMeanPrior() ? (x + intensityPrior(mask)).clamp(-1, 1) : x;
}

}  // namespace lddpm::models
