// The lddpm binary as a user meets it: help, version, exit codes and one-line usage errors that
// name the option, and a world of 2 under mpiexec reported once.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
  std::string stdoutOnly;
};

Result run(const std::string& args, bool mergeStderr = true) {
  const auto r = lddpm::testutil::runShell(std::string(LDDPM_BINARY) + " " + args +
                                           (mergeStderr ? " 2>&1" : " 2>/dev/null"));
  return {r.code, r.out, r.out};
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, HelpListsCommands) {
  const Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Usage: lddpm <command>"), std::string::npos);
  EXPECT_NE(r.out.find("info"), std::string::npos);
}

TEST(Cli, VersionNamesBackends) {
  const Result r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("lddpm " LDDPM_VERSION), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MPI yes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(LDDPM_WITH_CUDA ? "CUDA yes" : "CUDA no"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(LDDPM_WITH_NCCL ? "NCCL yes" : "NCCL no"), std::string::npos) << r.out;
}

TEST(Cli, EverySubcommandHasHelp) {
  const Result r = run("info --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--json"), std::string::npos);
  EXPECT_NE(r.out.find("--config"), std::string::npos);
  EXPECT_NE(r.out.find("--threads"), std::string::npos);
}

TEST(Cli, NoArgumentsIsUsageError) { EXPECT_EQ(run("").code, 2); }

TEST(Cli, UnknownCommandIsUsageError) {
  const Result r = run("frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("frobnicate"), std::string::npos);
  EXPECT_EQ(lines(r.out), 1) << r.out;
}

TEST(Cli, UnknownOptionIsOneLineNamingIt) {
  const Result r = run("info --frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--frobnicate"), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.out), 1) << r.out;
}

TEST(Cli, BadValueIsOneLineNamingOption) {
  const Result r = run("info --threads lots");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--threads"), std::string::npos) << r.out;
  EXPECT_EQ(lines(r.out), 1) << r.out;
  const Result neg = run("info --threads -3");
  EXPECT_EQ(neg.code, 2);
  EXPECT_NE(neg.out.find("--threads"), std::string::npos) << neg.out;
}

TEST(Cli, BadLogLevelIsUsageError) {
  const Result r = run("info --log-level loud");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--log-level"), std::string::npos) << r.out;
}

TEST(Cli, ConfigFileIsReadAndCommandLineWins) {
  namespace fs = std::filesystem;
  const lddpm::testing::TempDir tmp("cli");
  const fs::path ini = tmp / "config.ini";
  std::ofstream(ini) << "threads = 3\njson = true\n";
  const Result fromFile = run("info --config " + ini.string(), false);
  EXPECT_EQ(fromFile.code, 0) << fromFile.out;
  EXPECT_NE(fromFile.out.find("\"threads\": 3"), std::string::npos) << fromFile.out;
  const Result cli = run("info --threads 1 --config " + ini.string(), false);
  EXPECT_NE(cli.out.find("\"threads\": 1"), std::string::npos) << cli.out;
  std::ofstream(ini) << "threds = 3\n";
  const Result typo = run("info --config " + ini.string());
  EXPECT_EQ(typo.code, 2);
  EXPECT_NE(typo.out.find("threds"), std::string::npos) << typo.out;
}

// The BLAS `lddpm info` names is the file the dynamic linker resolves libblas.so.3 to (ldd,
// links followed: an independent answer); on Debian's reference BLAS, wherever it is installed
// beside an optimised one, it says so and warns.
TEST(Cli, InfoNamesTheBlasTheLinkerResolved) {
  const auto ldd = lddpm::testutil::runShell(std::string("readlink -f \"$(ldd ") + LDDPM_BINARY +
                                             " | awk '$1 == \"libblas.so.3\" {print $3}')\"");
  ASSERT_EQ(ldd.code, 0) << ldd.out;
  const std::string resolved = ldd.out.substr(0, ldd.out.find('\n'));
  ASSERT_FALSE(resolved.empty());
  const Result info = run("info --json", false);
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("\"path\": \"" + resolved + "\""), std::string::npos) << resolved << "\n"
                                                                                << info.out;

  const std::filesystem::path reference = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3";
  if (!std::filesystem::exists(reference)) GTEST_SKIP() << "no reference BLAS installed";
  const Result plain = run("info", true);
  const auto forced = lddpm::testutil::runShell(
      "LD_LIBRARY_PATH=" + reference.parent_path().string() + " " + LDDPM_BINARY + " info 2>&1");
  EXPECT_EQ(forced.code, 0) << forced.out;
  EXPECT_NE(forced.out.find("BLAS: reference BLAS"), std::string::npos) << forced.out;
  EXPECT_NE(forced.out.find("warning: LibTorch runs on the reference BLAS"), std::string::npos)
      << forced.out;
  EXPECT_EQ(plain.out.find("reference BLAS") != std::string::npos,
            resolved.find("/blas/libblas.so") != std::string::npos)
      << plain.out;
}

TEST(Cli, MpiWorldOfTwoReportedOnce) {
  const auto [code, out] = lddpm::testutil::runShell(
      lddpm::testutil::mpiexecPrefix(LDDPM_MPIEXEC, 2) + LDDPM_BINARY + " info 2>&1");
  EXPECT_EQ(code, 0) << out;
  size_t count = 0;
  for (size_t pos = out.find("world size 2"); pos != std::string::npos;
       pos = out.find("world size 2", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << out;
  EXPECT_EQ(out.find("world size 1"), std::string::npos) << out;
}

TEST(Cli, MpiUsageErrorExitsTwoAndPrintsOnce) {
  const auto [code, out] = lddpm::testutil::runShell(
      lddpm::testutil::mpiexecPrefix(LDDPM_MPIEXEC, 2) + LDDPM_BINARY + " info --nope 2>&1");
  EXPECT_EQ(code, 2) << out;
  size_t count = 0;
  for (size_t pos = out.find("--nope"); pos != std::string::npos;
       pos = out.find("--nope", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << out;
}

}  // namespace

// The same mistake gets the same exit code and the same one-line message in every command that
// takes --split (data::parseSplit), before any file is read.
TEST(Cli, BadSplitIsOneUsageErrorEverywhere) {
  for (const char* command : {"sample --run /nonexistent --store /nonexistent --out /nonexistent/o",
                              "evaluate images --real / --synthetic gen=/",
                              "evaluate segmentation --store / --run /nonexistent",
                              "preprocess --data /nonexistent --out /nonexistent/out"}) {
    const Result r = run(std::string(command) + " --split bogus");
    EXPECT_EQ(r.code, 2) << command << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1) << command << ": " << r.out;
    EXPECT_NE(r.out.find("'--split': 'bogus' is not a split"), std::string::npos)
        << command << ": " << r.out;
  }
}

TEST(Cli, ABadWindowBatchIsAUsageErrorNamingTheOption) {
  const Result r = run("evaluate segmentation --store / --run /nonexistent --window-batch 0");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_NE(r.out.find("'--window-batch': must be >= 1"), std::string::npos) << r.out;
}

TEST(Cli, ABadConditionCacheIsAUsageErrorNamingTheOption) {
  for (const char* value : {"-1", "1073741825"}) {
    const Result r = run(std::string("sample --run /nonexistent --store / --out /nonexistent/o "
                                     "--condition-cache-mib ") +
                         value);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_EQ(lines(r.out), 1) << r.out;
    EXPECT_NE(r.out.find("'--condition-cache-mib': must be in [0, 2^30]"), std::string::npos)
        << r.out;
  }
}

// The commands with modes share one dispatcher (launch/Command.h runMode): no mode or an unknown
// one is the same one-line usage error naming the modes, --help lists them.
TEST(Cli, CommandsWithModesBehaveAlike) {
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"evaluate", "images, denoising, segmentation"},
      {"sweep", "submit, status, collect"},
      {"bench", "comm"}};
  for (const auto& [command, modes] : commands) {
    const Result none = run(command);
    EXPECT_EQ(none.code, 2) << command << ": " << none.out;
    EXPECT_EQ(lines(none.out), 1) << command << ": " << none.out;
    EXPECT_NE(none.out.find("expected a mode (one of: " + modes + ";"), std::string::npos)
        << command << ": " << none.out;
    const Result bogus = run(command + " bogus");
    EXPECT_EQ(bogus.code, 2) << command << ": " << bogus.out;
    EXPECT_EQ(lines(bogus.out), 1) << command << ": " << bogus.out;
    EXPECT_NE(bogus.out.find("'bogus' is not a mode (one of: " + modes + ";"), std::string::npos)
        << command << ": " << bogus.out;
    const Result help = run(command + " --help");
    EXPECT_EQ(help.code, 0) << command << ": " << help.out;
    EXPECT_NE(help.out.find("Modes:"), std::string::npos) << command << ": " << help.out;
  }
  // sweep's default mode: options first are submit's options.
  const Result submit = run("sweep --grid /nonexistent/grid.ini --template /nonexistent --out /x");
  EXPECT_EQ(submit.code, 2) << submit.out;
  EXPECT_NE(submit.out.find("grid"), std::string::npos) << submit.out;
}
