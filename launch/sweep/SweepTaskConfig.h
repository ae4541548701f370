#pragma once
// A sweep's options checked the way `lddpm train` reads them, before anything is submitted: every
// key against train's own option descriptions (TrainConfig, ModelConfig, common), every value
// through the same parser, every task's whole option set through TrainConfig::validate and a model
// build; then each task's INI (sweep-task.ini) rendered as `lddpm train --config` reads it.
#include <set>
#include <string>

#include "launch/sweep/SweepGrid.h"

namespace lddpm::launch::sweep {

class TaskConfigResolver {
 public:
  explicit TaskConfigResolver(const GridSpec& spec) : spec_(spec) {}

  // Every [base] line and every [grid] value on its own: the key is a `lddpm train` option that a
  // sweep may set and the value parses as that option's type. UsageError "FILE:LINE: ...".
  void checkLines() const;

  // The complete option set of `task` (base INI < [base] < swept values, `run` = runDir, `store`
  // made absolute), validated as `lddpm train` validates it with [sweep] ranks ranks, the model
  // built once per distinct model configuration and the store's manifest present. Returns the INI
  // text; UsageError naming the grid file, the task and its swept values.
  std::string resolve(const SweepTask& task, const std::string& runDir);

 private:
  const GridSpec& spec_;
  std::set<std::string> builtModels_;  // model option sets that already built
};

}  // namespace lddpm::launch::sweep
