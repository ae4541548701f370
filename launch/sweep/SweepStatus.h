#pragma once
// What a sweep folder says about its tasks: sweep.json (tasks, swept values, submissions), each
// task's status.json and metrics.jsonl written by `lddpm train`, and what the scheduler still
// holds. `lddpm sweep status` and `collect` print these; `lddpm sweep` uses them to skip finished
// tasks.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/Json.h"

namespace lddpm::launch::sweep {

// "007" for task 7 of up to 1000 tasks; wider when there are more.
int taskDirWidth(std::size_t taskCount);
std::string taskDirName(int id, int width);

// SWEEP/sweep.json; UsageError "DIR is not a sweep folder" when it is missing.
core::Json readSweepRecord(const std::string& sweepDir);

// Array task id -> scheduler state (PENDING, RUNNING, ...) of the tasks the scheduler holds.
using QueueStates = std::map<int, std::string>;

struct TaskState {
  int id = 0;
  std::string dir;  // absolute
  std::vector<std::pair<std::string, std::string>> values;
  // status.json's state (running, stopped, failed, finished); otherwise the scheduler's
  // (queued, running), else "submitted" (in an earlier submission) or "not submitted".
  std::string state;
  bool finished = false;
  std::int64_t step = -1, steps = -1;  // -1: unknown
  core::Json metrics =
      core::Json::object();  // last metrics.jsonl row (mean of the last `last` rows)
};

// The state of every task of a sweep. `queue` is what the scheduler reported, if it could be asked.
// `last` >= 1 rows of metrics.jsonl are averaged into `metrics` (1: the last row).
std::vector<TaskState> readTaskStates(const std::string& sweepDir, const core::Json& record,
                                      const std::optional<QueueStates>& queue, int last = 1);

// True when `dir`/status.json says "finished".
bool taskFinished(const std::string& dir);

// A table rendered three ways: aligned text, markdown, CSV (RFC 4180 quoting).
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string text() const;
  std::string markdown() const;
  std::string csv() const;
};

// `lddpm sweep status`: task, swept values, state, step/steps, loss, samples/s.
Table statusTable(const std::vector<TaskState>& tasks, const std::vector<std::string>& swept);
// "6 tasks: 2 finished, 1 running, 3 queued".
std::string stateSummary(const std::vector<TaskState>& tasks);

// `lddpm sweep collect`: tasks ordered by `metric` (finished tasks first, then unfinished ones,
// then those without the metric; ties by task id), their metric columns (every numeric key of the
// rows but step, in first-seen order). UsageError when no task has the metric but some have rows.
struct Collected {
  std::vector<TaskState> tasks;  // sorted
  std::vector<std::string> metricKeys;
  Table table;  // unfinished tasks' state marked with '*'
  core::Json json;
};
Collected collectResults(std::vector<TaskState> tasks, const std::vector<std::string>& swept,
                         const std::string& metric, bool descending);

// %.6g, "n/a" for a missing value.
std::string formatNumber(const core::Json& value);

}  // namespace lddpm::launch::sweep
