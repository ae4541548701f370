#pragma once
// The 3-D convolution of every model: torch::nn::Conv3d whose inference on the CPU always runs
// oneDNN's kernel.
//
// LibTorch 1.13 picks conv3d's CPU kernel per call (ATen's ConvParams::use_mkldnn): oneDNN when
// the batch is > 1 or the input's N·C·D·H is > 20480, else the im2col `slow_conv3d`, and for
// 1x1x1 kernels oneDNN only with more than one thread. A U-Net's coarse levels at batch 1 — one
// sampled case, one sliding window — thus ran up to 50× slower per case than at batch 2, a whole
// DDIM sample 5–26× (docs/BENCHMARKS.md "Sampling speed"), and which kernel summed a layer
// depended on the batch and the thread count. In inference (sampling, sliding-window prediction:
// an InferenceScope) this module calls oneDNN directly: the same kernel for every batch, size and
// thread count, and a case's output comes out with the same bits whatever its batch neighbours and
// the threads (tests/models/Conv3dTest.cpp, measured on AVX-512 and checked by the test suite on
// the machine it runs on). Elsewhere it is torch::nn::Conv3d unchanged: training's backward
// re-dispatches through ATen's own choice, and an activation checkpoint's no-grad forward must sum
// as its recompute with autograd will.
#include <torch/torch.h>

namespace lddpm::models {

class Conv3dImpl : public torch::nn::Conv3dImpl {
 public:
  using torch::nn::Conv3dImpl::Conv3dImpl;
  torch::Tensor forward(const torch::Tensor& input);
};
TORCH_MODULE(Conv3d);

// A region of pure inference, with grad mode off: nothing computed in it is ever differentiated
// or recomputed with autograd. Conv3d takes oneDNN directly only inside one. Nests; per thread.
class InferenceScope {
 public:
  InferenceScope();
  ~InferenceScope();
  InferenceScope(const InferenceScope&) = delete;
  InferenceScope& operator=(const InferenceScope&) = delete;
  static bool active();

 private:
  torch::NoGradGuard noGrad_;
};

// True when Conv3d's forward on `input` takes oneDNN directly: the switch below on, inside an
// InferenceScope with grad mode off, a float32 CPU tensor, LibTorch built with oneDNN and not
// disabled by the user.
bool usesDirectOneDnn(const torch::Tensor& input);

// Process-wide switch of the direct path (default on). ModelsBench turns it off to time ATen's own
// kernel choice in the same process; nothing else should.
void setDirectOneDnn(bool enabled);

}  // namespace lddpm::models
