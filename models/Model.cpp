#include "models/Model.h"

#include "core/Error.h"

namespace lddpm::models {

torch::Tensor ModelImpl::synthesize(const Batch&, const SamplerOptions&, Generators&) {
  LDDPM_THROW(core::Error, "model '", name(), "' does not synthesise images");
}

void ModelImpl::addClassMeanPrior(std::int64_t anatomyChannels) {
  LDDPM_CHECK(anatomyChannels == 3, name(),
              ": the class-mean prior needs the 3 one-hot tissue channels (CSF, GM, WM)");
  classMeans_ = register_buffer("class_means", torch::zeros({5}, torch::kFloat32));
}

void ModelImpl::setClassIntensities(const ClassIntensities& m) {
  LDDPM_CHECK(classMeans_.defined(), "model '", name(),
              "' was built without an intensity prior (--intensity-prior class-mean)");
  torch::NoGradGuard noGrad;
  classMeans_.copy_(
      torch::tensor({m.background, m.csf, m.greyMatter, m.whiteMatter, m.lesion}, torch::kFloat64));
}

torch::Tensor ModelImpl::intensityPrior(const torch::Tensor& condition) const {
  auto shape = condition.sizes().vec();
  shape[1] = 1;
  if (!classMeans_.defined()) return torch::zeros(shape, condition.options());
  const auto means = classMeans_.to(condition.options());
  // Background plus each tissue's offset from it (the one-hot channels are 0 on background),
  // then the lesion's mean on lesion voxels.
  const auto anatomy = condition.narrow(1, 0, 3);
  const auto lesion = condition.narrow(1, 3, 1);
  const auto offsets = (means.narrow(0, 1, 3) - means[0]).view({1, 3, 1, 1, 1});
  const auto tissue = means[0] + (anatomy * offsets).sum(1, /*keepdim=*/true);
  return tissue + (means[4] - tissue) * lesion;
}

std::int64_t ModelImpl::parameterCount() const {
  std::int64_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

namespace detail {
namespace {
std::string dims(at::IntArrayRef sizes) {
  std::string out;
  for (auto s : sizes) out += (out.empty() ? "" : ", ") + std::to_string(s);
  return out;
}
}  // namespace

void checkBatch(const Batch& batch, std::int64_t anatomyChannels, const std::string& model,
                bool needImage) {
  const auto& ref = needImage ? batch.image : batch.lesion;
  LDDPM_CHECK(ref.defined() && ref.dim() == 5 && ref.size(1) == 1, model, ": ",
              needImage ? "image" : "lesion", " must be [B, 1, D, H, W], got ",
              ref.defined() ? ref.sizes() : at::IntArrayRef{});
  const auto spatial = ref.sizes().slice(2);
  const auto b = ref.size(0);
  LDDPM_CHECK(batch.lesion.defined() && batch.lesion.dim() == 5 && batch.lesion.size(0) == b &&
                  batch.lesion.size(1) == 1 && batch.lesion.sizes().slice(2) == spatial,
              model, ": lesion must be [", b, ", 1, ", dims(spatial), "]");
  if (anatomyChannels > 0) {
    LDDPM_CHECK(batch.anatomy.defined() && batch.anatomy.dim() == 5 && batch.anatomy.size(0) == b &&
                    batch.anatomy.size(1) == anatomyChannels &&
                    batch.anatomy.sizes().slice(2) == spatial,
                model, ": anatomy must be [", b, ", ", anatomyChannels, ", ", dims(spatial),
                "], got ", batch.anatomy.defined() ? batch.anatomy.sizes() : at::IntArrayRef{});
  }
}
}  // namespace detail

}  // namespace lddpm::models
