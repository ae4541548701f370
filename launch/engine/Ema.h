#pragma once
// Exponential moving average of model parameters (the weights used for sampling):
// ema ← d·ema + (1 − d)·θ, with the decay warmed up as min(decay, (1 + n) / (10 + n)) so early
// averages are not dominated by the random initialisation. Kept in float32 on the parameters'
// device; buffers (e.g. norm statistics) are copied, not averaged.
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/Checkpoint.h"
#include "core/Error.h"

namespace lddpm::launch {

class Ema {
 public:
  Ema(const torch::nn::Module& model, double decay) : decay_(decay) {
    torch::NoGradGuard noGrad;
    for (const auto& p : model.named_parameters()) {
      names_.push_back(p.key());
      shadow_.push_back(p.value().detach().clone().to(torch::kFloat32));
    }
  }

  double decayAt(std::int64_t updates) const {
    const double n = static_cast<double>(updates);
    return std::min(decay_, (1.0 + n) / (10.0 + n));
  }

  void update(const torch::nn::Module& model) {
    torch::NoGradGuard noGrad;
    const double d = decayAt(updates_);
    size_t i = 0;
    for (const auto& p : model.named_parameters()) {
      shadow_[i++].mul_(d).add_(p.value().detach().to(torch::kFloat32), 1.0 - d);
    }
    ++updates_;
  }

  // Copies the averaged weights into `model` (e.g. a separate sampling copy).
  void copyTo(torch::nn::Module& model) const {
    torch::NoGradGuard noGrad;
    size_t i = 0;
    for (auto& p : model.named_parameters()) p.value().copy_(shadow_[i++]);
  }

  // The averaged parameters by name plus the update count (state() is what ema.pt holds).
  core::TensorDict state() const {
    core::TensorDict out;
    for (size_t i = 0; i < names_.size(); ++i) out[names_[i]] = shadow_[i];
    out[kUpdatesKey] = torch::tensor(updates_, torch::kInt64);
    return out;
  }

  // The averaged parameters of a saved state, without the EMA's own bookkeeping.
  static core::TensorDict parametersIn(core::TensorDict state) {
    state.erase(kUpdatesKey);
    return state;
  }

  void load(const core::TensorDict& state) {
    torch::NoGradGuard noGrad;
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = state.find(names_[i]);
      LDDPM_CHECK(it != state.end(), "EMA state lacks parameter ", names_[i]);
      shadow_[i].copy_(it->second);
    }
    updates_ = state.at(kUpdatesKey).item<std::int64_t>();
  }

  const std::vector<std::string>& names() const { return names_; }
  const std::vector<torch::Tensor>& tensors() const { return shadow_; }
  std::int64_t updates() const { return updates_; }

 private:
  static constexpr const char* kUpdatesKey = "__ema_updates__";
  double decay_;
  std::int64_t updates_ = 0;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> shadow_;
};

}  // namespace lddpm::launch
