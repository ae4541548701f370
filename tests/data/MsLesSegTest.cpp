// MSLesSeg discovery and scan checks on tiny synthetic folders: the layout, the doubled top
// folder, timepoint T1 vs modality T1, missing modalities, and every per-scan inconsistency.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "core/Error.h"
#include "data/MsLesSeg.h"
#include "data/NiftiIo.h"
#include "tests/common/Errors.h"
#include "tests/common/TempDir.h"

namespace {
using lddpm::testutil::errorOf;
using namespace lddpm;
using data::Modality;
using data::Volume;
namespace fs = std::filesystem;

struct MsLesSegTest : ::testing::Test {
  lddpm::testing::TempDir tmp{"mslesseg"};
  const fs::path dir = tmp.path;

  static Volume volume(float value, std::array<std::int64_t, 3> shape = {4, 5, 6}) {
    Volume v;
    v.data = torch::full({shape[2], shape[1], shape[0]}, value);
    return v;
  }
  // Writes one scan's four modalities under `folder` as `stem`_{MOD}.nii.gz.
  static void writeScan(const fs::path& folder, const std::string& stem,
                        std::vector<Modality> skip = {}) {
    fs::create_directories(folder);
    for (Modality m : data::kAllModalities) {
      if (std::find(skip.begin(), skip.end(), m) != skip.end()) continue;
      const Volume v = volume(m == Modality::Mask ? 1.0f : 100.0f);
      data::writeNifti((folder / (stem + "_" + data::modalityName(m) + ".nii.gz")).string(), v);
    }
  }
  void writeSmallDataset(const fs::path& root) {
    writeScan(root / "train/P1/T1", "P1_T1");
    writeScan(root / "train/P1/T2", "P1_T2");
    writeScan(root / "train/P10/T1", "P10_T1");
    writeScan(root / "train/P2/T1", "P2_T1");
    writeScan(root / "test/P60", "P60");
  }
};

TEST_F(MsLesSegTest, FindsEveryScanInNumericOrder) {
  writeSmallDataset(dir);
  const data::DatasetIndex index = data::discoverMsLesSeg(dir.string());
  ASSERT_EQ(index.scans.size(), 5u);
  std::vector<std::string> ids;
  for (const auto& s : index.scans) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"P1_T1", "P1_T2", "P2_T1", "P10_T1", "P60"}));
  EXPECT_EQ(index.scans[0].split, "train");
  EXPECT_EQ(index.scans[0].patient, "P1");
  EXPECT_EQ(index.scans[0].timepoint, "T1");
  EXPECT_EQ(index.scans[4].split, "test");
  EXPECT_EQ(index.scans[4].timepoint, "");
  EXPECT_EQ(index.scans[4].files.size(), 4u);
}

// Timepoint T1 vs modality T1: P1_T1_T1 is T1-weighted, P1_T1_T2 is T2-weighted, both of
// timepoint T1. A suffix match on "T1.nii.gz" or "_T2" would confuse them.
TEST_F(MsLesSegTest, TimepointT1IsNotModalityT1) {
  writeSmallDataset(dir);
  const auto index = data::discoverMsLesSeg(dir.string());
  const auto& scan = index.scans[0];  // P1_T1
  EXPECT_EQ(fs::path(scan.files.at(Modality::T1)).filename(), "P1_T1_T1.nii.gz");
  EXPECT_EQ(fs::path(scan.files.at(Modality::T2)).filename(), "P1_T1_T2.nii.gz");
  const auto& tp2 = index.scans[1];  // P1_T2: its T2 is P1_T2_T2, its T1 is P1_T2_T1
  EXPECT_EQ(fs::path(tp2.files.at(Modality::T1)).filename(), "P1_T2_T1.nii.gz");
  EXPECT_EQ(fs::path(tp2.files.at(Modality::T2)).filename(), "P1_T2_T2.nii.gz");
}

TEST_F(MsLesSegTest, ToleratesDoubledTopFolder) {
  writeSmallDataset(dir / "MSLesSeg" / "MSLesSeg");
  const auto index = data::discoverMsLesSeg(dir.string());
  EXPECT_EQ(index.scans.size(), 5u);
  EXPECT_EQ(fs::path(index.root), dir / "MSLesSeg" / "MSLesSeg");
}

TEST_F(MsLesSegTest, MissingModalitiesAreAllListedWithFolderAndFileName) {
  writeScan(dir / "train/P1/T1", "P1_T1", {Modality::Mask});
  writeScan(dir / "test/P60", "P60", {Modality::T1, Modality::Flair});
  // A modality under a wrong name does not count: T1 of timepoint T1 named as if by suffix.
  std::ofstream(dir / "test/P60/P60_t1.nii.gz") << "x";
  const std::string m = errorOf([&] { data::discoverMsLesSeg(dir.string()); });
  EXPECT_NE(m.find("P1_T1_MASK.nii.gz"), std::string::npos) << m;
  EXPECT_NE(m.find("P60_T1.nii.gz"), std::string::npos) << m;
  EXPECT_NE(m.find("P60_FLAIR.nii.gz"), std::string::npos) << m;
  EXPECT_NE(m.find((dir / "test/P60").string()), std::string::npos) << m;
  EXPECT_NE(m.find("3 problems"), std::string::npos) << m;
}

TEST_F(MsLesSegTest, EmptyOrNonDatasetFolderIsAnError) {
  EXPECT_NE(errorOf([&] { data::discoverMsLesSeg(dir.string()); }).find("no MSLesSeg scans"),
            std::string::npos);
  EXPECT_THROW(data::discoverMsLesSeg((dir / "absent").string()), core::IoError);
}

TEST_F(MsLesSegTest, ConsistentScanPasses) {
  writeSmallDataset(dir);
  const auto index = data::discoverMsLesSeg(dir.string());
  for (const auto& scan : index.scans) EXPECT_NO_THROW(data::checkScanConsistency(scan)) << scan.id;
}

TEST_F(MsLesSegTest, EveryInconsistencyIsNamed) {
  writeSmallDataset(dir);
  const auto scan = data::discoverMsLesSeg(dir.string()).scans[0];
  const auto volumes = [&] {
    std::map<Modality, Volume> v;
    for (Modality m : data::kAllModalities) v[m] = volume(m == Modality::Mask ? 1.0f : 100.0f);
    return v;
  };
  auto problem = [&](std::map<Modality, Volume> v) {
    return errorOf([&] { data::checkScanConsistency(scan, v); });
  };
  {
    auto v = volumes();
    v[Modality::T2] = volume(100.0f, {4, 5, 7});
    const std::string m = problem(v);
    EXPECT_NE(m.find("P1_T1_T2.nii.gz"), std::string::npos) << m;
    EXPECT_NE(m.find("shape"), std::string::npos) << m;
  }
  {
    auto v = volumes();
    v[Modality::Mask].affine[3] += 0.01;  // 10 µm shift: above the 1e-3 mm tolerance
    const std::string m = problem(v);
    EXPECT_NE(m.find("P1_T1_MASK.nii.gz"), std::string::npos) << m;
    EXPECT_NE(m.find("affine"), std::string::npos) << m;
    v[Modality::Mask].affine[3] -= 0.0099;  // within tolerance
    EXPECT_EQ(problem(v), "<no error>");
  }
  {
    auto v = volumes();
    v[Modality::T1].data[1][2][3] = std::numeric_limits<float>::quiet_NaN();
    v[Modality::Flair].data[0][0][0] = std::numeric_limits<float>::infinity();
    const std::string m = problem(v);
    EXPECT_NE(m.find("P1_T1_T1.nii.gz: 1 NaN/Inf"), std::string::npos) << m;
    EXPECT_NE(m.find("P1_T1_FLAIR.nii.gz: 1 NaN/Inf"), std::string::npos) << m;
  }
  {
    auto v = volumes();
    v[Modality::Mask].data[0][1][1] = 2.0f;
    v[Modality::Mask].data[0][1][2] = 0.5f;
    const std::string m = problem(v);
    EXPECT_NE(m.find("P1_T1_MASK.nii.gz: mask is not binary (2 voxels"), std::string::npos) << m;
  }
  {
    auto v = volumes();
    v[Modality::Flair] = volume(0.0f);
    const std::string m = problem(v);
    EXPECT_NE(m.find("P1_T1_FLAIR.nii.gz: empty brain"), std::string::npos) << m;
  }
}

TEST_F(MsLesSegTest, MismatchedFilesOnDiskAreNamed) {
  writeSmallDataset(dir);
  const auto scan = data::discoverMsLesSeg(dir.string()).scans[0];
  data::writeNifti(scan.files.at(Modality::Mask), volume(1.0f, {4, 5, 5}), data::NiftiDtype::UInt8);
  const std::string m = errorOf([&] { data::checkScanConsistency(scan); });
  EXPECT_NE(m.find("P1_T1_MASK.nii.gz: shape"), std::string::npos) << m;
  const std::string h = errorOf([&] { data::checkScanHeaders(scan); });
  EXPECT_NE(h.find("P1_T1_MASK.nii.gz: shape 4x5x5"), std::string::npos) << h;

  Volume shifted = volume(100.0f);
  shifted.affine[7] = 2.0;  // 2 mm along y
  data::writeNifti(scan.files.at(Modality::Mask), volume(1.0f), data::NiftiDtype::UInt8);
  data::writeNifti(scan.files.at(Modality::T2), shifted);
  const std::string a = errorOf([&] { data::checkScanHeaders(scan); });
  EXPECT_NE(a.find("P1_T1_T2.nii.gz: affine differs"), std::string::npos) << a;
}

}  // namespace
