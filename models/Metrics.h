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

// Brain-masked SSIM: the mean of the SSIM map (valid region, as ssim) over the window centres that
// lie in `region`; NaN when none does. The background of a skull-stripped scan is constant, so a
// whole-grid SSIM is dominated by how flat a generator keeps it; this one is not.
torch::Tensor regionSsim(const torch::Tensor& real, const torch::Tensor& synthetic,
                         const torch::Tensor& region, const SsimOptions& options = {});
// 10 log10(L² / regionMSE) with L as psnr; NaN for an empty region, +inf for identical voxels.
torch::Tensor regionPsnr(const torch::Tensor& real, const torch::Tensor& synthetic,
                         const torch::Tensor& region, double dataRange = 0);
// Mean of `image` over the nonzero voxels of `region`; NaN when empty.
torch::Tensor regionMeanValue(const torch::Tensor& image, const torch::Tensor& region);

// Tissue labels of an anatomical label volume (the store's labels, docs/store.md).
enum TissueLabel : int { kCsfLabel = 1, kGreyMatterLabel = 2, kWhiteMatterLabel = 3 };

// Texture: the population standard deviation of the high-pass residual x − G*x over `region`
// eroded by one voxel (3×3×3 cube; outside the volume counts as outside the region). G is the
// normalised Gaussian of σ = 1 voxel truncated at radius 2, with edge-replicating padding
// (scipy.ndimage.gaussian_filter(x, 1, truncate=2, mode='nearest')). NaN below two voxels.
torch::Tensor highPassStd(const torch::Tensor& image, const torch::Tensor& region);

// Intensity statistics of one volume [D, H, W] that say whether tissues and lesions look right,
// relative to normal-appearing white matter (NAWM = white-matter label and not lesion).
struct TissueStatistics {
  double lesionContrast = 0;  // mean(lesion) − mean(NAWM); NaN without lesion voxels
  double csfContrast = 0;     // mean(CSF) − mean(NAWM), lesion voxels excluded
  double gmContrast = 0;      // mean(GM) − mean(NAWM), lesion voxels excluded
  double wmTexture = 0;       // highPassStd over NAWM
};
// `tissue` holds TissueLabel values; `lesion` may be undefined (no lesion voxels).
TissueStatistics tissueStatistics(const torch::Tensor& image, const torch::Tensor& tissue,
                                  const torch::Tensor& lesion);

// 2|A∩B| / (|A| + |B|) with A = prediction > 0.5, B = target > 0.5. Both empty gives 1: the
// prediction agrees perfectly that there is nothing to find (docs/metrics.md).
torch::Tensor dice(const torch::Tensor& prediction, const torch::Tensor& target);

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

// The regions of one case, each [D, H, W] or undefined.
struct CaseRegions {
  torch::Tensor lesion;  // nonzero = lesion; undefined: no lesion metrics
  torch::Tensor brain;   // nonzero = brain; undefined: tissue > 0 or lesion, else brainRegion(real)
  torch::Tensor tissue;  // TissueLabel values; undefined: no tissue statistics
  // The brain these give for `real`.
  torch::Tensor brainOf(const torch::Tensor& real) const;
};

// Every image metric for one real/synthetic pair of volumes [D, H, W], as `lddpm evaluate images`
// reports it. Region metrics are NaN when their region is empty or (lesion) no mask is given;
// `tissue` holds the synthetic volume's statistics (NaN without a tissue volume).
struct ImageMetrics {
  double mse = 0;
  double mae = 0;
  double psnr = 0;
  double ssim = 0;
  double msSsim = 0;
  int msSsimScales = 0;
  double brainSsim = 0;
  double brainPsnr = 0;
  double brainMae = 0;
  double backgroundSsim = 0;
  double backgroundPsnr = 0;
  double backgroundMae = 0;
  double lesionMae = 0;
  double lesionMse = 0;
  TissueStatistics tissue;
};

ImageMetrics imageMetrics(const torch::Tensor& real, const torch::Tensor& synthetic,
                          const CaseRegions& regions = {}, const SsimOptions& options = {});

}  // namespace lddpm::models
