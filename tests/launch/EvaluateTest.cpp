// `lddpm evaluate images` end to end on small NIfTI files written here: closed-form errors in the
// JSON, file and folder modes, the markdown table, --out, and the errors a user meets (shapes that
// differ, cases on one side only, paths that do not exist, a missing mode).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/Json.h"
#include "data/NiftiIo.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {
namespace fs = std::filesystem;
using lddpm::core::Json;

struct Result {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

Result run(const std::string& args, const fs::path& dir, const std::string& launcher = "") {
  const fs::path errFile = dir / "stderr.txt";
  const std::string cmd = launcher + LDDPM_BINARY + " " + args + " 2>" + errFile.string();
  const auto shell = lddpm::testutil::runShell(cmd);
  Result r;
  r.code = shell.code;
  r.out = shell.out;
  std::ifstream in(errFile);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

constexpr int kSide = 24;          // two MS-SSIM scales with the 11-voxel window (24 → 12)
constexpr double kVoxels = 13824;  // 24³

// real: 0 outside the brain block [4, 20)³ (4096 voxels), 1 + x mod 3 inside (range 3).
// synthetic: real + 0.5 on the block's slices z 4..5, − 1 on its slices z 10..11 (512 voxels each).
// lesion: the block's slices z 10..13 (1024 voxels, holding every −1 error and no +0.5).
struct Scans {
  torch::Tensor real = torch::zeros({kSide, kSide, kSide});
  torch::Tensor synthetic;
  torch::Tensor lesion = torch::zeros({kSide, kSide, kSide});
  Scans() {
    torch::Tensor block = real.slice(0, 4, 20).slice(1, 4, 20).slice(2, 4, 20);
    block.copy_(1 + torch::arange(4, 20).remainder(3).to(torch::kFloat32).expand({16, 16, 16}));
    synthetic = real.clone();
    synthetic.slice(0, 4, 6).slice(1, 4, 20).slice(2, 4, 20).add_(0.5);
    synthetic.slice(0, 10, 12).slice(1, 4, 20).slice(2, 4, 20).add_(-1.0);
    lesion.slice(0, 10, 14).slice(1, 4, 20).slice(2, 4, 20).fill_(1);
  }
  static constexpr double mse = (512 * 0.25 + 512 * 1.0) / kVoxels;
  static constexpr double mae = (512 * 0.5 + 512 * 1.0) / kVoxels;
  static constexpr double lesionMae = 512 / 1024.0;
  static constexpr double lesionMse = 512 / 1024.0;
  static constexpr double brainMae = (512 * 0.5 + 512 * 1.0) / 4096;
};

void write(const fs::path& path, const torch::Tensor& voxels) {
  lddpm::data::Volume v;
  v.data = voxels.contiguous();
  lddpm::data::writeNifti(path.string(), v);
}

struct EvaluateTest : ::testing::Test {
  lddpm::testing::TempDir tmp{"evaluate"};
  const fs::path dir = tmp.path;
  Scans scans;
  std::string path(const std::string& name) { return (dir / name).string(); }
};

const char* const kKeys[] = {"mse",
                             "mae",
                             "psnr",
                             "ssim",
                             "ms_ssim",
                             "ms_ssim_scales",
                             "brain_ssim",
                             "brain_psnr",
                             "brain_mae",
                             "background_ssim",
                             "background_psnr",
                             "background_mae",
                             "lesion_mae",
                             "lesion_mse",
                             "lesion_contrast",
                             "csf_contrast",
                             "gm_contrast",
                             "wm_texture"};

// The first (here: the only) generator's block of the report.
const Json& generator(const Json& report) { return report.at("generators").at(0); }

TEST_F(EvaluateTest, FilePairGivesClosedFormErrors) {
  write(dir / "real.nii.gz", scans.real);
  write(dir / "synthetic.nii.gz", scans.synthetic);
  write(dir / "lesion.nii.gz", scans.lesion);
  const Result r =
      run("evaluate images --real " + path("real.nii.gz") + " --synthetic " +
              path("synthetic.nii.gz") + " --mask " + path("lesion.nii.gz") + " --json",
          dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  ASSERT_EQ(j["cases"].size(), 1u);
  ASSERT_EQ(j["generators"].size(), 1u);  // no tissue labels: no reference rows
  EXPECT_EQ(generator(j)["name"], "synthetic.nii.gz");
  const Json& c = generator(j)["cases"][0];
  for (const char* key : kKeys) EXPECT_TRUE(c.contains(key)) << key;
  EXPECT_EQ(c.size(), std::size(kKeys) + 1);  // the metrics and "case", nothing else
  EXPECT_TRUE(c["wm_texture"].is_null());     // no tissue labels
  EXPECT_NEAR(c["mse"].get<double>(), Scans::mse, 1e-12);
  EXPECT_NEAR(c["mae"].get<double>(), Scans::mae, 1e-12);
  EXPECT_NEAR(c["psnr"].get<double>(), 10 * std::log10(9 / Scans::mse), 1e-9);
  EXPECT_NEAR(c["lesion_mae"].get<double>(), Scans::lesionMae, 1e-12);
  EXPECT_NEAR(c["lesion_mse"].get<double>(), Scans::lesionMse, 1e-12);
  EXPECT_NEAR(c["brain_mae"].get<double>(), Scans::brainMae, 1e-12);
  EXPECT_EQ(c["ms_ssim_scales"].get<int>(), 2);
  EXPECT_GT(c["ssim"].get<double>(), 0.0);
  EXPECT_LT(c["ssim"].get<double>(), 1.0);
  // The brain here is the real scan's nonzero block; the background's errors are all zero.
  EXPECT_NEAR(c["background_mae"].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(c["brain_psnr"].get<double>(), 10 * std::log10(9 / (Scans::mse * kVoxels / 4096)),
              1e-9);
  EXPECT_NEAR(generator(j)["mean"]["mse"].get<double>(), Scans::mse, 1e-12);
  EXPECT_TRUE(generator(j)["sd"]["mse"].is_null());  // one case has no spread

  // A given brain mask replaces the real scan's nonzero voxels; a given range replaces max − min.
  const Result given = run("evaluate images --json --real " + path("real.nii.gz") +
                               " --synthetic " + path("synthetic.nii.gz") + " --brain-mask " +
                               path("lesion.nii.gz") + " --data-range 10",
                           dir);
  ASSERT_EQ(given.code, 0) << given.err;
  const Json g = generator(Json::parse(given.out))["cases"][0];
  EXPECT_NEAR(g["brain_mae"].get<double>(), Scans::lesionMae, 1e-12);
  EXPECT_NEAR(g["psnr"].get<double>(), 10 * std::log10(100 / Scans::mse), 1e-9);
  EXPECT_TRUE(g["lesion_mae"].is_null());
}

TEST_F(EvaluateTest, IdenticalScansAndNoMask) {
  write(dir / "real.nii", scans.real);
  const Result r =
      run("evaluate images --json --real " + path("real.nii") + " --synthetic " + path("real.nii"),
          dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json c = generator(Json::parse(r.out))["cases"][0];
  EXPECT_NEAR(c["ssim"].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(c["ms_ssim"].get<double>(), 1.0, 1e-12);
  EXPECT_EQ(c["mse"].get<double>(), 0.0);
  EXPECT_TRUE(c["psnr"].is_null());        // infinite
  EXPECT_TRUE(c["lesion_mae"].is_null());  // no --mask
}

TEST_F(EvaluateTest, FoldersGiveRowsAndMeanSd) {
  for (const char* side : {"real", "synthetic", "masks"}) fs::create_directories(dir / side);
  write(dir / "real" / "P1.nii.gz", scans.real);
  write(dir / "synthetic" / "P1.nii.gz", scans.synthetic);
  write(dir / "masks" / "P1.nii.gz", scans.lesion);
  write(dir / "real" / "P2.nii.gz", scans.real);
  write(dir / "synthetic" / "P2.nii.gz", scans.real);  // a perfect case: errors 0
  write(dir / "masks" / "P2.nii.gz", scans.lesion);
  std::ofstream(dir / "real" / "notes.txt") << "not a scan: ignored\n";
  const std::string common = "evaluate images --real " + path("real") + " --synthetic " +
                             path("synthetic") + " --mask " + path("masks");
  const Result r = run(common + " --json --out " + path("out"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  ASSERT_EQ(j["cases"].size(), 2u);
  EXPECT_EQ(j["cases"][0], "P1");
  EXPECT_EQ(j["cases"][1], "P2");
  const Json& g = generator(j);
  EXPECT_EQ(g["name"], "synthetic");  // the folder's name
  EXPECT_EQ(g["cases"][0]["case"], "P1");
  EXPECT_NEAR(g["mean"]["mse"].get<double>(), Scans::mse / 2, 1e-12);
  EXPECT_NEAR(g["sd"]["mse"].get<double>(), Scans::mse / std::sqrt(2.0), 1e-12);  // n − 1
  EXPECT_NEAR(g["mean"]["lesion_mae"].get<double>(), Scans::lesionMae / 2, 1e-12);
  // --out holds the same JSON, the table and the resolved configuration.
  EXPECT_EQ(lddpm::core::readJsonFile(path("out/images.json")), j);
  EXPECT_TRUE(fs::exists(dir / "out" / "images.md"));
  std::ifstream ini(dir / "out" / "config.ini");
  const std::string config((std::istreambuf_iterator<char>(ini)), {});
  EXPECT_NE(config.find("lddpm evaluate images --config"), std::string::npos) << config;
  EXPECT_NE(config.find("mask = " + path("masks")), std::string::npos) << config;

  const Result table = run(common, dir);
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("| case | generator | MSE | MAE |"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("| P1 | synthetic |"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("| mean ± sd over 2 cases |"), std::string::npos) << table.out;
}

TEST_F(EvaluateTest, UnderMpiexecOneRankReports) {
  write(dir / "real.nii.gz", scans.real);
  write(dir / "synthetic.nii.gz", scans.synthetic);
  const Result r = run(
      "evaluate images --real " + path("real.nii.gz") + " --synthetic " + path("synthetic.nii.gz"),
      dir, lddpm::testutil::mpiexecPrefix(LDDPM_MPIEXEC, 2));
  ASSERT_EQ(r.code, 0) << r.err;
  // One report: the per-case table's header appears once, not once per rank.
  const std::string header = "| case | generator |";
  ASSERT_NE(r.out.find(header), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(header), r.out.rfind(header)) << r.out;
}

TEST_F(EvaluateTest, CasesOnOneSideOnlyAreNamed) {
  for (const char* side : {"real", "synthetic"}) fs::create_directories(dir / side);
  write(dir / "real" / "P1.nii.gz", scans.real);
  write(dir / "real" / "P2.nii.gz", scans.real);
  write(dir / "synthetic" / "P1.nii.gz", scans.real);
  write(dir / "synthetic" / "P3.nii.gz", scans.real);
  const Result r = run("evaluate images --real " + path("real") + " --synthetic " +
                           path("synthetic") + " --out " + path("out"),
                       dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("P2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("P3"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "images.json"));  // nothing half-written
}

TEST_F(EvaluateTest, MismatchedShapesNameBothFiles) {
  write(dir / "real.nii.gz", scans.real);
  write(dir / "small.nii.gz", scans.real.slice(2, 0, 20));
  const Result r =
      run("evaluate images --real " + path("real.nii.gz") + " --synthetic " + path("small.nii.gz"),
          dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(path("real.nii.gz")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path("small.nii.gz")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("20x24x24"), std::string::npos) << r.err;
}

TEST_F(EvaluateTest, NonFiniteVoxelsAreNamed) {
  write(dir / "real.nii.gz", scans.real);
  // nibabel writes the NaN, as a user's own Python pipeline would.
  const std::string script =
      "import sys, numpy as np, nibabel as nib; src = nib.load(sys.argv[1]); "
      "a = np.asarray(src.dataobj).copy(); a[5, 4, 3] = np.nan; "
      "nib.save(nib.Nifti1Image(a, src.affine), sys.argv[2])";
  const std::string make = std::string(LDDPM_PYTHON) + " -c '" + script + "' " +
                           path("real.nii.gz") + " " + path("broken.nii.gz");
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  const Result r =
      run("evaluate images --real " + path("real.nii.gz") + " --synthetic " + path("broken.nii.gz"),
          dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(path("broken.nii.gz")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NaN"), std::string::npos) << r.err;
}

TEST_F(EvaluateTest, UsageErrorsNameTheOption) {
  write(dir / "real.nii.gz", scans.real);
  const Result missing = run(
      "evaluate images --real " + path("nope.nii.gz") + " --synthetic " + path("real.nii.gz"), dir);
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("--real"), std::string::npos) << missing.err;
  const Result mask = run("evaluate images --real " + path("real.nii.gz") + " --synthetic " +
                              path("real.nii.gz") + " --mask " + path("none"),
                          dir);
  EXPECT_EQ(mask.code, 2);
  EXPECT_NE(mask.err.find("--mask"), std::string::npos) << mask.err;
  const Result mixed =
      run("evaluate images --real " + path("real.nii.gz") + " --synthetic " + dir.string(), dir);
  EXPECT_EQ(mixed.code, 2);
  EXPECT_NE(mixed.err.find("--synthetic"), std::string::npos) << mixed.err;
  const Result noSynthetic = run("evaluate images --real " + path("real.nii.gz"), dir);
  EXPECT_EQ(noSynthetic.code, 2);
  EXPECT_NE(noSynthetic.err.find("synthetic"), std::string::npos) << noSynthetic.err;
  EXPECT_EQ(run("evaluate", dir).code, 2);
  const Result badMode = run("evaluate pictures", dir);
  EXPECT_EQ(badMode.code, 2);
  EXPECT_NE(badMode.err.find("pictures"), std::string::npos) << badMode.err;
  const Result help = run("evaluate --help", dir);
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("images"), std::string::npos) << help.out;
  const Result imagesHelp = run("evaluate images --help", dir);
  EXPECT_EQ(imagesHelp.code, 0);
  EXPECT_NE(imagesHelp.out.find("--synthetic"), std::string::npos) << imagesHelp.out;
}

}  // namespace
