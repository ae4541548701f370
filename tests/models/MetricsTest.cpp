// Image and segmentation metrics against closed forms and a direct float64 SSIM written here with
// plain loops (every valid window position, weighted sums voxel by voxel): nothing is compared
// with values produced by models/Metrics.cpp itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <vector>

#include "core/Error.h"
#include "models/Metrics.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm::models;

// A volume as plain doubles, z slowest: the independent side of every comparison.
struct Grid {
  int d = 0, h = 0, w = 0;
  std::vector<double> v;
  Grid(int d_, int h_, int w_) : d(d_), h(h_), w(w_), v(static_cast<size_t>(d_) * h_ * w_, 0.0) {}
  double& at(int z, int y, int x) { return v[(static_cast<size_t>(z) * h + y) * w + x]; }
  double at(int z, int y, int x) const { return v[(static_cast<size_t>(z) * h + y) * w + x]; }
  torch::Tensor tensor() const { return torch::tensor(v, torch::kFloat64).view({d, h, w}).clone(); }
};

Grid randomGrid(int d, int h, int w, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Grid g(d, h, w);
  for (double& x : g.v) x = u(gen);
  return g;
}

// y = x + noise: correlated like a decent synthetic image, so SSIM lands mid-range.
Grid noisyCopy(const Grid& x, double amplitude, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> n(0.0, amplitude);
  Grid y = x;
  for (double& v : y.v) v += n(gen);
  return y;
}

double range(const Grid& g) {
  double lo = g.v[0], hi = g.v[0];
  for (double v : g.v) lo = std::min(lo, v), hi = std::max(hi, v);
  return hi - lo;
}

struct DirectSsim {
  double ssim = 0;
  double cs = 0;
};

// Wang et al. SSIM with an 11-tap (or `win`) Gaussian, σ, population moments, valid positions only.
DirectSsim directSsim(const Grid& x, const Grid& y, int win, double sigma, double L) {
  std::vector<double> g(static_cast<size_t>(win));
  double sum = 0;
  for (int i = 0; i < win; ++i) {
    const double d = i - (win - 1) / 2;
    g[static_cast<size_t>(i)] = std::exp(-d * d / (2 * sigma * sigma));
    sum += g[static_cast<size_t>(i)];
  }
  for (double& t : g) t /= sum;
  const double c1 = (0.01 * L) * (0.01 * L), c2 = (0.03 * L) * (0.03 * L);
  double ssimSum = 0, csSum = 0;
  long count = 0;
  for (int z = 0; z + win <= x.d; ++z) {
    for (int r = 0; r + win <= x.h; ++r) {
      for (int c = 0; c + win <= x.w; ++c) {
        double mx = 0, my = 0, mxx = 0, myy = 0, mxy = 0;
        for (int a = 0; a < win; ++a) {
          for (int b = 0; b < win; ++b) {
            for (int e = 0; e < win; ++e) {
              const double wt = g[a] * g[b] * g[e];
              const double xv = x.at(z + a, r + b, c + e), yv = y.at(z + a, r + b, c + e);
              mx += wt * xv, my += wt * yv;
              mxx += wt * xv * xv, myy += wt * yv * yv, mxy += wt * xv * yv;
            }
          }
        }
        const double vx = mxx - mx * mx, vy = myy - my * my, cxy = mxy - mx * my;
        const double cs = (2 * cxy + c2) / (vx + vy + c2);
        ssimSum += (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs;
        csSum += cs;
        ++count;
      }
    }
  }
  return {ssimSum / count, csSum / count};
}

// 2×2×2 means, odd trailing voxels dropped.
Grid halve(const Grid& x) {
  Grid out(x.d / 2, x.h / 2, x.w / 2);
  for (int z = 0; z < out.d; ++z)
    for (int r = 0; r < out.h; ++r)
      for (int c = 0; c < out.w; ++c) {
        double s = 0;
        for (int k = 0; k < 8; ++k)
          s += x.at(2 * z + (k >> 2), 2 * r + ((k >> 1) & 1), 2 * c + (k & 1));
        out.at(z, r, c) = s / 8;
      }
  return out;
}

double directMsSsim(Grid x, Grid y, int win, double sigma, int scales) {
  const double L = range(x);
  const double w[5] = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
  double wsum = 0;
  for (int s = 0; s < scales; ++s) wsum += w[s];
  double value = 1;
  for (int s = 0; s < scales; ++s) {
    const DirectSsim d = directSsim(x, y, win, sigma, L);
    const double term = s + 1 < scales ? d.cs : d.ssim;
    value *= std::pow(std::max(term, 0.0), w[s] / wsum);
    x = halve(x);
    y = halve(y);
  }
  return value;
}

double scalar(const torch::Tensor& t) {
  EXPECT_EQ(t.dim(), 0);
  EXPECT_EQ(t.scalar_type(), torch::kFloat64);
  return t.item<double>();
}

TEST(Ssim, IdenticalVolumesScoreOne) {
  const torch::Tensor x = randomGrid(13, 14, 15, 1).tensor().to(torch::kFloat32);
  EXPECT_NEAR(scalar(ssim(x, x)), 1.0, 1e-12);
  const MsSsimResult ms = msSsim(x, x);
  EXPECT_EQ(ms.scales, 1);
  EXPECT_NEAR(scalar(ms.value), 1.0, 1e-12);
}

TEST(Ssim, MatchesDirectFloat64WithRealRange) {
  const Grid x = randomGrid(12, 13, 15, 2);
  const Grid y = noisyCopy(x, 0.2, 3);
  const double expected = directSsim(x, y, 11, 1.5, range(x)).ssim;
  EXPECT_GT(expected, 0.1);  // a mid-range value, not a degenerate 0 or 1
  EXPECT_LT(expected, 0.95);
  EXPECT_NEAR(scalar(ssim(x.tensor(), y.tensor())), expected, 1e-12);
  // float32 inputs are widened before any arithmetic: only the input rounding differs.
  EXPECT_NEAR(scalar(ssim(x.tensor().to(torch::kFloat32), y.tensor().to(torch::kFloat32))),
              expected, 1e-6);
}

TEST(Ssim, MatchesDirectFloat64WithGivenRangeAndWindow) {
  const Grid x = randomGrid(9, 8, 10, 4);
  const Grid y = noisyCopy(x, 0.5, 5);
  const double expected = directSsim(x, y, 5, 0.8, 2.0).ssim;
  const auto options = SsimOptions().windowSize(5).sigma(0.8).dataRange(2.0);
  EXPECT_NEAR(scalar(ssim(x.tensor(), y.tensor(), options)), expected, 1e-12);
}

TEST(Ssim, BatchGivesOneValuePerVolume) {
  const Grid x0 = randomGrid(11, 12, 11, 6), x1 = randomGrid(11, 12, 11, 7);
  const Grid y0 = noisyCopy(x0, 0.1, 8), y1 = noisyCopy(x1, 0.4, 9);
  const torch::Tensor real = torch::stack({x0.tensor(), x1.tensor()}).unsqueeze(1);  // [2,1,D,H,W]
  const torch::Tensor synthetic = torch::stack({y0.tensor(), y1.tensor()}).unsqueeze(1);
  const torch::Tensor values = ssim(real, synthetic);
  ASSERT_EQ(values.sizes(), torch::IntArrayRef({2}));
  // Each volume uses its own real range.
  EXPECT_NEAR(values[0].item<double>(), directSsim(x0, y0, 11, 1.5, range(x0)).ssim, 1e-12);
  EXPECT_NEAR(values[1].item<double>(), directSsim(x1, y1, 11, 1.5, range(x1)).ssim, 1e-12);
  // The other metrics batch the same way: each entry as if the volume came alone.
  const MsSsimResult ms = msSsim(real, synthetic, SsimOptions().windowSize(5));
  ASSERT_EQ(ms.value.sizes(), torch::IntArrayRef({2}));
  EXPECT_NEAR(ms.value[1].item<double>(),
              scalar(msSsim(x1.tensor(), y1.tensor(), SsimOptions().windowSize(5)).value), 1e-14);
  EXPECT_NEAR(psnr(real, synthetic)[0].item<double>(), scalar(psnr(x0.tensor(), y0.tensor())),
              1e-12);
}

TEST(Ssim, RejectsBadShapesAndWindows) {
  const torch::Tensor a = torch::rand({12, 12, 12});
  EXPECT_THROW(ssim(a, torch::rand({12, 12, 13})), lddpm::core::Error);  // shapes differ
  EXPECT_THROW(ssim(a.unsqueeze(0), a.unsqueeze(0)),
               lddpm::core::Error);  // [1, D, H, W] is ambiguous
  EXPECT_THROW(ssim(torch::rand({12, 10, 12}), torch::rand({12, 10, 12})),
               lddpm::core::Error);                                           // < window
  EXPECT_THROW(ssim(a, a, SsimOptions().windowSize(4)), lddpm::core::Error);  // even window
  EXPECT_THROW(msSsim(torch::rand({8, 20, 20}), torch::rand({8, 20, 20})), lddpm::core::Error);
}

TEST(MsSsim, ScaleCountFollowsCoarsestWindowRule) {
  // floor(side / 2^(n-1)) >= 11 on every side. 176 = 11·16 is the smallest 5-scale side
  // (MONAI: side // 16 > 10); 128 (docs/facts.md: too small for MONAI's 5 scales) gets 4.
  EXPECT_EQ(msSsimScales({182, 218, 182}, 11), 5);
  EXPECT_EQ(msSsimScales({176, 176, 176}, 11), 5);
  EXPECT_EQ(msSsimScales({175, 400, 400}, 11), 4);
  EXPECT_EQ(msSsimScales({128, 128, 128}, 11), 4);
  EXPECT_EQ(msSsimScales({88, 90, 100}, 11), 4);
  EXPECT_EQ(msSsimScales({100, 87, 100}, 11), 3);
  EXPECT_EQ(msSsimScales({44, 44, 44}, 11), 3);
  EXPECT_EQ(msSsimScales({43, 44, 44}, 11), 2);
  EXPECT_EQ(msSsimScales({22, 22, 22}, 11), 2);
  EXPECT_EQ(msSsimScales({21, 22, 22}, 11), 1);
  EXPECT_EQ(msSsimScales({11, 11, 11}, 11), 1);
  EXPECT_EQ(msSsimScales({10, 50, 50}, 11), 0);
  EXPECT_EQ(msSsimScales({48, 48, 48}, 3), 5);
  EXPECT_EQ(msSsimScales({47, 48, 48}, 3), 4);
}

TEST(MsSsim, FiveScalesMatchDirectFloat64) {
  // Window 3 lets five scales fit in a test-sized volume: 48 → 24 → 12 → 6 → 3 (49, 50 floor).
  const Grid x = randomGrid(48, 49, 50, 10);
  const Grid y = noisyCopy(x, 0.3, 11);
  const auto options = SsimOptions().windowSize(3).sigma(1.5);
  const MsSsimResult r = msSsim(x.tensor(), y.tensor(), options);
  EXPECT_EQ(r.scales, 5);
  EXPECT_NEAR(scalar(r.value), directMsSsim(x, y, 3, 1.5, 5), 1e-12);
  EXPECT_NEAR(scalar(r.ssim), directSsim(x, y, 3, 1.5, range(x)).ssim, 1e-12);
}

TEST(MsSsim, FewerScalesRenormaliseWeights) {
  // 23 → 11: two scales of an 11-voxel window; weights 0.0448 and 0.2856 scaled to sum to 1.
  const Grid x = randomGrid(23, 24, 25, 12);
  const Grid y = noisyCopy(x, 0.3, 13);
  const MsSsimResult r = msSsim(x.tensor(), y.tensor());
  EXPECT_EQ(r.scales, 2);
  const double L = range(x);
  const double cs0 = directSsim(x, y, 11, 1.5, L).cs;
  const double ssim1 = directSsim(halve(x), halve(y), 11, 1.5, L).ssim;
  const double w0 = 0.0448 / (0.0448 + 0.2856), w1 = 0.2856 / (0.0448 + 0.2856);
  EXPECT_NEAR(scalar(r.value), std::pow(cs0, w0) * std::pow(ssim1, w1), 1e-12);
}

TEST(MsSsim, OneScaleIsSsim) {
  const Grid x = randomGrid(15, 16, 17, 14);
  const Grid y = noisyCopy(x, 0.2, 15);
  const MsSsimResult r = msSsim(x.tensor(), y.tensor());
  EXPECT_EQ(r.scales, 1);
  EXPECT_NEAR(scalar(r.value), directSsim(x, y, 11, 1.5, range(x)).ssim, 1e-12);
}

// real: 4 in the first half of the slices, 0 elsewhere (range 4); synthetic = real + error with
// +1 on n1 voxels and −3 on n2 voxels.
struct ErrorCase {
  torch::Tensor real = torch::zeros({6, 5, 4}, torch::kFloat64);
  torch::Tensor synthetic;
  const double n = 120, n1 = 10, n2 = 4;
  ErrorCase() {
    real.narrow(0, 0, 3).fill_(4.0);
    synthetic = real.clone();
    synthetic.view({-1}).narrow(0, 0, 10).add_(1.0);
    synthetic.view({-1}).narrow(0, 100, 4).add_(-3.0);
  }
};

TEST(ErrorMetrics, ClosedForms) {
  const ErrorCase c;
  const double mse = (c.n1 * 1 + c.n2 * 9) / c.n;
  EXPECT_NEAR(scalar(meanSquaredError(c.real, c.synthetic)), mse, 1e-15);
  EXPECT_NEAR(scalar(meanAbsoluteError(c.real, c.synthetic)), (c.n1 * 1 + c.n2 * 3) / c.n, 1e-15);
  EXPECT_NEAR(scalar(psnr(c.real, c.synthetic)), 10 * std::log10(16 / mse), 1e-12);
  EXPECT_NEAR(scalar(psnr(c.real, c.synthetic, 255)), 10 * std::log10(255.0 * 255.0 / mse), 1e-12);
  EXPECT_EQ(scalar(psnr(c.real, c.real)), std::numeric_limits<double>::infinity());
  // Argument order matters only through the range: swapping changes L (synthetic spans −3…5).
  EXPECT_NEAR(scalar(psnr(c.synthetic, c.real)), 10 * std::log10(64 / mse), 1e-12);
}

TEST(ErrorMetrics, RegionsAverageOnlyInside) {
  const ErrorCase c;
  // Lesion: the flat voxels 0..19 — holds all n1 = 10 (+1) errors and none of the −3.
  torch::Tensor lesion = torch::zeros({6, 5, 4}, torch::kUInt8);
  lesion.view({-1}).narrow(0, 0, 20).fill_(1);
  EXPECT_NEAR(scalar(regionMeanAbsoluteError(c.real, c.synthetic, lesion)), 10.0 / 20, 1e-15);
  EXPECT_NEAR(scalar(regionMeanSquaredError(c.real, c.synthetic, lesion)), 10.0 / 20, 1e-15);
  // Brain = nonzero real voxels = first 3 slices = flat 0..59: the 10 (+1) errors only.
  EXPECT_EQ(brainRegion(c.real).sum().item<int64_t>(), 60);
  EXPECT_NEAR(scalar(regionMeanAbsoluteError(c.real, c.synthetic, brainRegion(c.real))), 10.0 / 60,
              1e-15);
  // An empty region has no mean.
  EXPECT_TRUE(std::isnan(scalar(regionMeanAbsoluteError(c.real, c.synthetic, lesion.zero_()))));
  EXPECT_THROW(regionMeanAbsoluteError(c.real, c.synthetic, torch::ones({6, 5, 3})),
               lddpm::core::Error);
}

TEST(ErrorMetrics, ImageMetricsBundlesEveryMetric) {
  const ErrorCase c;
  torch::Tensor lesion = torch::zeros({6, 5, 4});
  lesion.view({-1}).narrow(0, 96, 8).fill_(1);  // 4 of its 8 voxels carry −3 errors
  // Too small for an 11-voxel window: use 3 (one scale, as the 4-voxel side halves to 2).
  const auto options = SsimOptions().windowSize(3);
  const ImageMetrics m = imageMetrics(c.real, c.synthetic, CaseRegions{lesion, {}, {}}, options);
  EXPECT_NEAR(m.mse, (10 + 36) / 120.0, 1e-15);
  EXPECT_NEAR(m.mae, (10 + 12) / 120.0, 1e-15);
  EXPECT_NEAR(m.lesionMae, 12 / 8.0, 1e-15);
  EXPECT_NEAR(m.lesionMse, 36 / 8.0, 1e-15);
  EXPECT_NEAR(m.brainMae, 10 / 60.0, 1e-15);
  EXPECT_EQ(m.msSsimScales, 1);
  EXPECT_TRUE(std::isnan(imageMetrics(c.real, c.synthetic, CaseRegions{}, options).lesionMae));
}

TEST(Dice, KnownOverlapOfTwoCubes) {
  // Two 4³ cubes offset by (1, 2, 0): intersection 3·2·4 = 24 → 2·24 / (64 + 64).
  torch::Tensor a = torch::zeros({10, 10, 10}), b = torch::zeros({10, 10, 10});
  a.slice(0, 2, 6).slice(1, 2, 6).slice(2, 2, 6).fill_(1);
  b.slice(0, 3, 7).slice(1, 4, 8).slice(2, 2, 6).fill_(1);
  EXPECT_NEAR(scalar(dice(a, b)), 48.0 / 128, 1e-15);
  EXPECT_NEAR(scalar(dice(a, a)), 1.0, 1e-15);
  // Probabilities are thresholded at 0.5.
  EXPECT_NEAR(scalar(dice(a * 0.7 + 0.2, b)), 48.0 / 128, 1e-15);  // 0.2 outside stays out
  // Empty-empty is agreement (1); one side empty is 0.
  const torch::Tensor empty = torch::zeros({10, 10, 10});
  EXPECT_EQ(scalar(dice(empty, empty)), 1.0);
  EXPECT_EQ(scalar(dice(a, empty)), 0.0);
  // A batch: one value per volume.
  const torch::Tensor batch =
      dice(torch::stack({a, empty}).unsqueeze(1), torch::stack({b, empty}).unsqueeze(1));
  ASSERT_EQ(batch.sizes(), torch::IntArrayRef({2}));
  EXPECT_NEAR(batch[0].item<double>(), 0.375, 1e-15);
  EXPECT_EQ(batch[1].item<double>(), 1.0);
}

TEST(SegmentationScores, ClosedFormOnHandMadeLesions) {
  // Truth: a 3³ cube at 1..3 plus one voxel at (4, 4, 4) touching its corner diagonally (one
  // 26-connected lesion of 28 voxels), and a lone voxel at (8, 8, 8): 2 lesions, 29 voxels.
  // Prediction: exactly the cube (27, finds the first lesion, misses the lone voxel) plus a 2³
  // false positive far from both: 35 voxels, 2 components, 1 of them touching the truth.
  torch::Tensor truth = torch::zeros({10, 10, 10}), predicted = torch::zeros({10, 10, 10});
  truth.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 4).fill_(1);
  truth[4][4][4] = 1;
  truth[8][8][8] = 1;
  predicted.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 4).fill_(0.9);  // probabilities
  predicted.slice(0, 0, 2).slice(1, 8, 10).slice(2, 0, 2).fill_(0.6);
  predicted[5][0][9] = 0.5;  // exactly 0.5 is not lesion (> 0.5)
  const SegmentationScores s = segmentationScores(predicted, truth, /*voxelVolume=*/0.008);
  EXPECT_NEAR(s.dice, 2.0 * 27 / (29 + 35), 1e-15);
  EXPECT_NEAR(s.trueVolume, 29 * 0.008, 1e-15);
  EXPECT_NEAR(s.predictedVolume, 35 * 0.008, 1e-15);
  EXPECT_EQ(s.trueLesions, 2);
  EXPECT_EQ(s.detectedLesions, 1);
  EXPECT_EQ(s.predictedLesions, 2);
  EXPECT_EQ(s.correctLesions, 1);
  EXPECT_DOUBLE_EQ(s.lesionSensitivity, 0.5);
  EXPECT_DOUBLE_EQ(s.lesionPrecision, 0.5);

  const SegmentationScores perfect = segmentationScores(truth, truth);
  EXPECT_EQ(perfect.dice, 1.0);
  EXPECT_EQ(perfect.lesionSensitivity, 1.0);
  EXPECT_EQ(perfect.lesionPrecision, 1.0);
  EXPECT_EQ(perfect.trueVolume, 29.0);  // default voxel volume 1: counts

  // Nothing to find and nothing found: Dice 1 (docs/metrics.md), lesion-wise rates undefined.
  const torch::Tensor empty = torch::zeros({10, 10, 10});
  const SegmentationScores none = segmentationScores(empty, empty);
  EXPECT_EQ(none.dice, 1.0);
  EXPECT_EQ(none.trueLesions, 0);
  EXPECT_TRUE(std::isnan(none.lesionSensitivity));
  EXPECT_TRUE(std::isnan(none.lesionPrecision));
  const SegmentationScores missed = segmentationScores(empty, truth);
  EXPECT_EQ(missed.dice, 0.0);
  EXPECT_EQ(missed.lesionSensitivity, 0.0);
  EXPECT_TRUE(std::isnan(missed.lesionPrecision));

  EXPECT_THROW(segmentationScores(empty, torch::zeros({10, 10, 9})), lddpm::core::Error);
  EXPECT_THROW(segmentationScores(empty.unsqueeze(0), empty.unsqueeze(0)), lddpm::core::Error);
}

// skimage's SSIM (scipy.ndimage, whole-volume filtering then a crop) and MONAI's MS-SSIM
// (torch conv3d with the full 3-D kernel), written in Python: another implementation of each.
struct PythonReference {
  double ssim = 0;
  double msSsim = 0;
  int scales = 0;
};

PythonReference pythonReference(const Grid& x, const Grid& y, int window, double sigma) {
  namespace fs = std::filesystem;
  const lddpm::testing::TempDir tmp{"ssim"};
  const fs::path dir = tmp.path;
  const auto dump = [&](const Grid& g, const char* name) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(g.v.data()),
               static_cast<std::streamsize>(g.v.size() * 8));
    return (dir / name).string();
  };
  std::ostringstream cmd;
  cmd << LDDPM_PYTHON << " " << LDDPM_SSIM_REFERENCE << " " << dump(x, "x.f64") << " "
      << dump(y, "y.f64") << " " << x.d << " " << x.h << " " << x.w << " " << window << " "
      << sigma;
  FILE* p = ::popen(cmd.str().c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  EXPECT_EQ(status, 0) << cmd.str() << "\n" << out;
  PythonReference r;
  std::istringstream in(out);
  std::string key;
  in >> key >> r.ssim >> key >> r.msSsim >> r.scales;
  return r;
}

TEST(Ssim, MatchesScipySsimAndMonaiStyleMsSsimInPython) {
  {  // the default 11-voxel window; 23 → 11 gives two MS-SSIM scales
    const Grid x = randomGrid(23, 26, 30, 20);
    const Grid y = noisyCopy(x, 0.25, 21);
    const PythonReference ref = pythonReference(x, y, 11, 1.5);
    EXPECT_NEAR(scalar(ssim(x.tensor(), y.tensor())), ref.ssim, 1e-12);
    const MsSsimResult ms = msSsim(x.tensor(), y.tensor());
    EXPECT_EQ(ms.scales, ref.scales);
    EXPECT_NEAR(scalar(ms.value), ref.msSsim, 1e-12);
  }
  {  // all five scales, with a 3-voxel window
    const Grid x = randomGrid(48, 50, 49, 22);
    const Grid y = noisyCopy(x, 0.4, 23);
    const PythonReference ref = pythonReference(x, y, 3, 1.5);
    const auto options = SsimOptions().windowSize(3);
    EXPECT_NEAR(scalar(ssim(x.tensor(), y.tensor(), options)), ref.ssim, 1e-12);
    const MsSsimResult ms = msSsim(x.tensor(), y.tensor(), options);
    EXPECT_EQ(ref.scales, 5);
    EXPECT_NEAR(scalar(ms.value), ref.msSsim, 1e-12);
  }
}

// A brain-like case: tissue shells (CSF outside GM outside WM) in an ellipsoid, two lesion blobs
// in the WM, intensities per class plus smooth variation and noise; the synthetic scan is a
// noisier, biased copy. Every brain-aware metric against brain_metrics_reference.py (scipy).
TEST(BrainMetrics, MatchScipyReferences) {
  namespace fs = std::filesystem;
  const int d = 26, h = 30, w = 28;
  torch::manual_seed(5);
  const auto axis = [](int n) {
    return (torch::arange(n, torch::kFloat64) - (n - 1) / 2.0) / (n / 2.0);
  };
  const torch::Tensor z = axis(d).view({d, 1, 1}), y = axis(h).view({1, h, 1}),
                      x = axis(w).view({1, 1, w});
  const torch::Tensor radius = (z * z + y * y + x * x).sqrt();
  torch::Tensor tissue = torch::zeros({d, h, w}, torch::kUInt8);
  tissue.masked_fill_(radius < 0.95, kCsfLabel);
  tissue.masked_fill_(radius < 0.8, kGreyMatterLabel);
  tissue.masked_fill_(radius < 0.6, kWhiteMatterLabel);
  torch::Tensor lesion = torch::zeros({d, h, w}, torch::kUInt8);
  lesion.slice(0, 11, 14).slice(1, 12, 16).slice(2, 12, 15).fill_(1);
  lesion.slice(0, 15, 17).slice(1, 15, 17).slice(2, 10, 12).fill_(1);
  const double values[4] = {-1.0, -0.6, 0.3, 0.0};
  torch::Tensor real = torch::full({d, h, w}, values[0], torch::kFloat64);
  for (int c = 1; c < 4; ++c) real.masked_fill_(tissue == c, values[c]);
  real.masked_fill_(lesion != 0, 0.6);
  const torch::Tensor brain = (tissue > 0) | (lesion > 0);
  real =
      torch::where(brain, real + 0.05 * torch::randn({d, h, w}, torch::kFloat64) + 0.1 * x, real);
  const torch::Tensor synthetic =
      torch::where(brain, 1.05 * real + 0.08 * torch::randn({d, h, w}, torch::kFloat64) - 0.02,
                   real + 0.01 * torch::randn({d, h, w}, torch::kFloat64));

  const lddpm::testing::TempDir tmp{"brain"};
  const fs::path dir = tmp.path;
  const auto dump = [&](const torch::Tensor& t, const char* name) {
    const torch::Tensor c = t.contiguous();
    std::ofstream(dir / name, std::ios::binary)
        .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
    return (dir / name).string();
  };
  std::ostringstream cmd;
  cmd << LDDPM_PYTHON << " " << LDDPM_BRAIN_REFERENCE << " " << dump(real, "r.f64") << " "
      << dump(synthetic, "s.f64") << " " << dump(tissue, "t.u8") << " " << dump(lesion, "l.u8")
      << " " << d << " " << h << " " << w << " 7";
  const auto result = lddpm::testutil::runShell(cmd.str() + " 2>&1");
  ASSERT_EQ(result.code, 0) << cmd.str() << "\n" << result.out;
  std::map<std::string, double> ref;
  std::istringstream in(result.out);
  std::string key;
  double value = 0;
  while (in >> key >> value) ref[key] = value;
  ASSERT_EQ(ref.size(), 8u) << result.out;

  const auto options = SsimOptions().windowSize(7);
  EXPECT_NEAR(scalar(regionSsim(real, synthetic, brain, options)), ref["brain_ssim"], 1e-12);
  EXPECT_NEAR(scalar(regionSsim(real, synthetic, ~brain, options)), ref["background_ssim"], 1e-12);
  EXPECT_NEAR(scalar(regionPsnr(real, synthetic, brain)), ref["brain_psnr"], 1e-10);
  const TissueStatistics stats = tissueStatistics(synthetic, tissue, lesion);
  EXPECT_NEAR(stats.wmTexture, ref["texture"], 1e-12);
  EXPECT_NEAR(stats.lesionContrast, ref["lesion_contrast"], 1e-12);
  EXPECT_NEAR(stats.csfContrast, ref["csf_contrast"], 1e-12);
  EXPECT_NEAR(stats.gmContrast, ref["gm_contrast"], 1e-12);
  // The bundle agrees with the parts, with the brain taken from the tissue labels and lesions.
  const ImageMetrics m = imageMetrics(real, synthetic, CaseRegions{lesion, {}, tissue}, options);
  EXPECT_NEAR(m.brainSsim, ref["brain_ssim"], 1e-12);
  EXPECT_NEAR(m.brainMae, ref["brain_mae"], 1e-12);
  EXPECT_NEAR(m.tissue.wmTexture, ref["texture"], 1e-12);
  // Background scored apart: the synthetic background here differs from the real one only by
  // tiny noise, so its SSIM-free errors are small and the brain's are not.
  EXPECT_LT(m.backgroundMae, 0.02);
  EXPECT_GT(m.brainMae, 0.05);
}

// Closed forms: a region holding no window centre has no SSIM; the high-pass residual of a linear
// ramp is zero inside (the Gaussian is symmetric), so its texture is 0; a region that erodes to
// nothing has none.
TEST(BrainMetrics, ClosedFormsAndEmptyRegions) {
  const torch::Tensor ramp =
      torch::arange(16, torch::kFloat64).view({1, 1, 16}).expand({16, 16, 16}).contiguous();
  const torch::Tensor all = torch::ones({16, 16, 16}, torch::kUInt8);
  // Erosion by one voxel, then the radius-2 filter reaches the replicated border only within 2
  // voxels of the edge: keep the inner cube, where the ramp is exactly linear under the filter.
  torch::Tensor inner = torch::zeros({16, 16, 16}, torch::kUInt8);
  inner.slice(0, 2, 14).slice(1, 2, 14).slice(2, 2, 14).fill_(1);
  EXPECT_NEAR(scalar(highPassStd(ramp, inner)), 0.0, 1e-12);
  torch::Tensor thin = torch::zeros({16, 16, 16}, torch::kUInt8);
  thin.select(0, 8).fill_(1);  // one slice: erodes to nothing
  EXPECT_TRUE(std::isnan(scalar(highPassStd(ramp, thin))));
  torch::Tensor corner = torch::zeros({16, 16, 16}, torch::kUInt8);
  corner[0][0][0] = 1;  // no 11-voxel window is centred there
  EXPECT_TRUE(std::isnan(scalar(regionSsim(ramp, ramp, corner))));
  EXPECT_NEAR(scalar(regionSsim(ramp, ramp, all)), 1.0, 1e-12);
  EXPECT_TRUE(std::isinf(scalar(regionPsnr(ramp, ramp, all))));
}

TEST(Metrics, RunOnCudaLikeOnCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Tensor x = torch::rand({24, 25, 26}), y = x + 0.1 * torch::randn({24, 25, 26});
  const torch::Tensor gx = x.cuda(), gy = y.cuda();
  EXPECT_TRUE(ssim(gx, gy).device().is_cuda());
  EXPECT_NEAR(ssim(gx, gy).item<double>(), ssim(x, y).item<double>(), 1e-10);
  EXPECT_NEAR(msSsim(gx, gy).value.item<double>(), msSsim(x, y).value.item<double>(), 1e-10);
  EXPECT_NEAR(psnr(gx, gy).item<double>(), psnr(x, y).item<double>(), 1e-10);
  EXPECT_EQ(dice(gx > 0.5, gy > 0.5).item<double>(), dice(x > 0.5, y > 0.5).item<double>());
}

}  // namespace
