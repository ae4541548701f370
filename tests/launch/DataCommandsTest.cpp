// The data subcommands as a user runs them: `lddpm inspect` on a file (JSON checked against
// nibabel), on a dataset folder, and on bad input (exit 1 naming the file).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "core/Json.h"
#include "data/MsLesSeg.h"
#include "data/NiftiIo.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm;
namespace fs = std::filesystem;

using Result = lddpm::testutil::ShellResult;
const auto shell = lddpm::testutil::runShell;
Result lddpm(const std::string& args, bool withStderr = true) {
  return shell(std::string(LDDPM_BINARY) + " " + args + (withStderr ? " 2>&1" : " 2>/dev/null"));
}

struct DataCommands : ::testing::Test {
  lddpm::testing::TempDir tmp{"datacli"};
  const fs::path dir = tmp.path;
};

TEST_F(DataCommands, InspectFileJsonMatchesNibabel) {
  const std::string path = LDDPM_MRICRON_TEMPLATES "/ch2bet.nii.gz";
  if (!fs::exists(path)) GTEST_SKIP() << path << " missing (Debian package mricron-data)";
  const Result r = lddpm("inspect --json " + path, false);
  ASSERT_EQ(r.code, 0) << r.out;
  const core::Json got = core::Json::parse(r.out);
  const Result py =
      shell(std::string(LDDPM_PYTHON) + " " LDDPM_TESTS_DATA_DIR "/nifti_fixtures.py dump " + path +
            " /dev/null");
  ASSERT_EQ(py.code, 0) << py.out;
  const core::Json want = core::Json::parse(py.out);
  EXPECT_EQ(got.at("shape"), want.at("shape"));
  EXPECT_EQ(got.at("datatype"), want.at("datatype"));
  EXPECT_EQ(got.at("nonzero"), want.at("nonzero"));
  EXPECT_DOUBLE_EQ(got.at("min").get<double>(), want.at("min").get<double>());
  EXPECT_DOUBLE_EQ(got.at("max").get<double>(), want.at("max").get<double>());
  EXPECT_NEAR(got.at("mean").get<double>(), want.at("mean").get<double>(), 1e-9);
  for (int i = 0; i < 16; ++i) {
    EXPECT_DOUBLE_EQ(got.at("affine")[i / 4][i % 4].get<double>(),
                     want.at("affine")[i].get<double>());
  }
  for (int d = 0; d < 3; ++d) EXPECT_EQ(got.at("spacing")[d], want.at("spacing")[d]);
}

TEST_F(DataCommands, InspectBadFileExitsOneNamingIt) {
  const fs::path bad = dir / "broken.nii.gz";
  std::ofstream(bad) << "not a nifti file at all";
  const Result r = lddpm("inspect " + bad.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(bad.string()), std::string::npos) << r.out;
  EXPECT_EQ(lddpm("inspect " + (dir / "absent.nii").string()).code, 1);
  EXPECT_EQ(lddpm("inspect").code, 2);
}

void writeScan(const fs::path& folder, const std::string& stem,
               std::array<std::int64_t, 3> maskShape = {4, 5, 6}) {
  fs::create_directories(folder);
  for (data::Modality m : data::kAllModalities) {
    const bool mask = m == data::Modality::Mask;
    const auto s = mask ? maskShape : std::array<std::int64_t, 3>{4, 5, 6};
    data::Volume v;
    v.data = torch::full({s[2], s[1], s[0]}, mask ? 1.0f : 50.0f);
    data::writeNifti((folder / (stem + "_" + data::modalityName(m) + ".nii.gz")).string(), v,
                     mask ? data::NiftiDtype::UInt8 : data::NiftiDtype::Float32);
  }
}

TEST_F(DataCommands, InspectDatasetSummarisesAndFlagsInconsistentScans) {
  writeScan(dir / "ds/train/P1/T1", "P1_T1");
  writeScan(dir / "ds/train/P1/T2", "P1_T2");
  writeScan(dir / "ds/test/P3", "P3");
  const Result r = lddpm("inspect --json --check " + (dir / "ds").string(), false);
  ASSERT_EQ(r.code, 0) << r.out;
  const core::Json j = core::Json::parse(r.out);
  EXPECT_EQ(j.at("counts").at("train").at("scans"), 2);
  EXPECT_EQ(j.at("counts").at("train").at("patients"), 1);
  EXPECT_EQ(j.at("counts").at("test").at("scans"), 1);
  EXPECT_EQ(j.at("scans")[0].at("shape"), (std::vector<int>{4, 5, 6}));

  writeScan(dir / "ds/test/P3", "P3", {4, 5, 7});
  const Result bad = lddpm("inspect " + (dir / "ds").string());
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("P3_MASK.nii.gz: shape 4x5x7"), std::string::npos) << bad.out;
}

TEST_F(DataCommands, NanVoxelsAreShownByInspectAndRefusedByCheck) {
  writeScan(dir / "ds/test/P1", "P1");
  const fs::path flair = dir / "ds/test/P1/P1_FLAIR.nii.gz";
  data::Volume v;
  v.data = torch::full({6, 5, 4}, 50.0f);
  v.data[2][3][1] = std::numeric_limits<float>::quiet_NaN();
  data::writeNifti(flair.string(), v);

  const Result file = lddpm("inspect --json " + flair.string(), false);
  ASSERT_EQ(file.code, 0) << file.out;
  const core::Json j = core::Json::parse(file.out);
  EXPECT_EQ(j.at("nonfinite"), 1);
  EXPECT_EQ(j.at("max"), 50.0);  // statistics over the finite voxels

  EXPECT_EQ(lddpm("inspect " + (dir / "ds").string()).code, 0);  // headers are fine
  const Result check = lddpm("inspect --check " + (dir / "ds").string());
  EXPECT_EQ(check.code, 1) << check.out;
  EXPECT_NE(check.out.find("P1_FLAIR.nii.gz: 1 NaN/Inf voxels"), std::string::npos) << check.out;
}

}  // namespace

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A 2 mm cohort keeps this test quick; the 1 mm anatomy and lesions are tested in PhantomTest.
const std::string kTinyCohort =
    " --train-subjects 2 --timepoints 2 --test-subjects 1 --voxel-size 2 --min-lesions 3 --seed 3";

TEST_F(DataCommands, PhantomIsAnMslessegCohortIdenticalUnderMpi) {
  const fs::path plain = dir / "plain", mpi = dir / "mpi";
  const Result r = lddpm("phantom --out " + plain.string() + kTinyCohort);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(plain / "config.ini"));
  EXPECT_NE(slurp(plain / "config.ini").find("seed = 3"), std::string::npos);
  EXPECT_FALSE(fs::exists(plain.string() + ".partial"));

  const data::DatasetIndex index = data::discoverMsLesSeg(plain.string());
  ASSERT_EQ(index.scans.size(), 5u);
  EXPECT_EQ(index.scans[1].id, "P1_T2");
  EXPECT_EQ(index.scans[4].id, "P3");
  for (const auto& scan : index.scans) EXPECT_NO_THROW(data::checkScanConsistency(scan)) << scan.id;

  const Result m = shell(lddpm::testutil::mpiexecPrefix(LDDPM_MPIEXEC, 2) + LDDPM_BINARY +
                         " phantom --out " + mpi.string() + kTinyCohort + " 2>&1");
  ASSERT_EQ(m.code, 0) << m.out;
  int compared = 0;
  for (const auto& entry : fs::recursive_directory_iterator(plain)) {
    if (entry.path().extension() != ".gz") continue;
    const fs::path other = mpi / fs::relative(entry.path(), plain);
    EXPECT_EQ(slurp(entry.path()), slurp(other)) << other;
    ++compared;
  }
  EXPECT_EQ(compared, 20);
}

TEST_F(DataCommands, PhantomBadInputWritesNothing) {
  const fs::path out = dir / "cohort";
  const Result badTemplate =
      lddpm("phantom --out " + out.string() + " --template " + (dir / "absent.nii.gz").string());
  EXPECT_EQ(badTemplate.code, 1) << badTemplate.out;
  EXPECT_NE(badTemplate.out.find("absent.nii.gz"), std::string::npos) << badTemplate.out;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));

  const Result zero = lddpm("phantom --out " + out.string() + " --timepoints 0");
  EXPECT_EQ(zero.code, 2) << zero.out;
  EXPECT_NE(zero.out.find("--timepoints"), std::string::npos) << zero.out;

  fs::create_directories(out);
  const Result exists = lddpm("phantom --out " + out.string());
  EXPECT_EQ(exists.code, 2) << exists.out;
  EXPECT_NE(exists.out.find("--out"), std::string::npos) << exists.out;
}

}  // namespace
