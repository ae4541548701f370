// lddpm preprocess and lddpm inspect STORE as a user runs them, on a tiny dataset written by
// nibabel: 1 rank and `mpiexec -n 2` store the same subject data; inspect verifies checksums and
// names a corrupt shard; an unfinished store and bad options fail with clear messages.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "core/Json.h"
#include "data/Manifest.h"
#include "data/ShardReader.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {
namespace fs = std::filesystem;
using namespace lddpm;

using Result = lddpm::testutil::ShellResult;
Result run(const std::string& cmd) { return lddpm::testutil::runShell(cmd + " 2>&1"); }

std::string lddpm(const std::string& args) { return std::string(LDDPM_BINARY) + " " + args; }

class StoreCli : public ::testing::Test {
 protected:
  // One cohort for the whole suite (generating it is the slow part), removed after the last test.
  static inline std::unique_ptr<lddpm::testing::TempDir> tmp;
  static inline fs::path dir;
  static void SetUpTestSuite() {
    tmp = std::make_unique<lddpm::testing::TempDir>("storecli");
    dir = tmp->path;
    const Result r = run(std::string(LDDPM_PYTHON) + " " + LDDPM_TESTS_DATA_DIR +
                         "/tiny_mslesseg.py " + (dir / "data").string() + " 3 1 24x32x24");
    ASSERT_EQ(r.code, 0) << r.out;
  }
  static void TearDownTestSuite() { tmp.reset(); }
  std::string data() const { return (dir / "data").string(); }
};

TEST_F(StoreCli, OneAndTwoRanksStoreTheSameSubjects) {
  const std::string one = (dir / "one").string(), two = (dir / "two").string();
  Result r =
      run(lddpm("preprocess --threads 1 --compression zstd --data " + data() + " --out " + one));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 scans in 1 shard(s)"), std::string::npos) << r.out;
  r = run(std::string(LDDPM_MPIEXEC) + " -n 2 --oversubscribe " +
          lddpm("preprocess --threads 1 --compression zstd --data " + data() + " --out " + two));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 scans in 2 shard(s)"), std::string::npos) << r.out;

  const data::Manifest m1 = data::readManifest(one), m2 = data::readManifest(two);
  ASSERT_EQ(m1.subjects.size(), 4u);
  ASSERT_EQ(m2.subjects.size(), 4u);
  EXPECT_EQ(m1.parameters, m2.parameters);
  EXPECT_TRUE(fs::exists(fs::path(one) / "config.ini"));
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& a = m1.subjects[i];
    const auto& b = m2.subjects[i];
    ASSERT_EQ(a.id, b.id);
    EXPECT_EQ(a.lesionVoxels, 27);
    data::ShardReader ra(one + "/" + a.shard), rb(two + "/" + b.shard);
    const auto sa = ra.readSubject(a.id), sb = rb.readSubject(b.id);
    EXPECT_TRUE(torch::equal(sa.image, sb.image)) << a.id;
    EXPECT_TRUE(torch::equal(sa.tissue, sb.tissue)) << a.id;
    EXPECT_TRUE(torch::equal(sa.lesion, sb.lesion)) << a.id;
    EXPECT_EQ(sa.affine, sb.affine);
  }
  // Round robin over sorted ids: P1_T1, P3_T1 | P2_T1, P4.
  EXPECT_EQ(m2.subjects[1].shard, "shard-00001.h5");

  // inspect verifies; --json says so.
  r = run(lddpm("inspect " + two + " --json"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = core::Json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["verified"], true);
  EXPECT_EQ(j["counts"]["subjects"], 4);

  // A rerun on one rank over the two-rank store: shard-00001 is stale and goes; data unchanged.
  r = run(lddpm("preprocess --threads 1 --compression zstd --data " + data() + " --out " + two));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(fs::path(two) / "shard-00001.h5"));
  EXPECT_EQ(data::readManifest(two).shards.at(0).checksum, m1.shards.at(0).checksum);
}

TEST_F(StoreCli, InspectNamesCorruptShardAndUnfinishedStore) {
  const std::string store = (dir / "corrupt").string();
  ASSERT_EQ(run(lddpm("preprocess --threads 1 --data " + data() + " --out " + store)).code, 0);
  const fs::path shard = fs::path(store) / "shard-00000.h5";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) * 2 / 3));
    f.put('\x13');
  }
  Result r = run(lddpm("inspect " + store));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("shard-00000.h5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksum mismatch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("BAD"), std::string::npos) << r.out;

  // A rerun redoes the corrupt shard (its checksum no longer matches the manifest).
  r = run(lddpm("preprocess --threads 1 --data " + data() + " --out " + store));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(run(lddpm("inspect " + store)).code, 0);

  fs::remove(fs::path(store) / "manifest.json");  // as if interrupted before the manifest
  r = run(lddpm("inspect " + store));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("not a complete store"), std::string::npos) << r.out;
}

TEST_F(StoreCli, BadOptionsNameTheOption) {
  Result r = run(lddpm("preprocess --data " + data() + " --out " + (dir / "x").string() +
                       " --compression lzma"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--compression"), std::string::npos) << r.out;
  r = run(lddpm("preprocess --data " + data() + " --out " + (dir / "x").string() +
                " --grid 100x100x100"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--grid"), std::string::npos) << r.out;
  r = run(
      lddpm("preprocess --data " + data() + " --out " + (dir / "x").string() + " --grid 16x16x16"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--grid"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "x" / "manifest.json"));
}

}  // namespace
