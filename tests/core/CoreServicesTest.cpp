// Logging prefixes and rank filtering, progress lines, seed derivation and JSON files.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/Allocator.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "core/Rng.h"
#include "core/Text.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm::core;

struct LogGuard {
  LogConfig saved = Log::config();
  ~LogGuard() { Log::configure(saved); }
};

// glibc counts the blocks it serves with mmap (mallinfo2().hblks): after the tuning none is, even
// one far above the largest threshold glibc accepts (32 MiB), so freeing it keeps its pages.
TEST(Allocator, LargeBlocksComeFromTheHeapNotFromMmap) {
  ASSERT_EQ(std::getenv("MALLOC_MMAP_MAX_"), nullptr) << "the test needs glibc's defaults";
  tuneAllocatorForTensors();
  const std::size_t before = mallinfo2().hblks;
  void* block = std::malloc(std::size_t{96} << 20);
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(mallinfo2().hblks, before);
  std::free(block);
}

TEST(Log, RankZeroOnlyByDefault) {
  LogGuard g;
  Log::configure({/*rank=*/1, /*worldSize=*/4, LogLevel::Info, /*allRanks=*/false});
  EXPECT_FALSE(Log::enabled(LogLevel::Info));
  EXPECT_TRUE(Log::enabled(LogLevel::Error, /*everyRank=*/true));
  Log::configure({0, 4, LogLevel::Info, false});
  EXPECT_TRUE(Log::enabled(LogLevel::Info));
  EXPECT_FALSE(Log::enabled(LogLevel::Debug));
  EXPECT_EQ(Log::prefix(LogLevel::Info), "");
}

TEST(Log, AllRanksArePrefixed) {
  LogGuard g;
  Log::configure({2, 3, LogLevel::Info, true});
  EXPECT_TRUE(Log::enabled(LogLevel::Info));
  EXPECT_EQ(Log::prefix(LogLevel::Info), "[2/3] ");
  EXPECT_EQ(Log::prefix(LogLevel::Warn), "[2/3] warning: ");
}

TEST(Log, LevelNamesAndBadLevel) {
  EXPECT_EQ(Log::parseLevel("warn"), LogLevel::Warn);
  try {
    Log::parseLevel("loud");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--log-level"), std::string::npos);
  }
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  LogGuard g;
  Log::configure({0, 1, LogLevel::Info, false});
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions o;
    o.forceTerminal = 0;
    o.plainIntervalSeconds = 1e9;  // only the first update and finish() print
    o.out = f;
    Progress p("train", 10, o);
    for (int i = 1; i <= 10; ++i) p.update(i, "loss 0.5");
    p.finish("done");
  }
  std::rewind(f);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string text(buf, n);
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no bar redraws in a log file";
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_NE(text.find("train 1/10 (10%)"), std::string::npos) << text;
  EXPECT_NE(text.find("train 10/10 (100%)"), std::string::npos) << text;
  EXPECT_NE(text.find("done"), std::string::npos) << text;
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::formatDuration(5), "5s");
  EXPECT_EQ(Progress::formatDuration(185), "3m05s");
  EXPECT_EQ(Progress::formatDuration(3720), "1h02m");
  EXPECT_EQ(Progress::formatDuration(-1), "?");
}

TEST(Rng, SplitMixMatchesReferenceValues) {
  // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c): successive states
  // are k * 0x9e3779b97f4a7c15, and our splitmix64(x) is the generator step from state x.
  EXPECT_EQ(splitmix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(splitmix64(0x9e3779b97f4a7c15ULL), 0x6e789e6aa1b965f4ULL);
}

TEST(Rng, DerivedSeedsDependOnEveryKeyAndOnlyOnKeys) {
  std::set<std::uint64_t> seen;
  for (std::uint64_t step = 0; step < 100; ++step) {
    for (std::uint64_t sample = 0; sample < 10; ++sample) {
      seen.insert(deriveSeed(42, RngStream::DiffusionNoise, {step, sample}));
    }
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(deriveSeed(42, RngStream::DataOrder, {3}), deriveSeed(42, RngStream::DataOrder, {3}));
  EXPECT_NE(deriveSeed(42, RngStream::DataOrder, {3}), deriveSeed(43, RngStream::DataOrder, {3}));
  EXPECT_NE(deriveSeed(42, RngStream::DataOrder, {3}), deriveSeed(42, RngStream::Augment, {3}));
}

TEST(Rng, GeneratorIsReproducible) {
  auto g1 = makeCpuGenerator(7);
  auto g2 = makeCpuGenerator(7);
  auto a = at::randn({16}, g1);
  auto b = at::randn({16}, g2);
  EXPECT_TRUE(at::equal(a, b));
}

TEST(Text, SplitKeepsEmptyItemsUnlessAskedAndJoinInvertsIt) {
  using V = std::vector<std::string>;
  EXPECT_EQ(splitString(""), V{});
  EXPECT_EQ(splitString("flair"), V{"flair"});
  EXPECT_EQ(splitString("t1,t2,flair"), (V{"t1", "t2", "flair"}));
  EXPECT_EQ(splitString("a,,b,"), (V{"a", "", "b", ""}));
  EXPECT_EQ(splitString(",", ','), (V{"", ""}));
  EXPECT_EQ(splitString("a,,b,", ',', /*skipEmpty=*/true), (V{"a", "b"}));
  EXPECT_EQ(splitString("x;y,z", ';'), (V{"x", "y,z"}));
  EXPECT_EQ(joinStrings({}, ", "), "");
  EXPECT_EQ(joinStrings({"a"}, ", "), "a");
  EXPECT_EQ(joinStrings({"a", "", "b"}, ","), "a,,b");
  for (const std::string text : {"t1,t2,flair", "a,,b,", ",", "x"})
    EXPECT_EQ(joinStrings(splitString(text), ","), text);
}

TEST(Json, RoundTripAndErrorsNameFile) {
  namespace fs = std::filesystem;
  const lddpm::testing::TempDir tmp("json");
  const fs::path p = tmp / "value.json";
  Json v = {{"b", 1}, {"a", {1.5, 2.5}}};
  writeJsonFile(p.string(), v);
  EXPECT_EQ(readJsonFile(p.string()), v);
  std::ofstream(p) << "{ not json";
  try {
    readJsonFile(p.string());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), p.string());
  }
}

}  // namespace
