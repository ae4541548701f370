#pragma once
// Sliding-window inference with Gaussian blending (nnU-Net / MONAI): a network trained on patches
// predicts a whole volume window by window; overlapping predictions are averaged with weights that
// fall off towards each window's border, where the network saw the least context.
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <functional>

namespace lddpm::models {

struct SlidingWindowOptions {
  TORCH_ARG(std::vector<std::int64_t>, window) = std::vector<std::int64_t>{64, 64, 64};  // D, H, W
  TORCH_ARG(double, overlap) = 0.5;       // fraction of a window shared with its neighbour
  TORCH_ARG(double, sigmaScale) = 0.125;  // Gaussian σ as a fraction of the window side (nnU-Net)
  // Windows per predictor call, stacked along the batch. On the CPU the models' convolutions give
  // the same bits at any batch (models/Conv3d.h) and 1 is the fastest; more helps a GPU.
  TORCH_ARG(std::int64_t, windowBatch) = 1;
};

// Weights [wD, wH, wW] of the blending Gaussian, 1 at the centre, with `options`.
torch::Tensor gaussianImportanceMap(at::IntArrayRef window, double sigmaScale,
                                    const torch::TensorOptions& options);

// Start offsets along one axis: windows of `window` over `size` with step window·(1 - overlap),
// the last one flush with the end so every voxel is covered. One window when size <= window.
std::vector<std::int64_t> windowStarts(std::int64_t size, std::int64_t window, double overlap);

// volume [B, C, D, H, W] -> [B, Cout, D, H, W]. `predictor` maps [k·B, C, wD, wH, wW] (k ≤
// windowBatch windows, each with the volume's B cases) to [k·B, Cout, wD, wH, wW]. Sides smaller
// than the window are zero-padded for prediction and cropped back. Runs in an InferenceScope
// (models/Conv3d.h).
torch::Tensor slidingWindowInference(
    const torch::Tensor& volume,
    const std::function<torch::Tensor(const torch::Tensor&)>& predictor,
    const SlidingWindowOptions& options);

}  // namespace lddpm::models
