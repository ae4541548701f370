// NIfTI reading and writing against an independent tool: every fixture is written by nibabel
// (tests/data/nifti_fixtures.py) and every file we write is read back by nibabel. Expected voxels
// and affines come from that script, never from the code under test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/Error.h"
#include "core/Json.h"
#include "data/NiftiIo.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm;
using data::Affine;
using data::NiftiDtype;
using data::NiftiHeaderInfo;
using data::Volume;
namespace fs = std::filesystem;

const std::string kScript = LDDPM_TESTS_DATA_DIR "/nifti_fixtures.py";

std::string shell(const std::string& cmd, int* code = nullptr) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  if (code != nullptr) *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::vector<double> readRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  std::vector<double> v(static_cast<size_t>(in.tellg()) / sizeof(double));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()),
          static_cast<std::streamsize>(v.size() * sizeof(double)));
  return v;
}

Affine affineOf(const core::Json& j) {
  Affine a{};
  for (size_t i = 0; i < 16; ++i) a[i] = j.at(i).get<double>();
  return a;
}

// float32 voxels against nibabel's float64: equal up to float32 rounding.
void expectVoxels(const Volume& v, const std::vector<double>& expected, const std::string& what) {
  ASSERT_EQ(static_cast<size_t>(v.data.numel()), expected.size()) << what;
  const float* got = v.data.contiguous().data_ptr<float>();
  int bad = 0;
  for (size_t i = 0; i < expected.size() && bad < 5; ++i) {
    const double tol = 1e-6 * std::max(1.0, std::fabs(expected[i]));
    if (!(std::fabs(got[i] - expected[i]) <= tol)) {
      ADD_FAILURE() << what << ": voxel " << i << " is " << got[i] << ", nibabel reads "
                    << expected[i];
      ++bad;
    }
  }
}

void expectAffine(const Affine& got, const Affine& want, const std::string& what) {
  for (size_t i = 0; i < 16; ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5) << what << " affine[" << i << "]";
}

class NiftiFixtures : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<lddpm::testing::TempDir>("nifti");
    dir_ = tmp_->path;
    int code = 0;
    const std::string out = shell(
        std::string(LDDPM_PYTHON) + " " + kScript + " make " + dir_.string() + " 2>&1", &code);
    ASSERT_EQ(code, 0) << "fixture script failed (needs Debian's python3-nibabel):\n" << out;
    cases_ = core::readJsonFile((dir_ / "cases.json").string());
  }
  static void TearDownTestSuite() { tmp_.reset(); }

 protected:
  static std::string file(const std::string& name) { return cases_.at(name).at("file"); }

  // Our reader against nibabel for one fixture: header, geometry and every voxel.
  static void checkCase(const std::string& name) {
    SCOPED_TRACE(name);
    const core::Json& c = cases_.at(name);
    NiftiHeaderInfo info;
    const Volume v = data::readNifti(c.at("file"), &info);
    const auto shape = c.at("shape").get<std::vector<std::int64_t>>();
    EXPECT_EQ(info.shape[0], shape[0]);
    EXPECT_EQ(info.shape[1], shape[1]);
    EXPECT_EQ(info.shape[2], shape[2]);
    EXPECT_EQ(v.nx(), shape[0]);
    EXPECT_EQ(v.ny(), shape[1]);
    EXPECT_EQ(v.nz(), shape[2]);
    EXPECT_EQ(info.datatype, c.at("datatype").get<std::string>());
    EXPECT_EQ(info.sformCode, c.at("sform_code").get<int>());
    EXPECT_EQ(info.qformCode, c.at("qform_code").get<int>());
    EXPECT_EQ(info.dim, c.at("dim0").get<int>());
    EXPECT_EQ(info.niftiVersion, c.at("nifti_version").get<int>());
    for (int d = 0; d < 3; ++d) EXPECT_NEAR(v.spacing[d], c.at("spacing")[d].get<double>(), 1e-6);
    expectAffine(v.affine, affineOf(c.at("affine")), name);
    expectVoxels(v, readRaw(c.at("raw")), name);

    // The header-only read agrees with the full read.
    const NiftiHeaderInfo header = data::readNiftiHeader(c.at("file"));
    EXPECT_EQ(header.shape, info.shape);
    EXPECT_EQ(header.datatype, info.datatype);
    expectAffine(header.affine, info.affine, name + " (header only)");
  }

  static inline std::unique_ptr<lddpm::testing::TempDir> tmp_;  // the fixtures, made once
  static inline fs::path dir_;
  static core::Json cases_;
};
core::Json NiftiFixtures::cases_;

TEST_F(NiftiFixtures, EveryDatatypeMatchesNibabel) {
  for (const char* dt : {"uint8", "int8", "int16", "uint16", "int32", "float32", "float64"}) {
    checkCase(std::string("dtype_") + dt);
  }
}

TEST_F(NiftiFixtures, ScalingIsAppliedLikeNibabel) {
  checkCase("scaled_int16");
  checkCase("scaled_uint8_inter_only");
  EXPECT_EQ(cases_.at("scaled_int16").at("min").get<double>() < -32768, true);  // scaling was real
}

TEST_F(NiftiFixtures, ZeroOrNanSlopeMeansNoScaling) {
  checkCase("slope_zero");
  checkCase("slope_nan");
}

TEST_F(NiftiFixtures, AffinePrecedenceSformQformPixdim) {
  checkCase("sform_over_qform");
  checkCase("qform_only");
  checkCase("pixdim_only");
  const Volume v = data::readNifti(file("pixdim_only"));
  expectAffine(v.affine, data::scaledAffine({2, 3, 4}), "pixdim_only closed form");
}

TEST_F(NiftiFixtures, FourDWithOneVolumeReadsAsThreeD) { checkCase("four_d_one_volume"); }

TEST_F(NiftiFixtures, PlainBigEndianAndNifti2) {
  checkCase("plain_nii");
  checkCase("big_endian_int16");
  checkCase("nifti2_float32");
}

TEST_F(NiftiFixtures, TwoDAndMultiVolumeAreRefusedNamingTheFile) {
  for (const char* name : {"bad_two_d", "bad_four_d"}) {
    const std::string path = (dir_ / (std::string(name) + ".nii.gz")).string();
    try {
      data::readNifti(path);
      ADD_FAILURE() << name << " was accepted";
    } catch (const core::IoError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name == std::string("bad_two_d") ? "2-D" : "2 volumes"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(data::readNiftiHeader(path), core::IoError);
  }
}

// Copies `src` to `dst` keeping the first `keep` bytes, optionally flipping bytes in the middle.
void damagedCopy(const std::string& src, const std::string& dst, double keepFraction, bool flip) {
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(static_cast<size_t>(bytes.size() * keepFraction));
  if (flip) {
    for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 64; ++i)
      bytes[i] = static_cast<char>(~bytes[i]);
  }
  std::ofstream(dst, std::ios::binary) << bytes;
}

TEST_F(NiftiFixtures, TruncatedOrCorruptGzipIsAnIoErrorNamingTheFile) {
  const std::string src = file("large_float32");
  struct Damage {
    const char* name;
    double keep;
    bool flip;
  };
  for (const Damage d :
       {Damage{"truncated.nii.gz", 0.5, false}, Damage{"corrupt.nii.gz", 1.0, true},
        Damage{"header-cut.nii.gz", 0.002, false}}) {
    const std::string path = (dir_ / d.name).string();
    damagedCopy(src, path, d.keep, d.flip);
    try {
      data::readNifti(path);
      ADD_FAILURE() << d.name << " was read without error";
    } catch (const core::IoError& e) {
      EXPECT_EQ(e.path(), path);
    }
  }
  EXPECT_THROW(data::readNifti((dir_ / "absent.nii.gz").string()), core::IoError);
  EXPECT_THROW(data::readNifti(dir_.string()), core::IoError);
}

// A header whose dims promise far more voxels than the file holds (a damaged or hostile
// header): refused as truncated after reading what is there, without allocating the promised
// size; dims whose product overflows int64 are refused before reading. Headers from nibabel.
TEST_F(NiftiFixtures, HugeOrOverflowingDimsAreRefusedWithoutAllocatingThem) {
  // nibabel writes a valid 2x2x2 file; its dims are then patched in the header bytes.
  const std::string script = (dir_ / "patch_dims.py").string();
  std::ofstream(script)
      << "import gzip, struct, sys\n"
         "import numpy as np, nibabel as nib\n"
         "path, two = sys.argv[1], sys.argv[2] == '2'\n"
         "cls = nib.Nifti2Image if two else nib.Nifti1Image\n"
         "b = bytearray(cls(np.zeros((2, 2, 2), np.float32), np.eye(4)).to_bytes())\n"
         "if two:\n"
         "    struct.pack_into('<3q', b, 24, 4611686018427387904, 4, 4)\n"
         "else:\n"
         "    struct.pack_into('<3h', b, 42, 30000, 30000, 30000)\n"
         "open(path, 'wb').write(gzip.compress(bytes(b)) if path.endswith('.gz') else bytes(b))\n";
  for (const auto& [name, version] : {std::pair<std::string, std::string>{"huge.nii.gz", "1"},
                                      {"huge.nii", "1"},
                                      {"overflow.nii", "2"}}) {
    const std::string path = (dir_ / name).string();
    int code = 0;
    const std::string out = shell(
        std::string(LDDPM_PYTHON) + " " + script + " " + path + " " + version + " 2>&1", &code);
    ASSERT_EQ(code, 0) << out;
    try {
      data::readNifti(path);
      ADD_FAILURE() << name << " was read without error";
    } catch (const core::IoError& e) {
      EXPECT_EQ(e.path(), path);
      const std::string what = e.what();
      EXPECT_TRUE(what.find("truncated") != std::string::npos ||
                  what.find("overflow") != std::string::npos)
          << what;
    }
  }
}

// What we write, nibabel reads back with the same voxels and geometry.
void checkWrittenByUs(const std::string& path, const Volume& v, const std::string& datatype) {
  SCOPED_TRACE(path);
  const std::string raw = path + ".f64";
  int code = 0;
  const std::string out =
      shell(std::string(LDDPM_PYTHON) + " " + kScript + " dump " + path + " " + raw, &code);
  ASSERT_EQ(code, 0) << out;
  const core::Json j = core::Json::parse(out);
  EXPECT_EQ(j.at("datatype").get<std::string>(), datatype);
  EXPECT_EQ(j.at("shape")[0].get<std::int64_t>(), v.nx());
  EXPECT_EQ(j.at("shape")[2].get<std::int64_t>(), v.nz());
  EXPECT_GT(j.at("sform_code").get<int>(), 0);
  EXPECT_GT(j.at("qform_code").get<int>(), 0);
  expectAffine(affineOf(j.at("affine")), v.affine, "sform");
  expectAffine(affineOf(j.at("qform")), v.affine, "qform");  // rigid + zooms: exact in a qform
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(j.at("spacing")[d].get<double>(), v.spacing[d], 1e-6);
  expectVoxels(v, readRaw(raw), "nibabel reading our file");
}

Volume obliqueVolume(torch::Tensor data) {
  Volume v;
  v.data = std::move(data);
  const double c = std::cos(0.2), s = std::sin(0.2);
  v.spacing = {0.9, 1.1, 1.3};
  v.affine = {0.9 * c, -1.1 * s, 0, -90, 0.9 * s, 1.1 * c, 0, -126, 0, 0, 1.3, -72, 0, 0, 0, 1};
  return v;
}

TEST_F(NiftiFixtures, OurFilesReadBackInNibabel) {
  torch::manual_seed(3);
  const Volume f = obliqueVolume(torch::randn({6, 7, 8}) * 50);
  const std::string fp = (dir_ / "ours-float.nii.gz").string();
  data::writeNifti(fp, f);
  checkWrittenByUs(fp, f, "float32");

  const Volume m = obliqueVolume((torch::rand({6, 7, 8}) > 0.7).to(torch::kFloat32));
  const std::string mp = (dir_ / "ours-mask.nii.gz").string();
  data::writeNifti(mp, m, NiftiDtype::UInt8);
  checkWrittenByUs(mp, m, "uint8");

  const Volume i = obliqueVolume(torch::randint(-3000, 3000, {6, 7, 8}).to(torch::kFloat32));
  const std::string ip = (dir_ / "ours-int16.nii").string();
  data::writeNifti(ip, i, NiftiDtype::Int16);
  checkWrittenByUs(ip, i, "int16");
}

TEST_F(NiftiFixtures, WriterRefusesOutOfRangeAndLeavesNothing) {
  Volume v = obliqueVolume(torch::full({3, 3, 3}, 300.0f));
  const std::string path = (dir_ / "out-of-range.nii.gz").string();
  EXPECT_THROW(data::writeNifti(path, v, NiftiDtype::UInt8), core::IoError);
  EXPECT_THROW(data::writeNifti((dir_ / "bad-extension.img").string(), v), core::IoError);
  EXPECT_THROW(data::writeNifti((dir_ / "no-such-dir" / "x.nii.gz").string(), v), core::IoError);
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename().string().find("out-of-range"), std::string::npos)
        << "left behind: " << entry.path();
  }
}

// The real Colin27 brain shipped by Debian's mricron-data, with the geometry nibabel reports.
TEST_F(NiftiFixtures, Colin27MatchesNibabel) {
  const std::string path = LDDPM_MRICRON_TEMPLATES "/ch2bet.nii.gz";
  if (!fs::exists(path)) GTEST_SKIP() << path << " missing (Debian package mricron-data)";
  const std::string raw = (dir_ / "ch2bet.f64").string();
  int code = 0;
  const std::string out =
      shell(std::string(LDDPM_PYTHON) + " " + kScript + " dump " + path + " " + raw, &code);
  ASSERT_EQ(code, 0) << out;
  const core::Json j = core::Json::parse(out);
  NiftiHeaderInfo info;
  const Volume v = data::readNifti(path, &info);
  EXPECT_EQ(info.shape[0], 181);
  EXPECT_EQ(info.shape[1], 217);
  EXPECT_EQ(info.shape[2], 181);
  EXPECT_EQ(info.datatype, j.at("datatype").get<std::string>());
  expectAffine(v.affine, affineOf(j.at("affine")), "ch2bet");
  expectVoxels(v, readRaw(raw), "ch2bet");
  fs::remove(raw);
}

}  // namespace
