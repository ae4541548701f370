#pragma once
// The grid file of `lddpm sweep` (docs/sweeps.md): [sweep] settings, [base] options every task
// gets, [grid] lists crossed into a Cartesian product, [random] distributions drawn from a seed.
// Parsing names file:line; expansion and random draws are pure functions of the file.
#include <cstdint>
#include <istream>
#include <string>
#include <utility>
#include <vector>

#include "core/Json.h"

namespace lddpm::launch::sweep {

// How the sweep runs and how `collect` sorts; none of these change what a task trains.
struct SweepSettings {
  std::string name;     // SLURM job name; default: the grid file's stem
  int maxParallel = 0;  // %K of --array; 0 = no limit
  std::string metric = "loss";
  bool descending = false;
  int samples = 0;         // `random = N`: draws of the [random] keys per grid point
  std::uint64_t seed = 0;  // seed of the [random] draws
  int ranks = 1;           // ranks per task, for the --batch divisibility check
};

// One `key = value` line of [base], kept verbatim.
struct BaseOption {
  std::string key;
  std::string value;
  int line = 0;
};

// One [grid] key and its comma-separated values (double quotes keep a comma inside a value).
struct GridAxis {
  std::string key;
  std::vector<std::string> values;
  int line = 0;
};

// One [random] key: uniform(a,b), loguniform(a,b), randint(a,b) or choice(v1,v2,...).
struct RandomAxis {
  std::string key;
  std::string kind;
  std::vector<std::string> args;
  std::string text;  // as written, for sweep.json and messages
  int line = 0;
};

struct GridSpec {
  std::string path;
  SweepSettings settings;
  std::vector<BaseOption> base;
  std::vector<GridAxis> grid;
  std::vector<RandomAxis> random;

  // What defines the tasks (base, grid, random, samples, seed, ranks) as JSON, for sweep.json and
  // for comparing a resubmission with the grid the sweep was created with.
  core::Json definition() const;
  // Grid size × draws: the number of tasks expandTasks returns.
  std::size_t taskCount() const;
  // The swept keys in task-value order: [grid] keys, then [random] keys.
  std::vector<std::string> sweptKeys() const;
};

// Reads and checks a grid file; UsageError "FILE:LINE: ..." on anything malformed.
GridSpec readGridFile(const std::string& path);
// The same on a stream; `name` stands for the file in messages.
GridSpec parseGrid(std::istream& in, const std::string& name);

struct SweepTask {
  int id = 0;
  std::vector<std::pair<std::string, std::string>> values;  // sweptKeys() order
};

// The Cartesian product of the [grid] lists (the last key varies fastest), each grid point
// repeated for draws 0..samples-1 of the [random] keys: task id = point × samples + draw. Draw d
// gives every grid point the same values, so grid axes are compared on equal random settings.
std::vector<SweepTask> expandTasks(const GridSpec& spec);

// A [random] key's value for draw `draw`, written as the INI text the task gets (6 significant
// digits for real numbers). Deterministic in (seed, draw, key name): adding or reordering keys
// leaves the others' draws unchanged.
std::string drawRandom(const RandomAxis& axis, std::uint64_t seed, std::int64_t draw);

// `s` as one /bin/sh word: single-quoted, each ' written as '\''. The program receives exactly
// these bytes (tests/fuzz/FuzzSweepGrid.cpp checks it against /bin/sh); `s` must hold no NUL.
std::string shellQuote(const std::string& s);

// "0-3,5,7-8" for ids {0,1,2,3,5,7,8} (sorted, unique ids).
std::string arraySpec(const std::vector<int>& ids);

}  // namespace lddpm::launch::sweep
