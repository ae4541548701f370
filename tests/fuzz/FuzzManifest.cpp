// Fuzzes the store's manifest and shard metadata as every reader meets them: manifest.json
// mutated as JSON (values swapped for hostile ones: shard names pointing outside the store,
// absolute paths, huge and negative numbers, wrong types, missing keys, duplicated entries) and
// as bytes, then data::readManifest + verifyStore + ShardReader::readSubject on each listed
// subject, as `lddpm sample` and the loader open them. Property of an accepted manifest: every
// shard it names is a plain file inside the store and every subject id a plain name, so nothing
// outside the store is read and no output file lands outside its folder. A second store copy
// beside the first ("outside") holds valid shards: a reader that followed a name out of the store
// would find a shard that verifies, and the property check catches it.
#include <filesystem>
#include <fstream>
#include <set>

#include "core/Json.h"
#include "data/Manifest.h"
#include "data/ShardReader.h"
#include "data/ShardWriter.h"
#include "tests/data/StoreTestUtil.h"
#include "tests/fuzz/Fuzzer.h"

namespace {
using namespace lddpm;
using core::Json;
using fuzz::Bytes;
namespace fs = std::filesystem;

const char* const kHostileStrings[] = {"../outside/shard-00000.h5",
                                       "/tmp/shard-00000.h5",
                                       "shard-00000.h5/../../outside/shard-00000.h5",
                                       "",
                                       ".",
                                       "..",
                                       "shard-00001.h5",
                                       "shard-00000.h5",
                                       "P1_T1",
                                       "../P1_T1",
                                       ".hidden",
                                       "a\nb",
                                       "x/y",
                                       "train",
                                       "test",
                                       "lddpm-store"};

Json hostileValue(fuzz::Rng& rng) {
  switch (rng() % 6) {
    case 0:
      return kHostileStrings[rng() % std::size(kHostileStrings)];
    case 1: {
      const std::int64_t ints[] = {-1,
                                   0,
                                   1,
                                   2,
                                   3,
                                   1 << 20,
                                   std::numeric_limits<std::int64_t>::max(),
                                   std::numeric_limits<std::int64_t>::min()};
      return ints[rng() % std::size(ints)];
    }
    case 2:
      return rng() % 2 ? Json(1e300) : Json(-0.5);
    case 3:
      return rng() % 2 ? Json(nullptr) : Json(true);
    case 4:
      return rng() % 2 ? Json::array() : Json::object();
    default:
      return std::string(300, 'x');
  }
}

// Every JSON pointer of `j` (objects and arrays walked).
void pointers(const Json& j, const std::string& at, std::vector<std::string>& out) {
  out.push_back(at);
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) pointers(v, at + "/" + k, out);
  } else if (j.is_array()) {
    for (std::size_t i = 0; i < j.size(); ++i) pointers(j[i], at + "/" + std::to_string(i), out);
  }
}

void mutateJson(Bytes& text, fuzz::Rng& rng) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return;
  std::vector<std::string> all;
  pointers(j, "", all);
  const Json::json_pointer p(all[rng() % all.size()]);
  switch (rng() % 4) {
    case 0:
    case 1:
      j[p] = hostileValue(rng);
      break;
    case 2:  // drop the key or element
      if (!p.empty()) {
        Json& parent = j[p.parent_pointer()];
        if (parent.is_object())
          parent.erase(p.back());
        else if (parent.is_array() && !parent.empty())
          parent.erase(parent.begin());
      }
      break;
    default:  // duplicate an array element
      if (!p.empty() && j[p.parent_pointer()].is_array()) {
        j[p.parent_pointer()].push_back(j[p]);
      }
      break;
  }
  text = j.dump(1);
}

}  // namespace

int main(int argc, char** argv) {
  data::testing::TempDir tmp("fuzz-manifest");
  const fs::path store = tmp.path / "store";
  const fs::path outside = tmp.path / "outside";
  const std::array<std::int64_t, 3> grid = {8, 12, 10};
  for (const fs::path& dir : {store, outside}) {
    fs::create_directories(dir);
    for (int shard = 0; shard < 2; ++shard) {
      data::ShardWriter writer((dir / data::shardFileName(shard)).string(),
                               data::ShardHeader{shard, R"({"zmax":3})", {"FLAIR"}, grid},
                               {data::Compression::None, 8});
      for (int s = 0; s < 2 - shard; ++s) {
        writer.add(data::testing::syntheticSubject("P" + std::to_string(2 * shard + s + 1) + "_T1",
                                                   grid, 10 + 2 * shard + s, 2));
      }
      writer.commit();
    }
  }
  const data::Manifest valid =
      data::buildManifest(store.string(), {data::shardFileName(0), data::shardFileName(1)});
  data::writeManifest(outside.string(), valid);
  const fs::path storeCanonical = fs::canonical(store);

  fuzz::Target target;
  target.name = "manifest";
  target.seeds = {valid.toJson().dump(1)};
  target.mutate = mutateJson;
  target.run = [&](const Bytes& input) {
    std::ofstream(data::manifestPath(store.string()), std::ios::trunc) << input;
    const data::Manifest m = data::readManifest(store.string());
    for (const auto& shard : m.shards) {
      const fs::path resolved = fs::weakly_canonical(store / shard.file);
      if (resolved.parent_path() != storeCanonical) {
        throw fuzz::PropertyViolation("shard '" + shard.file + "' resolves outside the store");
      }
    }
    for (const auto& s : m.subjects) {
      if (s.id.find('/') != std::string::npos || s.id == ".." || s.id.empty()) {
        throw fuzz::PropertyViolation("subject id '" + s.id +
                                      "' would name a file outside its folder");
      }
    }
    data::verifyStore(store.string(), m);
    std::map<std::string, std::unique_ptr<data::ShardReader>> readers;
    for (const auto& s : m.subjects) {
      auto& reader = readers[s.shard];
      if (!reader) reader = std::make_unique<data::ShardReader>((store / s.shard).string());
      reader->readSubject(s.id, /*withVoxels=*/false);
    }
  };
  return fuzz::fuzzMain(argc, argv, target);
}
