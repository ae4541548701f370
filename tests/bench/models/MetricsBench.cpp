// Cost of the image metrics on an MSLesSeg-sized volume, and the choice behind SSIM: our float64
// separable valid-region filter against MONAI's way (float32 conv3d with the full 11³ kernel),
// timed in the same process on the same volume. Run by hand:
//   build/tests/bench/models/MetricsBench [D H W] [repeats]     (default 182 218 182, 3)
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <functional>

#include "core/Timer.h"
#include "models/Metrics.h"

namespace {

using namespace lddpm;

// Best of `repeats` wall-clock seconds (the least disturbed run on a shared machine).
double best(int repeats, const std::function<void()>& work) {
  double fastest = 1e30;
  for (int i = 0; i < repeats; ++i) {
    core::Stopwatch watch;
    work();
    fastest = std::min(fastest, watch.seconds());
  }
  return fastest;
}

// MONAI's compute_ssim_and_cs on CPU: float32, one conv3d per moment with the 3-D kernel.
double monaiStyleSsim(const torch::Tensor& x, const torch::Tensor& y, double range) {
  const auto d = torch::arange(-5, 6, torch::kFloat32);
  const auto g = torch::exp(-(d / 1.5).square() / 2);
  const auto g1 = g / g.sum();
  const auto k =
      (g1.view({-1, 1, 1}) * g1.view({1, -1, 1}) * g1.view({1, 1, -1})).view({1, 1, 11, 11, 11});
  const auto conv = [&](const torch::Tensor& t) {
    return torch::conv3d(t.view({1, 1, t.size(0), t.size(1), t.size(2)}), k);
  };
  const auto mx = conv(x), my = conv(y);
  const auto vx = conv(x * x) - mx * mx, vy = conv(y * y) - my * my, cxy = conv(x * y) - mx * my;
  const double c1 = (0.01 * range) * (0.01 * range), c2 = (0.03 * range) * (0.03 * range);
  const auto cs = (2 * cxy + c2) / (vx + vy + c2);
  return ((2 * mx * my + c1) / (mx * mx + my * my + c1) * cs).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t d = argc > 3 ? std::atoll(argv[1]) : 182;
  const std::int64_t h = argc > 3 ? std::atoll(argv[2]) : 218;
  const std::int64_t w = argc > 3 ? std::atoll(argv[3]) : 182;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 3;
  torch::manual_seed(0);
  // A smooth "anatomy" plus noise, float32 as NIfTI volumes arrive.
  const auto real =
      torch::avg_pool3d(torch::rand({1, 1, d + 4, h + 4, w + 4}), 5, 1).view({d, h, w});
  const auto synthetic = real + 0.05 * torch::randn({d, h, w});
  const double range = (real.max() - real.min()).item<double>();

  std::printf("volume %lldx%lldx%lld, %d intra-op threads, best of %d\n", static_cast<long long>(d),
              static_cast<long long>(h), static_cast<long long>(w), torch::get_num_threads(),
              repeats);
  double ssimValue = 0, monaiValue = 0;
  const double tErrors = best(repeats, [&] {
    models::meanSquaredError(real, synthetic);
    models::meanAbsoluteError(real, synthetic);
    models::psnr(real, synthetic);
  });
  const double tSsim =
      best(repeats, [&] { ssimValue = models::ssim(real, synthetic).item<double>(); });
  int scales = 0;
  const double tMs = best(repeats, [&] { scales = models::msSsim(real, synthetic).scales; });
  const double tAll = best(repeats, [&] { models::imageMetrics(real, synthetic); });
  const double tMonai = best(repeats, [&] { monaiValue = monaiStyleSsim(real, synthetic, range); });
  std::printf("mse+mae+psnr          %8.3f s\n", tErrors);
  std::printf("ssim (ours, f64)      %8.3f s   value %.9f\n", tSsim, ssimValue);
  std::printf("ssim (MONAI way, f32) %8.3f s   value %.9f   ours/MONAI time %.2f\n", tMonai,
              monaiValue, tSsim / tMonai);
  std::printf("ms-ssim (%d scales)    %8.3f s\n", scales, tMs);
  std::printf("imageMetrics (all)    %8.3f s\n", tAll);
  return 0;
}
