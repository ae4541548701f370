#pragma once
// The contract between the models and the training engine: one batch type, one loss-terms type,
// and a base module every registered model derives from, so the engine trains lesion-ddpm,
// cond-ddpm, pix2pix and seg through the same few calls (docs/models.md "Registry").
#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/Diffusion.h"

namespace lddpm::models {

struct Batch {
  torch::Tensor image;    // [B, 1, D, H, W] FLAIR in [-1, 1]
  torch::Tensor anatomy;  // [B, Cm, D, H, W] anatomical mask (one-hot tissue classes)
  torch::Tensor lesion;   // [B, 1, D, H, W] lesion mask in {0, 1}

  // The conditioning mask the networks see: anatomy and lesion stacked, [B, Cm + 1, D, H, W],
  // in the dtype of `like` (masks usually arrive as uint8 or float32).
  torch::Tensor condition(const torch::Tensor& like) const {
    return torch::cat({anatomy.to(like.options()), lesion.to(like.options())}, 1);
  }
};

// Mean training intensity of each voxel class, in image units: what a model with a class-mean
// intensity prior takes from its data before its first step (launch/ computes it from the store).
struct ClassIntensities {
  double background = 0, csf = 0, greyMatter = 0, whiteMatter = 0, lesion = 0;
};

// `total` is what backward runs on; `parts` are detached scalars for logging ("noise_l1", ...).
struct LossTerms {
  torch::Tensor total;
  std::vector<std::pair<std::string, torch::Tensor>> parts;
};

// One optimiser per group; the engine steps groups in the order given, each with its own loss.
// A group may ask for its own Adam β₁ (GANs train with 0.5, Radford et al. 2016 / pix2pix);
// otherwise the engine's --adam-beta1 applies.
struct ParameterGroup {
  std::string name;
  std::vector<torch::Tensor> parameters;
  std::optional<double> beta1 = std::nullopt;
};

class ModelImpl : public torch::nn::Module {
 public:
  explicit ModelImpl(const std::string& name) : torch::nn::Module(name) {}

  // Default: one group "model" with every parameter. pix2pix: "discriminator", then "generator".
  virtual std::vector<ParameterGroup> parameterGroups() { return {{"model", parameters()}}; }

  // The training loss of `group` on one batch. Randomness (diffusion timesteps and noise) comes
  // from `gens` only: one generator, or one per sample. Gradients may reach parameters of other
  // groups (the generator loss goes through the discriminator): zero all gradients before each
  // group's backward and step only that group's optimiser.
  virtual LossTerms loss(const Batch& batch, Generators& gens,
                         const std::string& group = "model") = 0;

  // A synthetic image [B, 1, D, H, W] in [-1, 1] for the masks of `condition` (its image is
  // ignored). Diffusion models run the sampler; pix2pix runs its generator; seg throws.
  virtual torch::Tensor synthesize(const Batch& condition, const SamplerOptions& sampler,
                                   Generators& gens);

  // A model built with the class-mean intensity prior (`--intensity-prior class-mean`) wants the
  // training split's class intensities before the first step of a fresh run. It keeps them in the
  // buffer "class_means" (background, CSF, GM, WM, lesion), so a checkpoint carries them and a
  // resumed or loaded model is not asked again.
  bool wantsClassIntensities() const { return classMeans_.defined(); }
  void setClassIntensities(const ClassIntensities& means);
  // The prior μ(condition) [B, 1, ...] for a condition [B, Cm + 1, ...] (one-hot CSF, GM, WM, then
  // lesion): each voxel's class mean, a lesion voxel taking the lesion's whatever its tissue.
  // Zeros for a model without the prior.
  torch::Tensor intensityPrior(const torch::Tensor& condition) const;

  // Side lengths of D, H, W must be multiples of this.
  virtual std::int64_t sizeDivisor() const = 0;

  std::int64_t parameterCount() const;

 protected:
  // Gives the model the class-mean prior (its subclass decides what it adds μ to).
  void addClassMeanPrior(std::int64_t anatomyChannels);

 private:
  torch::Tensor classMeans_;  // [5] with the class-mean prior, else undefined
};

namespace detail {
void checkBatch(const Batch& batch, std::int64_t anatomyChannels, const std::string& model,
                bool needImage);
}  // namespace detail

}  // namespace lddpm::models
