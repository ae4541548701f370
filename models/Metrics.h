#pragma once
// Image and segmentation metrics for comparing synthetic with real volumes: MSE, MAE, PSNR, SSIM,
// MS-SSIM (both exactly as MONAI's SSIMMetric / MultiScaleSSIMMetric), region errors and Dice.
// Definitions and conventions: docs/metrics.md. Every metric accumulates in float64 on the inputs'
// device and takes either one volume [D, H, W] or a batch [B, 1, D, H, W].
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <utility>
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

// 26-connected components of a binary volume [D, H, W] (nonzero = foreground), as
// scipy.ndimage.label with a full 3×3×3 structure: int32 labels on the CPU, 0 background, 1..n
// in raster order of each component's first voxel. Returns (labels, n).
std::pair<torch::Tensor, std::int64_t> connectedComponents(const torch::Tensor& mask);

// One segmented scan against its true lesion mask, as `lddpm evaluate segmentation` reports it
// (docs/downstream.md). Predicted lesion = probability > 0.5, true lesion = target > 0.5.
struct SegmentationScores {
  double dice = 0;                    // voxel Dice; 1 when both are empty (as models::dice)
  double trueVolume = 0;              // lesion voxels × voxelVolume
  double predictedVolume = 0;         // predicted voxels × voxelVolume
  std::int64_t trueLesions = 0;       // 26-connected components of the true mask
  std::int64_t detectedLesions = 0;   // true components touched by at least one predicted voxel
  std::int64_t predictedLesions = 0;  // components of the prediction
  std::int64_t correctLesions = 0;    // predicted components touching at least one true voxel
  double lesionSensitivity = 0;       // detected / true lesions; NaN without true lesions
  double lesionPrecision = 0;         // correct / predicted lesions; NaN without predicted lesions
};

// `prediction` (probabilities) and `target` [D, H, W] of equal shape; `voxelVolume` in the unit
// the volumes should have (mL: product of the spacing in mm / 1000).
SegmentationScores segmentationScores(const torch::Tensor& prediction, const torch::Tensor& target,
                                      double voxelVolume = 1.0);

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
