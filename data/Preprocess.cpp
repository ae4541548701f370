// Subject and shard preprocessing: see Preprocess.h and docs/store.md "Preprocessing".
#include "data/Preprocess.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "core/Text.h"
#include "data/NiftiIo.h"
#include "data/ShardReader.h"
#include "data/ShardWriter.h"

namespace lddpm::data {
namespace fs = std::filesystem;
using torch::indexing::None;
using torch::indexing::Slice;

namespace detail {

namespace {

// Exact 1-D Lloyd iterations on sorted values. In 1-D every cluster is an interval between the
// midpoints of adjacent centres, so an iteration is two binary searches and prefix-sum lookups,
// O(log N) instead of O(N) distances: the whole k-means costs one sort.
struct Lloyd1d {
  const std::vector<double>& v;  // sorted ascending
  std::vector<double> s1, s2;    // prefix sums of v and v^2 (size N + 1)

  explicit Lloyd1d(const std::vector<double>& sorted)
      : v(sorted), s1(sorted.size() + 1), s2(sorted.size() + 1) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      s1[i + 1] = s1[i] + v[i];
      s2[i + 1] = s2[i] + v[i] * v[i];
    }
  }
  // Interval ends: a value equidistant from two centres goes to the lower one (as argmin would).
  std::array<std::size_t, 4> bounds(const std::array<double, 3>& c) const {
    const auto upper = [&](double t) {
      return static_cast<std::size_t>(std::upper_bound(v.begin(), v.end(), t) - v.begin());
    };
    return {0, upper((c[0] + c[1]) / 2), upper((c[1] + c[2]) / 2), v.size()};
  }
  // Runs to convergence from `c`; returns (centres, inertia).
  std::pair<std::array<double, 3>, double> run(std::array<double, 3> c) const {
    for (int iter = 0; iter < 100; ++iter) {
      std::sort(c.begin(), c.end());
      const auto b = bounds(c);
      std::array<double, 3> next = c;  // an empty cluster keeps its centre
      for (int k = 0; k < 3; ++k) {
        if (b[k + 1] > b[k])
          next[k] = (s1[b[k + 1]] - s1[b[k]]) / static_cast<double>(b[k + 1] - b[k]);
      }
      const bool converged = next == c;
      c = next;
      if (converged) break;
    }
    std::sort(c.begin(), c.end());
    const auto b = bounds(c);
    double inertia = 0;
    for (int k = 0; k < 3; ++k) {
      const double n = static_cast<double>(b[k + 1] - b[k]);
      const double sum = s1[b[k + 1]] - s1[b[k]], sq = s2[b[k + 1]] - s2[b[k]];
      inertia += sq - 2 * c[k] * sum + n * c[k] * c[k];
    }
    return {c, inertia};
  }
};

// Linear-interpolation quantile of sorted values (numpy's and torch's default).
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

std::array<double, 3> kmeans3(const torch::Tensor& values, torch::Tensor& labels) {
  // Deterministic 1-D Lloyd from two starts, keeping the lower inertia: the 1/6, 3/6, 5/6
  // quantiles (good when classes are balanced) and thirds of the 1st-99th percentile range (good
  // when one class dominates, where two quantiles would start inside the same class).
  const torch::Tensor v = values.to(torch::kFloat64).flatten().contiguous();
  LDDPM_CHECK(v.numel() > 0, "k-means of an empty set");
  std::vector<double> sorted(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
  std::sort(sorted.begin(), sorted.end());
  const Lloyd1d lloyd(sorted);
  const double lo = quantile(sorted, 0.01), span = quantile(sorted, 0.99) - lo;
  auto best =
      lloyd.run({quantile(sorted, 1.0 / 6), quantile(sorted, 0.5), quantile(sorted, 5.0 / 6)});
  const auto other = lloyd.run({lo + span / 6, lo + span / 2, lo + span * 5 / 6});
  if (other.second < best.second) best = other;
  const std::array<double, 3>& c = best.first;  // ascending: CSF < GM < WM on T1
  labels = v.gt((c[0] + c[1]) / 2).to(torch::kLong) + v.gt((c[1] + c[2]) / 2).to(torch::kLong);
  return c;
}

// Pads [D, H, W] at the end of each axis to a multiple of f (with `value`), then views it as
// [D/f, f, H/f, f, W/f, f] blocks.
torch::Tensor blocks(const torch::Tensor& x, int f, double value) {
  std::vector<std::int64_t> pad;
  for (int axis = 2; axis >= 0; --axis) pad.insert(pad.end(), {0, (f - x.size(axis) % f) % f});
  torch::Tensor p = torch::constant_pad_nd(x, pad, value);
  return p.view({p.size(0) / f, f, p.size(1) / f, f, p.size(2) / f, f});
}

torch::Tensor downsampleMean(const torch::Tensor& x, int f) {
  if (f == 1) return x;
  return blocks(x.to(torch::kFloat64), f, 0.0).mean({1, 3, 5}).to(torch::kFloat32);
}

torch::Tensor downsampleAny(const torch::Tensor& mask, int f) {
  if (f == 1) return mask;
  return blocks(mask, f, 0).amax({1, 3, 5});
}

torch::Tensor downsampleMajority(const torch::Tensor& labels, int f, int classes) {
  if (f == 1) return labels;
  // Votes per class in each block; ties go to the lowest label (argmax returns the first maximum).
  torch::Tensor b = blocks(labels.to(torch::kLong), f, 0);
  torch::Tensor votes = torch::stack(
      [&] {
        std::vector<torch::Tensor> v;
        for (int c = 0; c < classes; ++c) v.push_back(b.eq(c).sum({1, 3, 5}));
        return v;
      }(),
      0);
  return votes.argmax(0).to(labels.scalar_type());
}

// Sum of `mask` over the cube of edge `window` centred at each (z, y, x) in `centres` [N, 3],
// through a 3-D summed-area table: O(1) per centre whatever the window.
torch::Tensor boxCounts(const torch::Tensor& mask, const torch::Tensor& centres, int window) {
  torch::Tensor s = mask.to(torch::kLong).cumsum(0).cumsum(1).cumsum(2);
  s = torch::constant_pad_nd(s, {1, 0, 1, 0, 1, 0},
                             0);  // s[z, y, x] = sum over [0, z) x [0, y) x [0, x)
  const std::int64_t lo = window / 2, hi = window - window / 2;
  std::vector<torch::Tensor> a, b;
  for (int axis = 0; axis < 3; ++axis) {
    const torch::Tensor c = centres.select(1, axis).to(torch::kLong);
    a.push_back((c - lo).clamp(0, mask.size(axis)));
    b.push_back((c + hi).clamp(0, mask.size(axis)));
  }
  auto at = [&](const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& x) {
    return s.index({z, y, x});
  };
  return at(b[0], b[1], b[2]) - at(a[0], b[1], b[2]) - at(b[0], a[1], b[2]) - at(b[0], b[1], a[2]) +
         at(a[0], a[1], b[2]) + at(a[0], b[1], a[2]) + at(b[0], a[1], a[2]) - at(a[0], a[1], a[2]);
}

}  // namespace detail

core::Json PreprocessOptions::toJson() const {
  core::Json json = {{"channels", channels},
                     {"downsample", downsample},
                     {"grid", grid},
                     {"zmax", zmax},
                     {"index_stride", indexStride},
                     {"index_window", indexWindow},
                     {"compression", compressionName(storage.compression)},
                     {"chunk", storage.chunk}};
  if (!synthetic.is_null()) json["synthetic"] = synthetic;
  if (!derivedFrom.is_null()) json["derived_from"] = derivedFrom;
  return json;
}

PreprocessOptions PreprocessOptions::fromJson(const core::Json& json) {
  PreprocessOptions o;
  o.channels = json.value("channels", o.channels);
  o.downsample = json.value("downsample", o.downsample);
  o.grid = json.value("grid", o.grid);
  o.zmax = json.value("zmax", o.zmax);
  o.indexStride = json.value("index_stride", o.indexStride);
  o.indexWindow = json.value("index_window", o.indexWindow);
  o.storage.compression = parseCompression(json.value("compression", std::string("none")));
  o.storage.chunk = json.value("chunk", o.storage.chunk);
  o.synthetic = json.value("synthetic", core::Json(nullptr));
  o.derivedFrom = json.value("derived_from", core::Json(nullptr));
  return o;
}

void PreprocessOptions::validate() const {
  if (channels.empty()) {
    LDDPM_THROW(core::UsageError, "option '--channels': give at least one modality");
  }
  for (const auto& c : channels) {
    if (c != "FLAIR" && c != "T1" && c != "T2") {
      LDDPM_THROW(core::UsageError, "option '--channels': unknown modality '", c,
                  "' (FLAIR, T1, T2)");
    }
  }
  if (downsample < 1 || downsample > 8) {
    LDDPM_THROW(core::UsageError, "option '--downsample': must be 1..8, got ", downsample);
  }
  for (auto g : grid) {
    if (g < 0 || g % 16 != 0) {
      LDDPM_THROW(core::UsageError,
                  "option '--grid': every size must be a positive multiple of 16 (or auto)");
    }
  }
  if (!(zmax > 0)) LDDPM_THROW(core::UsageError, "option '--zmax': must be positive");
  if (indexStride < 1) LDDPM_THROW(core::UsageError, "option '--index-stride': must be positive");
  if (indexWindow < 1) LDDPM_THROW(core::UsageError, "option '--index-window': must be positive");
  if (storage.chunk < 4) LDDPM_THROW(core::UsageError, "option '--chunk': must be at least 4");
}

PreprocessArguments::PreprocessArguments()
    : channels(core::joinStrings(options.channels, ",")),
      grid("auto"),
      compression(compressionName(options.storage.compression)) {}

core::po::options_description PreprocessArguments::describe() {
  namespace po = core::po;
  PreprocessOptions& o = options;
  po::options_description d("preprocessing");
  d.add_options()("channels", po::value(&channels)->default_value(channels),
                  "image channels, comma-separated from FLAIR,T1,T2")(
      "downsample", po::value(&o.downsample)->default_value(o.downsample),
      "integer downsampling factor (mean for images, majority/any for masks)")(
      "grid", po::value(&grid)->default_value(grid),
      "canonical grid DxHxW (multiples of 16) centred on the brain, or auto (input rounded up to "
      "16)")("zmax", po::value(&o.zmax)->default_value(o.zmax),
             "z-scores are clipped to [-zmax, zmax] and divided by zmax, giving [-1, 1]")(
      "index-stride", po::value(&o.indexStride)->default_value(o.indexStride),
      "patch-index grid step")("index-window",
                               po::value(&o.indexWindow)->default_value(o.indexWindow),
                               "cube edge over which patch-index rows count lesion voxels")(
      "compression", po::value(&compression)->default_value(compression),
      "none, deflate, lz4 or zstd")("chunk",
                                    po::value(&o.storage.chunk)->default_value(o.storage.chunk),
                                    "HDF5 chunk edge (voxels)");
  return d;
}

PreprocessOptions PreprocessArguments::resolve() const {
  PreprocessOptions o = options;
  o.channels = core::splitString(channels, ',', /*skipEmpty=*/true);
  o.grid = {0, 0, 0};
  if (grid != "auto") {
    char x1 = 0, x2 = 0;
    std::istringstream in(grid);
    if (!(in >> o.grid[0] >> x1 >> o.grid[1] >> x2 >> o.grid[2]) || x1 != 'x' || x2 != 'x' ||
        !in.eof()) {
      LDDPM_THROW(core::UsageError,
                  "option '--grid': expected DxHxW (e.g. 160x192x160) or auto, got '", grid, "'");
    }
  }
  o.storage.compression = parseCompression(compression);
  o.validate();
  return o;
}

const std::vector<std::string>& PreprocessArguments::names() {
  static const std::vector<std::string> n = {"channels",    "downsample",   "grid",
                                             "zmax",        "index-stride", "index-window",
                                             "compression", "chunk"};
  return n;
}

namespace {

std::string where(const SubjectVolumes& in) {
  return "subject " + in.id + (in.source.empty() ? "" : " (" + in.source + ")");
}

const Volume& image(const SubjectVolumes& in, const std::string& modality) {
  const auto it = in.images.find(modality);
  if (it == in.images.end()) LDDPM_THROW(core::Error, where(in), ": missing modality ", modality);
  return it->second;
}

void checkFinite(const SubjectVolumes& in, const std::string& name, const torch::Tensor& t) {
  if (!torch::isfinite(t).all().item<bool>()) {
    LDDPM_THROW(core::Error, where(in), ": ", name, " has NaN or Inf voxels");
  }
}

// Affine of a grid whose voxel g sits at (downsampled) source voxel g + offset, with downsampling
// by f: source voxel i of the block starting at f*i' has centre f*i' + (f-1)/2.
Affine gridAffine(const Affine& a, int f, const std::array<std::int64_t, 3>& offsetZyx) {
  // Voxel (i, j, k) are (x, y, z) indices; offsets are in (z, y, x) order.
  const double o[3] = {static_cast<double>(offsetZyx[2]), static_cast<double>(offsetZyx[1]),
                       static_cast<double>(offsetZyx[0])};
  Affine out = a;
  for (int r = 0; r < 3; ++r) {
    double t = a[r * 4 + 3];
    for (int c = 0; c < 3; ++c) {
      out[r * 4 + c] = a[r * 4 + c] * f;
      t += a[r * 4 + c] * (f * o[c] + (f - 1) / 2.0);
    }
    out[r * 4 + 3] = t;
  }
  return out;
}

// Copies the overlap of `src` [.., n0, n1, n2] with the window [offset, offset + grid) into a new
// tensor of the grid's size filled with `fill`.
torch::Tensor placeOnGrid(const torch::Tensor& src, const std::array<std::int64_t, 3>& offset,
                          const std::array<std::int64_t, 3>& grid, double fill) {
  std::vector<std::int64_t> shape(src.sizes().begin(), src.sizes().end() - 3);
  shape.insert(shape.end(), grid.begin(), grid.end());
  torch::Tensor out = torch::full(shape, fill, src.options());
  // Built in place, never copied: LibTorch 1.13's TensorIndex leaves a bool member uninitialised
  // for slices, so copying one reads it (UBSan: "load of value 64, which is not a valid value
  // for type 'bool'"), and a vector copies when it is filled with copies or grows.
  std::vector<torch::indexing::TensorIndex> from, to;
  from.reserve(static_cast<size_t>(src.dim()));
  to.reserve(static_cast<size_t>(src.dim()));
  for (std::int64_t d = 0; d + 3 < src.dim(); ++d) {
    from.emplace_back(Slice());
    to.emplace_back(Slice());
  }
  for (int a = 0; a < 3; ++a) {
    const std::int64_t n = src.size(src.dim() - 3 + a);
    const std::int64_t lo = std::max<std::int64_t>(0, offset[a]);
    const std::int64_t hi = std::min<std::int64_t>(n, offset[a] + grid[a]);
    if (hi <= lo) return out;
    from.emplace_back(Slice(lo, hi));
    to.emplace_back(Slice(lo - offset[a], hi - offset[a]));
  }
  out.index_put_(to, src.index(from));
  return out;
}

}  // namespace

SubjectData preprocessSubject(const SubjectVolumes& in, const PreprocessOptions& options) {
  const std::string t1Name = "T1";  // a named string: GCC 13 flags a temporary as possibly dangling
  const Volume& t1 = image(in, t1Name);
  const auto shape = t1.data.sizes();
  auto checkShape = [&](const std::string& name, const Volume& v) {
    if (v.data.dim() != 3 || v.data.sizes() != shape) {
      LDDPM_THROW(core::Error, where(in), ": ", name, " shape ", v.data.sizes(),
                  " differs from T1 ", shape);
    }
  };
  checkFinite(in, "T1", t1.data);
  std::vector<torch::Tensor> raw;
  for (const auto& c : options.channels) {
    const Volume& v = image(in, c);
    checkShape(c, v);
    checkFinite(in, c, v.data);
    raw.push_back(v.data.to(torch::kFloat32));
  }
  checkShape("MASK", in.mask);
  checkFinite(in, "MASK", in.mask.data);
  if (!(in.mask.data.eq(0) | in.mask.data.eq(1)).all().item<bool>()) {
    LDDPM_THROW(core::Error, where(in), ": MASK is not binary (values other than 0 and 1)");
  }

  // Brain: any nonzero voxel of the skull-stripped T1 or FLAIR, plus the lesions.
  torch::Tensor lesion = in.mask.data.gt(0.5);
  torch::Tensor brain = t1.data.ne(0);
  if (in.images.count("FLAIR")) brain |= in.images.at("FLAIR").data.ne(0);
  if (brain.sum().item<std::int64_t>() < 3) {
    LDDPM_THROW(core::Error, where(in), ": empty brain (T1 and FLAIR are all zero)");
  }
  brain |= lesion;

  // Tissue classes from T1 inside the brain.
  SubjectData out;
  torch::Tensor labels;
  out.tissueMeans = detail::kmeans3(t1.data.masked_select(brain), labels);
  torch::Tensor tissue = torch::zeros(brain.sizes(), torch::kUInt8);
  tissue.masked_scatter_(brain, (labels + 1).to(torch::kUInt8));

  // Optional downsampling: mean for images, majority for tissue, any for lesions.
  const int f = options.downsample;
  for (auto& r : raw) r = detail::downsampleMean(r, f);
  tissue = detail::downsampleMajority(tissue, f, 4);
  torch::Tensor lesionU8 = detail::downsampleAny(lesion.to(torch::kUInt8), f);
  brain = tissue.gt(0) | lesionU8.gt(0);
  if (!brain.any().item<bool>())
    LDDPM_THROW(core::Error, where(in), ": empty brain after --downsample ", f);

  // Normalise each channel: z-score inside the brain, clip to [-zmax, zmax], divide by zmax.
  std::vector<torch::Tensor> channels;
  for (std::size_t c = 0; c < raw.size(); ++c) {
    const torch::Tensor v = raw[c].masked_select(brain).to(torch::kFloat64);
    const double mean = v.mean().item<double>();
    const double sd = v.std(/*unbiased=*/false).item<double>();
    if (!(sd > 0))
      LDDPM_THROW(core::Error, where(in), ": ", options.channels[c],
                  " is constant inside the brain");
    out.normMean.push_back(mean);
    out.normStd.push_back(sd);
    torch::Tensor y = ((raw[c].to(torch::kFloat64) - mean) / (sd * options.zmax)).clamp(-1, 1);
    channels.push_back(
        torch::where(brain, y, torch::full({}, -1.0, y.options())).to(torch::kFloat32));
  }

  // Canonical grid, centred on the brain's bounding box.
  std::array<std::int64_t, 3> grid = options.grid;
  std::array<std::int64_t, 3> offset{}, lo{}, hi{};
  const torch::Tensor idx = brain.nonzero();
  for (int a = 0; a < 3; ++a) {
    const std::int64_t n = brain.size(a);
    if (grid[a] == 0) grid[a] = (n + 15) / 16 * 16;
    lo[a] = idx.select(1, a).min().item<std::int64_t>();
    hi[a] = idx.select(1, a).max().item<std::int64_t>() + 1;
    offset[a] = (lo[a] + hi[a]) / 2 - grid[a] / 2;
    if (hi[a] - lo[a] > grid[a]) {
      LDDPM_THROW(core::Error, where(in), ": brain spans ", hi[a] - lo[a], " voxels on axis ", a,
                  " but --grid gives ", grid[a], " (use a larger --grid or --downsample)");
    }
  }
  out.image = placeOnGrid(torch::stack(channels), offset, grid, -1.0);
  out.tissue = placeOnGrid(tissue, offset, grid, 0);
  out.lesion = placeOnGrid(lesionU8, offset, grid, 0);

  out.id = in.id;
  out.split = in.split;
  out.patient = in.patient;
  out.timepoint = in.timepoint;
  out.channels = options.channels;
  out.affine = gridAffine(t1.affine, f, offset);
  for (int a = 0; a < 3; ++a) out.spacing[a] = t1.spacing[a] * f;
  out.sourceShape = {shape[0], shape[1], shape[2]};
  out.cropOffset = offset;
  out.downsample = f;
  out.indexStride = options.indexStride;
  out.indexWindow = options.indexWindow;
  indexLesions(out);
  return out;
}

void indexLesions(SubjectData& subject) {
  const std::int64_t s = subject.indexStride;
  const torch::Tensor brainGrid = subject.tissue.gt(0) | subject.lesion.gt(0);
  const torch::Tensor sub =
      brainGrid.index({Slice(s / 2, None, s), Slice(s / 2, None, s), Slice(s / 2, None, s)});
  const torch::Tensor centres = sub.nonzero() * s + s / 2;
  const torch::Tensor counts =
      detail::boxCounts(subject.lesion, centres, static_cast<int>(subject.indexWindow));
  subject.patchIndex = torch::cat({centres, counts.unsqueeze(1)}, 1).to(torch::kInt32);
  subject.lesionVoxels = subject.lesion.nonzero().to(torch::kInt32);
}

SubjectSource scanSource(const ScanRecord& scan) {
  return {scan.id, [scan] {
            std::map<Modality, Volume> volumes;
            for (const auto& [m, file] : scan.files) volumes.emplace(m, readNifti(file));
            checkScanConsistency(scan, volumes);
            SubjectVolumes in;
            in.id = scan.id;
            in.split = scan.split;
            in.patient = scan.patient;
            in.timepoint = scan.timepoint;
            in.source = scan.files.at(Modality::Flair);
            in.mask = std::move(volumes.at(Modality::Mask));
            for (auto& [m, v] : volumes) {
              if (m != Modality::Mask) in.images.emplace(modalityName(m), std::move(v));
            }
            return in;
          }};
}

std::vector<std::size_t> assignSubjects(std::size_t count, int rank, int worldSize) {
  std::vector<std::size_t> mine;
  for (std::size_t i = static_cast<std::size_t>(rank); i < count;
       i += static_cast<std::size_t>(worldSize)) {
    mine.push_back(i);
  }
  return mine;
}

std::vector<std::string> expectedShards(std::size_t subjectCount, int worldSize) {
  std::vector<std::string> files;
  for (int r = 0; r < worldSize && static_cast<std::size_t>(r) < subjectCount; ++r) {
    files.push_back(shardFileName(r));
  }
  return files;
}

namespace {

// Whether an existing shard is the complete result of this very job (see preprocessShard).
bool reusable(const std::string& path, const std::string& file, const std::string& parameters,
              const std::vector<std::string>& ids, const std::optional<Manifest>& previous) {
  if (!fs::exists(path)) return false;
  try {
    ShardReader reader(path);
    if (reader.header().parameters != parameters || reader.subjects() != ids) return false;
  } catch (const core::Error& e) {
    LDDPM_LOG_EVERY_RANK(Warn) << "redoing " << path << ": " << e.what();
    return false;
  }
  if (!previous) return true;  // renamed into place only when complete
  for (const ShardEntry& e : previous->shards) {
    if (e.file == file) {
      return e.bytes == static_cast<std::int64_t>(fs::file_size(path)) &&
             e.checksum == core::checksumHex(core::checksumFile(path));
    }
  }
  return true;
}

}  // namespace

ShardResult preprocessShard(const PreprocessOptions& options, const std::string& storeDir,
                            const std::vector<SubjectSource>& subjects, int rank, int worldSize,
                            const std::optional<Manifest>& previous) {
  LDDPM_CHECK(std::is_sorted(subjects.begin(), subjects.end(),
                             [](const auto& a, const auto& b) { return a.id < b.id; }),
              "preprocessShard: subjects must be sorted by id");
  const std::vector<std::size_t> mine = assignSubjects(subjects.size(), rank, worldSize);
  ShardResult result;
  if (mine.empty()) return result;
  result.file = shardFileName(rank);
  result.subjects = mine.size();
  const std::string path = (fs::path(storeDir) / result.file).string();
  const std::string parameters = options.toJson().dump();
  std::vector<std::string> ids;
  for (std::size_t i : mine) ids.push_back(subjects[i].id);
  std::vector<std::string> sortedIds = ids;
  std::sort(sortedIds.begin(), sortedIds.end());
  if (reusable(path, result.file, parameters, sortedIds, previous)) {
    result.reused = true;
    return result;
  }

  std::optional<ShardWriter> writer;
  core::Progress progress("preprocess", static_cast<std::int64_t>(mine.size()));
  std::int64_t done = 0;
  for (std::size_t i : mine) {
    const SubjectSource& source = subjects[i];
    const SubjectData s =
        source.prepared ? source.prepared() : preprocessSubject(source.load(), options);
    if (!writer) {
      // The grid is known once the first subject is placed (auto grids come from its shape).
      writer.emplace(path,
                     ShardHeader{rank,
                                 parameters,
                                 options.channels,
                                 {s.tissue.size(0), s.tissue.size(1), s.tissue.size(2)}},
                     options.storage);
    }
    writer->add(s);
    progress.update(++done, s.id);
  }
  writer->commit();
  progress.finish();
  return result;
}

}  // namespace lddpm::data
