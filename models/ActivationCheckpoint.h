#pragma once
// Activation checkpointing for LibTorch, which has none in C++: run a stage without keeping its
// intermediate activations, and recompute them in backward. Memory drops to the stage's inputs for
// about one extra forward of the stage (docs/facts.md: ~33 % of a step when every stage
// recomputes).
#include <torch/torch.h>

#include <functional>

namespace lddpm::models {

// The recomputed function. It must be a pure function of its inputs, the parameters passed beside
// them and the RNG state (dropout), which checkpoint() saves and replays.
using CheckpointStage =
    std::function<torch::autograd::variable_list(const torch::autograd::variable_list& inputs)>;

// Returns stage(inputs) computed without saving activations; in backward the stage is rerun with
// grad enabled under the CPU (and CUDA) RNG state and autocast state of the first run, so dropout
// masks and results are identical, and gradients are bitwise those of the plain stage.
//
// `parameters` are the trainable tensors the stage reads. They enter the autograd function as
// inputs, so their gradients flow back through the normal engine (no re-entrant accumulation into
// .grad) and the output has a grad_fn even when no input requires grad (the case where a
// re-entrant checkpoint silently yields no gradients; docs/facts.md). Inputs may be undefined
// tensors; the stage receives them undefined in the same positions.
//
// With grad mode off (evaluation, sampling) it simply returns stage(inputs).
torch::autograd::variable_list checkpoint(const CheckpointStage& stage,
                                          const torch::autograd::variable_list& inputs,
                                          const std::vector<torch::Tensor>& parameters);

}  // namespace lddpm::models
