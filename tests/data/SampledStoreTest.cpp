// Stores built from `lddpm sample` output (data/SampledStore.h): the synthetic volume replaces the
// image, everything else comes from the source subject; --with-real adds the real subject; every
// bad input is an error naming the file. Source stores are written with ShardWriter
// (StoreTestUtil.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/Error.h"
#include "data/Manifest.h"
#include "data/NiftiIo.h"
#include "data/SampledStore.h"
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

constexpr std::array<std::int64_t, 3> kGrid = {12, 20, 16};

struct SampledStoreFixture : ::testing::Test {
  TempDir dir{"sampled"};
  std::string source = (dir.path / "source").string();
  std::string samples = (dir.path / "samples").string();

  void SetUp() override {
    SubjectData test = syntheticSubject("P3", kGrid, 3);
    test.split = "test";
    writeOneShardStore(
        source, {syntheticSubject("P1_T1", kGrid, 1), syntheticSubject("P2_T1", kGrid, 2), test});
    fs::create_directories(fs::path(samples) / "synthetic");
    std::ofstream(fs::path(samples) / "sampling.json") << R"({"cases": 2})";
    writeSample("P1_T1", 0.25f);
    writeSample("P3", -0.5f);
  }
  void writeSample(const std::string& id, float value, std::array<std::int64_t, 3> grid = kGrid) {
    Volume v;
    v.data = torch::full({grid[0], grid[1], grid[2]}, value);
    writeNifti((fs::path(samples) / "synthetic" / (id + ".nii.gz")).string(), v);
  }
  // Writes the planned store as one rank would and returns its manifest.
  Manifest build(const SampledStoreRequest& request) {
    return writePlannedStore(planSampledStore(request), (dir.path / "out").string());
  }
  SubjectData read(const std::string& store, const std::string& id) {
    return ShardReader((fs::path(store) / shardFileName(0)).string()).readSubject(id);
  }
};

TEST_F(SampledStoreFixture, SyntheticImageOnTheSourceMasks) {
  const Manifest m = build({samples, source});
  ASSERT_EQ(m.subjects.size(), 2u);
  EXPECT_EQ(m.subjects[0].id, "P1_T1_syn");
  EXPECT_EQ(m.subjects[1].id, "P3_syn");
  EXPECT_EQ(m.subjects[1].split, "test");  // the source subject's split
  EXPECT_FALSE(m.parameters.at("synthetic").at("with_real").get<bool>());
  EXPECT_EQ(m.parameters.at("zmax").get<double>(), 3.0);  // the source's preprocessing
  const std::string out = (dir.path / "out").string();
  const SubjectData syn = read(out, "P1_T1_syn");
  const SubjectData real = read(source, "P1_T1");
  EXPECT_TRUE(torch::equal(syn.image, torch::full({1, kGrid[0], kGrid[1], kGrid[2]}, 0.25f)));
  EXPECT_TRUE(torch::equal(syn.lesion, real.lesion));
  EXPECT_TRUE(torch::equal(syn.tissue, real.tissue));
  EXPECT_TRUE(torch::equal(syn.patchIndex, real.patchIndex));
  EXPECT_EQ(syn.affine, real.affine);
  EXPECT_EQ(syn.patient, "P1");
  EXPECT_EQ(syn.timepoint, "T1");
}

TEST_F(SampledStoreFixture, WithRealAndSplitFilter) {
  SampledStoreRequest request{samples, source, "train", /*withReal=*/true};
  const Manifest m = build(request);
  ASSERT_EQ(m.subjects.size(), 2u);  // P3 is a test case; P2_T1 was not sampled
  EXPECT_EQ(m.subjects[0].id, "P1_T1");
  EXPECT_EQ(m.subjects[1].id, "P1_T1_syn");
  EXPECT_TRUE(
      torch::equal(read((dir.path / "out").string(), "P1_T1").image, read(source, "P1_T1").image));
}

TEST_F(SampledStoreFixture, BadInputsNameTheFile) {
  EXPECT_NE(errorOf([&] {
              planSampledStore({source, source});
            }).find("no sampling.json"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              planSampledStore({samples, source, "nonesuch"});
            }).find("no sampled case has split 'nonesuch'"),
            std::string::npos);
  writeSample("P9", 0.f);  // not in the source store
  EXPECT_NE(errorOf([&] {
              planSampledStore({samples, source});
            }).find("P9.nii.gz"),
            std::string::npos);
  fs::remove(fs::path(samples) / "synthetic" / "P9.nii.gz");
  writeSample("P1_T1", 0.f, {12, 20, 8});  // another grid: caught when the subject is written
  EXPECT_NE(errorOf([&] { build({samples, source}); }).find("P1_T1.nii.gz"), std::string::npos);
  writeSample("P1_T1", std::nanf(""));
  EXPECT_NE(errorOf([&] { build({samples, source}); }).find("NaN"), std::string::npos);
}

TEST_F(SampledStoreFixture, SyntheticSourceRefused) {
  build({samples, source});
  EXPECT_NE(errorOf([&] {
              planSampledStore({samples, (dir.path / "out").string()});
            }).find("itself a store of synthetic scans"),
            std::string::npos);
}

}  // namespace
