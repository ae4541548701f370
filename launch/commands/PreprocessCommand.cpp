// `lddpm preprocess --data DIR --out STORE`: MSLesSeg NIfTIs -> HDF5 shard store (docs/store.md).
// `lddpm preprocess --samples DIR --source-store STORE --out STORE2`: `lddpm sample` output -> a
// store of the synthetic scans on the source store's masks (data/SampledStore.h,
// docs/downstream.md). `--merge STORE --merge STORE2 ...`: one store holding their subjects
// (data/MergedStore.h); `--transplant STORE`: the store's anatomies with lesions transplanted from
// other subjects, a mask source for `lddpm sample` (data/LesionTransplant.h, docs/reproduce.md).
// Plain or under mpirun/srun: ranks split the sorted scans round-robin and
// each writes its own shard with the serial HDF5 library; after a barrier rank 0 checksums the
// shards and writes manifest.json last, so a store without a manifest is unfinished and a rerun
// finishes it.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/Error.h"
#include "core/Log.h"
#include "core/Timer.h"
#include "data/LesionTransplant.h"
#include "data/Manifest.h"
#include "data/MergedStore.h"
#include "data/MsLesSeg.h"
#include "data/Preprocess.h"
#include "data/SampledStore.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {

// Removes what an interrupted earlier run may have left: temporaries, and the manifest (the
// shards are about to change, so an old manifest must not describe them).
void clearUnfinished(const std::string& out) {
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".shard-", 0) == 0 || name.rfind(".manifest.json.tmp", 0) == 0)
      fs::remove(entry.path());
  }
  fs::remove(data::manifestPath(out));
}

// A store made from other stores keeps their preprocessing: giving a preprocessing option there
// is a usage error rather than silently ignored.
void refusePreprocessingOptions(const po::variables_map& values, const std::string& mode) {
  for (const std::string& name : data::PreprocessArguments::names()) {
    if (values.count(name) && !values[name].defaulted()) {
      LDDPM_THROW(core::UsageError, "lddpm preprocess: option '--", name,
                  "' cannot be combined with '--", mode,
                  "' (a store made from other stores keeps their preprocessing)");
    }
  }
}

// Shards that this run does not produce (an earlier run with more ranks) would confuse readers.
void removeStaleShards(const std::string& out, const std::vector<std::string>& keep) {
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("shard-", 0) == 0 && std::find(keep.begin(), keep.end(), name) == keep.end()) {
      LDDPM_LOG(Info) << "removing stale " << entry.path().string();
      fs::remove(entry.path());
    }
  }
}

// The command's own options beside data::PreprocessArguments.
struct PreprocessCommandOptions {
  std::string data, out, split = "all", idSuffix;
  data::SampledStoreRequest sampled;
  std::vector<std::string> merge;
  data::TransplantRequest transplant;

  data::PreprocessArguments preprocessing;

  po::options_description describe() {
    po::options_description d("preprocess options");
    d.add_options()("data", po::value(&data)->value_name("DIR"),
                    "MSLesSeg folder (or lddpm phantom output)")(
        "samples", po::value(&sampled.samples)->value_name("DIR"),
        "instead of --data: a lddpm sample output; stores its synthetic scans as <id>_syn on the "
        "masks of --source-store")("source-store",
                                   po::value(&sampled.sourceStore)->value_name("STORE"),
                                   "with --samples: the store lddpm sample read the masks from")(
        "with-real", po::bool_switch(&sampled.withReal),
        "with --samples: also copy each sampled case's real scan (a real + synthetic store)")(
        "merge", po::value(&merge)->composing()->value_name("STORE"),
        "instead of --data: a store whose subjects to copy; give it once per store (at least "
        "two; subject ids must be unique across them)")(
        "transplant", po::value(&transplant.store)->value_name("STORE"),
        "instead of --data: each subject of STORE with the lesions of another patient's scan, "
        "moved whole into its white matter (a mask source for lddpm sample; stored as "
        "<id>_tp; hosts and donors from the train split unless --split is given)")(
        "id-suffix", po::value(&idSuffix)->value_name("SUFFIX"),
        "with --samples or --transplant: the suffix of the new subjects' ids "
        "(default _syn and _tp)")("seed",
                                  po::value(&transplant.seed)->default_value(transplant.seed),
                                  "with --transplant: donors and placements")(
        "tries", po::value(&transplant.tries)->default_value(transplant.tries),
        "with --transplant: positions tried per lesion component before it is dropped")(
        "min-white-matter",
        po::value(&transplant.minWhiteMatter)->default_value(transplant.minWhiteMatter, "0.5"),
        "with --transplant: least fraction of a placed lesion component's voxels in the host's "
        "white matter (its own lesions included); every voxel is in the brain")(
        "out", po::value(&out)->required()->value_name("STORE"),
        "store folder to create or finish")("split", po::value(&split)->default_value(split),
                                            "scans to include: train, test or all");
    d.add(preprocessing.describe());
    return d;
  }

  // The mode's option name: data, samples, merge or transplant.
  std::string mode() const {
    if (!sampled.samples.empty()) return "samples";
    if (!merge.empty()) return "merge";
    if (!transplant.store.empty()) return "transplant";
    return "data";
  }

  void validate(const po::variables_map& values) const {
    const int modeCount =
        !data.empty() + !sampled.samples.empty() + !merge.empty() + !transplant.store.empty();
    if (modeCount != 1) {
      LDDPM_THROW(core::UsageError,
                  "lddpm preprocess: give exactly one of '--data', "
                  "'--samples', '--merge' and '--transplant'");
    }
    const std::string m = mode();
    const auto only = [&](const char* option, bool given, const std::vector<std::string>& modes) {
      if (given && std::find(modes.begin(), modes.end(), m) == modes.end()) {
        LDDPM_THROW(core::UsageError, "lddpm preprocess: option '--", option, "' needs '--",
                    modes[0], "'", modes.size() > 1 ? " or '--" + modes[1] + "'" : "");
      }
    };
    only("source-store", !sampled.sourceStore.empty(), {"samples"});
    only("with-real", sampled.withReal, {"samples"});
    only("id-suffix", values.count("id-suffix") > 0, {"samples", "transplant"});
    only("seed", !values["seed"].defaulted(), {"transplant"});
    only("tries", !values["tries"].defaulted(), {"transplant"});
    only("min-white-matter", !values["min-white-matter"].defaulted(), {"transplant"});
    if (m != "data") refusePreprocessingOptions(values, m);
    data::parseSplit(split);
  }
};

// The scans to preprocess, sorted by id, and the options they are preprocessed with (a store
// made from other stores takes their parameters).
std::vector<data::SubjectSource> planSubjects(const PreprocessCommandOptions& o,
                                              const po::variables_map& values,
                                              data::PreprocessOptions& options) {
  const bool suffixGiven = values.count("id-suffix") > 0;
  const std::string mode = o.mode();
  std::vector<data::SubjectSource> subjects;
  if (mode == "data") {
    data::DatasetIndex index = data::discoverMsLesSeg(o.data);
    for (const auto& scan : index.scans) {
      if (o.split == "all" || scan.split == o.split) subjects.push_back(data::scanSource(scan));
    }
    if (subjects.empty()) throw core::Error(o.data + ": no " + o.split + " scans to preprocess");
    std::sort(subjects.begin(), subjects.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    return subjects;
  }
  data::StorePlan plan;
  if (mode == "samples") {
    if (o.sampled.sourceStore.empty()) {
      LDDPM_THROW(core::UsageError,
                  "lddpm preprocess: option '--samples' needs '--source-store' (the store the "
                  "samples' masks came from)");
    }
    data::SampledStoreRequest request = o.sampled;
    request.split = o.split;
    if (suffixGiven) request.idSuffix = o.idSuffix;
    plan = data::planSampledStore(request);
  } else if (mode == "merge") {
    plan = data::planMergedStore({o.merge, o.split});
  } else {
    data::TransplantRequest request = o.transplant;
    if (!values["split"].defaulted()) request.split = o.split;  // else train: no test lesions
    if (suffixGiven) request.idSuffix = o.idSuffix;
    plan = data::planTransplantStore(request);
  }
  options = plan.options;
  return std::move(plan.sources);
}

// Every rank reads the earlier manifest (if any: its shards may be reused) before rank 0 clears
// what an interrupted run left.
std::optional<data::Manifest> prepareStoreFolder(const std::string& out, dist::World& world) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw core::IoError(out, "cannot create the store folder: " + ec.message());
  std::optional<data::Manifest> previous;
  if (fs::exists(data::manifestPath(out))) {
    try {
      previous = data::readManifest(out);
    } catch (const core::Error& e) {
      LDDPM_LOG(Warn) << "ignoring the earlier manifest: " << e.what();
    }
  }
  world.barrier();
  if (world.rank() == 0) clearUnfinished(out);
  world.barrier();
  return previous;
}

}  // namespace

int runPreprocess(const CommandContext& context) {
  PreprocessCommandOptions o;
  const po::options_description own = o.describe();
  const auto parsed =
      parseCommand(context, "preprocess",
                   "--data DIR | --samples DIR --source-store STORE | --merge STORE --merge "
                   "STORE... | --transplant STORE   --out STORE [options]",
                   own);
  if (!parsed) return 0;
  o.validate(parsed->values);
  data::PreprocessOptions options = o.preprocessing.resolve();

  dist::World& world = context.world;
  core::Stopwatch watch;
  const std::vector<data::SubjectSource> subjects = planSubjects(o, parsed->values, options);
  const std::optional<data::Manifest> previous = prepareStoreFolder(o.out, world);
  LDDPM_LOG(Info) << "preprocessing " << subjects.size() << " scans on " << world.size()
                  << " rank(s) into " << o.out;
  const data::ShardResult mine =
      data::preprocessShard(options, o.out, subjects, world.rank(), world.size(), previous);
  if (mine.reused) {
    LDDPM_LOG_EVERY_RANK(Info) << "kept complete " << mine.file << " (" << mine.subjects
                               << " scans)";
  }
  world.barrier();
  if (world.rank() != 0) return 0;

  const std::vector<std::string> shards = data::expectedShards(subjects.size(), world.size());
  removeStaleShards(o.out, shards);
  const data::Manifest manifest = data::buildManifest(o.out, shards);
  writeCommandConfig(o.out, "preprocess", *parsed, own);
  data::writeManifest(o.out, manifest);  // last: its presence marks the store complete
  std::int64_t bytes = 0;
  for (const auto& s : manifest.shards) bytes += s.bytes;
  const double seconds = watch.seconds();
  std::cout << "store " << o.out << ": " << manifest.subjects.size() << " scans in "
            << manifest.shards.size() << " shard(s), grid " << manifest.grid[0] << "x"
            << manifest.grid[1] << "x" << manifest.grid[2] << ", " << bytes / 1e6 << " MB, "
            << seconds << " s (" << static_cast<double>(manifest.subjects.size()) / seconds
            << " volumes/s)\n";
  return 0;
}

}  // namespace lddpm::launch
