#include "data/LesionTransplant.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <vector>

#include "core/Checksum.h"
#include "core/Components.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/Rng.h"
#include "data/Manifest.h"
#include "data/ShardReader.h"

namespace lddpm::data {
namespace fs = std::filesystem;

namespace {

using Voxel = std::array<std::int64_t, 3>;

// The voxels of every component labelled 1..n, each list in raster order.
std::vector<std::vector<Voxel>> componentVoxels(const torch::Tensor& labels, std::int64_t n) {
  std::vector<std::vector<Voxel>> components(static_cast<std::size_t>(n));
  const auto l = labels.accessor<std::int32_t, 3>();
  for (std::int64_t z = 0; z < labels.size(0); ++z) {
    for (std::int64_t y = 0; y < labels.size(1); ++y) {
      for (std::int64_t x = 0; x < labels.size(2); ++x) {
        if (l[z][y][x] > 0)
          components[static_cast<std::size_t>(l[z][y][x] - 1)].push_back({z, y, x});
      }
    }
  }
  return components;
}

}  // namespace

SubjectData transplantLesions(const SubjectData& host, const SubjectData& donor, std::uint64_t seed,
                              int tries, double minWhiteMatter, TransplantStats* stats) {
  if (!host.tissue.sizes().equals(donor.lesion.sizes())) {
    throw core::IoError(host.id, core::strCat("grid ", host.tissue.sizes(), " differs from donor ",
                                              donor.id, "'s ", donor.lesion.sizes()));
  }
  const auto [labels, n] = core::connectedComponents(donor.lesion);
  std::vector<std::vector<Voxel>> components = componentVoxels(labels, n);
  std::stable_sort(components.begin(), components.end(),
                   [](const auto& a, const auto& b) { return a.size() > b.size(); });

  const torch::Tensor whiteMatter =
      host.tissue.eq(kWhiteMatter).logical_or(host.lesion.gt(0)).contiguous();
  const torch::Tensor wmVoxels = whiteMatter.nonzero().contiguous();  // [M, 3] int64
  const std::int64_t D = whiteMatter.size(0), H = whiteMatter.size(1), W = whiteMatter.size(2);
  const torch::Tensor inBrainMask = host.tissue.gt(0).logical_or(host.lesion.gt(0)).contiguous();
  const auto wm = whiteMatter.accessor<bool, 3>();
  const auto brain = inBrainMask.accessor<bool, 3>();
  const auto anchors = wmVoxels.accessor<std::int64_t, 2>();
  torch::Tensor lesion = torch::zeros({D, H, W}, torch::kUInt8);
  torch::Tensor blocked = torch::zeros({D, H, W}, torch::kUInt8);  // placed lesions, dilated by 1
  auto out = lesion.accessor<std::uint8_t, 3>();
  auto block = blocked.accessor<std::uint8_t, 3>();
  const auto inside = [&](std::int64_t z, std::int64_t y, std::int64_t x) {
    return z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W;
  };

  std::mt19937_64 rng(seed);
  TransplantStats s;
  s.components = n;
  for (const auto& c : components) s.donorVoxels += static_cast<std::int64_t>(c.size());
  for (const auto& component : components) {
    if (wmVoxels.size(0) == 0) break;
    std::uniform_int_distribution<std::int64_t> pick(0, wmVoxels.size(0) - 1);
    for (int attempt = 0; attempt < tries; ++attempt) {
      const std::int64_t a = pick(rng);
      const Voxel shift = {anchors[a][0] - component[0][0], anchors[a][1] - component[0][1],
                           anchors[a][2] - component[0][2]};
      std::int64_t inWhiteMatter = 0;
      const bool inBrain = std::all_of(component.begin(), component.end(), [&](const Voxel& v) {
        const std::int64_t z = v[0] + shift[0], y = v[1] + shift[1], x = v[2] + shift[2];
        if (!inside(z, y, x) || !brain[z][y][x] || block[z][y][x]) return false;
        inWhiteMatter += wm[z][y][x];
        return true;
      });
      const bool fits = inBrain && static_cast<double>(inWhiteMatter) >=
                                       minWhiteMatter * static_cast<double>(component.size());
      if (!fits) continue;
      for (const Voxel& v : component) {
        const std::int64_t z = v[0] + shift[0], y = v[1] + shift[1], x = v[2] + shift[2];
        out[z][y][x] = 1;
        for (std::int64_t dz = -1; dz <= 1; ++dz) {
          for (std::int64_t dy = -1; dy <= 1; ++dy) {
            for (std::int64_t dx = -1; dx <= 1; ++dx) {
              if (inside(z + dz, y + dy, x + dx)) block[z + dz][y + dy][x + dx] = 1;
            }
          }
        }
      }
      ++s.placed;
      s.placedVoxels += static_cast<std::int64_t>(component.size());
      break;
    }
  }
  if (stats) *stats = s;

  SubjectData result = host;
  result.lesion = lesion;
  indexLesions(result);
  return result;
}

StorePlan planTransplantStore(const TransplantRequest& request) {
  checkIdSuffix(request.idSuffix, "id-suffix");
  if (request.tries < 1) {
    LDDPM_THROW(core::UsageError, "option '--tries': must be positive, got ", request.tries);
  }
  if (!(request.minWhiteMatter >= 0 && request.minWhiteMatter <= 1)) {
    LDDPM_THROW(core::UsageError, "option '--min-white-matter': must be in [0, 1], got ",
                request.minWhiteMatter);
  }
  const Manifest manifest = readManifest(request.store);
  StorePlan plan;
  plan.options = PreprocessOptions::fromJson(manifest.parameters);
  if (!plan.options.synthetic.is_null() || !plan.options.derivedFrom.is_null()) {
    throw core::IoError(request.store,
                        "is itself made from other stores (synthetic, merged or transplanted); "
                        "transplant between the real scans' store");
  }
  const std::vector<SubjectEntry> subjects = manifest.subjectsOf(parseSplit(request.split));
  if (subjects.size() < 2) {
    throw core::IoError(request.store, "has " + std::to_string(subjects.size()) + " '" +
                                           request.split +
                                           "' subject(s); a transplant needs a host and a donor");
  }
  // Patients, for drawing donors of another patient (metadata only, no voxels).
  StoreReader reader(request.store);
  std::map<std::string, std::string> patient;
  for (const auto& s : subjects) {
    patient[s.id] = reader.shard(s.shard).readSubject(s.id, /*withVoxels=*/false).patient;
  }
  plan.options.derivedFrom = {
      {"transplant",
       {{"store", fs::absolute(request.store).lexically_normal().string()},
        {"manifest_xxh3_64", core::checksumHex(core::checksumFile(manifestPath(request.store)))},
        {"split", request.split},
        {"seed", request.seed},
        {"id_suffix", request.idSuffix},
        {"tries", request.tries},
        {"min_white_matter", request.minWhiteMatter}}}};

  const std::string storeDir = request.store;
  for (const auto& host : subjects) {
    std::vector<const SubjectEntry*> donors, others;
    for (const auto& d : subjects) {
      if (d.id == host.id) continue;
      others.push_back(&d);
      if (patient[d.id] != patient[host.id]) donors.push_back(&d);
    }
    if (donors.empty()) donors = others;
    const std::uint64_t seed =
        core::deriveSeed(request.seed, core::RngStream::LesionTransplant, {core::nameKey(host.id)});
    std::mt19937_64 rng(seed);
    const SubjectEntry donor =
        *donors[std::uniform_int_distribution<std::size_t>(0, donors.size() - 1)(rng)];
    const std::string id = host.id + request.idSuffix;
    plan.sources.push_back(
        {id,
         {},
         [storeDir, host, donor, id, seed = rng(), tries = request.tries,
          minWm = request.minWhiteMatter] {
           StoreReader in(storeDir);
           TransplantStats stats;
           SubjectData s = transplantLesions(in.readSubject(host), in.readSubject(donor), seed,
                                             tries, minWm, &stats);
           s.id = id;
           // Dropped components change the size distribution: say so loudly.
           const bool dropped = stats.placed < stats.components;
           core::detail::LogLine(dropped ? core::LogLevel::Warn : core::LogLevel::Info, true)
               << id << ": lesions of " << donor.id << ", " << stats.placed << " of "
               << stats.components << " components placed (" << stats.placedVoxels << " of "
               << stats.donorVoxels << " voxels)";
           return s;
         }});
  }
  std::sort(plan.sources.begin(), plan.sources.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return plan;
}

}  // namespace lddpm::data
