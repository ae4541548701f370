#include "models/Pix2Pix.h"

#include <algorithm>

#include "core/Error.h"
#include "models/Conv3d.h"

namespace lddpm::models {

Pix2PixImpl::Pix2PixImpl(const UNetOptions& generator, const Pix2PixOptions& options)
    : ModelImpl("pix2pix"), options_(options) {
  LDDPM_CHECK(generator.inChannels() == options.anatomyChannels() + 1 && !generator.useTimestep() &&
                  generator.maskChannels() == 0,
              "pix2pix: the generator must take the ", options.anatomyChannels() + 1,
              "-channel mask as its input, without timestep or mask side inputs");
  generator_ = register_module("generator", UNet3D(generator));
  discriminator_ = register_module(
      "discriminator", PatchGan3D(PatchGan3DOptions(options.anatomyChannels() + 2)
                                      .baseChannels(options.discriminatorChannels())
                                      .layers(options.discriminatorLayers())
                                      .groups(std::min<std::int64_t>(
                                          generator.groups(), options.discriminatorChannels()))));
  if (options.classMeanPrior()) addClassMeanPrior(options.anatomyChannels());
}

std::vector<ParameterGroup> Pix2PixImpl::parameterGroups() {
  // β₁ = 0.5 for both, as pix2pix (Isola et al. 2017): momentum 0.9 makes the adversarial game
  // oscillate.
  return {{"discriminator", discriminator_->parameters(), 0.5},
          {"generator", generator_->parameters(), 0.5}};
}

std::int64_t Pix2PixImpl::sizeDivisor() const {
  return std::max(generator_->options().sizeDivisor(),
                  std::int64_t{1} << options_.discriminatorLayers());
}

torch::Tensor Pix2PixImpl::generate(const torch::Tensor& condition) {
  const auto residual = torch::tanh(generator_(condition));
  return options_.classMeanPrior() ? residual + intensityPrior(condition) : residual;
}

torch::Tensor Pix2PixImpl::discriminate(const torch::Tensor& condition,
                                        const torch::Tensor& image) {
  return discriminator_(torch::cat({condition, image}, 1));
}

LossTerms Pix2PixImpl::loss(const Batch& batch, Generators&, const std::string& group) {
  detail::checkBatch(batch, options_.anatomyChannels(), name(), /*needImage=*/true);
  const auto mask = batch.condition(batch.image);
  const auto fake = generate(mask);
  LossTerms terms;
  if (group == "discriminator") {
    const auto real = discriminate(mask, batch.image);
    const auto faked = discriminate(mask, fake.detach());
    const auto lossReal = (real - 1).pow(2).mean(), lossFake = faked.pow(2).mean();
    terms.total = 0.5 * (lossReal + lossFake);
    terms.parts = {{"d_real", lossReal.detach()}, {"d_fake", lossFake.detach()}};
  } else if (group == "generator") {
    const auto adversarial = (discriminate(mask, fake) - 1).pow(2).mean();
    const auto l1 = (fake - batch.image).abs().mean();
    terms.total = adversarial + options_.l1Weight() * l1;
    terms.parts = {{"g_adv", adversarial.detach()}, {"g_l1", l1.detach()}};
  } else {
    LDDPM_THROW(core::Error,
                "pix2pix has parameter groups 'discriminator' and 'generator'; asked for '", group,
                "'");
  }
  return terms;
}

torch::Tensor Pix2PixImpl::synthesize(const Batch& condition, const SamplerOptions&, Generators&) {
  detail::checkBatch(condition, options_.anatomyChannels(), name(), /*needImage=*/false);
  InferenceScope inference;
  const auto like =
      torch::empty({0}, condition.lesion.options().dtype(parameters().front().scalar_type()));
  return generate(condition.condition(like)).clamp(-1, 1);
}

}  // namespace lddpm::models
