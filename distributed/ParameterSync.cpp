#include "distributed/ParameterSync.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include "core/Error.h"

namespace lddpm::dist {

TrainableParameters trainableParameters(const torch::OrderedDict<std::string, torch::Tensor>& named,
                                        const char* who) {
  TrainableParameters out;
  for (const auto& item : named) {
    if (!item.value().requires_grad()) continue;
    out.names.push_back(item.key());
    out.tensors.push_back(item.value());
  }
  LDDPM_CHECK(!out.tensors.empty(), who, ": no parameter that requires grad");
  return out;
}

void broadcastFromRankZero(const std::vector<torch::Tensor>& tensors, Communicator& comm) {
  torch::NoGradGuard noGrad;
  std::vector<WorkPtr> works;
  for (const auto& t : tensors) {
    if (t.defined() && t.numel() > 0) works.push_back(comm.broadcast(t.data(), 0));
  }
  waitAll(works);
}

void checkInSync(const std::vector<std::string>& names, const std::vector<torch::Tensor>& tensors,
                 Communicator& comm, std::int64_t step) {
  LDDPM_CHECK(names.size() == tensors.size(), "checkInSync: ", names.size(), " names for ",
              tensors.size(), " tensors");
  torch::NoGradGuard noGrad;
  const auto n = static_cast<std::int64_t>(tensors.size());
  auto mine = torch::empty({2 * n}, torch::kDouble);
  for (std::int64_t k = 0; k < n; ++k) {
    const auto p = tensors[static_cast<size_t>(k)].detach().to(torch::kCPU, torch::kDouble);
    mine[2 * k] = p.sum();
    mine[2 * k + 1] = p.square().sum();
  }
  mine = mine.to(comm.device());
  auto all = torch::empty({comm.size() * 2 * n}, mine.options());
  comm.allgather(all, mine)->wait();
  all = all.to(torch::kCPU).view({comm.size(), 2 * n});
  const auto ref = all[0];
  for (int r = 1; r < comm.size(); ++r) {
    const auto diff = (all[r] - ref).abs() > 1e-9 * (ref.abs() + 1e-30);
    if (!diff.any().item<bool>()) continue;
    const std::int64_t first = diff.nonzero()[0][0].item<std::int64_t>() / 2;
    LDDPM_THROW(core::Error, "desync at step ", step, ": parameter '",
                names[static_cast<size_t>(first)], "' differs between rank 0 (checksum ",
                ref[2 * first].item<double>(), ") and rank ", r, " (",
                all[r][2 * first].item<double>(),
                "). Ranks must run identical updates: check that every rank calls finish() and "
                "the optimizer step, with the same options");
  }
}

AccumulationHooks::AccumulationHooks(const std::vector<torch::Tensor>& params,
                                     std::function<void(size_t)> onAccumulated) {
  for (size_t k = 0; k < params.size(); ++k) {
    nodes_.push_back(torch::autograd::impl::grad_accumulator(params[k]));
    keys_.push_back(
        nodes_[k]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
            [onAccumulated, k](const torch::autograd::variable_list& outputs,
                               const torch::autograd::variable_list&) {
              onAccumulated(k);
              return outputs;
            })));
  }
}

AccumulationHooks::~AccumulationHooks() {
  for (size_t k = 0; k < nodes_.size(); ++k) nodes_[k]->del_post_hook(keys_[k]);
}

}  // namespace lddpm::dist
