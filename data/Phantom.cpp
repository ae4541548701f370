#include "data/Phantom.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/Error.h"
#include "core/Rng.h"
#include "data/NiftiIo.h"

namespace lddpm::data {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using core::strCat;

namespace detail {

// Keys that separate the random streams of one subject (part of the seed derivation: never
// renumber).
enum PhantomKey : std::uint64_t { kWarpKey = 1, kLesionKey = 2, kScanKey = 3, kTwinScanKey = 4 };

constexpr int kMinLesionVoxels = 20;
constexpr int kMaxLesionVoxels = 1000;

// Scalar draws from a seeded 64-bit engine with our own transforms (std:: distributions are
// implementation-defined, which would tie the cohort to one standard library).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int uniformInt(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(std::min<double>(std::floor(uniform() * (hi - lo + 1)), hi - lo));
  }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::mt19937_64 engine_;
};

using Mat4 = std::array<double, 16>;  // row-major

Mat4 mul(const Mat4& a, const Mat4& b) {
  Mat4 c{};
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k)
      for (int col = 0; col < 4; ++col) c[r * 4 + col] += a[r * 4 + k] * b[k * 4 + col];
  return c;
}

// Inverse of an affine 4x4 (last row 0 0 0 1): invert the 3x3 part, then the translation.
Mat4 inverseAffine(const Mat4& m) {
  const double a = m[0], b = m[1], c = m[2], d = m[4], e = m[5], f = m[6], g = m[8], h = m[9],
               i = m[10];
  const double det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  LDDPM_CHECK(std::fabs(det) > 1e-12, "singular voxel-to-world affine");
  Mat4 inv{};
  inv[0] = (e * i - f * h) / det;
  inv[1] = (c * h - b * i) / det;
  inv[2] = (b * f - c * e) / det;
  inv[4] = (f * g - d * i) / det;
  inv[5] = (a * i - c * g) / det;
  inv[6] = (c * d - a * f) / det;
  inv[8] = (d * h - e * g) / det;
  inv[9] = (b * g - a * h) / det;
  inv[10] = (a * e - b * d) / det;
  for (int r = 0; r < 3; ++r) {
    inv[r * 4 + 3] = -(inv[r * 4] * m[3] + inv[r * 4 + 1] * m[7] + inv[r * 4 + 2] * m[11]);
  }
  inv[15] = 1;
  return inv;
}

// Voxel index -> grid_sample's normalised coordinate (align_corners = true): n = 2 p / (N-1) - 1.
Mat4 indexToNormalised(const std::array<std::int64_t, 3>& shape) {
  Mat4 m{};
  for (int d = 0; d < 3; ++d) {
    const double half = std::max<double>(shape[d] - 1, 1) / 2.0;
    m[d * 4 + d] = 1.0 / half;
    m[d * 4 + 3] = -1.0;
  }
  m[15] = 1;
  return m;
}

std::array<std::int64_t, 3> shapeOf(const Volume& v) { return {v.nx(), v.ny(), v.nz()}; }

// The sampling grid [1, D, H, W, 3] for grid_sample that maps output voxel indices through the
// index-space affine `dstToSrc` into `src`-shaped normalised coordinates.
torch::Tensor samplingGrid(const Mat4& dstToSrc, const std::array<std::int64_t, 3>& srcShape,
                           const std::array<std::int64_t, 3>& dstShape) {
  const Mat4 theta4 =
      mul(mul(indexToNormalised(srcShape), dstToSrc), inverseAffine(indexToNormalised(dstShape)));
  auto theta = torch::empty({1, 3, 4}, torch::kFloat64);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) theta[0][r][c] = theta4[r * 4 + c];
  return F::affine_grid(theta.to(torch::kFloat32), {1, 1, dstShape[2], dstShape[1], dstShape[0]},
                        /*align_corners=*/true);
}

torch::Tensor sample(const torch::Tensor& input, const torch::Tensor& grid, bool nearest) {
  // input [C, D, H, W] -> [C, D', H', W']
  auto options = F::GridSampleFuncOptions().padding_mode(torch::kZeros).align_corners(true);
  if (nearest) {
    options.mode(torch::kNearest);
  } else {
    options.mode(torch::kBilinear);
  }
  return F::grid_sample(input.unsqueeze(0), grid, options).squeeze(0);
}

// Box dilation by `radius` voxels, as three separable 1-D max pools (a 3-D pool is k^3 per voxel).
torch::Tensor dilate(const torch::Tensor& mask, int radius) {
  if (radius <= 0) return mask;
  torch::Tensor x = mask.to(torch::kFloat32).unsqueeze(0).unsqueeze(0);
  const std::int64_t k = 2 * radius + 1;
  x = F::max_pool3d(x, F::MaxPool3dFuncOptions({k, 1, 1}).stride(1).padding({radius, 0, 0}));
  x = F::max_pool3d(x, F::MaxPool3dFuncOptions({1, k, 1}).stride(1).padding({0, radius, 0}));
  x = F::max_pool3d(x, F::MaxPool3dFuncOptions({1, 1, k}).stride(1).padding({0, 0, radius}));
  return x.squeeze(0).squeeze(0) > 0.5;
}

// 1-D k-means with three classes on a histogram of the brain's intensities (deterministic and
// cheap: 256 bins instead of millions of voxels). Returns the sorted centres.
std::array<double, 3> kmeans3(const torch::Tensor& values) {
  const double hi = values.max().item<double>();
  const int bins = 256;
  const torch::Tensor hist = torch::histc(values.to(torch::kFloat64), bins, 0, hi);
  const auto h = hist.accessor<double, 1>();
  const auto binCentre = [&](int b) { return (b + 0.5) * hi / bins; };
  // Initial centres at the 10th, 50th and 90th percentiles.
  std::array<double, 3> c{};
  const double total = hist.sum().item<double>();
  double cum = 0;
  int next = 0;
  const double quantiles[3] = {0.1, 0.5, 0.9};
  for (int b = 0; b < bins && next < 3; ++b) {
    cum += h[b];
    while (next < 3 && cum >= quantiles[next] * total) c[next++] = binCentre(b);
  }
  for (int iter = 0; iter < 50; ++iter) {
    std::array<double, 3> sum{}, count{};
    for (int b = 0; b < bins; ++b) {
      const double x = binCentre(b);
      int best = 0;
      for (int k = 1; k < 3; ++k) {
        if (std::fabs(x - c[k]) < std::fabs(x - c[best])) best = k;
      }
      sum[best] += h[b] * x;
      count[best] += h[b];
    }
    for (int k = 0; k < 3; ++k) {
      if (count[k] > 0) c[k] = sum[k] / count[k];
    }
  }
  std::sort(c.begin(), c.end());
  return c;
}

// Piecewise-linear contrast over template intensity: value v[k] at class centre c[k], clamped
// outside [c0, c2]. Keeps partial-volume voxels between classes in between.
torch::Tensor contrast(const torch::Tensor& t, const std::array<double, 3>& c,
                       const std::array<double, 3>& v) {
  const torch::Tensor x = t.clamp(c[0], c[2]);
  const torch::Tensor low = v[0] + (x - c[0]) * ((v[1] - v[0]) / (c[1] - c[0]));
  const torch::Tensor high = v[1] + (x - c[1]) * ((v[2] - v[1]) / (c[2] - c[1]));
  return torch::where(x < c[1], low, high);
}

struct Lesion {
  std::array<double, 3> centre{};    // voxel index (i, j, k)
  std::array<double, 9> rotation{};  // row-major, columns are the ellipsoid's axes
  std::array<double, 3> axes{};      // semi-axes in voxels
};

// Rasterises `lesion` into `labels` (int16, [D, H, W]) with id `id`, clipped to white matter
// and kept to the connected piece that holds the centre. Refused (returns 0, nothing painted)
// when that piece is outside [kMin, kMax] voxels or comes within one voxel of another lesion, so
// every lesion stays one 26-connected component of known size.
int rasterise(const Lesion& lesion, const std::uint8_t* tissue, std::int16_t* labels,
              const std::array<std::int64_t, 3>& shape, std::int16_t id) {
  const std::int64_t nx = shape[0], ny = shape[1], nz = shape[2];
  const int half =
      static_cast<int>(std::ceil(*std::max_element(lesion.axes.begin(), lesion.axes.end()))) + 1;
  const int side = 2 * half + 1;
  std::array<std::int64_t, 3> origin{};
  for (int d = 0; d < 3; ++d)
    origin[d] = static_cast<std::int64_t>(std::lround(lesion.centre[d])) - half;
  std::vector<std::uint8_t> inside(static_cast<size_t>(side) * side * side, 0);
  const auto local = [&](int a, int b, int c) {
    return (static_cast<size_t>(c) * side + b) * side + a;
  };
  const auto global = [&](std::int64_t i, std::int64_t j, std::int64_t k) {
    return (k * ny + j) * nx + i;
  };
  const auto& R = lesion.rotation;
  for (int c = 0; c < side; ++c)
    for (int b = 0; b < side; ++b)
      for (int a = 0; a < side; ++a) {
        const std::int64_t i = origin[0] + a, j = origin[1] + b, k = origin[2] + c;
        if (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz) continue;
        if (tissue[global(i, j, k)] != kWhiteMatter) continue;
        const double d[3] = {i - lesion.centre[0], j - lesion.centre[1], k - lesion.centre[2]};
        double r2 = 0;
        for (int ax = 0; ax < 3; ++ax) {
          const double q =
              (R[0 + ax] * d[0] + R[3 + ax] * d[1] + R[6 + ax] * d[2]) / lesion.axes[ax];
          r2 += q * q;
        }
        if (r2 <= 1.0) inside[local(a, b, c)] = 1;
      }
  // Flood fill (26-connected) from the centre voxel.
  if (!inside[local(half, half, half)]) return 0;
  std::vector<int> stack{static_cast<int>(local(half, half, half))};
  std::vector<std::array<int, 3>> component;
  inside[local(half, half, half)] = 2;
  while (!stack.empty()) {
    const int at = stack.back();
    stack.pop_back();
    const int a = at % side, b = (at / side) % side, c = at / (side * side);
    component.push_back({a, b, c});
    if (static_cast<int>(component.size()) > kMaxLesionVoxels) return 0;
    for (int dc = -1; dc <= 1; ++dc)
      for (int db = -1; db <= 1; ++db)
        for (int da = -1; da <= 1; ++da) {
          const int a2 = a + da, b2 = b + db, c2 = c + dc;
          if (a2 < 0 || b2 < 0 || c2 < 0 || a2 >= side || b2 >= side || c2 >= side) continue;
          std::uint8_t& v = inside[local(a2, b2, c2)];
          if (v == 1) {
            v = 2;
            stack.push_back(static_cast<int>(local(a2, b2, c2)));
          }
        }
  }
  if (static_cast<int>(component.size()) < kMinLesionVoxels) return 0;
  // A one-voxel gap to every other lesion keeps components separate under 26-connectivity.
  for (const auto& [a, b, c] : component) {
    for (int dc = -1; dc <= 1; ++dc)
      for (int db = -1; db <= 1; ++db)
        for (int da = -1; da <= 1; ++da) {
          const std::int64_t i = origin[0] + a + da, j = origin[1] + b + db, k = origin[2] + c + dc;
          if (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz) continue;
          const std::int16_t other = labels[global(i, j, k)];
          if (other != 0 && other != id) return 0;
        }
  }
  for (const auto& [a, b, c] : component)
    labels[global(origin[0] + a, origin[1] + b, origin[2] + c)] = id;
  return static_cast<int>(component.size());
}

// An ovoid of log-uniform volume (mostly small, as in MS), elongated up to 2:1, randomly oriented.
Lesion randomLesion(Rng& rng, std::array<double, 3> centre) {
  Lesion l;
  l.centre = centre;
  const double volume = std::exp(rng.uniform(std::log(30.0), std::log(900.0)));
  const double r = std::cbrt(3.0 * volume / (4.0 * M_PI));
  const double e = rng.uniform(1.0, 2.0);
  l.axes = {r * std::pow(e, 2.0 / 3.0), r * std::pow(e, -1.0 / 3.0), r * std::pow(e, -1.0 / 3.0)};
  double q[4];
  double norm = 0;
  for (double& x : q) {
    x = rng.normal();
    norm += x * x;
  }
  norm = std::sqrt(norm);
  for (double& x : q) x /= norm;
  const double w = q[0], x = q[1], y = q[2], z = q[3];
  l.rotation = {1 - 2 * (y * y + z * z), 2 * (x * y - z * w),     2 * (x * z + y * w),
                2 * (x * y + z * w),     1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                2 * (x * z - y * w),     2 * (y * z + x * w),     1 - 2 * (x * x + y * y)};
  return l;
}

}  // namespace detail

struct PhantomGenerator::Anatomy {
  std::array<std::int64_t, 3> shape{};  // nx, ny, nz of the output grid
  Affine affine{};
  std::array<double, 3> spacing{};
  Volume tpl;            // template intensity on the grid
  Volume tissue;         // TissueClass
  torch::Tensor region;  // lesion sites: 1 periventricular, 2 juxtacortical, 3 deep WM (atlas)
  std::array<double, 3> centres{};  // k-means CSF, GM, WM template intensities
};

Volume resampleToGrid(const Volume& src, const Affine& affine,
                      const std::array<std::int64_t, 3>& shape, bool nearest) {
  const detail::Mat4 dstToSrc = detail::mul(detail::inverseAffine(src.affine), affine);
  const torch::Tensor grid = detail::samplingGrid(dstToSrc, detail::shapeOf(src), shape);
  Volume out;
  out.data = detail::sample(src.data.unsqueeze(0), grid, nearest).squeeze(0).contiguous();
  out.affine = affine;
  for (int d = 0; d < 3; ++d) {
    out.spacing[d] = std::sqrt(affine[d] * affine[d] + affine[4 + d] * affine[4 + d] +
                               affine[8 + d] * affine[8 + d]);
  }
  return out;
}

core::po::options_description PhantomOptions::describe() {
  namespace po = core::po;
  po::options_description d("cohort");
  d.add_options()("train-subjects", po::value(&trainSubjects)->default_value(trainSubjects),
                  "training patients P1..Pn, each with --timepoints scans")(
      "test-subjects", po::value(&testSubjects)->default_value(testSubjects),
      "test patients, one scan each")(
      "timepoints", po::value(&timepoints)->default_value(timepoints),
      "scans per training patient (T1..Tk; lesions evolve between them)")(
      "seed", po::value(&seed)->default_value(seed), "the cohort is a function of this seed")(
      "template", po::value(&templatePath)->default_value(templatePath)->value_name("NII"),
      "skull-stripped T1 brain (Colin27 from mricron-data)")(
      "atlas", po::value(&atlasPath)->default_value(atlasPath)->value_name("NII"),
      "white-matter label atlas; its grid is the output grid")(
      "voxel-size", po::value(&voxelSize)->default_value(voxelSize)->value_name("MM"),
      "output voxel size; 1 gives MSLesSeg's 182x218x182, 2 a quick 91x109x91 cohort")(
      "min-lesions", po::value(&minLesions)->default_value(minLesions),
      "lesions per patient at the first timepoint: at least")(
      "max-lesions", po::value(&maxLesions)->default_value(maxLesions), "... and at most")(
      "gzip-level", po::value(&gzipLevel)->default_value(gzipLevel)->value_name("0-9"),
      "zlib level of the .nii.gz files (noisy float images barely compress: 1 is fastest)");
  return d;
}

void PhantomOptions::validate() const {
  const auto fail = [](const char* option, const std::string& problem) {
    LDDPM_THROW(core::UsageError, "option '--", option, "' ", problem);
  };
  if (trainSubjects < 0) fail("train-subjects", "must be >= 0");
  if (testSubjects < 0) fail("test-subjects", "must be >= 0");
  if (trainSubjects + testSubjects < 1)
    fail("train-subjects", "and --test-subjects: need at least one subject");
  if (timepoints < 1) fail("timepoints", "must be >= 1");
  if (!(voxelSize >= 0.5 && voxelSize <= 8)) fail("voxel-size", "must be in [0.5, 8] mm");
  if (minLesions < 0 || minLesions > maxLesions)
    fail("min-lesions", "must be in [0, --max-lesions]");
  if (maxLesions > 1000) fail("max-lesions", "must be <= 1000");
  if (gzipLevel < 0 || gzipLevel > 9) fail("gzip-level", "must be in 0..9");
}

PhantomGenerator::PhantomGenerator(PhantomOptions options)
    : options_(std::move(options)), anatomy_(std::make_unique<Anatomy>()) {
  LDDPM_CHECK(options_.voxelSize > 0, "phantom voxel size must be > 0, got ", options_.voxelSize);
  LDDPM_CHECK(options_.minLesions >= 0 && options_.minLesions <= options_.maxLesions &&
                  options_.maxLesions <= 1000,
              "phantom lesion counts must satisfy 0 <= min <= max <= 1000");
  const Volume tpl = readNifti(options_.templatePath);
  const Volume atlas = readNifti(options_.atlasPath);
  Anatomy& a = *anatomy_;

  // The output grid is the atlas's (MSLesSeg's 182x218x182 MNI grid), optionally coarser.
  const auto atlasShape = detail::shapeOf(atlas);
  a.affine = atlas.affine;
  for (int d = 0; d < 3; ++d) {
    const double factor = options_.voxelSize / atlas.spacing[d];
    a.shape[d] = std::max<std::int64_t>(
        2, static_cast<std::int64_t>(std::ceil(atlasShape[d] / factor - 1e-9)));
    for (int r = 0; r < 3; ++r) a.affine[r * 4 + d] *= factor;
  }
  a.tpl = resampleToGrid(tpl, a.affine, a.shape, /*nearest=*/false);
  const Volume atlasOnGrid = resampleToGrid(atlas, a.affine, a.shape, /*nearest=*/true);
  a.spacing = a.tpl.spacing;

  // Tissue classes: 3-class k-means of the T1 template inside the brain.
  const torch::Tensor& t = a.tpl.data;
  const torch::Tensor brain = t > 5.0;
  LDDPM_CHECK(brain.sum().item<std::int64_t>() > 1000, options_.templatePath,
              ": template has (almost) no brain voxels on the output grid");
  a.centres = detail::kmeans3(t.masked_select(brain));
  const double b01 = (a.centres[0] + a.centres[1]) / 2, b12 = (a.centres[1] + a.centres[2]) / 2;
  torch::Tensor classes = torch::where(
      t < b01, torch::full_like(t, kCsf),
      torch::where(t < b12, torch::full_like(t, kGreyMatter), torch::full_like(t, kWhiteMatter)));
  classes = classes * brain;
  a.tissue.data = classes.contiguous();
  a.tissue.affine = a.affine;
  a.tissue.spacing = a.spacing;

  // Lesion sites. Ventricles: CSF inside a central MNI box; cortex: GM outside it.
  LDDPM_CHECK(std::fabs(a.affine[1]) + std::fabs(a.affine[2]) + std::fabs(a.affine[4]) +
                      std::fabs(a.affine[6]) + std::fabs(a.affine[8]) + std::fabs(a.affine[9]) <
                  1e-6,
              options_.atlasPath, ": the atlas grid must be axis-aligned");
  const auto axisWorld = [&](int d) {
    return torch::arange(a.shape[d], torch::kFloat64) * a.affine[d * 4 + d] + a.affine[d * 4 + 3];
  };
  const torch::Tensor x = axisWorld(0).view({1, 1, -1}), y = axisWorld(1).view({1, -1, 1}),
                      z = axisWorld(2).view({-1, 1, 1});
  const torch::Tensor central = (x.abs() < 30) & (y > -50) & (y < 30) & (z > -5) & (z < 35);
  const torch::Tensor ventricles = (classes == kCsf) & central;
  const torch::Tensor wm = classes == kWhiteMatter;
  const auto mm = [&](double d) { return static_cast<int>(std::lround(d / options_.voxelSize)); };
  const torch::Tensor periv = wm & detail::dilate(ventricles, std::max(1, mm(6)));
  const torch::Tensor cortex = (classes == kGreyMatter) & ~central;
  const torch::Tensor juxta = wm & detail::dilate(cortex, std::max(1, mm(2))) & ~periv;
  const torch::Tensor deep = wm & (atlasOnGrid.data > 0) & ~periv & ~juxta;
  a.region =
      (periv.to(torch::kUInt8) * 1 + juxta.to(torch::kUInt8) * 2 + deep.to(torch::kUInt8) * 3)
          .to(torch::kFloat32)
          .contiguous();
}

PhantomGenerator::~PhantomGenerator() = default;

const Volume& PhantomGenerator::templateOnGrid() const { return anatomy_->tpl; }
const Volume& PhantomGenerator::tissueOnGrid() const { return anatomy_->tissue; }

std::vector<PhantomScan> PhantomGenerator::generateSubject(int index, bool twin) const {
  LDDPM_CHECK(index >= 0 && index < subjectCount(), "phantom subject ", index, " out of range");
  const Anatomy& a = *anatomy_;
  const auto& shape = a.shape;
  const std::uint64_t subjectKey = static_cast<std::uint64_t>(index);

  // 1. The subject's anatomy: a small affine jitter about the grid centre plus a smooth random
  //    displacement (5x6x5 control points, ~2 mm), applied to template, classes and sites.
  detail::Rng warpRng(
      core::deriveSeed(options_.seed, core::RngStream::Phantom, {subjectKey, detail::kWarpKey}));
  const double deg = M_PI / 180.0;
  const double rx = 2.0 * deg * warpRng.normal(), ry = 2.0 * deg * warpRng.normal(),
               rz = 2.0 * deg * warpRng.normal();
  const detail::Mat4 rotX{
      1, 0, 0, 0, 0, std::cos(rx), -std::sin(rx), 0, 0, std::sin(rx), std::cos(rx), 0, 0, 0, 0, 1};
  const detail::Mat4 rotY{std::cos(ry),  0, std::sin(ry), 0, 0, 1, 0, 0,
                          -std::sin(ry), 0, std::cos(ry), 0, 0, 0, 0, 1};
  const detail::Mat4 rotZ{
      std::cos(rz), -std::sin(rz), 0, 0, std::sin(rz), std::cos(rz), 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  detail::Mat4 jitter = detail::mul(rotZ, detail::mul(rotY, rotX));
  for (int d = 0; d < 3; ++d) {
    const double scale = 1.0 + 0.03 * warpRng.normal();
    for (int r = 0; r < 3; ++r) jitter[r * 4 + d] *= scale;
    jitter[d * 4 + 3] = 1.5 * warpRng.normal() / options_.voxelSize;
  }
  // In index space about the grid centre: p' = c + J (p - c) + t.
  detail::Mat4 toCentre{1, 0, 0, -(shape[0] - 1) / 2.0, 0, 1, 0, -(shape[1] - 1) / 2.0,
                        0, 0, 1, -(shape[2] - 1) / 2.0, 0, 0, 0, 1};
  const detail::Mat4 dstToSrc =
      detail::mul(detail::inverseAffine(toCentre), detail::mul(jitter, toCentre));
  torch::Tensor grid = detail::samplingGrid(dstToSrc, shape, shape);
  {
    auto control = torch::empty({1, 3, 5, 6, 5}, torch::kFloat32);
    auto acc = control.accessor<float, 5>();
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 5; ++k)
        for (int j = 0; j < 6; ++j)
          for (int i = 0; i < 5; ++i) {
            // 2 mm in voxels, then in normalised units of axis c (grid channel c is i, j, k).
            acc[0][c][k][j][i] = static_cast<float>(2.0 * warpRng.normal() / options_.voxelSize *
                                                    2.0 / std::max<double>(shape[c] - 1, 1));
          }
    const torch::Tensor field =
        F::interpolate(control, F::InterpolateFuncOptions()
                                    .size(std::vector<std::int64_t>{shape[2], shape[1], shape[0]})
                                    .mode(torch::kTrilinear)
                                    .align_corners(true));
    grid = grid + field.permute({0, 2, 3, 4, 1});
  }
  const torch::Tensor t =
      detail::sample(a.tpl.data.unsqueeze(0), grid, /*nearest=*/false)[0].contiguous();
  const torch::Tensor labels =
      detail::sample(torch::stack({a.tissue.data, a.region}), grid, /*nearest=*/true).contiguous();
  grid = torch::Tensor();
  const torch::Tensor tissueF = labels[0].contiguous();
  const torch::Tensor tissue8 = tissueF.to(torch::kUInt8).contiguous();
  const torch::Tensor region8 = labels[1].to(torch::kUInt8).contiguous();
  const torch::Tensor brain = tissue8 > 0;

  // Candidate lesion centres by site.
  std::array<std::vector<std::int64_t>, 4> sites;
  {
    const std::uint8_t* r = region8.data_ptr<std::uint8_t>();
    for (std::int64_t v = 0; v < region8.numel(); ++v) {
      if (r[v] > 0) sites[r[v]].push_back(v);
    }
  }
  const auto voxelCentre = [&](std::int64_t v) {
    return std::array<double, 3>{static_cast<double>(v % shape[0]),
                                 static_cast<double>((v / shape[0]) % shape[1]),
                                 static_cast<double>(v / (shape[0] * shape[1]))};
  };

  // 2. Lesions: placed at the first timepoint, then evolved.
  detail::Rng lesionRng(
      core::deriveSeed(options_.seed, core::RngStream::Phantom, {subjectKey, detail::kLesionKey}));
  const auto place = [&](std::vector<detail::Lesion>& lesions, std::int16_t* lab, int wanted) {
    // Most draws fit; the budget only stops a brain with too little white matter from looping.
    const int attempts = 60 * wanted;
    for (int attempt = 0; attempt < attempts && wanted > 0; ++attempt) {
      // Mostly periventricular, then juxtacortical, then deep white matter (MS's usual sites).
      const double u = lesionRng.uniform();
      int site = u < 0.5 ? 1 : (u < 0.75 ? 2 : 3);
      for (int tries = 0; tries < 3 && sites[site].empty(); ++tries) site = site % 3 + 1;
      if (sites[site].empty()) return;
      const auto& list = sites[site];
      const std::int64_t v =
          list[static_cast<size_t>(lesionRng.uniformInt(0, static_cast<int>(list.size()) - 1))];
      detail::Lesion l = detail::randomLesion(lesionRng, voxelCentre(v));
      if (detail::rasterise(l, tissue8.data_ptr<std::uint8_t>(), lab, shape,
                            static_cast<std::int16_t>(lesions.size() + 1)) > 0) {
        lesions.push_back(l);
        --wanted;
      }
    }
  };

  const bool train = index < options_.trainSubjects;
  const int timepoints = train ? options_.timepoints : 1;
  std::vector<detail::Lesion> lesions;
  std::vector<PhantomScan> scans;
  for (int tp = 0; tp < timepoints; ++tp) {
    torch::Tensor lab = torch::zeros({shape[2], shape[1], shape[0]}, torch::kInt16);
    std::int16_t* labPtr = lab.data_ptr<std::int16_t>();
    std::vector<detail::Lesion> kept;
    if (tp == 0) {
      place(kept, labPtr, lesionRng.uniformInt(options_.minLesions, options_.maxLesions));
    } else {
      // Follow-up: each lesion disappears (12 %), or grows/shrinks (log-normal, slight growth);
      // if the new size does not fit, it keeps its old size; then 0-3 new lesions appear.
      for (const detail::Lesion& old : lesions) {
        if (lesionRng.uniform() < 0.12) continue;
        detail::Lesion l = old;
        const double factor = std::exp(0.04 + 0.12 * lesionRng.normal());
        for (double& ax : l.axes) ax *= factor;
        const auto id = static_cast<std::int16_t>(kept.size() + 1);
        if (detail::rasterise(l, tissue8.data_ptr<std::uint8_t>(), labPtr, shape, id) > 0) {
          kept.push_back(l);
        } else if (detail::rasterise(old, tissue8.data_ptr<std::uint8_t>(), labPtr, shape, id) >
                   0) {
          kept.push_back(old);
        }
      }
      const int room = options_.maxLesions - static_cast<int>(kept.size());
      place(kept, labPtr, std::min(room, lesionRng.uniformInt(0, 3)));
    }
    lesions = kept;

    // 3. Contrasts from the template intensity, lesions with partial volume, bias field, Rician
    //    noise, background zero (skull-stripped like MSLesSeg).
    const std::uint64_t scanKey = twin ? detail::kTwinScanKey : detail::kScanKey;
    detail::Rng scanRng(core::deriveSeed(options_.seed, core::RngStream::Phantom,
                                         {subjectKey, scanKey, static_cast<std::uint64_t>(tp)}));
    at::Generator gen = core::makeCpuGenerator(
        core::deriveSeed(options_.seed, core::RngStream::Phantom,
                         {subjectKey, scanKey, static_cast<std::uint64_t>(tp), 1}));
    const torch::Tensor mask = (lab > 0).to(torch::kFloat32);
    const torch::Tensor soft = F::avg_pool3d(mask.unsqueeze(0).unsqueeze(0),
                                             F::AvgPool3dFuncOptions(3).stride(1).padding(1))
                                   .squeeze(0)
                                   .squeeze(0);
    const torch::Tensor weight = (0.5 * mask + 0.5 * soft).clamp(0, 1);
    const torch::Tensor brainF = brain.to(torch::kFloat32);
    const auto synth = [&](std::array<double, 3> values, double lesionValue) {
      for (double& v : values) v *= 1.0 + 0.03 * scanRng.normal();
      lesionValue *= 1.0 + 0.05 * scanRng.normal();
      torch::Tensor img = detail::contrast(t, a.centres, values);
      img = img * (1 - weight) + lesionValue * weight;
      const torch::Tensor coarse = torch::randn({1, 1, 4, 5, 4}, gen);
      const torch::Tensor bias = torch::exp(
          0.12 *
          F::interpolate(coarse, F::InterpolateFuncOptions()
                                     .size(std::vector<std::int64_t>{shape[2], shape[1], shape[0]})
                                     .mode(torch::kTrilinear)
                                     .align_corners(true))[0][0]);
      img = img * bias;
      const double sigma = 0.015;
      const torch::Tensor n1 = torch::randn(img.sizes(), gen) * sigma;
      const torch::Tensor n2 = torch::randn(img.sizes(), gen) * sigma;
      img = torch::sqrt((img + n1).square() + n2.square());
      Volume v;
      v.data = (img * brainF * 1000.0).contiguous();
      v.affine = a.affine;
      v.spacing = a.spacing;
      return v;
    };
    PhantomScan scan;
    scan.split = train ? "train" : "test";
    scan.patient = strCat("P", index + 1);
    scan.timepoint = train ? strCat("T", tp + 1) : "";
    scan.id = train ? scan.patient + "_" + scan.timepoint : scan.patient;
    //                          CSF   GM    WM       lesion
    scan.flair = synth({0.12, 0.62, 0.48}, 0.95);  // CSF suppressed, lesions hyperintense
    scan.t1 = synth({0.30, 0.60, 0.85}, 0.42);     // lesions hypointense ("black holes")
    scan.t2 = synth({1.00, 0.65, 0.45}, 0.90);     // CSF and lesions bright
    scan.mask.data = mask.contiguous();
    scan.tissue.data = tissueF;
    for (Volume* v : {&scan.mask, &scan.tissue}) {
      v->affine = a.affine;
      v->spacing = a.spacing;
    }
    scan.lesions = static_cast<int>(lesions.size());
    scans.push_back(std::move(scan));
  }
  return scans;
}

void PhantomGenerator::writeSubject(int index, const std::string& root, bool twin) const {
  for (const PhantomScan& scan : generateSubject(index, twin)) {
    fs::path folder = fs::path(root) / scan.split / scan.patient;
    if (!scan.timepoint.empty()) folder /= scan.timepoint;
    fs::create_directories(folder);
    const auto path = [&](const char* modality) {
      return (folder / (scan.id + "_" + modality + ".nii.gz")).string();
    };
    writeNifti(path("FLAIR"), scan.flair, NiftiDtype::Float32, options_.gzipLevel);
    writeNifti(path("T1"), scan.t1, NiftiDtype::Float32, options_.gzipLevel);
    writeNifti(path("T2"), scan.t2, NiftiDtype::Float32, options_.gzipLevel);
    writeNifti(path("MASK"), scan.mask, NiftiDtype::UInt8, options_.gzipLevel);
  }
}

}  // namespace lddpm::data
