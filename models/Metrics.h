#pragma once
// Image and segmentation metrics for comparing synthetic with real volumes: MSE, MAE, PSNR, SSIM,
// MS-SSIM (both exactly as MONAI's SSIMMetric / MultiScaleSSIMMetric), region errors and Dice.
// Definitions and conventions: docs/metrics.md. Every metric accumulates in float64 on the inputs'
// device and takes either one volume [D, H, W] or a batch [B, 1, D, H, W].
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <vector>

namespace lddpm::models {

// Wang et al. 2004 constants, as MONAI's defaults.
struct SsimOptions {
  TORCH_ARG(std::int64_t, windowSize) = 11;  // odd; Gaussian window side in voxels
  TORCH_ARG(double, sigma) = 1.5;            // Gaussian σ in voxels
  TORCH_ARG(double, k1) = 0.01;
  TORCH_ARG(double, k2) = 0.03;
  // L in C1 = (K1 L)², C2 = (K2 L)². <= 0: max − min of each real volume (at full resolution).
  TORCH_ARG(double, dataRange) = 0;
};

// MS-SSIM scale weights (Wang, Simoncelli & Bovik 2003), finest scale first.
inline constexpr std::array<double, 5> kMsSsimWeights{0.0448, 0.2856, 0.3001, 0.2363, 0.1333};

// All metrics below return float64 on the inputs' device: a 0-dim tensor for [D, H, W] inputs,
// [B] for [B, 1, D, H, W] inputs. Arguments are (real, synthetic); shapes must match.

torch::Tensor meanSquaredError(const torch::Tensor& real, const torch::Tensor& synthetic);
torch::Tensor meanAbsoluteError(const torch::Tensor& real, const torch::Tensor& synthetic);

// 10 log10(L² / MSE); L = dataRange, or max − min of the real volume when dataRange <= 0.
// +inf for identical volumes.
torch::Tensor psnr(const torch::Tensor& real, const torch::Tensor& synthetic, double dataRange = 0);

// Mean SSIM over the valid region (window fully inside the volume; no padding).
torch::Tensor ssim(const torch::Tensor& real, const torch::Tensor& synthetic,
                   const SsimOptions& options = {});

struct MsSsimResult {
  torch::Tensor value;  // as the other metrics: 0-dim or [B]
  int scales = 0;       // how many of kMsSsimWeights were used (5 on MSLesSeg-sized volumes)
  torch::Tensor ssim;   // plain SSIM, a by-product of the full-resolution scale (saves a pass)
};

// Number of MS-SSIM scales a volume of this spatial size supports with this window: the largest
// n <= 5 with floor(side / 2^(n-1)) >= window on every side, i.e. the coarsest scale still holds
// one whole window. For n = 5 this is MONAI's rule `side // 16 > window - 1`. 0 when even the
// full-resolution volume is smaller than the window.
int msSsimScales(const std::vector<std::int64_t>& spatialSize, std::int64_t windowSize);

// Π_s relu(cs_s)^w_s over the first n-1 scales times relu(ssim_n)^w_n at the coarsest, with 2×
// average pooling between scales (MONAI's compute_ms_ssim). When fewer than 5 scales fit, the
// first n weights are renormalised to sum to 1. Throws when no scale fits.
MsSsimResult msSsim(const torch::Tensor& real, const torch::Tensor& synthetic,
                    const SsimOptions& options = {});

// Errors over the voxels where `region` is nonzero; NaN for a volume whose region is empty.
torch::Tensor regionMeanSquaredError(const torch::Tensor& real, const torch::Tensor& synthetic,
                                     const torch::Tensor& region);
torch::Tensor regionMeanAbsoluteError(const torch::Tensor& real, const torch::Tensor& synthetic,
                                      const torch::Tensor& region);

// The brain when no anatomical mask is given: the nonzero voxels of a skull-stripped real image.
torch::Tensor brainRegion(const torch::Tensor& real);

// 2|A∩B| / (|A| + |B|) with A = prediction > 0.5, B = target > 0.5. Both empty gives 1: the
// prediction agrees perfectly that there is nothing to find (docs/metrics.md).
torch::Tensor dice(const torch::Tensor& prediction, const torch::Tensor& target);

// Every image metric for one real/synthetic pair of volumes [D, H, W], as `lddpm evaluate images`
// reports it. Region metrics are NaN when their region is empty or (lesion) no mask is given.
struct ImageMetrics {
  double mse = 0;
  double mae = 0;
  double psnr = 0;
  double ssim = 0;
  double msSsim = 0;
  int msSsimScales = 0;
  double lesionMae = 0;
  double lesionMse = 0;
  double brainMae = 0;
};

// `lesion` and `brain` may be undefined tensors: no lesion metrics, brain = brainRegion(real).
ImageMetrics imageMetrics(const torch::Tensor& real, const torch::Tensor& synthetic,
                          const torch::Tensor& lesion = {}, const torch::Tensor& brain = {},
                          const SsimOptions& options = {});

}  // namespace lddpm::models
