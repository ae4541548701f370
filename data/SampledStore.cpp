#include "data/SampledStore.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/Checksum.h"
#include "core/Error.h"
#include "data/Manifest.h"
#include "data/NiftiIo.h"
#include "data/ShardReader.h"

namespace lddpm::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kNiftiSuffix = ".nii.gz";

// The case ids of the synthetic/ folder ("P1_T1.nii.gz" -> "P1_T1"), sorted.
std::vector<std::string> sampledIds(const fs::path& synthetic) {
  std::vector<std::string> ids;
  const std::string suffix = kNiftiSuffix;
  for (const auto& entry : fs::directory_iterator(synthetic)) {
    const std::string name = entry.path().filename().string();
    // Hidden names are a killed writer's temporaries (.NAME.tmp-PID-N.nii.gz), not cases.
    if (entry.is_regular_file() && name[0] != '.' && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ids.push_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The source subject reduced to its first image channel (what the generators synthesise).
SubjectData readFirstChannel(const std::string& shard, const std::string& id) {
  SubjectData s = ShardReader(shard).readSubject(id);
  s.image = s.image.narrow(0, 0, 1).contiguous();
  s.channels.resize(1);
  s.normMean.resize(1);
  s.normStd.resize(1);
  return s;
}

SubjectData syntheticSubject(const std::string& shard, const std::string& id,
                             const std::string& file, const std::string& suffix) {
  SubjectData s = readFirstChannel(shard, id);
  const Volume v = readNifti(file);
  if (!v.data.sizes().equals(s.lesion.sizes())) {
    throw core::IoError(file, core::strCat("shape ", v.data.sizes(), " differs from the grid ",
                                           s.lesion.sizes(), " of subject ", id,
                                           " in the source store (sampled from another store?)"));
  }
  if (!torch::isfinite(v.data).all().item<bool>()) {
    throw core::IoError(file, "holds NaN or infinite voxels");
  }
  s.image = v.data.to(torch::kFloat32).unsqueeze(0).contiguous();
  s.id = id + suffix;
  return s;
}

}  // namespace

StorePlan planSampledStore(const SampledStoreRequest& request) {
  checkIdSuffix(request.idSuffix, "id-suffix");
  const fs::path samples(request.samples);
  if (!fs::is_regular_file(samples / "sampling.json")) {
    throw core::IoError(request.samples,
                        "is not a finished lddpm sample output (no sampling.json)");
  }
  const std::vector<std::string> ids = sampledIds(samples / "synthetic");
  if (ids.empty()) throw core::IoError((samples / "synthetic").string(), "holds no .nii.gz case");

  const Manifest manifest = readManifest(request.sourceStore);
  std::map<std::string, const SubjectEntry*> byId;
  for (const auto& s : manifest.subjects) byId[s.id] = &s;

  StorePlan plan;
  plan.options = PreprocessOptions::fromJson(manifest.parameters);
  if (!plan.options.synthetic.is_null()) {
    throw core::IoError(request.sourceStore,
                        "is itself a store of synthetic scans; give the store the samples' masks "
                        "came from");
  }
  if (request.withReal && plan.options.derivedFrom.contains("transplant")) {
    throw core::IoError(request.sourceStore,
                        "holds transplanted lesion masks, whose images do not show them: "
                        "'--with-real' would store those images as real scans");
  }
  plan.options.channels = {manifest.channels.at(0)};
  plan.options.synthetic = {
      {"samples", fs::absolute(samples).lexically_normal().string()},
      {"sampling_xxh3_64",
       core::checksumHex(core::checksumFile((samples / "sampling.json").string()))},
      {"source_store", fs::absolute(request.sourceStore).lexically_normal().string()},
      {"source_manifest_xxh3_64",
       core::checksumHex(core::checksumFile(manifestPath(request.sourceStore)))},
      {"with_real", request.withReal},
      {"id_suffix", request.idSuffix}};

  for (const std::string& id : ids) {
    const auto it = byId.find(id);
    if (it == byId.end()) {
      throw core::IoError((samples / "synthetic" / (id + kNiftiSuffix)).string(),
                          "has no subject '" + id + "' in the source store " + request.sourceStore);
    }
    if (request.split != "all" && it->second->split != request.split) continue;
    const std::string shard = (fs::path(request.sourceStore) / it->second->shard).string();
    const std::string file = (samples / "synthetic" / (id + kNiftiSuffix)).string();
    plan.sources.push_back(
        {id + request.idSuffix, {}, [shard, id, file, suffix = request.idSuffix] {
           return syntheticSubject(shard, id, file, suffix);
         }});
    if (request.withReal) {
      plan.sources.push_back({id, {}, [shard, id] { return readFirstChannel(shard, id); }});
    }
  }
  if (plan.sources.empty()) {
    throw core::IoError(request.samples,
                        "no sampled case has split '" + request.split + "' in the source store");
  }
  std::sort(plan.sources.begin(), plan.sources.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return plan;
}

}  // namespace lddpm::data
