#pragma once
// Wall-clock timing: a stopwatch and running statistics for repeated intervals (step time, data
// wait). steady_clock only, so timings never jump with the system clock.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

namespace lddpm::core {

class Stopwatch {
 public:
  using Clock = std::chrono::steady_clock;
  Stopwatch() : start_(Clock::now()) {}
  void reset() { start_ = Clock::now(); }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  Clock::time_point start_;
};

class TimeStats {
 public:
  void add(double seconds) {
    ++count_;
    total_ += seconds;
    min_ = std::min(min_, seconds);
    max_ = std::max(max_, seconds);
  }
  std::int64_t count() const { return count_; }
  double total() const { return total_; }
  double mean() const { return count_ ? total_ / static_cast<double>(count_) : 0.0; }
  double min() const { return count_ ? min_ : 0.0; }
  double max() const { return count_ ? max_ : 0.0; }

 private:
  std::int64_t count_ = 0;
  double total_ = 0.0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = 0.0;
};

// Adds the lifetime of the scope to a TimeStats.
class ScopedTimer {
 public:
  explicit ScopedTimer(TimeStats& stats) : stats_(stats) {}
  ~ScopedTimer() { stats_.add(watch_.seconds()); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  TimeStats& stats_;
  Stopwatch watch_;
};

}  // namespace lddpm::core
