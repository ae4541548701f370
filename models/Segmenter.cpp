#include "models/Segmenter.h"

#include "core/Error.h"

namespace lddpm::models {

torch::Tensor softDiceLoss(const torch::Tensor& logits, const torch::Tensor& target,
                           double smooth) {
  const auto p = torch::sigmoid(logits);
  const auto g = target.to(p.scalar_type());
  return 1 - (2 * (p * g).sum() + smooth) / (p.sum() + g.sum() + smooth);
}

SegmenterImpl::SegmenterImpl(const UNetOptions& unet) : ModelImpl("seg") {
  LDDPM_CHECK(!unet.useTimestep() && unet.maskChannels() == 0 && unet.outChannels() == 1,
              "seg: the U-Net must have one output channel and no timestep or mask inputs");
  unet_ = register_module("unet", UNet3D(unet));
}

LossTerms SegmenterImpl::loss(const Batch& batch, Generators&, const std::string& group) {
  LDDPM_CHECK(group == "model", "seg has one parameter group, 'model'; asked for '", group, "'");
  detail::checkBatch(batch, /*anatomyChannels=*/0, name(), /*needImage=*/true);
  const auto z = logits(batch.image);
  const auto target = batch.lesion.to(z.scalar_type());
  const auto dice = softDiceLoss(z, target);
  const auto bce = torch::binary_cross_entropy_with_logits(z, target);
  return {dice + bce, {{"dice", dice.detach()}, {"bce", bce.detach()}}};
}

torch::Tensor SegmenterImpl::predict(const torch::Tensor& image,
                                     const SlidingWindowOptions& window) {
  for (auto w : window.window()) {
    LDDPM_CHECK(w % sizeDivisor() == 0, "seg: sliding window side ", w, " is not a multiple of ",
                sizeDivisor());
  }
  return slidingWindowInference(
      image, [this](const torch::Tensor& x) { return torch::sigmoid(logits(x)); }, window);
}

}  // namespace lddpm::models
