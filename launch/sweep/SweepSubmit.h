#pragma once
// `lddpm sweep submit` (docs/sweeps.md): a grid of `lddpm train` options as one SLURM job array.
// Every task's options are checked as `lddpm train` would before anything is written; an
// existing sweep folder must come from the same grid (--force starts the changed tasks over);
// finished tasks and tasks the scheduler still holds are not submitted again. The submission is
// recorded under a tag (sbatch --comment) before sbatch runs, so a rerun after a kill between
// sbatch and the record adopts the job instead of submitting the same tasks twice.
#include <optional>
#include <string>

#include "core/Json.h"
#include "core/Options.h"
#include "launch/sweep/SweepStatus.h"

namespace lddpm::launch::sweep {

struct SubmitOptions {
  std::string grid;
  std::string templ;
  std::string out;
  std::string sbatch = "sbatch";
  std::string squeue = "squeue";
  bool dryRun = false;
  bool force = false;

  core::po::options_description describe();
};

// Writes the sweep folder and submits its unfinished tasks (or, with dryRun, prints the sbatch
// command); returns the line that says what was done. UsageError for every problem of the
// input, found before anything is written; core::Error when sbatch fails (nothing recorded).
std::string submitSweep(const SubmitOptions& options);

// The states the scheduler holds for a sweep's submitted array tasks (`squeue`); nullopt when it
// cannot be asked.
std::optional<QueueStates> queuedTasks(const std::string& squeue, const core::Json& record);

}  // namespace lddpm::launch::sweep
