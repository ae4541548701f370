#include "core/Progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "core/Error.h"
#include "core/Log.h"

namespace lddpm::core {

Progress::Progress(std::string label, std::int64_t total, ProgressOptions options)
    : label_(std::move(label)), total_(std::max<std::int64_t>(total, 0)), options_(options) {
  if (!options_.out) options_.out = stderr;
  terminal_ = options_.forceTerminal >= 0 ? options_.forceTerminal == 1
                                          : ::isatty(::fileno(options_.out)) == 1;
  enabled_ = Log::enabled(LogLevel::Info);
}

Progress::~Progress() {
  if (!finished_ && terminal_ && enabled_ && lastDone_ > 0) std::fputc('\n', options_.out);
}

std::string Progress::formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%llds", s);
  }
  return buf;
}

std::string Progress::plainLine(std::int64_t done, const std::string& detail) const {
  const double elapsed = watch_.seconds();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1.0;
  char rateBuf[32];
  std::snprintf(rateBuf, sizeof rateBuf, "%.3g/s", rate);
  std::string line = strCat(label_, " ", done, "/", total_);
  if (total_ > 0) {
    line += strCat(
        " (", static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total_)),
        "%)");
  }
  line += strCat(" ", rateBuf, " elapsed ", formatDuration(elapsed));
  if (done < total_) line += strCat(" eta ", formatDuration(eta));
  if (!detail.empty()) line += "  " + detail;
  return line;
}

void Progress::emit(std::int64_t done, const std::string& detail, bool final) {
  const std::string text = plainLine(done, detail);
  if (terminal_) {
    constexpr int kWidth = 24;
    const double frac =
        total_ > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0)
                   : 1.0;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(options_.out, "\r\033[K[%s] %s%s", bar.c_str(), text.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(options_.out, "%s%s\n", Log::prefix(LogLevel::Info).c_str(), text.c_str());
  }
  std::fflush(options_.out);
}

void Progress::update(std::int64_t done, const std::string& detail) {
  lastDone_ = done;
  if (!enabled_) return;
  const double now = watch_.seconds();
  const double interval = terminal_ ? options_.barIntervalSeconds : options_.plainIntervalSeconds;
  if (now - lastEmit_ < interval) return;
  lastEmit_ = now;
  emit(done, detail, false);
}

void Progress::finish(const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  if (enabled_) emit(std::max(lastDone_, total_), detail, true);
}

}  // namespace lddpm::core
