#pragma once
// Progress for long work. On a terminal it redraws one bar line; when stderr is not a terminal
// (SLURM logs, CI, pipes) it prints a plain line at most every `interval` seconds and at the end,
// so logs stay short and greppable. Only the ranks that log (see Log.h) print.
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/Timer.h"

namespace lddpm::core {

struct ProgressOptions {
  double plainIntervalSeconds = 30.0;  // between plain lines when not on a terminal
  double barIntervalSeconds = 0.2;     // between redraws on a terminal
  int forceTerminal = -1;              // -1: detect with isatty(stderr); 0/1: override (tests)
  std::FILE* out = nullptr;            // default stderr
};

class Progress {
 public:
  Progress(std::string label, std::int64_t total, ProgressOptions options = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` items finished so far; `detail` is appended (e.g. "loss 0.031 lr 1e-4").
  void update(std::int64_t done, const std::string& detail = "");
  void finish(const std::string& detail = "");

  // "1h02m", "3m05s", "12s" — used for ETA and elapsed.
  static std::string formatDuration(double seconds);
  // The text of one plain progress line (exposed for tests).
  std::string plainLine(std::int64_t done, const std::string& detail) const;

 private:
  void emit(std::int64_t done, const std::string& detail, bool final);

  std::string label_;
  std::int64_t total_;
  ProgressOptions options_;
  bool terminal_;
  bool enabled_;
  bool finished_ = false;
  Stopwatch watch_;
  double lastEmit_ = -1e30;
  std::int64_t lastDone_ = 0;
};

}  // namespace lddpm::core
