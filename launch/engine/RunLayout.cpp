#include "launch/engine/RunLayout.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/Error.h"
#include "launch/engine/Ema.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {
std::string join(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / file).string();
}
std::string perRank(const std::string& stem, int rank) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-rank%05d.pt", rank);
  return stem + suffix;
}
}  // namespace

std::string RunLayout::config() const { return join(run_, "config.ini"); }
std::string RunLayout::status() const { return join(run_, "status.json"); }
std::string RunLayout::metrics() const { return join(run_, "metrics.jsonl"); }
std::string RunLayout::checkpoints() const { return join(run_, "checkpoints"); }

std::string CheckpointLayout::model() const { return join(dir_, "model.pt"); }
std::string CheckpointLayout::ema() const { return join(dir_, "ema.pt"); }
std::string CheckpointLayout::config() const { return join(dir_, "config.ini"); }
std::string CheckpointLayout::optimizer(const std::string& group) const {
  return join(dir_, "optimizer-" + group + ".pt");
}
std::string CheckpointLayout::optimizerShard(const std::string& group, int rank) const {
  return join(dir_, perRank("optimizer-" + group, rank));
}
std::string CheckpointLayout::rng(int rank) const { return join(dir_, perRank("rng", rank)); }

core::TensorDict moduleWeights(const torch::nn::Module& module) {
  core::TensorDict out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value();
  return out;
}

void loadModuleWeights(torch::nn::Module& module, const core::TensorDict& weights,
                       const std::string& file) {
  torch::NoGradGuard noGrad;
  const auto assign = [&](const std::string& name, torch::Tensor& target) {
    const auto it = weights.find(name);
    if (it == weights.end()) throw core::IoError(file, "has no tensor '" + name + "'");
    if (!it->second.sizes().equals(target.sizes())) {
      std::ostringstream s;
      s << "tensor '" << name << "' has shape " << it->second.sizes() << ", the model expects "
        << target.sizes() << " (different --model options?)";
      throw core::IoError(file, s.str());
    }
    target.copy_(it->second);
  };
  for (auto& p : module.named_parameters()) assign(p.key(), p.value());
  for (auto& b : module.named_buffers()) assign(b.key(), b.value());
}

core::TensorDict readWeights(const CheckpointLayout& checkpoint, const std::string& which) {
  core::TensorDict weights = core::loadTensorDict(checkpoint.model());
  if (which == "ema") {
    for (auto& [name, tensor] : Ema::parametersIn(core::loadTensorDict(checkpoint.ema()))) {
      weights[name] = tensor;
    }
  } else if (which != "model") {
    LDDPM_THROW(core::UsageError, "weights must be ema or model, got '", which, "'");
  }
  return weights;
}

}  // namespace lddpm::launch
