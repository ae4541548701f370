#include "models/Conv3d.h"

#include <atomic>

namespace lddpm::models {

namespace {
std::atomic<bool> gDirect{true};
thread_local int tInferenceDepth = 0;
}  // namespace

InferenceScope::InferenceScope() { ++tInferenceDepth; }
InferenceScope::~InferenceScope() { --tInferenceDepth; }
bool InferenceScope::active() { return tInferenceDepth > 0; }

void setDirectOneDnn(bool enabled) { gDirect = enabled; }

bool usesDirectOneDnn(const torch::Tensor& input) {
  return gDirect && InferenceScope::active() && !torch::GradMode::is_enabled() &&
         input.device().is_cpu() && input.scalar_type() == torch::kFloat32 && at::hasMKLDNN() &&
         at::globalContext().userEnabledMkldnn();
}

torch::Tensor Conv3dImpl::forward(const torch::Tensor& input) {
  // Zero padding only: every convolution of the models pads with zeros (the default mode).
  if (!usesDirectOneDnn(input) || !c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()) ||
      !c10::get_if<torch::ExpandingArray<3>>(&options.padding())) {
    return torch::nn::Conv3dImpl::forward(input);
  }
  const auto& padding = c10::get<torch::ExpandingArray<3>>(options.padding());
  return at::mkldnn_convolution(input, weight,
                                bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                                *padding, *options.stride(), *options.dilation(), options.groups());
}

}  // namespace lddpm::models
