// `lddpm preprocess --data DIR --out STORE`: MSLesSeg NIfTIs -> HDF5 shard store (docs/store.md).
// `lddpm preprocess --samples DIR --source-store STORE --out STORE2`: `lddpm sample` output -> a
// store of the synthetic scans on the source store's masks (data/SampledStore.h,
// docs/downstream.md). Plain or under mpirun/srun: ranks split the sorted scans round-robin and
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
#include "data/Manifest.h"
#include "data/MsLesSeg.h"
#include "data/Preprocess.h"
#include "data/SampledStore.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::array<std::int64_t, 3> parseGrid(const std::string& text) {
  if (text == "auto") return {0, 0, 0};
  std::array<std::int64_t, 3> g{};
  char x1 = 0, x2 = 0;
  std::istringstream in(text);
  if (!(in >> g[0] >> x1 >> g[1] >> x2 >> g[2]) || x1 != 'x' || x2 != 'x' || !in.eof()) {
    LDDPM_THROW(core::UsageError, "--grid: expected DxHxW (e.g. 160x192x160) or auto, got '", text,
                "'");
  }
  return g;
}

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

// The options that describe preprocessing itself: a store built from samples takes them from its
// source store, so giving one is a usage error rather than silently ignored.
constexpr const char* kPreprocessingOptions[] = {"channels",    "downsample",   "grid",
                                                 "zmax",        "index-stride", "index-window",
                                                 "compression", "chunk"};

// --samples: the subjects and parameters of a store of synthetic scans (usage checks first).
std::vector<data::SubjectSource> planFromSamples(const po::variables_map& values,
                                                 const data::SampledStoreRequest& request,
                                                 data::PreprocessOptions& options) {
  if (request.sourceStore.empty()) {
    LDDPM_THROW(core::UsageError,
                "lddpm preprocess: option '--samples' needs '--source-store' (the store the "
                "samples' masks came from)");
  }
  for (const char* name : kPreprocessingOptions) {
    if (values.count(name) && !values[name].defaulted()) {
      LDDPM_THROW(core::UsageError, "lddpm preprocess: option '--", name,
                  "' cannot be combined with '--samples' (a store built from samples keeps the "
                  "source store's preprocessing)");
    }
  }
  data::SampledStorePlan plan = data::planSampledStore(request);
  options = plan.options;
  return std::move(plan.sources);
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

}  // namespace

int runPreprocess(const CommandArgs& args) {
  std::string dataDir, out, channels = "FLAIR", grid = "auto", compression = "none", split = "all";
  data::PreprocessOptions options;
  data::SampledStoreRequest sampled;
  po::options_description own("preprocess options");
  own.add_options()("data", po::value(&dataDir)->value_name("DIR"),
                    "MSLesSeg folder (or lddpm phantom output)")(
      "samples", po::value(&sampled.samples)->value_name("DIR"),
      "instead of --data: a lddpm sample output; stores its synthetic scans as <id>_syn on the "
      "masks of --source-store")("source-store",
                                 po::value(&sampled.sourceStore)->value_name("STORE"),
                                 "with --samples: the store lddpm sample read the masks from")(
      "with-real", po::bool_switch(&sampled.withReal),
      "with --samples: also copy each sampled case's real scan (a real + synthetic store)")(
      "out", po::value(&out)->required()->value_name("STORE"), "store folder to create or finish")(
      "split", po::value(&split)->default_value(split), "scans to include: train, test or all")(
      "channels", po::value(&channels)->default_value(channels),
      "image channels, comma-separated from FLAIR,T1,T2")(
      "downsample", po::value(&options.downsample)->default_value(1),
      "integer downsampling factor (mean for images, majority/any for masks)")(
      "grid", po::value(&grid)->default_value(grid),
      "canonical grid DxHxW (multiples of 16) centred on the brain, or auto (input rounded up to "
      "16)")("zmax", po::value(&options.zmax)->default_value(3.0),
             "z-scores are clipped to [-zmax, zmax] and divided by zmax, giving [-1, 1]")(
      "index-stride", po::value(&options.indexStride)->default_value(8), "patch-index grid step")(
      "index-window", po::value(&options.indexWindow)->default_value(32),
      "cube edge over which patch-index rows count lesion voxels")(
      "compression", po::value(&compression)->default_value(compression),
      "none, deflate, lz4 or zstd")("chunk", po::value(&options.storage.chunk)->default_value(32),
                                    "HDF5 chunk edge (voxels)");
  const auto parsed = parseCommand(
      "preprocess", "--data DIR | --samples DIR --source-store STORE --out STORE [options]", args,
      own);
  if (!parsed) return 0;
  if (dataDir.empty() == sampled.samples.empty()) {
    LDDPM_THROW(core::UsageError, "lddpm preprocess: give exactly one of '--data' and '--samples'");
  }
  if (sampled.samples.empty() && (!sampled.sourceStore.empty() || sampled.withReal)) {
    LDDPM_THROW(core::UsageError, "lddpm preprocess: option '--",
                sampled.withReal ? "with-real" : "source-store", "' needs '--samples'");
  }
  options.channels = splitList(channels);
  options.grid = parseGrid(grid);
  options.storage.compression = data::parseCompression(compression);
  options.validate();
  data::parseSplit(split);

  dist::World& world = dist::World::get();
  core::Stopwatch watch;
  std::vector<data::SubjectSource> subjects;
  if (!sampled.samples.empty()) {
    sampled.split = split;
    subjects = planFromSamples(parsed->values, sampled, options);
  } else {
    data::DatasetIndex index = data::discoverMsLesSeg(dataDir);
    for (const auto& scan : index.scans) {
      if (split == "all" || scan.split == split) subjects.push_back(data::scanSource(scan));
    }
  }
  if (subjects.empty()) throw core::Error(dataDir + ": no " + split + " scans to preprocess");
  std::sort(subjects.begin(), subjects.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });

  // Every rank reads the earlier manifest (if any) before rank 0 removes it.
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

  LDDPM_LOG(Info) << "preprocessing " << subjects.size() << " scans on " << world.size()
                  << " rank(s) into " << out;
  const data::ShardResult mine =
      data::preprocessShard(options, out, subjects, world.rank(), world.size(), previous);
  if (mine.reused) {
    LDDPM_LOG_EVERY_RANK(Info) << "kept complete " << mine.file << " (" << mine.subjects
                               << " scans)";
  }
  world.barrier();
  if (world.rank() != 0) return 0;

  const std::vector<std::string> shards = data::expectedShards(subjects.size(), world.size());
  removeStaleShards(out, shards);
  const data::Manifest manifest = data::buildManifest(out, shards);
  writeCommandConfig(out, "preprocess", *parsed, own);
  data::writeManifest(out, manifest);  // last: its presence marks the store complete
  std::int64_t bytes = 0;
  for (const auto& s : manifest.shards) bytes += s.bytes;
  const double seconds = watch.seconds();
  std::cout << "store " << out << ": " << manifest.subjects.size() << " scans in "
            << manifest.shards.size() << " shard(s), grid " << manifest.grid[0] << "x"
            << manifest.grid[1] << "x" << manifest.grid[2] << ", " << bytes / 1e6 << " MB, "
            << seconds << " s (" << static_cast<double>(manifest.subjects.size()) / seconds
            << " volumes/s)\n";
  return 0;
}

}  // namespace lddpm::launch
