#include "models/SlidingWindow.h"

#include <algorithm>
#include <cmath>

#include "core/Error.h"
#include "models/Conv3d.h"

namespace lddpm::models {

torch::Tensor gaussianImportanceMap(at::IntArrayRef window, double sigmaScale,
                                    const torch::TensorOptions& options) {
  LDDPM_CHECK(window.size() == 3, "gaussianImportanceMap: window must have 3 sides");
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(options.device());
  std::vector<torch::Tensor> axes;
  for (std::int64_t w : window) {
    const double centre = static_cast<double>(w - 1) / 2,
                 sigma = sigmaScale * static_cast<double>(w);
    const auto d = torch::arange(w, f64) - centre;
    axes.push_back(torch::exp(-(d * d) / (2 * sigma * sigma)));
  }
  auto map = axes[0].view({-1, 1, 1}) * axes[1].view({1, -1, 1}) * axes[2].view({1, 1, -1});
  map = map / map.max();
  // Far corners underflow towards 0 in low precision: floor them at the smallest positive weight
  // (as nnU-Net does) so a voxel covered only by window borders still gets a finite average.
  map = torch::clamp_min(map, map.min().item<double>() > 0 ? map.min().item<double>() : 1e-6);
  return map.to(options);
}

std::vector<std::int64_t> windowStarts(std::int64_t size, std::int64_t window, double overlap) {
  LDDPM_CHECK(window >= 1, "windowStarts: window must be >= 1");
  LDDPM_CHECK(overlap >= 0 && overlap < 1, "sliding window: overlap must be in [0, 1), got ",
              overlap);
  if (size <= window) return {0};
  const double step = std::max(1.0, std::floor(static_cast<double>(window) * (1 - overlap)));
  const auto count =
      static_cast<std::int64_t>(std::ceil(static_cast<double>(size - window) / step)) + 1;
  // Spread the windows evenly so the last one ends exactly at the border (nnU-Net).
  std::vector<std::int64_t> starts;
  const double spacing = static_cast<double>(size - window) / static_cast<double>(count - 1);
  for (std::int64_t i = 0; i < count; ++i)
    starts.push_back(std::llround(spacing * static_cast<double>(i)));
  return starts;
}

torch::Tensor slidingWindowInference(
    const torch::Tensor& volume,
    const std::function<torch::Tensor(const torch::Tensor&)>& predictor,
    const SlidingWindowOptions& options) {
  LDDPM_CHECK(volume.dim() == 5, "slidingWindowInference: volume must be [B, C, D, H, W], got ",
              volume.sizes());
  LDDPM_CHECK(options.window().size() == 3, "slidingWindowInference: window must have 3 sides");
  LDDPM_CHECK(options.windowBatch() >= 1, "sliding window: window batch must be >= 1, got ",
              options.windowBatch());
  InferenceScope inference;
  const auto& w = options.window();
  // Pad sides smaller than the window (at the end) so every window has the trained size.
  std::vector<std::int64_t> pad;  // F::pad order: last dim first, (before, after)
  for (int d = 4; d >= 2; --d) {
    pad.push_back(0);
    pad.push_back(std::max<std::int64_t>(0, w[static_cast<std::size_t>(d - 2)] - volume.size(d)));
  }
  const auto padded = torch::constant_pad_nd(volume, pad, 0);
  const auto importance = gaussianImportanceMap(w, options.sigmaScale(), padded.options());

  std::array<std::vector<std::int64_t>, 3> starts;
  for (int a = 0; a < 3; ++a) starts[a] = windowStarts(padded.size(a + 2), w[a], options.overlap());

  std::vector<std::array<std::int64_t, 3>> corners;
  for (auto z : starts[0])
    for (auto y : starts[1])
      for (auto x : starts[2]) corners.push_back({z, y, x});
  const auto windowOf = [&](const torch::Tensor& t, int firstAxis,
                            const std::array<std::int64_t, 3>& c) {
    return t.slice(firstAxis, c[0], c[0] + w[0])
        .slice(firstAxis + 1, c[1], c[1] + w[1])
        .slice(firstAxis + 2, c[2], c[2] + w[2]);
  };

  torch::Tensor sum, weight;
  const auto perCall = static_cast<std::size_t>(options.windowBatch());
  for (std::size_t first = 0; first < corners.size(); first += perCall) {
    const std::size_t last = std::min(corners.size(), first + perCall);
    std::vector<torch::Tensor> crops;
    for (std::size_t i = first; i < last; ++i) crops.push_back(windowOf(padded, 2, corners[i]));
    const auto input = crops.size() == 1 ? crops[0] : torch::cat(crops, 0);
    const auto pred = predictor(input);
    LDDPM_CHECK(pred.dim() == 5 && pred.size(0) == input.size(0) &&
                    pred.sizes().slice(2) == input.sizes().slice(2),
                "slidingWindowInference: predictor returned ", pred.sizes(), " for windows ",
                input.sizes());
    if (!sum.defined()) {
      sum = torch::zeros(
          {padded.size(0), pred.size(1), padded.size(2), padded.size(3), padded.size(4)},
          pred.options());
      weight = torch::zeros(padded.sizes().slice(2), pred.options());
    }
    const auto blend = importance.to(pred.options());
    for (std::size_t i = first; i < last; ++i) {
      const auto one =
          pred.narrow(0, static_cast<std::int64_t>(i - first) * padded.size(0), padded.size(0));
      windowOf(sum, 2, corners[i]).add_(one * blend);
      windowOf(weight, 0, corners[i]).add_(blend);
    }
  }
  const auto blended = sum / weight;
  return blended.slice(2, 0, volume.size(2))
      .slice(3, 0, volume.size(3))
      .slice(4, 0, volume.size(4));
}

}  // namespace lddpm::models
