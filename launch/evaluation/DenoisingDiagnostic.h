#pragma once
// `lddpm evaluate denoising`: what a user runs when samples look wrong. For each real scan of a
// store split and each chosen timestep t, noise the scan to x_t = √ᾱ x0 + √(1−ᾱ) ε, ask the
// trained denoiser once for x̂0, and measure it against the scan per region (background, brain,
// lesion) beside the trivial estimate x_t / √ᾱ: a model that learned nothing at some t shows there
// as no better than that estimate (high t) or as a blurred x̂0 without texture (low t).
#include <cstdint>
#include <string>
#include <vector>

#include "core/Json.h"
#include "core/Options.h"

namespace lddpm::launch::evaluation {

struct DenoisingOptions {
  std::string run;         // trained diffusion run (newest checkpoint), or
  std::string checkpoint;  // a checkpoint folder
  std::string weights = "ema";
  std::string store;
  std::string split = "test";
  // Comma-separated timesteps; empty: the smallest trained t, and T/4, T/2, 3T/4, T (each the
  // nearest timestep the model trained on).
  std::string timesteps;
  std::int64_t maxCases = 0;  // 0: every case
  std::uint64_t seed = 0;

  core::po::options_description describe();
  void validate() const;  // UsageError naming the option
};

// One timestep's errors, mean over cases (NaN where no case has the region).
struct DenoisingRow {
  std::int64_t t = 0;
  double alphaBar = 0;
  double sigma = 0;          // √(1 − ᾱ)
  double backgroundMae = 0;  // x̂0 vs x0
  double brainMae = 0;
  double lesionMae = 0;
  double brainSsim = 0;
  double wmTexture = 0;              // of x̂0 (the real scans' own is in realWmTexture)
  double trivialBrainMae = 0;        // clamp(x_t / √ᾱ, −1, 1) vs x0
  std::vector<double> caseBrainMae;  // per case, for the spread
};

struct DenoisingReport {
  std::string checkpoint;
  std::string model;
  std::string prediction;
  std::int64_t timestepsTotal = 0;  // T
  std::vector<std::string> cases;
  double realWmTexture = 0;
  std::vector<DenoisingRow> rows;  // ascending t
};

// Runs the diagnostic on the CPU. Errors name the option, checkpoint or case.
DenoisingReport diagnoseDenoising(const DenoisingOptions& options);
core::Json toJson(const DenoisingReport& report);
std::string toMarkdown(const DenoisingReport& report);

}  // namespace lddpm::launch::evaluation
