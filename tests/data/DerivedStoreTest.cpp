// Stores made from other stores: the lesion transplant (data/LesionTransplant.h) and the merge
// (data/MergedStore.h). Expected values come from the hand-built donor (cubes of known edge), from
// loops written here (WM fractions, neighbourhoods, the patch index's window counts) and from the
// stores' own subject lists, never from the code under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/Components.h"
#include "core/Error.h"
#include "data/LesionTransplant.h"
#include "data/Manifest.h"
#include "data/MergedStore.h"
#include "data/ShardReader.h"
#include "tests/common/Errors.h"
#include "tests/data/StoreTestUtil.h"

namespace {
using lddpm::testutil::errorOf;
using namespace lddpm;
using namespace lddpm::data;
using data::testing::syntheticSubject;
using data::testing::TempDir;
using data::testing::writeOneShardStore;
using data::testing::writePlannedStore;
namespace fs = std::filesystem;

constexpr std::array<std::int64_t, 3> kGrid = {20, 24, 24};

// A donor whose lesions are three cubes of edge 3, 2 and 1 (27 + 8 + 1 voxels), far apart.
SubjectData cubesDonor() {
  SubjectData d = syntheticSubject("P9_T1", kGrid, 9, /*lesionEdge=*/0);
  d.lesion.slice(0, 2, 5).slice(1, 2, 5).slice(2, 2, 5).fill_(1);
  d.lesion.slice(0, 10, 12).slice(1, 15, 17).slice(2, 15, 17).fill_(1);
  d.lesion[17][5][18] = 1;
  return d;
}

// Sizes and bounding-box edges of each 26-connected component, largest first.
std::vector<std::pair<std::int64_t, std::array<std::int64_t, 3>>> componentShapes(
    const torch::Tensor& lesion) {
  const auto [labels, n] = core::connectedComponents(lesion);
  std::vector<std::pair<std::int64_t, std::array<std::int64_t, 3>>> shapes;
  for (std::int64_t c = 1; c <= n; ++c) {
    const torch::Tensor v = labels.eq(c).nonzero();
    std::array<std::int64_t, 3> edge{};
    for (int a = 0; a < 3; ++a) {
      const torch::Tensor coord = v.select(1, a);
      edge[a] = coord.max().item<std::int64_t>() - coord.min().item<std::int64_t>() + 1;
    }
    shapes.push_back({v.size(0), edge});
  }
  std::sort(shapes.begin(), shapes.end(), [](auto& a, auto& b) { return a.first > b.first; });
  return shapes;
}

TEST(LesionTransplant, MovesEveryComponentWholeIntoTheHostsWhiteMatter) {
  const SubjectData host = syntheticSubject("P1_T1", kGrid, 1);  // WM: the ellipsoid r < 0.5
  const SubjectData donor = cubesDonor();
  TransplantStats stats;
  const SubjectData out = transplantLesions(host, donor, /*seed=*/7, 200, 0.5, &stats);

  EXPECT_EQ(stats.components, 3);
  EXPECT_EQ(stats.placed, 3);
  EXPECT_EQ(stats.donorVoxels, 36);
  EXPECT_EQ(stats.placedVoxels, 36);
  EXPECT_EQ(out.lesion.sum().item<std::int64_t>(), 36);
  const auto shapes = componentShapes(out.lesion);  // same count: none merged or split
  ASSERT_EQ(shapes.size(), 3u);
  EXPECT_EQ(shapes[0].first, 27);
  EXPECT_EQ(shapes[0].second, (std::array<std::int64_t, 3>{3, 3, 3}));
  EXPECT_EQ(shapes[1].first, 8);
  EXPECT_EQ(shapes[1].second, (std::array<std::int64_t, 3>{2, 2, 2}));
  EXPECT_EQ(shapes[2].first, 1);

  // Every lesion voxel in the host's brain; each component at least half in its white matter
  // (WM label or the host's own lesion).
  const auto [labels, n] = core::connectedComponents(out.lesion);
  const torch::Tensor wm = host.tissue.eq(kWhiteMatter) | host.lesion.gt(0);
  const torch::Tensor brain = host.tissue.gt(0) | host.lesion.gt(0);
  EXPECT_TRUE(brain.masked_select(out.lesion.gt(0)).all().item<bool>());
  for (std::int64_t c = 1; c <= n; ++c) {
    const torch::Tensor in = labels.eq(c);
    EXPECT_GE(2 * wm.masked_select(in).sum().item<std::int64_t>(), in.sum().item<std::int64_t>());
  }
  // Anatomy unchanged; id unchanged (the store plan appends the suffix).
  EXPECT_TRUE(out.tissue.equal(host.tissue));
  EXPECT_TRUE(out.image.equal(host.image));
  EXPECT_EQ(out.id, host.id);

  // Patch index rebuilt for the new mask: each row's count is the lesion voxels of the window.
  const auto lesion = out.lesion.accessor<std::uint8_t, 3>();
  const std::int64_t half = out.indexWindow / 2;
  ASSERT_GT(out.patchIndex.size(0), 0);
  std::int64_t rowsWithLesion = 0;
  for (std::int64_t r = 0; r < out.patchIndex.size(0); ++r) {
    const auto row = out.patchIndex[r];
    std::int64_t count = 0;
    for (std::int64_t z = row[0].item<int>() - half; z < row[0].item<int>() + half; ++z)
      for (std::int64_t y = row[1].item<int>() - half; y < row[1].item<int>() + half; ++y)
        for (std::int64_t x = row[2].item<int>() - half; x < row[2].item<int>() + half; ++x)
          if (z >= 0 && z < kGrid[0] && y >= 0 && y < kGrid[1] && x >= 0 && x < kGrid[2])
            count += lesion[z][y][x];
    EXPECT_EQ(row[3].item<int>(), count) << "row " << r;
    rowsWithLesion += count > 0;
  }
  EXPECT_GT(rowsWithLesion, 0);
  EXPECT_EQ(out.lesionVoxels.size(0), 36);
}

TEST(LesionTransplant, SameSeedSameResultOtherSeedOtherPlaces) {
  const SubjectData host = syntheticSubject("P1_T1", kGrid, 1);
  const SubjectData donor = cubesDonor();
  const torch::Tensor a = transplantLesions(host, donor, 3, 200, 0.5).lesion;
  EXPECT_TRUE(a.equal(transplantLesions(host, donor, 3, 200, 0.5).lesion));
  EXPECT_FALSE(a.equal(transplantLesions(host, donor, 4, 200, 0.5).lesion));
}

TEST(LesionTransplant, AComponentThatFitsNowhereIsDroppedAndCounted) {
  SubjectData host = syntheticSubject("P1_T1", kGrid, 1, /*lesionEdge=*/0);
  // White matter: one 2x2x2 block, so the 3-cube cannot be 100 % inside it, the others can.
  host.tissue.masked_fill_(host.tissue.eq(kWhiteMatter), kGreyMatter);
  host.tissue.slice(0, 9, 11).slice(1, 11, 13).slice(2, 11, 13).fill_(kWhiteMatter);
  TransplantStats stats;
  const SubjectData out = transplantLesions(host, cubesDonor(), 1, 500, 1.0, &stats);
  EXPECT_EQ(stats.components, 3);
  EXPECT_EQ(stats.placed, 1);  // the 2-cube fills the block; the single voxel then touches it
  EXPECT_EQ(stats.placedVoxels, 8);
  EXPECT_EQ(out.lesion.sum().item<std::int64_t>(), 8);
  EXPECT_TRUE(out.lesion.slice(0, 9, 11).slice(1, 11, 13).slice(2, 11, 13).all().item<bool>());
}

TEST(LesionTransplant, GridsMustAgree) {
  const SubjectData host = syntheticSubject("P1_T1", kGrid, 1);
  const SubjectData donor = syntheticSubject("P2_T1", {20, 24, 16}, 2);
  EXPECT_NE(errorOf([&] { transplantLesions(host, donor, 1, 10, 0.5); }).find("P2_T1"),
            std::string::npos);
}

// Stores written with ShardWriter (StoreTestUtil.h), one shard each.
struct DerivedStoreFixture : ::testing::Test {
  TempDir dir{"derived"};

  std::string writeStore(const std::string& name, const std::vector<SubjectData>& subjects,
                         const PreprocessOptions& options = PreprocessOptions()) {
    return writeOneShardStore((dir.path / name).string(), subjects, options);
  }
  Manifest build(const StorePlan& plan, const std::string& name) {
    return writePlannedStore(plan, (dir.path / name).string());
  }
  static SubjectData testSubject(const std::string& id) {
    SubjectData s = syntheticSubject(id, kGrid, 5);
    s.split = "test";
    return s;
  }
  std::string realStore() {
    return writeStore("real",
                      {syntheticSubject("P1_T1", kGrid, 1), syntheticSubject("P1_T2", kGrid, 2),
                       cubesDonor(), testSubject("P5")});
  }
};

TEST_F(DerivedStoreFixture, TransplantStoreTakesDonorsOfAnotherPatient) {
  const std::string real = realStore();
  TransplantRequest request;
  request.store = real;
  request.seed = 11;
  const StorePlan plan = planTransplantStore(request);
  const Manifest m = build(plan, "tp");
  std::vector<std::string> ids;
  for (const auto& s : m.subjects) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"P1_T1_tp", "P1_T2_tp", "P9_T1_tp"}));  // train only
  EXPECT_EQ(m.parameters.at("derived_from").at("transplant").at("seed").get<int>(), 11);
  EXPECT_TRUE(m.parameters.value("synthetic", core::Json(nullptr)).is_null());
  // P1's scans can only take P9_T1's cubes (36 voxels in 3 components); P9_T1 takes a P1 cube
  // of edge 3 (syntheticSubject's lesion).
  ShardReader reader((fs::path(dir.path / "tp") / shardFileName(0)).string());
  for (const char* id : {"P1_T1_tp", "P1_T2_tp"}) {
    const SubjectData s = reader.readSubject(id);
    EXPECT_EQ(s.lesion.sum().item<std::int64_t>(), 36) << id;
    EXPECT_EQ(componentShapes(s.lesion).size(), 3u) << id;
    EXPECT_EQ(s.split, "train");
  }
  EXPECT_EQ(reader.readSubject("P9_T1_tp").lesion.sum().item<std::int64_t>(), 27);
  // The same request gives the same store (draws from the seed and ids only).
  const Manifest again = build(planTransplantStore(request), "tp-again");
  EXPECT_EQ(again.shards[0].checksum, m.shards[0].checksum);
}

TEST_F(DerivedStoreFixture, TransplantRefusesWhatCannotWork) {
  const std::string real = realStore();
  TransplantRequest request;
  request.store = real;
  request.split = "test";  // one subject: no donor
  EXPECT_NE(errorOf([&] { planTransplantStore(request); }).find("needs a host and a donor"),
            std::string::npos);
  request.split = "train";
  request.idSuffix = "";
  EXPECT_NE(errorOf([&] { planTransplantStore(request); }).find("--id-suffix"), std::string::npos);
  request.idSuffix = "_tp";
  request.minWhiteMatter = 1.5;
  EXPECT_NE(errorOf([&] { planTransplantStore(request); }).find("--min-white-matter"),
            std::string::npos);
  request.minWhiteMatter = 0.5;
  build(planTransplantStore(request), "tp");
  request.store = (dir.path / "tp").string();  // a transplant store is no host store
  EXPECT_NE(errorOf([&] { planTransplantStore(request); }).find("made from other stores"),
            std::string::npos);
}

TEST_F(DerivedStoreFixture, MergeHoldsEveryStoresSubjectsOnce) {
  const std::string real = realStore();
  PreprocessOptions synthetic;
  synthetic.synthetic = {{"samples", "/somewhere"}};
  const std::string syn = writeStore(
      "syn", {syntheticSubject("P1_T1_syn", kGrid, 3), syntheticSubject("P1_T2_syn", kGrid, 4)},
      synthetic);
  const Manifest m = build(planMergedStore({{real, syn}, "train"}), "merged");
  std::vector<std::string> ids;
  for (const auto& s : m.subjects) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"P1_T1", "P1_T1_syn", "P1_T2", "P1_T2_syn", "P9_T1"}));
  // Synthetic provenance carried over: a merged store with synthetic scans is not a real store.
  EXPECT_EQ(m.parameters.at("synthetic").at(0).at("samples").get<std::string>(), "/somewhere");
  EXPECT_EQ(m.parameters.at("derived_from").at("merge").size(), 2u);
  // Voxels copied as stored.
  const SubjectData a =
      ShardReader((fs::path(syn) / shardFileName(0)).string()).readSubject("P1_T2_syn");
  const SubjectData b =
      ShardReader((dir.path / "merged" / shardFileName(0)).string()).readSubject("P1_T2_syn");
  EXPECT_TRUE(a.image.equal(b.image));
  EXPECT_TRUE(a.lesion.equal(b.lesion));
  EXPECT_TRUE(a.patchIndex.equal(b.patchIndex));
}

TEST_F(DerivedStoreFixture, MergeRefusesDuplicatesOtherGridsAndOneStore) {
  const std::string real = realStore();
  const std::string twin = writeStore("twin", {syntheticSubject("P1_T1", kGrid, 8)});
  std::string e = errorOf([&] { planMergedStore({{real, twin}, "all"}); });
  EXPECT_NE(e.find("'P1_T1'"), std::string::npos) << e;
  EXPECT_NE(e.find(twin), std::string::npos) << e;
  PreprocessOptions coarser;
  coarser.downsample = 2;
  const std::string other = writeStore("other", {syntheticSubject("P7_T1", kGrid, 8)}, coarser);
  e = errorOf([&] { planMergedStore({{real, other}, "all"}); });
  EXPECT_NE(e.find(other), std::string::npos) << e;
  EXPECT_NE(e.find("other parameters"), std::string::npos) << e;
  const std::string narrow = writeStore("narrow", {syntheticSubject("P8_T1", {20, 24, 16}, 8)});
  e = errorOf([&] { planMergedStore({{real, narrow}, "all"}); });
  EXPECT_NE(e.find("[20,24,16]"), std::string::npos) << e;
  EXPECT_THROW(planMergedStore({{real}, "all"}), core::UsageError);
  e = errorOf([&] { planMergedStore({{real, twin}, "test"}); });
  EXPECT_NE(e.find("no 'test' subjects"), std::string::npos) << e;
}

}  // namespace
