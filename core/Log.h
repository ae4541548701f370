#pragma once
// Rank-aware logging to stderr (stdout stays clean for --json results). By default only rank 0
// speaks; with allRanks every rank logs behind a "[r/N]" prefix. Lines are written whole under a
// mutex so threads and ranks never interleave within a line.
#include <sstream>
#include <string>

namespace lddpm::core {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

struct LogConfig {
  int rank = 0;
  int worldSize = 1;
  LogLevel level = LogLevel::Info;
  bool allRanks = false;  // every rank logs, prefixed "[r/N]"
};

class Log {
 public:
  static void configure(const LogConfig& config);
  static const LogConfig& config();
  static LogLevel parseLevel(const std::string& name);  // throws UsageError naming --log-level
  // Whether a message at `level` is printed by this rank (`everyRank` forces it for errors that
  // only this rank knows about).
  static bool enabled(LogLevel level, bool everyRank = false);
  static std::string prefix(LogLevel level);
  static void write(const std::string& line);
};

namespace detail {
class LogLine {
 public:
  LogLine(LogLevel level, bool everyRank)
      : active_(Log::enabled(level, everyRank)), level_(level) {}
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <typename T>
  LogLine& operator<<(const T& value) {
    if (active_) stream_ << value;
    return *this;
  }

 private:
  bool active_;
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace detail

}  // namespace lddpm::core

// LDDPM_LOG(Info) << "step " << step;   LDDPM_LOG_EVERY_RANK(Error) << "rank-local failure";
#define LDDPM_LOG(level) ::lddpm::core::detail::LogLine(::lddpm::core::LogLevel::level, false)
#define LDDPM_LOG_EVERY_RANK(level) \
  ::lddpm::core::detail::LogLine(::lddpm::core::LogLevel::level, true)
