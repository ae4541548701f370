#pragma once
// Learning rate as a pure function of the step: linear warm-up from 0 to the peak over
// `warmupSteps`, then cosine decay to `minLr` at `totalSteps`. Being a function of the step only,
// it needs no state in checkpoints and is identical after a resume.
#include <cmath>
#include <cstdint>

namespace lddpm::launch {

struct LrSchedule {
  double peakLr = 1e-4;
  double minLr = 1e-6;
  std::int64_t warmupSteps = 100;
  std::int64_t totalSteps = 1000;

  // The rate used by the optimiser step that completes step `step` (0-based).
  double at(std::int64_t step) const {
    if (warmupSteps > 0 && step < warmupSteps) {
      return peakLr * static_cast<double>(step + 1) / static_cast<double>(warmupSteps);
    }
    const std::int64_t decaySteps = totalSteps - warmupSteps;
    if (decaySteps <= 0) return peakLr;
    const double progress =
        std::min(1.0, static_cast<double>(step - warmupSteps) / static_cast<double>(decaySteps));
    constexpr double kPi = 3.14159265358979323846;
    return minLr + 0.5 * (peakLr - minLr) * (1.0 + std::cos(kPi * progress));
  }
};

}  // namespace lddpm::launch
