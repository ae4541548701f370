// Atomic publication: the final name holds the old content or the new, never a torn file, even
// when the writing process dies between writing and renaming.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm::core;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct AtomicFile : ::testing::Test {
  lddpm::testing::TempDir tmp{"atomic"};
  const fs::path dir = tmp.path;
  size_t entries() const {
    return static_cast<size_t>(
        std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
  }
};

TEST_F(AtomicFile, WritesAndReplaces) {
  const fs::path p = dir / "a.txt";
  writeFileAtomic(p.string(), "first");
  EXPECT_EQ(slurp(p), "first");
  writeFileAtomic(p.string(), std::string(100000, 'x'));
  EXPECT_EQ(slurp(p), std::string(100000, 'x'));
  EXPECT_EQ(entries(), 1u);  // no temporaries left behind
}

TEST_F(AtomicFile, CrashBeforeRenameLeavesOldFileIntact) {
  const fs::path p = dir / "state.json";
  writeFileAtomic(p.string(), "old-complete-content");
  // A child process writes most of a new version and dies before commit(): no destructors, no
  // cleanup, exactly like a kill -9 or a node failure mid-save.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto* w = new AtomicFileWriter(p.string());
    w->stream() << "new-but-torn";
    w->stream().flush();
    ::_exit(3);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(slurp(p), "old-complete-content");
  // The torn temporary is still there, under a hidden name that nothing reads as the real file.
  bool sawTemp = false;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "state.json") {
      sawTemp = true;
      EXPECT_EQ(name.rfind(".state.json.tmp-", 0), 0u) << name;
    }
  }
  EXPECT_TRUE(sawTemp);
}

TEST_F(AtomicFile, ExceptionBeforeCommitRemovesTemporary) {
  const fs::path p = dir / "b.txt";
  writeFileAtomic(p.string(), "keep");
  try {
    AtomicFileWriter w(p.string());
    w.stream() << "partial";
    throw std::runtime_error("simulated failure mid-write");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(slurp(p), "keep");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFile, UnwritableFolderNamesPath) {
  const std::string p = (dir / "missing-folder" / "x.txt").string();
  try {
    writeFileAtomic(p, "x");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), p);
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
  }
}

}  // namespace
