#include "data/MergedStore.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/Checksum.h"
#include "core/Error.h"
#include "data/Manifest.h"
#include "data/ShardReader.h"

namespace lddpm::data {
namespace fs = std::filesystem;

namespace {

// The parameters that change stored voxels' meaning, with the grid the store has (a --grid of
// auto and the grid it gave are the same store): what every merged store must share.
core::Json voxelParameters(const PreprocessOptions& o, const Manifest& manifest) {
  core::Json json = o.toJson();
  for (const char* key : {"synthetic", "derived_from", "compression", "chunk"}) json.erase(key);
  json["grid"] = manifest.grid;
  return json;
}

}  // namespace

StorePlan planMergedStore(const MergeRequest& request) {
  if (request.stores.size() < 2) {
    LDDPM_THROW(core::UsageError, "option '--merge': give at least two stores (got ",
                request.stores.size(), ")");
  }
  const Split split = parseSplit(request.split);
  StorePlan plan;
  core::Json inputs = core::Json::array(), synthetic = core::Json::array(), first;
  std::map<std::string, std::string> owner;  // subject id -> the store it came from
  for (std::size_t i = 0; i < request.stores.size(); ++i) {
    const std::string& store = request.stores[i];
    const Manifest manifest = readManifest(store);
    const PreprocessOptions options = PreprocessOptions::fromJson(manifest.parameters);
    if (i == 0) {
      plan.options = options;
      first = voxelParameters(options, manifest);
    } else if (voxelParameters(options, manifest) != first) {
      throw core::IoError(
          store, "was preprocessed with other parameters than " + request.stores[0] + ": " +
                     voxelParameters(options, manifest).dump() + " against " + first.dump());
    }
    inputs.push_back(
        {{"store", fs::absolute(store).lexically_normal().string()},
         {"manifest_xxh3_64", core::checksumHex(core::checksumFile(manifestPath(store)))}});
    if (!options.synthetic.is_null()) synthetic.push_back(options.synthetic);
    const std::vector<SubjectEntry> subjects = manifest.subjectsOf(split);
    if (subjects.empty()) {
      throw core::IoError(store,
                          "has no '" + request.split + "' subjects to merge (option --split)");
    }
    for (const SubjectEntry& entry : subjects) {
      const auto [it, fresh] = owner.emplace(entry.id, store);
      if (!fresh) {
        throw core::IoError(store, "holds subject '" + entry.id + "', which " + it->second +
                                       " holds too: a merged store needs unique ids (give the "
                                       "synthetic sets different --id-suffix values)");
      }
      plan.sources.push_back(
          {entry.id, {}, [store, entry] { return StoreReader(store).readSubject(entry); }});
    }
  }
  plan.options.synthetic = synthetic.empty() ? core::Json(nullptr) : synthetic;
  plan.options.derivedFrom = {{"merge", inputs}, {"split", request.split}};
  std::sort(plan.sources.begin(), plan.sources.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return plan;
}

}  // namespace lddpm::data
