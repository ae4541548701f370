// Checkpoint folders and tensor-dict files: atomic publication, discovery of complete checkpoints
// only, pruning, Python interoperability of the tensor dicts; metrics.jsonl on resume; stop signals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/MetricsLog.h"
#include "core/StopSignal.h"

namespace {
using namespace lddpm::core;
namespace fs = std::filesystem;

struct Dir : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("lddpm-ckpt-" + std::to_string(::getpid()));
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }
};

TEST_F(Dir, TensorDictRoundTripIsExact) {
  TensorDict in{{"w", torch::randn({3, 4}, torch::kFloat64)},
                {"b", torch::arange(5, torch::kInt64)},
                {"h", torch::randn({2}).to(torch::kBFloat16)}};
  saveTensorDict((dir / "t.pt").string(), in);
  const TensorDict out = loadTensorDict((dir / "t.pt").string());
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [k, v] : in) {
    ASSERT_TRUE(out.count(k)) << k;
    EXPECT_EQ(out.at(k).dtype(), v.dtype()) << k;
    EXPECT_TRUE(torch::equal(out.at(k), v)) << k;
  }
}

TEST_F(Dir, PythonTorchLoadReadsTensorDict) {
  if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian python3-torch not installed";
  }
  TensorDict in{{"layer.weight", torch::arange(6, torch::kFloat32).reshape({2, 3}) / 7.0},
                {"layer.bias", torch::tensor({-1.5, 2.25}, torch::kFloat32)}};
  const std::string path = (dir / "w.pt").string();
  saveTensorDict(path, in);
  // Python computes the sums independently; compare with values computed here in double.
  const std::string cmd = "/usr/bin/python3 -c \"import torch; d = torch.load('" + path +
                          "'); assert isinstance(d, dict); "
                          "print(sorted(d.keys())); print('%.10f' % d['layer.weight'].double().sum().item()); "
                          "print(list(d['layer.weight'].shape))\"";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[1024] = {0};
  std::string out;
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ASSERT_EQ(::pclose(p), 0) << out;
  EXPECT_NE(out.find("['layer.bias', 'layer.weight']"), std::string::npos) << out;
  EXPECT_NE(out.find("2.142857"), std::string::npos) << out;  // (0+1+...+5)/7 = 15/7 in float32
  EXPECT_NE(out.find("[2, 3]"), std::string::npos) << out;
}

TEST_F(Dir, CorruptTensorDictNamesFile) {
  const std::string path = (dir / "bad.pt").string();
  std::ofstream(path) << "definitely not a pickle";
  try {
    loadTensorDict(path);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), path);
  }
}

TEST_F(Dir, OnlyCommittedCheckpointsAreListed) {
  const std::string ckdir = (dir / "checkpoints").string();
  {
    CheckpointWriter w(ckdir, 10);
    saveTensorDict(w.file("model.pt"), {{"x", torch::ones({1})}});
    w.commit({{"world_size", 1}});
  }
  {
    CheckpointWriter torn(ckdir, 20);  // never committed: a kill mid-save
    saveTensorDict(torn.file("model.pt"), {{"x", torch::ones({1})}});
  }
  fs::create_directories(fs::path(ckdir) / "step-00000030");  // no meta.json: incomplete
  const auto all = listCheckpoints(ckdir);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].step, 10);
  EXPECT_EQ(newestCheckpoint(ckdir)->step, 10);
  const Json meta = readCheckpointMeta(all[0].path);
  EXPECT_EQ(meta["step"], 10);
  EXPECT_EQ(meta["world_size"], 1);
  EXPECT_EQ(meta["format_version"], kCheckpointFormatVersion);
}

TEST_F(Dir, RecommitSameStepReplaces) {
  const std::string ckdir = (dir / "checkpoints").string();
  for (float v : {1.0f, 2.0f}) {
    CheckpointWriter w(ckdir, 5);
    saveTensorDict(w.file("model.pt"), {{"x", torch::full({1}, v)}});
    w.commit({});
  }
  const auto all = listCheckpoints(ckdir);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(loadTensorDict(all[0].path + "/model.pt").at("x").item<float>(), 2.0f);
}

TEST_F(Dir, PruneKeepsNewestAndRemovesTemporaries) {
  const std::string ckdir = (dir / "checkpoints").string();
  for (int step : {1, 2, 3, 4}) CheckpointWriter(ckdir, step).commit({});
  CheckpointWriter torn(ckdir, 5);
  pruneCheckpoints(ckdir, 2);
  const auto all = listCheckpoints(ckdir);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 3);
  EXPECT_EQ(all[1].step, 4);
  EXPECT_FALSE(fs::exists(torn.tempPath()));
}

TEST_F(Dir, MetricsLogDropsRowsAfterResumeStepAndTornLines) {
  const std::string path = (dir / "metrics.jsonl").string();
  {
    MetricsLog log(path);
    for (int s = 1; s <= 5; ++s) log.append({{"step", s}, {"loss", 1.0 / s}});
  }
  std::ofstream(path, std::ios::app) << "{\"step\": 6, \"lo";  // killed mid-append
  EXPECT_EQ(MetricsLog::readAll(path).size(), 5u);
  {
    MetricsLog resumed(path, /*resumeStep=*/3);
    resumed.append({{"step", 4}, {"loss", 0.2}});
  }
  const auto rows = MetricsLog::readAll(path);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[2]["step"], 3);
  EXPECT_EQ(rows[3]["step"], 4);
  EXPECT_DOUBLE_EQ(rows[3]["loss"].get<double>(), 0.2);
}

TEST(StopSignalTest, TermAndUsr2SetTheFlag) {
  StopSignal::install();
  for (int sig : {SIGUSR2, SIGTERM}) {
    StopSignal::reset();
    EXPECT_FALSE(StopSignal::requested());
    StopSignal::raiseForTest(sig);
    EXPECT_TRUE(StopSignal::requested());
    EXPECT_EQ(StopSignal::signalNumber(), sig);
  }
  StopSignal::reset();
}

}  // namespace
