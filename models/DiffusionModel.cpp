#include "models/DiffusionModel.h"

#include "core/Error.h"

namespace lddpm::models {

DiffusionModelImpl::DiffusionModelImpl(const std::string& name, const UNetOptions& unet,
                                       const DiffusionOptions& diffusion)
    : ModelImpl(name), options_(diffusion), schedule_(diffusion.timesteps()) {
  LDDPM_CHECK(unet.maskChannels() == diffusion.anatomyChannels() + 1, name, ": the U-Net takes ",
              unet.maskChannels(), " mask channels but anatomy + lesion is ",
              diffusion.anatomyChannels() + 1);
  unet_ = register_module("unet", UNet3D(unet));
}

torch::Tensor DiffusionModelImpl::denoise(const torch::Tensor& xt, const torch::Tensor& t,
                                          const torch::Tensor& condition) {
  return unet_(xt, t, condition);
}

LossTerms DiffusionModelImpl::loss(const Batch& batch, Generators& gens, const std::string& group) {
  LDDPM_CHECK(group == "model", name(), " has one parameter group, 'model'; asked for '", group,
              "'");
  detail::checkBatch(batch, options_.anatomyChannels(), name(), /*needImage=*/true);
  const auto& x0 = batch.image;
  const auto t = randintFrom(gens, schedule_.timesteps(), x0.size(0), x0.device());
  const auto noise = randnFrom(gens, x0.sizes(), x0.options());
  const auto xt = qSample(schedule_, x0, t, noise);
  const auto output = denoise(xt, t, batch.condition(x0));

  const auto target = predictionTarget(schedule_, options_.prediction(), x0, t, noise);
  LossTerms terms;
  terms.total = lesionWeightedL1(output, target, batch.lesion, options_.lesionWeight());
  terms.parts.emplace_back("noise_l1", terms.total.detach());
  if (options_.x0Weight() > 0) {
    const auto x0Hat = predictX0(schedule_, options_.prediction(), xt, t, output);
    const auto recon = lesionWeightedL1(x0Hat, x0, batch.lesion, options_.lesionWeight());
    terms.parts.emplace_back("x0_l1", recon.detach());
    terms.total = terms.total + options_.x0Weight() * recon;
  }
  return terms;
}

torch::Tensor DiffusionModelImpl::synthesize(const Batch& condition, const SamplerOptions& sampler,
                                             Generators& gens) {
  detail::checkBatch(condition, options_.anatomyChannels(), name(), /*needImage=*/false);
  const auto like =
      torch::empty({0}, condition.lesion.options().dtype(parameters().front().scalar_type()));
  const auto mask = condition.condition(like);
  auto shape = mask.sizes().vec();
  shape[1] = 1;
  const Denoiser denoiser = [&](const torch::Tensor& xt, const torch::Tensor& t) {
    return denoise(xt, t, mask);
  };
  return sample(schedule_, options_.prediction(), denoiser, shape, mask.options(), sampler, gens);
}

}  // namespace lddpm::models
