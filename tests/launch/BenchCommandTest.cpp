// `lddpm bench comm` as a user runs it: a tiny sweep plain (writing --out) and under
// mpiexec -n 2, JSON output with checked results, and usage errors that name the option.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/Json.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {
namespace fs = std::filesystem;

using Result = lddpm::testutil::ShellResult;
const auto shell = lddpm::testutil::runShell;

std::string mpi(int n) { return lddpm::testutil::mpiexecPrefix(LDDPM_MPIEXEC, n); }

void expectCheckedSweep(const std::string& json, int ranks) {
  const auto report = lddpm::core::Json::parse(json);
  EXPECT_EQ(report["ranks"], ranks);
  ASSERT_EQ(report["results"].size(), 6u);  // 3 collectives x {1 KiB, 4 KiB}
  for (const auto& r : report["results"]) {
    EXPECT_TRUE(r["correct"].get<bool>()) << r.dump();
    EXPECT_GT(r["seconds"].get<double>(), 0.0);
  }
}

TEST(BenchCommand, PlainAndUnderMpiexec) {
  const std::string args = " --max-bytes 4K --iters 2 --warmup 1 --json 2>/dev/null";
  const lddpm::testing::TempDir tmp("bench");
  const fs::path dir = tmp / "out";
  const Result plain =
      shell(std::string(LDDPM_BINARY) + " bench comm --out " + dir.string() + args);
  ASSERT_EQ(plain.code, 0) << plain.out;
  expectCheckedSweep(plain.out, 1);
  EXPECT_TRUE(fs::exists(dir / "comm.json"));
  EXPECT_TRUE(fs::exists(dir / "config.ini"));
  const Result two = shell(mpi(2) + LDDPM_BINARY + " bench comm" + args);
  ASSERT_EQ(two.code, 0) << two.out;
  expectCheckedSweep(two.out, 2);
}

TEST(BenchCommand, UsageErrorsNameTheOption) {
  const Result size = shell(std::string(LDDPM_BINARY) + " bench comm --max-bytes 4Q 2>&1");
  EXPECT_EQ(size.code, 2);
  EXPECT_NE(size.out.find("--max-bytes"), std::string::npos) << size.out;
  const Result op = shell(std::string(LDDPM_BINARY) + " bench comm --ops allreduce,gossip 2>&1");
  EXPECT_EQ(op.code, 2);
  EXPECT_NE(op.out.find("--ops"), std::string::npos) << op.out;
  const Result what = shell(std::string(LDDPM_BINARY) + " bench warp 2>&1");
  EXPECT_EQ(what.code, 2);
  EXPECT_NE(what.out.find("comm"), std::string::npos) << what.out;
  const Result timeout = shell(std::string(LDDPM_BINARY) + " bench comm --comm-timeout -1 2>&1");
  EXPECT_EQ(timeout.code, 2);
  EXPECT_NE(timeout.out.find("--comm-timeout"), std::string::npos) << timeout.out;
  const Result inlined = shell(std::string(LDDPM_BINARY) + " bench comm --comm-inline-mib -1 2>&1");
  EXPECT_EQ(inlined.code, 2);
  EXPECT_NE(inlined.out.find("'--comm-inline-mib' must be a size in MiB"), std::string::npos)
      << inlined.out;
}

}  // namespace
