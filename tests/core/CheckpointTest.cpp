// Checkpoint folders and tensor-dict files: atomic publication, discovery of complete checkpoints
// only, pruning, Python interoperability of the tensor dicts; verification against the sizes and
// checksums in meta.json and the fallback past damaged checkpoints; metrics.jsonl on resume; stop
// signals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/Checkpoint.h"
#include "core/Checksum.h"
#include "core/Error.h"
#include "core/MetricsLog.h"
#include "core/StopSignal.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm::core;
namespace fs = std::filesystem;

struct Dir : ::testing::Test {
  lddpm::testing::TempDir tmp{"ckpt"};
  const fs::path dir = tmp.path;
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
  const std::string cmd =
      "/usr/bin/python3 -c \"import torch; d = torch.load('" + path +
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

// ---- verification --------------------------------------------------------------------------

// A checkpoint of `step` with two files of known content.
std::string commitTwoFiles(const std::string& ckdir, std::int64_t step) {
  CheckpointWriter w(ckdir, step);
  saveTensorDict(w.file("model.pt"), {{"x", torch::arange(100, torch::kFloat32)}});
  std::ofstream(w.file("config.ini")) << "steps = " << step << "\n";
  return w.commit({{"world_size", 1}});
}

std::string errorPath(const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.path() + " | " + e.what();
  }
  return "<no error>";
}

TEST_F(Dir, CommitRecordsSizeAndChecksumOfEveryFile) {
  const std::string path = commitTwoFiles((dir / "checkpoints").string(), 3);
  const Json meta = readCheckpointMeta(path);
  ASSERT_TRUE(meta.contains("files"));
  ASSERT_EQ(meta["files"].size(), 2u);  // meta.json itself is not listed
  for (const char* name : {"model.pt", "config.ini"}) {
    const std::string file = path + "/" + name;
    EXPECT_EQ(meta["files"][name]["bytes"].get<std::int64_t>(),
              static_cast<std::int64_t>(fs::file_size(file)));
    EXPECT_EQ(meta["files"][name]["xxh3_64"], checksumHex(checksumFile(file)));
  }
  EXPECT_EQ(meta["files"]["config.ini"]["bytes"], 10);  // "steps = 3\n"
  EXPECT_TRUE(verifyCheckpoint(path));
}

TEST_F(Dir, TruncatedFileIsNamed) {
  const std::string path = commitTwoFiles((dir / "checkpoints").string(), 3);
  const auto size = fs::file_size(path + "/model.pt");
  fs::resize_file(path + "/model.pt", size / 2);
  const std::string e = errorPath([&] { verifyCheckpoint(path); });
  EXPECT_EQ(e.rfind(path + "/model.pt | ", 0), 0u) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(Dir, FlippedByteIsNamed) {
  const std::string path = commitTwoFiles((dir / "checkpoints").string(), 3);
  const std::string file = path + "/model.pt";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(fs::file_size(file) - 40));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) - 40));
    f.put(static_cast<char>(c ^ 0x10));
  }
  const std::string e = errorPath([&] { verifyCheckpoint(path); });
  EXPECT_EQ(e.rfind(file + " | ", 0), 0u) << e;
  EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << e;
}

TEST_F(Dir, MissingFileAndTornMetaAreNamed) {
  const std::string ckdir = (dir / "checkpoints").string();
  const std::string a = commitTwoFiles(ckdir, 3);
  fs::remove(a + "/config.ini");
  EXPECT_NE(errorPath([&] { verifyCheckpoint(a); }).find(a + "/config.ini | "), std::string::npos);
  const std::string b = commitTwoFiles(ckdir, 4);
  fs::resize_file(b + "/meta.json", 20);
  EXPECT_EQ(errorPath([&] { verifyCheckpoint(b); }).rfind(b + "/meta.json | ", 0), 0u);
}

TEST_F(Dir, MetaCannotPointOutsideItsFolderOrLieAboutTheStep) {
  const std::string ckdir = (dir / "checkpoints").string();
  const std::string path = commitTwoFiles(ckdir, 3);
  Json meta = readJsonFile(path + "/meta.json");
  meta["files"]["../../outside"] = meta["files"]["model.pt"];
  writeJsonFile(path + "/meta.json", meta);
  EXPECT_NE(errorPath([&] { verifyCheckpoint(path); }).find("'../../outside', which is not a file"),
            std::string::npos);
  meta["files"].erase("../../outside");
  meta["step"] = 7;
  writeJsonFile(path + "/meta.json", meta);
  EXPECT_NE(errorPath([&] {
              verifyCheckpoint(path);
            }).find("says step 7 but its folder is step-00000003"),
            std::string::npos);
  meta["step"] = "3";  // wrong type: a message, not a JSON exception escaping
  writeJsonFile(path + "/meta.json", meta);
  EXPECT_NE(errorPath([&] { verifyCheckpoint(path); }).find("malformed checkpoint metadata"),
            std::string::npos);
}

TEST_F(Dir, CheckpointWithoutChecksumsIsAcceptedUnverified) {
  const std::string path = commitTwoFiles((dir / "checkpoints").string(), 3);
  Json meta = readJsonFile(path + "/meta.json");
  meta.erase("files");  // as written before checksums were recorded
  writeJsonFile(path + "/meta.json", meta);
  EXPECT_FALSE(verifyCheckpoint(path));
  EXPECT_EQ(newestIntactCheckpoint((dir / "checkpoints").string())->step, 3);
}

TEST_F(Dir, NewestIntactFallsBackPastDamagedCheckpoints) {
  const std::string ckdir = (dir / "checkpoints").string();
  EXPECT_FALSE(newestIntactCheckpoint(ckdir).has_value());  // none at all: start over
  commitTwoFiles(ckdir, 2);
  commitTwoFiles(ckdir, 4);
  const std::string newest = commitTwoFiles(ckdir, 6);
  fs::resize_file(newest + "/model.pt", 10);
  std::vector<std::string> skipped;
  const auto intact = newestIntactCheckpoint(ckdir, &skipped);
  ASSERT_TRUE(intact.has_value());
  EXPECT_EQ(intact->step, 4);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find(newest + "/model.pt"), std::string::npos) << skipped[0];
  EXPECT_EQ(newestCheckpoint(ckdir)->step, 6);  // complete, though not intact
}

TEST_F(Dir, NoIntactCheckpointIsAnErrorNamingEachOne) {
  const std::string ckdir = (dir / "checkpoints").string();
  const std::string a = commitTwoFiles(ckdir, 2);
  const std::string b = commitTwoFiles(ckdir, 4);
  fs::remove(a + "/model.pt");
  fs::resize_file(b + "/config.ini", 1);
  const std::string e = errorPath([&] { newestIntactCheckpoint(ckdir); });
  EXPECT_EQ(e.rfind(ckdir + " | ", 0), 0u) << e;
  EXPECT_NE(e.find("none of its 2 checkpoint(s) is intact"), std::string::npos) << e;
  EXPECT_NE(e.find(a + "/model.pt"), std::string::npos) << e;
  EXPECT_NE(e.find(b + "/config.ini"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
}

TEST_F(Dir, AbandonedWriterRemovesItsTemporaryFolder) {
  const std::string ckdir = (dir / "checkpoints").string();
  std::string temp;
  {
    CheckpointWriter w(ckdir, 9);  // e.g. an exception while writing: never committed
    temp = w.tempPath();
    saveTensorDict(w.file("model.pt"), {{"x", torch::ones({1})}});
    ASSERT_TRUE(fs::exists(temp));
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(listCheckpoints(ckdir).empty());
}

TEST_F(Dir, RecommitLeavesNoStrayFolders) {
  const std::string ckdir = (dir / "checkpoints").string();
  commitTwoFiles(ckdir, 5);
  const std::string path = commitTwoFiles(ckdir, 5);
  EXPECT_TRUE(verifyCheckpoint(path));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(ckdir)) names.push_back(e.path().filename().string());
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], "step-00000005");
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
