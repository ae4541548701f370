// `lddpm phantom --out DIR`: writes an MSLesSeg-shaped demo cohort built from Colin27 (see
// data/Phantom.h); with --twins also DIR/twins/test/..., each test subject scanned again (the
// reference a perfect generator would score, docs/metrics.md). Ranks split the subjects
// round-robin; the cohort is written under DIR.partial and renamed to DIR by rank 0 after a
// barrier, so DIR exists only when complete. The output is identical plain or under mpirun: each
// subject depends on (seed, subject index) only.
#include <filesystem>
#include <iostream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/Phantom.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

int runPhantom(const CommandArgs& args) {
  data::PhantomOptions o;
  std::string out;
  bool twins = false;
  po::options_description own("phantom options");
  own.add_options()("out", po::value(&out)->required()->value_name("DIR"),
                    "new folder for the cohort")(
      "train-subjects", po::value(&o.trainSubjects)->default_value(o.trainSubjects),
      "training patients P1..Pn, each with --timepoints scans")(
      "test-subjects", po::value(&o.testSubjects)->default_value(o.testSubjects),
      "test patients, one scan each")(
      "timepoints", po::value(&o.timepoints)->default_value(o.timepoints),
      "scans per training patient (T1..Tk; lesions evolve between them)")(
      "seed", po::value(&o.seed)->default_value(o.seed), "the cohort is a function of this seed")(
      "template", po::value(&o.templatePath)->default_value(o.templatePath)->value_name("NII"),
      "skull-stripped T1 brain (Colin27 from mricron-data)")(
      "atlas", po::value(&o.atlasPath)->default_value(o.atlasPath)->value_name("NII"),
      "white-matter label atlas; its grid is the output grid")(
      "voxel-size", po::value(&o.voxelSize)->default_value(o.voxelSize)->value_name("MM"),
      "output voxel size; 1 gives MSLesSeg's 182x218x182, 2 a quick 91x109x91 cohort")(
      "min-lesions", po::value(&o.minLesions)->default_value(o.minLesions),
      "lesions per patient at the first timepoint: at least")(
      "max-lesions", po::value(&o.maxLesions)->default_value(o.maxLesions), "... and at most")(
      "gzip-level", po::value(&o.gzipLevel)->default_value(o.gzipLevel)->value_name("0-9"),
      "zlib level of the .nii.gz files (noisy float images barely compress: 1 is fastest)")(
      "twins", po::bool_switch(&twins),
      "also write DIR/twins/test/...: every test subject scanned again with independent "
      "intensity, bias-field and noise draws (the 'twin' reference of lddpm evaluate images)");
  const auto parsed = parseCommand(
      "phantom", "--out DIR [--train-subjects N] [--test-subjects N] [--timepoints K] [--seed S]",
      args, own);
  if (!parsed) return 0;

  const auto usage = [](const char* option, const std::string& problem) {
    LDDPM_THROW(core::UsageError, "lddpm phantom: option '--", option, "' ", problem);
  };
  if (o.trainSubjects < 0) usage("train-subjects", "must be >= 0");
  if (o.testSubjects < 0) usage("test-subjects", "must be >= 0");
  if (o.trainSubjects + o.testSubjects < 1)
    usage("train-subjects", "and --test-subjects: need at least one subject");
  if (o.timepoints < 1) usage("timepoints", "must be >= 1");
  if (!(o.voxelSize >= 0.5 && o.voxelSize <= 8)) usage("voxel-size", "must be in [0.5, 8] mm");
  if (o.minLesions < 0 || o.minLesions > o.maxLesions)
    usage("min-lesions", "must be in [0, --max-lesions]");
  if (o.maxLesions > 1000) usage("max-lesions", "must be <= 1000");
  if (o.gzipLevel < 0 || o.gzipLevel > 9) usage("gzip-level", "must be in 0..9");
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (fs::exists(out)) usage("out", "names an existing path '" + out + "': choose a new folder");

  // Reads template and atlas first, so bad inputs fail before anything is written.
  const data::PhantomGenerator generator(o);
  dist::World& world = dist::World::get();
  const std::string partial = out + ".partial";
  if (world.rank() == 0) {
    fs::remove_all(partial);  // left by an interrupted run: never valid, always rebuilt
    fs::create_directories(partial);
  }
  world.barrier();
  const int subjects = generator.subjectCount();
  // (subject, twin) pairs: every subject, then the test subjects' twins.
  std::vector<std::pair<int, bool>> work;
  for (int s = 0; s < subjects; ++s) work.emplace_back(s, false);
  if (twins) {
    for (int s = o.trainSubjects; s < subjects; ++s) work.emplace_back(s, true);
  }
  std::vector<std::pair<int, bool>> mine;
  for (size_t i = static_cast<size_t>(world.rank()); i < work.size();
       i += static_cast<size_t>(world.size())) {
    mine.push_back(work[i]);
  }
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

  if (world.rank() == 0) {
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
  }
  return 0;
}

}  // namespace lddpm::launch
