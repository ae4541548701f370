// Preprocessing rules on synthetic volumes with known answers: k-means tissue classes, the
// downsampling rules, window lesion counts, normalisation, grid placement and its affine; the
// bad-input errors; and shards that do not depend on the number of ranks and are reused on rerun.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "core/Error.h"
#include "data/Preprocess.h"
#include "data/ShardReader.h"
#include "tests/common/Errors.h"
#include "tests/data/StoreTestUtil.h"

namespace {
using lddpm::testutil::errorOf;
using namespace lddpm;
using namespace lddpm::data;
using data::testing::TempDir;
namespace fs = std::filesystem;

TEST(KMeans, RecoversSeparatedClustersInMeanOrder) {
  torch::manual_seed(0);
  // Unequal cluster sizes, given out of order: labels must come back sorted by mean.
  const auto wm = 500 + torch::randn({900}, torch::kFloat64) * 5;
  const auto csf = 100 + torch::randn({200}, torch::kFloat64) * 5;
  const auto gm = 300 + torch::randn({500}, torch::kFloat64) * 5;
  torch::Tensor labels;
  const auto centres = data::detail::kmeans3(torch::cat({wm, csf, gm}), labels);
  EXPECT_NEAR(centres[0], csf.mean().item<double>(), 1e-9);
  EXPECT_NEAR(centres[1], gm.mean().item<double>(), 1e-9);
  EXPECT_NEAR(centres[2], wm.mean().item<double>(), 1e-9);
  EXPECT_TRUE(labels.slice(0, 0, 900).eq(2).all().item<bool>());
  EXPECT_TRUE(labels.slice(0, 900, 1100).eq(0).all().item<bool>());
  EXPECT_TRUE(labels.slice(0, 1100).eq(1).all().item<bool>());
}

TEST(Downsample, MeanAnyMajorityOnKnownBlocks) {
  // 3x2x2 with f = 2: the last z block is padded (zeros / background).
  const auto x = torch::arange(12, torch::kFloat32).view({3, 2, 2});
  const auto m = data::detail::downsampleMean(x, 2);
  ASSERT_EQ(m.sizes(), (std::vector<std::int64_t>{2, 1, 1}));
  EXPECT_FLOAT_EQ(m[0][0][0].item<float>(), (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7) / 8.0f);
  EXPECT_FLOAT_EQ(m[1][0][0].item<float>(), (8 + 9 + 10 + 11) / 8.0f);
  auto mask = torch::zeros({2, 2, 2}, torch::kUInt8);
  EXPECT_EQ(data::detail::downsampleAny(mask, 2).item<int>(), 0);
  mask[1][0][1] = 1;
  EXPECT_EQ(data::detail::downsampleAny(mask, 2).item<int>(), 1);
  // Four 3s, three 1s, one 0 -> 3; a 4-4 tie between 1 and 2 -> 1 (lowest label).
  auto labels = torch::tensor({3, 3, 3, 3, 1, 1, 1, 0}, torch::kUInt8).view({2, 2, 2});
  EXPECT_EQ(data::detail::downsampleMajority(labels, 2, 4).item<int>(), 3);
  labels = torch::tensor({2, 1, 2, 1, 2, 1, 2, 1}, torch::kUInt8).view({2, 2, 2});
  EXPECT_EQ(data::detail::downsampleMajority(labels, 2, 4).item<int>(), 1);
}

TEST(PatchIndex, WindowCountsMatchBruteForce) {
  torch::manual_seed(1);
  const auto mask = (torch::rand({9, 11, 10}) < 0.2).to(torch::kUInt8);
  const auto centres =
      torch::tensor({0, 0, 0, 4, 5, 6, 8, 10, 9, 2, 7, 1}, torch::kLong).view({4, 3});
  for (int window : {1, 4, 5}) {
    const auto got = data::detail::boxCounts(mask, centres, window);
    for (int i = 0; i < 4; ++i) {
      std::int64_t want = 0;
      const auto c = centres[i];
      for (int z = 0; z < 9; ++z)
        for (int y = 0; y < 11; ++y)
          for (int x = 0; x < 10; ++x) {
            const bool in =
                z >= c[0].item<int>() - window / 2 && z < c[0].item<int>() + window - window / 2 &&
                y >= c[1].item<int>() - window / 2 && y < c[1].item<int>() + window - window / 2 &&
                x >= c[2].item<int>() - window / 2 && x < c[2].item<int>() + window - window / 2;
            if (in) want += mask[z][y][x].item<int>();
          }
      EXPECT_EQ(got[i].item<std::int64_t>(), want) << "window " << window << " centre " << i;
    }
  }
}

// A 20x26x22 "scan": shells of T1 = 100 / 300 / 500 (CSF / GM / WM), a FLAIR ramp inside the
// brain, a 2^3 lesion, and an affine with 1.5 mm voxels and a translation.
SubjectVolumes syntheticScan(const std::string& id) {
  const std::int64_t D = 20, H = 26, W = 22;
  auto z = torch::arange(D, torch::kFloat64).view({D, 1, 1}).sub(9.5).div(8);
  auto y = torch::arange(H, torch::kFloat64).view({1, H, 1}).sub(12.5).div(10);
  auto x = torch::arange(W, torch::kFloat64).view({1, 1, W}).sub(10.5).div(9);
  const auto r = (z * z + y * y + x * x).sqrt();
  auto t1 = torch::zeros({D, H, W}, torch::kFloat64);
  t1.masked_fill_(r < 1.0, 100);
  t1.masked_fill_(r < 0.75, 300);
  t1.masked_fill_(r < 0.45, 500);
  auto flair = torch::where(
      r < 1.0, 50 + torch::arange(D * H * W, torch::kFloat64).view({D, H, W}).remainder(97),
      torch::zeros({}, torch::kFloat64));
  auto mask = torch::zeros({D, H, W}, torch::kFloat32);
  mask.slice(0, 10, 12).slice(1, 12, 14).slice(2, 10, 12).fill_(1);  // aligned to 2^3 blocks
  Affine a = scaledAffine({1.5, 1.5, 1.5});
  a[3] = -30;
  a[7] = 12;
  a[11] = 4;
  SubjectVolumes in;
  in.id = id;
  in.split = "train";
  in.patient = id;
  in.images["T1"] = Volume{t1.to(torch::kFloat32), a, {1.5, 1.5, 1.5}};
  in.images["FLAIR"] = Volume{flair.to(torch::kFloat32), a, {1.5, 1.5, 1.5}};
  in.mask = Volume{mask, a, {1.5, 1.5, 1.5}};
  return in;
}

std::array<double, 3> world(const Affine& a, double i, double j, double k) {
  return {a[0] * i + a[1] * j + a[2] * k + a[3], a[4] * i + a[5] * j + a[6] * k + a[7],
          a[8] * i + a[9] * j + a[10] * k + a[11]};
}

TEST(PreprocessSubject, TissueNormalisationGridAndAffine) {
  const SubjectVolumes in = syntheticScan("P1");
  PreprocessOptions options;
  options.indexStride = 4;
  options.indexWindow = 6;
  const SubjectData s = preprocessSubject(in, options);
  ASSERT_EQ(s.tissue.sizes(),
            (std::vector<std::int64_t>{32, 32, 32}));  // 20x26x22 rounded up to 16

  const auto& t1 = in.images.at("T1").data;
  const auto brain = t1.ne(0);
  // Every brain voxel lands on the grid with its class: shells 100/300/500 -> 1/2/3.
  EXPECT_EQ(s.brainVoxels(), brain.sum().item<std::int64_t>());
  EXPECT_EQ(s.lesionCount(), 8);
  const auto o = s.cropOffset;
  for (std::int64_t z = 0; z < 20; z += 3)
    for (std::int64_t y = 0; y < 26; y += 2)
      for (std::int64_t x = 0; x < 22; x += 2) {
        const double v = t1[z][y][x].item<double>();
        const int want = v == 0 ? 0 : v == 100 ? 1 : v == 300 ? 2 : 3;
        ASSERT_EQ(s.tissue[z - o[0]][y - o[1]][x - o[2]].item<int>(), want)
            << z << "," << y << "," << x;
      }
  // Normalisation: (x - mean) / (std * zmax) clipped, from a float64 reference; -1 outside.
  const auto f = in.images.at("FLAIR").data.to(torch::kFloat64);
  const auto v = f.masked_select(brain);
  const double mean = v.mean().item<double>();
  const double sd = (v - mean).pow(2).mean().sqrt().item<double>();
  EXPECT_NEAR(s.normMean[0], mean, 1e-9);
  EXPECT_NEAR(s.normStd[0], sd, 1e-9);
  const auto expected = torch::where(brain, ((f - mean) / (sd * 3.0)).clamp(-1, 1),
                                     torch::full({}, -1.0, f.options()));
  const auto placed = s.image[0]
                          .slice(0, -o[0], -o[0] + 20)
                          .slice(1, -o[1], -o[1] + 26)
                          .slice(2, -o[2], -o[2] + 22);
  EXPECT_TRUE(torch::allclose(placed.to(torch::kFloat64), expected, 0, 1e-6));
  EXPECT_EQ(s.image.eq(-1).sum().item<std::int64_t>() - expected.eq(-1).sum().item<std::int64_t>(),
            32 * 32 * 32 - 20 * 26 * 22);  // the padding
  // The brain's bounding box is centred: offsets are (bbox centre - grid/2).
  const auto idx = brain.nonzero();
  for (int a = 0; a < 3; ++a) {
    const auto lo = idx.select(1, a).min().item<std::int64_t>(),
               hi = idx.select(1, a).max().item<std::int64_t>() + 1;
    EXPECT_EQ(o[a], (lo + hi) / 2 - 16);
  }
  // Grid voxel g is source voxel g + offset in world space (i, j, k = x, y, z).
  const auto w0 = world(s.affine, 3, 4, 5);
  const auto w1 = world(in.images.at("T1").affine, 3 + o[2], 4 + o[1], 5 + o[0]);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(w0[c], w1[c], 1e-9);
  // Patch index: stride-4 points inside the brain; lesion counts within the 6^3 window.
  ASSERT_GT(s.patchIndex.size(0), 0);
  const auto pi = s.patchIndex.to(torch::kLong);
  EXPECT_TRUE(pi.select(1, 0).remainder(4).eq(2).all().item<bool>());
  EXPECT_TRUE(
      s.tissue.index({pi.select(1, 0), pi.select(1, 1), pi.select(1, 2)}).gt(0).all().item<bool>());
  EXPECT_EQ(s.lesionVoxels.size(0), 8);
  EXPECT_GT(pi.select(1, 3).max().item<std::int64_t>(), 0);
}

TEST(PreprocessSubject, DownsampleKeepsWorldGeometry) {
  const SubjectVolumes in = syntheticScan("P1");
  PreprocessOptions options;
  options.downsample = 2;
  const SubjectData s = preprocessSubject(in, options);
  ASSERT_EQ(s.tissue.sizes(), (std::vector<std::int64_t>{16, 16, 16}));  // 10x13x11 -> 16
  EXPECT_EQ(s.spacing, (std::array<double, 3>{3, 3, 3}));
  EXPECT_EQ(s.lesionCount(), 1);  // the 2^3 lesion, aligned to one 2^3 block ("any")
  // Grid voxel g is the centre of source block 2 (g + offset) + 0.5.
  const auto o = s.cropOffset;
  const auto w0 = world(s.affine, 1, 2, 3);
  const auto w1 = world(in.images.at("T1").affine, 2 * (1 + o[2]) + 0.5, 2 * (2 + o[1]) + 0.5,
                        2 * (3 + o[0]) + 0.5);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(w0[c], w1[c], 1e-9);
}

TEST(PreprocessSubject, BadInputsNameSubjectAndProblem) {
  PreprocessOptions options;
  auto expectError = [&](SubjectVolumes in, const std::string& problem) {
    in.source = "data/train/P7";
    const std::string m = errorOf([&] { preprocessSubject(in, options); });
    EXPECT_NE(m.find("P7"), std::string::npos) << m;
    EXPECT_NE(m.find(problem), std::string::npos) << m;
  };
  SubjectVolumes nan = syntheticScan("P7");
  nan.images["FLAIR"].data[3][4][5] = std::nanf("");
  expectError(nan, "NaN");
  SubjectVolumes nonBinary = syntheticScan("P7");
  nonBinary.mask.data[1][1][1] = 2;
  expectError(nonBinary, "not binary");
  SubjectVolumes empty = syntheticScan("P7");
  empty.images["T1"].data.zero_();
  empty.images["FLAIR"].data.zero_();
  expectError(empty, "empty brain");
  SubjectVolumes missing = syntheticScan("P7");
  missing.images.erase("FLAIR");
  expectError(missing, "missing modality FLAIR");
  SubjectVolumes shape = syntheticScan("P7");
  shape.mask.data = torch::zeros({20, 26, 21});
  expectError(shape, "MASK shape");
  options.grid = {16, 16, 16};
  expectError(syntheticScan("P7"), "--grid");
}

std::vector<SubjectSource> sources(int n) {
  std::vector<SubjectSource> out;
  for (int i = 0; i < n; ++i) {
    const std::string id = "P" + std::to_string(i + 1);
    out.push_back({id, [id, i] {
                     SubjectVolumes v = syntheticScan(id);
                     v.images["FLAIR"].data.mul_(1.0f + 0.1f * static_cast<float>(i));
                     v.images["FLAIR"].data[10][10 + i][10] += 40.0f;
                     return v;
                   }});
  }
  return out;
}

TEST(PreprocessShard, SubjectDataIndependentOfRankCount) {
  TempDir one("one"), two("two");
  const auto subjects = sources(3);
  PreprocessOptions options;
  const ShardResult r1 = preprocessShard(options, one.str(), subjects, 0, 1);
  EXPECT_EQ(r1.subjects, 3u);
  ShardResult parts[2];
  for (int rank = 0; rank < 2; ++rank)
    parts[rank] = preprocessShard(options, two.str(), subjects, rank, 2);
  EXPECT_EQ(parts[0].subjects, 2u);  // round robin: P1, P3 | P2
  EXPECT_EQ(parts[1].subjects, 1u);
  EXPECT_EQ(expectedShards(3, 2), (std::vector<std::string>{"shard-00000.h5", "shard-00001.h5"}));
  EXPECT_EQ(expectedShards(1, 4), (std::vector<std::string>{"shard-00000.h5"}));

  ShardReader all(one.str() + "/shard-00000.h5");
  ShardReader r0(two.str() + "/shard-00000.h5"), rb(two.str() + "/shard-00001.h5");
  EXPECT_EQ(rb.subjects(), (std::vector<std::string>{"P2"}));
  for (const std::string& id : all.subjects()) {
    ShardReader& other = r0.contains(id) ? r0 : rb;
    const SubjectData a = all.readSubject(id), b = other.readSubject(id);
    EXPECT_TRUE(torch::equal(a.image, b.image)) << id;
    EXPECT_TRUE(torch::equal(a.tissue, b.tissue)) << id;
    EXPECT_TRUE(torch::equal(a.patchIndex, b.patchIndex)) << id;
    EXPECT_EQ(a.affine, b.affine);
  }
  EXPECT_EQ(all.header().parameters, r0.header().parameters);
}

TEST(PreprocessShard, RerunReusesMatchingShardAndRedoesTheRest) {
  TempDir dir("rerun");
  const auto subjects = sources(2);
  PreprocessOptions options;
  EXPECT_FALSE(preprocessShard(options, dir.str(), subjects, 0, 1).reused);
  const auto path = dir.str() + "/shard-00000.h5";
  const auto written = fs::last_write_time(path);
  EXPECT_TRUE(preprocessShard(options, dir.str(), subjects, 0, 1).reused);
  EXPECT_EQ(fs::last_write_time(path), written);
  // A previous manifest whose checksum no longer matches: the shard is redone.
  Manifest stale = buildManifest(dir.str(), {"shard-00000.h5"});
  stale.shards[0].checksum = "0000000000000000";
  EXPECT_FALSE(preprocessShard(options, dir.str(), subjects, 0, 1, stale).reused);
  // Other parameters: redone.
  options.zmax = 2.5;
  EXPECT_FALSE(preprocessShard(options, dir.str(), subjects, 0, 1).reused);
  EXPECT_NE(ShardReader(path).header().parameters.find("2.5"), std::string::npos);
  // A failing subject leaves no shard under the final name, and no temporary either.
  fs::remove(path);
  auto broken = sources(2);
  broken[1].load = [] {
    SubjectVolumes v = syntheticScan("P2");
    v.mask.data[0][0][0] = 5;
    return v;
  };
  EXPECT_THROW(preprocessShard(options, dir.str(), broken, 0, 1), core::Error);
  EXPECT_TRUE(fs::is_empty(dir.path));
}

}  // namespace

namespace {
data::PreprocessOptions parsePreprocess(const std::vector<std::string>& args) {
  data::PreprocessArguments arguments;
  core::po::options_description desc = arguments.describe();
  core::parseOptions("preprocess", args, desc);
  return arguments.resolve();
}
// The message of the UsageError (exit 2) a call throws; "<no usage error>" otherwise.
std::string usageErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const core::UsageError& e) {
    return e.what();
  }
  return "<no usage error>";
}
}  // namespace

// The command line of preprocessing: the defaults are PreprocessOptions' own (no second copy),
// the text options parse to the values a user means, and bad ones name the option.
TEST(PreprocessArguments, DefaultsParsingAndErrors) {
  const data::PreprocessOptions defaults;
  const data::PreprocessOptions none = parsePreprocess({});
  EXPECT_EQ(none.toJson(), defaults.toJson());

  const data::PreprocessOptions o =
      parsePreprocess({"--channels", "FLAIR,T1", "--grid", "160x192x176", "--downsample", "2",
                       "--compression", "zstd", "--chunk", "16", "--zmax", "2.5"});
  EXPECT_EQ(o.channels, (std::vector<std::string>{"FLAIR", "T1"}));
  EXPECT_EQ(o.grid, (std::array<std::int64_t, 3>{160, 192, 176}));
  EXPECT_EQ(o.downsample, 2);
  EXPECT_EQ(o.storage.compression, data::Compression::Zstd);
  EXPECT_EQ(o.storage.chunk, 16);
  EXPECT_DOUBLE_EQ(o.zmax, 2.5);

  EXPECT_NE(usageErrorOf([] {
              parsePreprocess({"--grid", "160x192"});
            }).find("option '--grid'"),
            std::string::npos);
  EXPECT_NE(usageErrorOf([] {
              parsePreprocess({"--grid", "100x192x160"});
            }).find("option '--grid'"),
            std::string::npos);
  EXPECT_NE(usageErrorOf([] {
              parsePreprocess({"--channels", "FLAIR,DWI"});
            }).find("option '--channels': unknown modality 'DWI'"),
            std::string::npos);
  EXPECT_NE(usageErrorOf([] {
              parsePreprocess({"--compression", "bz2"});
            }).find("option '--compression'"),
            std::string::npos);
}
