#include "core/Log.h"

#include <cstdio>
#include <mutex>

#include "core/Error.h"

namespace lddpm::core {
namespace {
LogConfig gConfig;
std::mutex gMutex;
}  // namespace

void Log::configure(const LogConfig& config) {
  std::lock_guard<std::mutex> lock(gMutex);
  gConfig = config;
}

const LogConfig& Log::config() { return gConfig; }

LogLevel Log::parseLevel(const std::string& name) {
  if (name == "debug") return LogLevel::Debug;
  if (name == "info") return LogLevel::Info;
  if (name == "warn") return LogLevel::Warn;
  if (name == "error") return LogLevel::Error;
  if (name == "off") return LogLevel::Off;
  LDDPM_THROW(UsageError, "option '--log-level': '", name,
              "' is not one of debug, info, warn, error, off");
}

bool Log::enabled(LogLevel level, bool everyRank) {
  if (level < gConfig.level || gConfig.level == LogLevel::Off) return false;
  return everyRank || gConfig.allRanks || gConfig.rank == 0;
}

std::string Log::prefix(LogLevel level) {
  std::string out;
  if (gConfig.worldSize > 1 && (gConfig.allRanks || gConfig.rank != 0)) {
    out = strCat("[", gConfig.rank, "/", gConfig.worldSize, "] ");
  }
  switch (level) {
    case LogLevel::Warn:
      out += "warning: ";
      break;
    case LogLevel::Error:
      out += "error: ";
      break;
    case LogLevel::Debug:
      out += "debug: ";
      break;
    default:
      break;
  }
  return out;
}

void Log::write(const std::string& line) {
  std::lock_guard<std::mutex> lock(gMutex);
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

detail::LogLine::~LogLine() {
  if (active_) Log::write(Log::prefix(level_) + stream_.str());
}

}  // namespace lddpm::core
