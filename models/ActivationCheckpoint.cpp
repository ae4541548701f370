#include "models/ActivationCheckpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/ivalue.h>
#if LDDPM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include <mutex>

#include "models/Autocast.h"

namespace lddpm::models {

namespace detail {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Random-number and autocast state captured before the first run and replayed for the second.
struct ReplayState {
  torch::Tensor cpuRng;
#if LDDPM_WITH_CUDA
  int cudaDevice = -1;  // device whose generator was captured, -1 when inputs are on the CPU
  torch::Tensor cudaRng;
#endif
  bool autocastCuda = false;
  bool autocastCpu = false;

  static ReplayState capture(const variable_list& tensors) {
    ReplayState s;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      s.cpuRng = gen.get_state();
    }
#if LDDPM_WITH_CUDA
    for (const auto& t : tensors) {
      if (t.defined() && t.is_cuda()) {
        s.cudaDevice = t.get_device();
        auto gen = at::cuda::detail::getDefaultCUDAGenerator(s.cudaDevice);
        std::lock_guard<std::mutex> lock(gen.mutex());
        s.cudaRng = gen.get_state();
        break;
      }
    }
#endif
    s.autocastCuda = autocastEnabled(c10::DeviceType::CUDA);
    s.autocastCpu = autocastEnabled(c10::DeviceType::CPU);
    return s;
  }
};

// Installs a captured state for its lifetime and then puts the previous one back, so the replay
// does not disturb the RNG stream the rest of backward (and training) sees.
class ReplayGuard {
 public:
  explicit ReplayGuard(const ReplayState& replay) : previous_(swapIn(replay)) {}
  ~ReplayGuard() { swapIn(previous_); }
  ReplayGuard(const ReplayGuard&) = delete;
  ReplayGuard& operator=(const ReplayGuard&) = delete;

 private:
  static ReplayState swapIn(const ReplayState& next) {
    ReplayState prev;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      prev.cpuRng = gen.get_state();
      gen.set_state(next.cpuRng);
    }
#if LDDPM_WITH_CUDA
    if (next.cudaDevice >= 0) {
      auto gen = at::cuda::detail::getDefaultCUDAGenerator(next.cudaDevice);
      std::lock_guard<std::mutex> lock(gen.mutex());
      prev.cudaDevice = next.cudaDevice;
      prev.cudaRng = gen.get_state();
      gen.set_state(next.cudaRng);
    }
#endif
    prev.autocastCuda = autocastEnabled(c10::DeviceType::CUDA);
    prev.autocastCpu = autocastEnabled(c10::DeviceType::CPU);
    setAutocastEnabled(c10::DeviceType::CUDA, next.autocastCuda);
    setAutocastEnabled(c10::DeviceType::CPU, next.autocastCpu);
    return prev;
  }
  ReplayState previous_;
};

// What backward needs besides the saved tensors; carried in ctx->saved_data as a capsule because
// a std::function is not an IValue.
struct CheckpointPlan : torch::CustomClassHolder {
  CheckpointStage stage;
  std::vector<bool> defined;  // per stage input: whether it was passed (undefined ones are not)
  std::size_t numInputs = 0;  // defined stage inputs at the front of the tensor list; params follow
  std::vector<torch::Tensor> parameters;
  ReplayState replay;

  variable_list stageInputs(const variable_list& tensors) const {
    variable_list inputs(defined.size());
    std::size_t next = 0;
    for (std::size_t i = 0; i < defined.size(); ++i) {
      if (defined[i]) inputs[i] = tensors[next++];
    }
    return inputs;
  }
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // `tensors` = the defined stage inputs, then the parameters. A TensorList, not a
  // variable_list: Function::apply only recognises a TensorList as a list of differentiable
  // inputs (a std::vector would silently count as one non-tensor argument).
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<CheckpointPlan> plan,
                               at::TensorList tensorList) {
    const variable_list tensors = tensorList.vec();
    plan->replay = ReplayState::capture(tensors);
    variable_list outputs;
    {
      torch::NoGradGuard noGrad;  // Function::apply already disables grad; say so here too
      outputs = plan->stage(plan->stageInputs(tensors));
    }
    ctx->save_for_backward(variable_list(tensors.begin(), tensors.begin() + plan->numInputs));
    ctx->saved_data["plan"] = c10::IValue::make_capsule(plan);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradOutputs) {
    auto plan =
        c10::static_intrusive_pointer_cast<CheckpointPlan>(ctx->saved_data["plan"].toCapsule());
    const variable_list saved = ctx->get_saved_variables();

    // Fresh leaves cut from the outer graph, so the recomputation ends here and the gradients we
    // return are handed to the outer engine, which routes them on.
    variable_list replayInputs;
    replayInputs.reserve(plan->numInputs);
    for (const auto& t : saved)
      replayInputs.push_back(t.detach().requires_grad_(t.requires_grad()));
    // Parameters are read by the stage directly; we only need them as gradient targets.
    variable_list outputs;
    {
      ReplayGuard replay(plan->replay);
      torch::AutoGradMode enableGrad(true);
      outputs = plan->stage(plan->stageInputs(replayInputs));
    }

    variable_list targets;
    std::vector<std::size_t> targetSlots;  // position in the forward's tensor list
    for (std::size_t i = 0; i < replayInputs.size(); ++i) {
      if (replayInputs[i].requires_grad()) {
        targets.push_back(replayInputs[i]);
        targetSlots.push_back(i);
      }
    }
    const auto& params = plan->parameters;
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (params[i].requires_grad()) {
        targets.push_back(params[i]);
        targetSlots.push_back(plan->numInputs + i);
      }
    }
    variable_list roots, rootGrads;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].defined() && outputs[i].requires_grad() && gradOutputs[i].defined()) {
        roots.push_back(outputs[i]);
        rootGrads.push_back(gradOutputs[i]);
      }
    }
    // One slot per forward argument: the plan (not a tensor) first, then every tensor.
    variable_list result(1 + plan->numInputs + params.size());
    if (roots.empty() || targets.empty()) return result;
    const auto grads = torch::autograd::grad(roots, targets, rootGrads, /*retain_graph=*/false,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    for (std::size_t k = 0; k < grads.size(); ++k) result[1 + targetSlots[k]] = grads[k];
    return result;
  }
};

}  // namespace detail

torch::autograd::variable_list checkpoint(const CheckpointStage& stage,
                                          const torch::autograd::variable_list& inputs,
                                          const std::vector<torch::Tensor>& parameters) {
  if (!torch::GradMode::is_enabled()) return stage(inputs);
  auto plan = c10::make_intrusive<detail::CheckpointPlan>();
  plan->stage = stage;
  plan->parameters = parameters;
  torch::autograd::variable_list tensors;
  bool anyGrad = false;
  for (const auto& t : inputs) {
    plan->defined.push_back(t.defined());
    if (t.defined()) {
      tensors.push_back(t);
      anyGrad = anyGrad || t.requires_grad();
    }
  }
  plan->numInputs = tensors.size();
  for (const auto& p : parameters) {
    tensors.push_back(p);
    anyGrad = anyGrad || p.requires_grad();
  }
  if (!anyGrad) return stage(inputs);  // nothing to differentiate: no graph, nothing to save
  return detail::CheckpointFunction::apply(plan, at::TensorList(tensors));
}

}  // namespace lddpm::models
