// `lddpm phantom --out DIR`: writes an MSLesSeg-shaped demo cohort built from Colin27 (see
// data/Phantom.h); with --twins also DIR/twins/test/..., each test subject scanned again (the
// reference a perfect generator would score, docs/metrics.md). Ranks split the subjects
// round-robin; the cohort is written under DIR.partial and renamed to DIR by rank 0 after a
// barrier, so DIR exists only when complete. The output is identical plain or under mpirun: each
// subject depends on (seed, subject index) only.
#include <filesystem>
#include <iostream>
#include <utility>
#include <vector>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/Phantom.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {

// This rank's share of the (subject, twin) pairs: every subject, then the test subjects' twins,
// dealt round-robin.
std::vector<std::pair<int, bool>> subjectsOfRank(const data::PhantomOptions& o, int subjects,
                                                 bool twins, int rank, int ranks) {
  std::vector<std::pair<int, bool>> work;
  for (int s = 0; s < subjects; ++s) work.emplace_back(s, false);
  if (twins) {
    for (int s = o.trainSubjects; s < subjects; ++s) work.emplace_back(s, true);
  }
  std::vector<std::pair<int, bool>> mine;
  for (size_t i = static_cast<size_t>(rank); i < work.size(); i += static_cast<size_t>(ranks)) {
    mine.push_back(work[i]);
  }
  return mine;
}

}  // namespace

int runPhantom(const CommandContext& context) {
  data::PhantomOptions o;
  std::string out;
  bool twins = false;
  po::options_description own("phantom options");
  own.add_options()("out", po::value(&out)->required()->value_name("DIR"),
                    "new folder for the cohort")(
      "twins", po::bool_switch(&twins),
      "also write DIR/twins/test/...: every test subject scanned again with independent "
      "intensity, bias-field and noise draws (the 'twin' reference of lddpm evaluate images)");
  own.add(o.describe());
  const auto parsed = parseCommand(
      context, "phantom",
      "--out DIR [--train-subjects N] [--test-subjects N] [--timepoints K] [--seed S]", own);
  if (!parsed) return 0;
  try {
    o.validate();
  } catch (const core::UsageError& e) {
    LDDPM_THROW(core::UsageError, "lddpm phantom: ", e.what());
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (fs::exists(out)) {
    LDDPM_THROW(core::UsageError, "lddpm phantom: option '--out' names an existing path '", out,
                "': choose a new folder");
  }

  // Reads template and atlas first, so bad inputs fail before anything is written.
  const data::PhantomGenerator generator(o);
  dist::World& world = context.world;
  const std::string partial = out + ".partial";
  if (world.rank() == 0) {
    fs::remove_all(partial);  // left by an interrupted run: never valid, always rebuilt
    fs::create_directories(partial);
  }
  world.barrier();
  const auto mine = subjectsOfRank(o, generator.subjectCount(), twins, world.rank(), world.size());
  LDDPM_LOG(Info) << "phantom: " << o.trainSubjects << " train x " << o.timepoints
                  << " timepoints + " << o.testSubjects << " test subjects, seed " << o.seed << ", "
                  << world.size() << " rank(s)";
  core::Progress progress("phantom subjects (rank 0's share)",
                          static_cast<std::int64_t>(mine.size()));
  for (size_t i = 0; i < mine.size(); ++i) {
    const auto [subject, twin] = mine[i];
    generator.writeSubject(subject, twin ? (fs::path(partial) / "twins").string() : partial, twin);
    progress.update(static_cast<std::int64_t>(i + 1));
  }
  progress.finish();
  world.barrier();
  if (world.rank() != 0) return 0;

  writeCommandConfig(partial, "phantom", *parsed, own);
  core::writeFileAtomic(
      (fs::path(partial) / "README.txt").string(),
      "Synthetic MSLesSeg-shaped cohort made by `lddpm phantom` from the Colin27 brain\n"
      "(mricron-data). For development and demos only: not a substitute for real scans.\n"
      "config.ini holds the options that reproduce it exactly.\n");
  core::publish(partial, out);
  // Rewritten in place (atomically) only so that its "re-run with" line names DIR, not
  // DIR.partial; the cohort is never without its config.
  writeCommandConfig(out, "phantom", *parsed, own);
  std::cout << out << "\n";
  return 0;
}

}  // namespace lddpm::launch
