#include "models/Metrics.h"

#include <cmath>
#include <numeric>

#include "core/Components.h"
#include "core/Error.h"

namespace lddpm::models {

namespace detail {

// [D, H, W] -> [1, D, H, W]; [B, 1, D, H, W] -> [B, D, H, W]. Metrics work on the 4-D form.
torch::Tensor asBatch(const torch::Tensor& t, const char* what) {
  LDDPM_CHECK(t.defined(), "metrics: ", what, " is an undefined tensor");
  if (t.dim() == 3) return t.unsqueeze(0);
  LDDPM_CHECK(t.dim() == 5 && t.size(1) == 1, "metrics: ", what,
              " must be [D, H, W] or [B, 1, D, H, W], got ", t.sizes());
  return t.squeeze(1);
}

// Per-volume results [B] back in the caller's layout: 0-dim for a single volume.
torch::Tensor inCallerLayout(const torch::Tensor& perVolume, const torch::Tensor& like) {
  return like.dim() == 3 ? perVolume.squeeze(0) : perVolume;
}

void checkSameShape(const torch::Tensor& a, const char* aName, const torch::Tensor& b,
                    const char* bName) {
  LDDPM_CHECK(a.defined() && b.defined(), "metrics: ", aName, " or ", bName, " is undefined");
  LDDPM_CHECK(a.sizes() == b.sizes(), "metrics: ", aName, " ", a.sizes(), " and ", bName, " ",
              b.sizes(), " differ in shape");
}

struct Pair {
  torch::Tensor real;       // [B, D, H, W] float64
  torch::Tensor synthetic;  // [B, D, H, W] float64
};

Pair preparePair(const torch::Tensor& real, const torch::Tensor& synthetic) {
  checkSameShape(real, "real", synthetic, "synthetic");
  return {asBatch(real, "real").to(torch::kFloat64),
          asBatch(synthetic, "synthetic").to(torch::kFloat64)};
}

const std::vector<int64_t> kSpatialDims{1, 2, 3};

// L per volume [B]: the given range, or max − min of each real volume.
torch::Tensor dataRange(const torch::Tensor& real, double given) {
  if (given > 0) return torch::full({real.size(0)}, given, real.options());
  return real.amax(kSpatialDims) - real.amin(kSpatialDims);
}

// The normalised 1-D Gaussian at integer offsets −(w−1)/2 … (w−1)/2. MONAI's 3-D kernel is the
// outer product of three of these, so filtering along D, H, W in turn is the same filter.
std::vector<double> gaussianTaps(std::int64_t window, double sigma) {
  std::vector<double> taps(static_cast<size_t>(window));
  for (std::int64_t i = 0; i < window; ++i) {
    const double d = static_cast<double>(i - (window - 1) / 2) / sigma;
    taps[static_cast<size_t>(i)] = std::exp(-0.5 * d * d);
  }
  const double sum = std::accumulate(taps.begin(), taps.end(), 0.0);
  for (double& t : taps) t /= sum;
  return taps;
}

// Valid-region ("no padding") separable filtering of the last three dims of x [..., D, H, W]:
// the result is [..., D−w+1, H−w+1, W−w+1]. Shifted slices summed with scalar weights instead of
// conv3d: exact in float64, no im2col buffer (11× the volume), and the same code on every device.
torch::Tensor filterValid(torch::Tensor x, const std::vector<double>& taps) {
  const auto window = static_cast<std::int64_t>(taps.size());
  for (std::int64_t dim = x.dim() - 3; dim < x.dim(); ++dim) {
    const std::int64_t n = x.size(dim) - window + 1;
    torch::Tensor acc = x.narrow(dim, 0, n) * taps[0];
    for (std::int64_t k = 1; k < window; ++k)
      acc.add_(x.narrow(dim, k, n), taps[static_cast<size_t>(k)]);
    x = acc;
  }
  return x;
}

struct SsimParts {
  torch::Tensor ssim;      // [B] mean of the SSIM map over the valid region
  torch::Tensor contrast;  // [B] mean of the contrast-structure term cs
};

struct SsimMaps {
  torch::Tensor ssim;      // [B, D−w+1, H−w+1, W−w+1]: the map at each window centre
  torch::Tensor contrast;  // the same for cs
};

// MONAI's compute_ssim_and_cs on [B, D, H, W] float64 volumes with per-volume range L [B], before
// the mean. Variances are population moments E[x²] − E[x]² under the window weights, as MONAI (no
// N/(N−1) correction; skimage's default use_sample_covariance=True would differ).
SsimMaps ssimMaps(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& range,
                  const SsimOptions& o) {
  const std::int64_t w = o.windowSize();
  LDDPM_CHECK(x.size(1) >= w && x.size(2) >= w && x.size(3) >= w, "ssim: volume ",
              x.sizes().slice(1), " is smaller than the ", w, "-voxel window on some side");
  // One moment at a time: the temporaries of filtering are then one volume's worth, not five.
  const std::vector<double> taps = gaussianTaps(w, o.sigma());
  const auto local = [&](const torch::Tensor& t) { return filterValid(t, taps); };
  const torch::Tensor muX = local(x), muY = local(y);
  const torch::Tensor varX = local(x * x) - muX * muX;
  const torch::Tensor varY = local(y * y) - muY * muY;
  const torch::Tensor covXY = local(x * y) - muX * muY;
  const torch::Tensor l = range.view({-1, 1, 1, 1});
  const torch::Tensor c1 = (o.k1() * l).square();
  const torch::Tensor c2 = (o.k2() * l).square();
  const torch::Tensor cs = (2 * covXY + c2) / (varX + varY + c2);
  return {(2 * muX * muY + c1) / (muX * muX + muY * muY + c1) * cs, cs};
}

SsimParts ssimAndContrast(const torch::Tensor& x, const torch::Tensor& y,
                          const torch::Tensor& range, const SsimOptions& o) {
  const SsimMaps maps = ssimMaps(x, y, range, o);
  return {maps.ssim.mean(kSpatialDims), maps.contrast.mean(kSpatialDims)};
}

void checkWindow(const SsimOptions& o) {
  LDDPM_CHECK(o.windowSize() >= 1 && o.windowSize() % 2 == 1,
              "ssim: window size must be odd and positive, got ", o.windowSize());
  LDDPM_CHECK(o.sigma() > 0, "ssim: sigma must be positive, got ", o.sigma());
}

// 2× average pooling (floor on odd sides, as F.avg_pool3d(x, 2)) of [B, D, H, W].
torch::Tensor halve(const torch::Tensor& x) {
  return torch::avg_pool3d(x.unsqueeze(1), /*kernel_size=*/2).squeeze(1);
}

// Mean of per-voxel values [B, D, H, W] over the nonzero voxels of `region`; NaN when empty.
// `region` already in the batch form [B, D, H, W].
torch::Tensor batchRegionMean(const torch::Tensor& perVoxel, const torch::Tensor& region) {
  const torch::Tensor inside = (region != 0).to(torch::kFloat64);
  return (perVoxel * inside).sum(kSpatialDims) / inside.sum(kSpatialDims);
}

torch::Tensor regionMean(const torch::Tensor& perVoxel, const torch::Tensor& region) {
  return batchRegionMean(perVoxel, asBatch(region, "region"));
}

}  // namespace detail

torch::Tensor meanSquaredError(const torch::Tensor& real, const torch::Tensor& synthetic) {
  const auto p = detail::preparePair(real, synthetic);
  return detail::inCallerLayout((p.real - p.synthetic).square().mean(detail::kSpatialDims), real);
}

torch::Tensor meanAbsoluteError(const torch::Tensor& real, const torch::Tensor& synthetic) {
  const auto p = detail::preparePair(real, synthetic);
  return detail::inCallerLayout((p.real - p.synthetic).abs().mean(detail::kSpatialDims), real);
}

torch::Tensor psnr(const torch::Tensor& real, const torch::Tensor& synthetic, double dataRange) {
  const auto p = detail::preparePair(real, synthetic);
  const torch::Tensor mse = (p.real - p.synthetic).square().mean(detail::kSpatialDims);
  const torch::Tensor range = detail::dataRange(p.real, dataRange);
  return detail::inCallerLayout(10 * torch::log10(range.square() / mse), real);
}

torch::Tensor ssim(const torch::Tensor& real, const torch::Tensor& synthetic,
                   const SsimOptions& options) {
  detail::checkWindow(options);
  const auto p = detail::preparePair(real, synthetic);
  const torch::Tensor range = detail::dataRange(p.real, options.dataRange());
  return detail::inCallerLayout(detail::ssimAndContrast(p.real, p.synthetic, range, options).ssim,
                                real);
}

int msSsimScales(const std::vector<std::int64_t>& spatialSize, std::int64_t windowSize) {
  int scales = 0;
  for (int n = 1; n <= static_cast<int>(kMsSsimWeights.size()); ++n) {
    for (const std::int64_t side : spatialSize) {
      // floor(side / 2^(n-1)) is the side after n-1 floor-mode 2× poolings.
      if ((side >> (n - 1)) < windowSize) return scales;
    }
    scales = n;
  }
  return scales;
}

MsSsimResult msSsim(const torch::Tensor& real, const torch::Tensor& synthetic,
                    const SsimOptions& options) {
  detail::checkWindow(options);
  auto p = detail::preparePair(real, synthetic);
  const auto size = p.real.sizes().slice(1).vec();
  const int n = msSsimScales(size, options.windowSize());
  LDDPM_CHECK(n > 0, "ms-ssim: volume ", p.real.sizes().slice(1), " is smaller than the ",
              options.windowSize(), "-voxel window on some side");
  const double weightSum = std::accumulate(kMsSsimWeights.begin(), kMsSsimWeights.begin() + n, 0.0);
  // L comes from the full-resolution real volume and stays fixed across scales (MONAI passes
  // one data_range to every scale).
  const torch::Tensor range = detail::dataRange(p.real, options.dataRange());
  torch::Tensor value = torch::ones({p.real.size(0)}, p.real.options());
  torch::Tensor fullResolutionSsim;
  for (int s = 0; s < n; ++s) {
    const detail::SsimParts parts = detail::ssimAndContrast(p.real, p.synthetic, range, options);
    if (s == 0) fullResolutionSsim = parts.ssim;
    // cs at every scale but the coarsest, which contributes the full SSIM (luminance included).
    const torch::Tensor& term = s + 1 < n ? parts.contrast : parts.ssim;
    value = value * term.relu().pow(kMsSsimWeights[static_cast<size_t>(s)] / weightSum);
    if (s + 1 < n) {
      p.real = detail::halve(p.real);
      p.synthetic = detail::halve(p.synthetic);
    }
  }
  return {detail::inCallerLayout(value, real), n, detail::inCallerLayout(fullResolutionSsim, real)};
}

torch::Tensor regionMeanSquaredError(const torch::Tensor& real, const torch::Tensor& synthetic,
                                     const torch::Tensor& region) {
  detail::checkSameShape(real, "real", region, "region");
  const auto p = detail::preparePair(real, synthetic);
  return detail::inCallerLayout(detail::regionMean((p.real - p.synthetic).square(), region), real);
}

torch::Tensor regionMeanAbsoluteError(const torch::Tensor& real, const torch::Tensor& synthetic,
                                      const torch::Tensor& region) {
  detail::checkSameShape(real, "real", region, "region");
  const auto p = detail::preparePair(real, synthetic);
  return detail::inCallerLayout(detail::regionMean((p.real - p.synthetic).abs(), region), real);
}

torch::Tensor brainRegion(const torch::Tensor& real) { return real != 0; }

torch::Tensor regionSsim(const torch::Tensor& real, const torch::Tensor& synthetic,
                         const torch::Tensor& region, const SsimOptions& options) {
  detail::checkWindow(options);
  detail::checkSameShape(real, "real", region, "region");
  const auto p = detail::preparePair(real, synthetic);
  const torch::Tensor range = detail::dataRange(p.real, options.dataRange());
  const torch::Tensor map = detail::ssimMaps(p.real, p.synthetic, range, options).ssim;
  // The map's voxel (i, j, k) is the window centred on (i + r, j + r, k + r) of the volume.
  const std::int64_t r = (options.windowSize() - 1) / 2;
  torch::Tensor centres = detail::asBatch(region, "region");
  for (std::int64_t d = 1; d <= 3; ++d) centres = centres.narrow(d, r, map.size(d));
  return detail::inCallerLayout(detail::batchRegionMean(map, centres), real);
}

torch::Tensor regionPsnr(const torch::Tensor& real, const torch::Tensor& synthetic,
                         const torch::Tensor& region, double dataRange) {
  detail::checkSameShape(real, "real", region, "region");
  const auto p = detail::preparePair(real, synthetic);
  const torch::Tensor mse = detail::regionMean((p.real - p.synthetic).square(), region);
  const torch::Tensor range = detail::dataRange(p.real, dataRange);
  return detail::inCallerLayout(10 * torch::log10(range.square() / mse), real);
}

torch::Tensor regionMeanValue(const torch::Tensor& image, const torch::Tensor& region) {
  detail::checkSameShape(image, "image", region, "region");
  return detail::inCallerLayout(
      detail::regionMean(detail::asBatch(image, "image").to(torch::kFloat64), region), image);
}

torch::Tensor highPassStd(const torch::Tensor& image, const torch::Tensor& region) {
  detail::checkSameShape(image, "image", region, "region");
  namespace F = torch::nn::functional;
  const torch::Tensor x = detail::asBatch(image, "image").to(torch::kFloat64).unsqueeze(1);
  constexpr std::int64_t kRadius = 2;
  const std::vector<double> taps = detail::gaussianTaps(2 * kRadius + 1, /*sigma=*/1.0);
  const torch::Tensor padded =
      F::pad(x, F::PadFuncOptions(std::vector<std::int64_t>(6, kRadius)).mode(torch::kReplicate));
  const torch::Tensor residual = (x - detail::filterValid(padded, taps)).squeeze(1);
  // Erosion: a voxel stays when its whole 3×3×3 neighbourhood is region (outside counts as not).
  const torch::Tensor outside =
      (detail::asBatch(region, "region") == 0).to(torch::kFloat64).unsqueeze(1);
  const torch::Tensor inside =
      F::max_pool3d(F::pad(outside, F::PadFuncOptions(std::vector<std::int64_t>(6, 1)).value(1.0)),
                    F::MaxPool3dFuncOptions(3).stride(1))
          .squeeze(1) == 0;
  std::vector<double> out;
  for (std::int64_t b = 0; b < residual.size(0); ++b) {
    const torch::Tensor values = residual[b].masked_select(inside[b]);
    out.push_back(values.numel() < 2 ? std::nan("")
                                     : values.std(/*unbiased=*/false).item<double>());
  }
  return detail::inCallerLayout(torch::tensor(out, x.options()), image);
}

TissueStatistics tissueStatistics(const torch::Tensor& image, const torch::Tensor& tissue,
                                  const torch::Tensor& lesion) {
  LDDPM_CHECK(image.dim() == 3, "tissueStatistics: expects one volume [D, H, W], got ",
              image.sizes());
  detail::checkSameShape(image, "image", tissue, "tissue");
  const torch::Tensor labels = tissue.to(torch::kInt64);
  const torch::Tensor isLesion =
      lesion.defined() ? lesion != 0
                       : torch::zeros(image.sizes(), labels.options().dtype(torch::kBool));
  const auto mean = [&](const torch::Tensor& region) {
    return regionMeanValue(image, region).item<double>();
  };
  const torch::Tensor nawm = (labels == kWhiteMatterLabel) & ~isLesion;
  const double wm = mean(nawm);
  TissueStatistics s;
  s.lesionContrast = mean(isLesion) - wm;
  s.csfContrast = mean((labels == kCsfLabel) & ~isLesion) - wm;
  s.gmContrast = mean((labels == kGreyMatterLabel) & ~isLesion) - wm;
  s.wmTexture = highPassStd(image, nawm).item<double>();
  return s;
}

torch::Tensor CaseRegions::brainOf(const torch::Tensor& real) const {
  if (brain.defined()) return brain != 0;
  if (tissue.defined()) return lesion.defined() ? (tissue != 0) | (lesion != 0) : tissue != 0;
  return brainRegion(real);
}

torch::Tensor dice(const torch::Tensor& prediction, const torch::Tensor& target) {
  detail::checkSameShape(prediction, "prediction", target, "target");
  const torch::Tensor a = detail::asBatch(prediction, "prediction").to(torch::kFloat64) > 0.5;
  const torch::Tensor b = detail::asBatch(target, "target").to(torch::kFloat64) > 0.5;
  const auto count = [](const torch::Tensor& mask) {
    return mask.sum(detail::kSpatialDims).to(torch::kFloat64);
  };
  const torch::Tensor sizes = count(a) + count(b);
  const torch::Tensor overlap = 2 * count(a.logical_and(b)) / sizes;
  return detail::inCallerLayout(overlap.masked_fill(sizes == 0, 1.0), prediction);
}

namespace {

// How many of the components labelled 1..n in `labels` have a voxel inside `other`.
std::int64_t componentsTouching(const torch::Tensor& labels, std::int64_t n,
                                const torch::Tensor& other) {
  if (n == 0) return 0;
  const torch::Tensor hit = labels.masked_select(other.to(torch::kCPU)).to(torch::kLong);
  return torch::bincount(hit, /*weights=*/{}, /*minlength=*/n + 1)
      .narrow(0, 1, n)
      .gt(0)
      .sum()
      .item<std::int64_t>();
}

}  // namespace

SegmentationScores segmentationScores(const torch::Tensor& prediction, const torch::Tensor& target,
                                      double voxelVolume) {
  LDDPM_CHECK(prediction.dim() == 3, "segmentationScores: expects one volume [D, H, W], got ",
              prediction.sizes());
  detail::checkSameShape(prediction, "prediction", target, "target");
  const torch::Tensor predicted = prediction.to(torch::kCPU).to(torch::kFloat64) > 0.5;
  const torch::Tensor truth = target.to(torch::kCPU).to(torch::kFloat64) > 0.5;
  SegmentationScores s;
  s.dice = dice(prediction, target).item<double>();
  s.trueVolume = static_cast<double>(truth.sum().item<std::int64_t>()) * voxelVolume;
  s.predictedVolume = static_cast<double>(predicted.sum().item<std::int64_t>()) * voxelVolume;
  const auto [trueLabels, trueCount] = core::connectedComponents(truth);
  const auto [predictedLabels, predictedCount] = core::connectedComponents(predicted);
  s.trueLesions = trueCount;
  s.predictedLesions = predictedCount;
  s.detectedLesions = componentsTouching(trueLabels, trueCount, predicted);
  s.correctLesions = componentsTouching(predictedLabels, predictedCount, truth);
  const auto ratio = [](std::int64_t a, std::int64_t b) {
    return b == 0 ? std::nan("") : static_cast<double>(a) / static_cast<double>(b);
  };
  s.lesionSensitivity = ratio(s.detectedLesions, s.trueLesions);
  s.lesionPrecision = ratio(s.correctLesions, s.predictedLesions);
  return s;
}

ImageMetrics imageMetrics(const torch::Tensor& real, const torch::Tensor& synthetic,
                          const CaseRegions& regions, const SsimOptions& options) {
  LDDPM_CHECK(real.dim() == 3, "imageMetrics: expects one volume [D, H, W], got ", real.sizes());
  ImageMetrics m;
  m.mse = meanSquaredError(real, synthetic).item<double>();
  m.mae = meanAbsoluteError(real, synthetic).item<double>();
  m.psnr = psnr(real, synthetic, options.dataRange()).item<double>();
  const MsSsimResult ms = msSsim(real, synthetic, options);
  m.ssim = ms.ssim.item<double>();
  m.msSsim = ms.value.item<double>();
  m.msSsimScales = ms.scales;
  const torch::Tensor brain = regions.brainOf(real);
  const torch::Tensor background = ~brain;
  m.brainSsim = regionSsim(real, synthetic, brain, options).item<double>();
  m.brainPsnr = regionPsnr(real, synthetic, brain, options.dataRange()).item<double>();
  m.brainMae = regionMeanAbsoluteError(real, synthetic, brain).item<double>();
  m.backgroundSsim = regionSsim(real, synthetic, background, options).item<double>();
  m.backgroundPsnr = regionPsnr(real, synthetic, background, options.dataRange()).item<double>();
  m.backgroundMae = regionMeanAbsoluteError(real, synthetic, background).item<double>();
  const double nan = std::nan("");
  const auto& lesion = regions.lesion;
  m.lesionMae =
      lesion.defined() ? regionMeanAbsoluteError(real, synthetic, lesion).item<double>() : nan;
  m.lesionMse =
      lesion.defined() ? regionMeanSquaredError(real, synthetic, lesion).item<double>() : nan;
  if (regions.tissue.defined()) {
    m.tissue = tissueStatistics(synthetic, regions.tissue, lesion);
  } else {
    m.tissue = {nan, nan, nan, nan};
  }
  return m;
}

}  // namespace lddpm::models
