// No silent hangs: `mpiexec -n 2` on CommTimeoutHelper, where rank 1 stalls, dies or throws
// while rank 0 waits in an allreduce. The whole job must exit non-zero well within the timeout
// plus a start-up margin, and a stall must be reported naming the collective, the step and the
// rank that did not reach it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr double kTimeoutSeconds = 2.0;
// mpiexec start-up and tear-down on a loaded 2-core machine; a hang would take 120 s.
constexpr double kMarginSeconds = 15.0;

struct Outcome {
  int status = 0;
  double seconds = 0;
  std::string output;
};

Outcome runJob(const std::string& mode) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string command = std::string(LDDPM_MPIEXEC) + " -n 2 --oversubscribe " +
                              LDDPM_TIMEOUT_HELPER + " " + mode + " " +
                              std::to_string(kTimeoutSeconds) + " 2>&1";
  const auto start = std::chrono::steady_clock::now();
  Outcome out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 512> buf{};
  while (fgets(buf.data(), buf.size(), pipe)) out.output += buf.data();
  const int raw = pclose(pipe);
  out.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

TEST(CommTimeout, StalledRankAbortsTheJobNamingTheCollective) {
  const Outcome o = runJob("stall");
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_GE(o.seconds, kTimeoutSeconds) << "aborted before the timeout: " << o.output;
  EXPECT_LT(o.seconds, kTimeoutSeconds + kMarginSeconds) << o.output;
  EXPECT_NE(o.output.find("communication timeout: allreduce"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("at step 7"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("rank 0 of 2"), std::string::npos) << o.output;
  // Rank 1's watchdog thread answers although its main thread sleeps: named as the missing one.
  EXPECT_NE(o.output.find("rank 1 has not reached it (last collective none, step 7, not in a "
                          "collective)"),
            std::string::npos)
      << o.output;
}

TEST(CommTimeout, DeadRankTakesTheJobDown) {
  const Outcome o = runJob("die");
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, kTimeoutSeconds + kMarginSeconds) << o.output;
}

TEST(CommTimeout, ThrowingRankTakesTheJobDown) {
  const Outcome o = runJob("throw");
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, kTimeoutSeconds + kMarginSeconds) << o.output;
  EXPECT_NE(o.output.find("rank 1 failed on purpose"), std::string::npos) << o.output;
}

}  // namespace
