#pragma once
// The downstream lesion segmenter: the same 3-D U-Net without timestep or mask inputs, trained
// with Dice + BCE on patches and applied to whole volumes by Gaussian-blended sliding windows.
#include <torch/torch.h>

#include "models/Model.h"
#include "models/SlidingWindow.h"
#include "models/UNet3D.h"

namespace lddpm::models {

// Soft Dice loss 1 - (2Σpg + ε) / (Σp + Σg + ε) over the whole batch, p = sigmoid(logits).
torch::Tensor softDiceLoss(const torch::Tensor& logits, const torch::Tensor& target,
                           double smooth = 1e-5);

class SegmenterImpl : public ModelImpl {
 public:
  // unet: image channels in, 1 lesion logit out, no timestep, no mask.
  explicit SegmenterImpl(const UNetOptions& unet);

  // "dice" + "bce" of the lesion logits against batch.lesion.
  LossTerms loss(const Batch& batch, Generators& gens, const std::string& group = "model") override;
  std::int64_t sizeDivisor() const override { return unet_->options().sizeDivisor(); }

  torch::Tensor logits(const torch::Tensor& image) { return unet_(image); }  // [B, 1, D, H, W]
  // Lesion probabilities [B, 1, D, H, W] of a volume of any size (window sides must be multiples
  // of sizeDivisor()).
  torch::Tensor predict(const torch::Tensor& image, const SlidingWindowOptions& window);

 private:
  UNet3D unet_{nullptr};
};

}  // namespace lddpm::models
