#pragma once
// `lddpm sample` as one library call: synthetic FLAIR for every conditioning mask of a store split
// with a trained run's weights. Cases go in fixed groups of `batch` consecutive cases, group g to
// rank g mod size, and each case draws from (seed, case id) only, so the output does not depend on
// the number of ranks. Per case: the synthetic and the real (normalised) FLAIR, the lesion, brain
// and tissue masks as NIfTI on the store's grid and geometry, and a PNG montage of the axial slice
// with the most lesion (real | synthetic | lesion); then overview.png (every montage) and
// sampling.json (timings). A rerun into the same --out redoes only the groups it had not finished
// (SampleResume.h).
#include <cstdint>
#include <string>

#include "core/Options.h"
#include "distributed/Communicator.h"

namespace lddpm::launch {

struct SampleOptions {
  std::string run;         // a trained run: its newest intact checkpoint
  std::string checkpoint;  // or one checkpoint folder
  std::string store;       // whose masks condition the samples
  std::string split = "test";
  std::string out;
  std::string sampler = "ddim";  // ddim | ddpm
  std::int64_t steps = 0;        // DDIM K; 0 = the model's --train-steps if it has them, else 50
  double eta = 0.0;              // DDIM stochasticity
  std::uint64_t seed = 0;
  std::int64_t cases = 0;  // the first N cases; 0 = all
  std::int64_t batch = 1;  // cases per forward pass
  // Memory for the mask's modulation maps, made once per group instead of at every step
  // (models::SamplerOptions::conditionCacheBytes): speed only, the same bits.
  std::int64_t conditionCacheMib = 4096;
  std::string weights = "ema";
  std::string device = "cpu";

  core::po::options_description describe();
  // Usage errors (core::UsageError naming the option) before anything is read but the
  // checkpoint's verification; resolves `checkpoint` from --run / --checkpoint.
  void validate();
};

struct SampleSummary {
  std::int64_t cases = 0;    // sampled or found finished
  std::int64_t skipped = 0;  // of them, finished by an earlier run (this rank)
  double secondsPerVolume = 0;
};

// Samples `o.split` of `o.store` into `o.out` on this rank's share of the cases. Every rank of
// `comm` calls it (it holds barriers and one allreduce of the timings); rank 0 creates the folders
// and writes the overview and sampling.json. `o` must have passed validate().
SampleSummary sampleSplit(const SampleOptions& o, dist::Communicator& comm,
                          const torch::Device& device);

}  // namespace lddpm::launch
