// Fuzzes the loader's chunk decoder (data/DirectChunks.h) with the stored bytes of a chunk: the
// input is one byte choosing the store's compression (none, deflate, lz4, zstd), one byte of
// HDF5 filter mask (which filters the chunk says were skipped) and the chunk's stored bytes. The
// seeds are real chunks (read back with H5Dread_chunk); each input is written in place of the
// first image chunk of a copy of a valid shard with H5Dwrite_chunk (HDF5 stores the bytes as
// given, except that an unfiltered chunk always takes its full size), then read through
// ShardReader's direct path: a patch over that chunk and the whole subject.
// Contract: the read succeeds or throws a one-line core::Error, never a crash or a read outside
// the buffers (ASan tree). Property of an accepted input, for the codecs whose HDF5 decoding is
// safe on arbitrary bytes (none; shuffle + deflate): the voxels equal what HDF5's own H5Dread
// makes of the same chunk, so the direct path decodes exactly as the library that wrote it.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/ShardReader.h"
#include "data/ShardWriter.h"
#include "tests/data/StoreTestUtil.h"
#include "tests/fuzz/Fuzzer.h"

namespace {
using namespace lddpm;
using fuzz::Bytes;
namespace fs = std::filesystem;

const data::Compression kCodecs[] = {data::Compression::None, data::Compression::Deflate,
                                     data::Compression::Lz4, data::Compression::Zstd};
const hsize_t kFirstChunk[4] = {0, 0, 0, 0};

// The stored bytes and filter mask of the subject's first image chunk.
std::pair<Bytes, std::uint32_t> readFirstChunk(const std::string& path) {
  data::h5::Handle file = data::h5::openFile(path);
  data::h5::Handle image = data::h5::openDataset(file.get(), "subjects/P1_T1/image", path);
  hsize_t bytes = 0;
  LDDPM_H5_CHECK(H5Dget_chunk_storage_size(image.get(), kFirstChunk, &bytes), path);
  Bytes stored(bytes, '\0');
  std::uint32_t mask = 0;
  LDDPM_H5_CHECK(H5Dread_chunk(image.get(), H5P_DEFAULT, kFirstChunk, &mask, stored.data()), path);
  return {stored, mask};
}

void writeFirstChunk(const std::string& path, const Bytes& stored, std::uint32_t mask) {
  data::h5::Handle file = data::h5::openFile(path, /*readWrite=*/true);
  data::h5::Handle image = data::h5::openDataset(file.get(), "subjects/P1_T1/image", path);
  // HDF5 1.10.8 stores an unfiltered chunk at its full size (8^3 floats) whatever size it is
  // given, reading that much from the buffer: pad it so the copy stays inside.
  Bytes buffer = stored;
  buffer.resize(std::max<std::size_t>(buffer.size(), 8 * 8 * 8 * sizeof(float)));
  LDDPM_H5_CHECK(
      H5Dwrite_chunk(image.get(), H5P_DEFAULT, mask, kFirstChunk, stored.size(), buffer.data()),
      path);
}

}  // namespace

int main(int argc, char** argv) {
  data::testing::TempDir tmp("fuzz-chunks");
  const std::array<std::int64_t, 3> grid = {12, 20, 16};
  std::vector<std::string> shards;
  fuzz::Target target;
  target.name = "shard chunks";
  for (std::size_t c = 0; c < std::size(kCodecs); ++c) {
    const std::string path = (tmp.path / ("seed-" + std::to_string(c) + ".h5")).string();
    data::ShardWriter writer(path, data::ShardHeader{0, "{}", {"FLAIR"}, grid}, {kCodecs[c], 8});
    writer.add(data::testing::syntheticSubject("P1_T1", grid, 3 + c));
    writer.commit();
    shards.push_back(path);
    const auto [stored, mask] = readFirstChunk(path);
    target.seeds.push_back(Bytes(1, static_cast<char>(c)) + Bytes(1, static_cast<char>(mask)) +
                           stored);
  }
  const std::string work = (tmp.path / "work.h5").string();
  target.mutate = [&](Bytes& input, fuzz::Rng& rng) {
    // Leave the two header bytes alone most of the time: the chunk bytes are the parser input.
    Bytes body = input.size() > 2 ? input.substr(2) : Bytes();
    fuzz::mutateBytes(body, rng, target.seeds);
    input = (input.size() >= 2 ? input.substr(0, 2) : Bytes(2, '\0')) + body;
    if (rng() % 16 == 0) input[rng() % 2] = static_cast<char>(rng());
  };
  target.run = [&](const Bytes& input) {
    if (input.size() < 2) throw core::Error("input shorter than its two header bytes");
    const std::size_t codec = static_cast<unsigned char>(input[0]) % std::size(kCodecs);
    const std::uint32_t mask = static_cast<unsigned char>(input[1]) & 3u;
    fs::copy_file(shards[codec], work, fs::copy_options::overwrite_existing);
    writeFirstChunk(work, input.substr(2), mask);
    data::ShardReader direct(work);
    if (!direct.readsDirectly("P1_T1")) {
      throw fuzz::PropertyViolation("the shard is no longer read directly");
    }
    const data::PatchData patch = direct.readPatch("P1_T1", {2, 3, 1}, {6, 5, 7});
    direct.readSubject("P1_T1");
    if (kCodecs[codec] == data::Compression::None || kCodecs[codec] == data::Compression::Deflate) {
      data::ShardReader hdf5(work, data::ShardReader::kDefaultChunkCacheBytes, false);
      const data::PatchData want = hdf5.readPatch("P1_T1", {2, 3, 1}, {6, 5, 7});
      // Bit for bit (fuzzed bytes hold NaNs, which torch::equal calls unequal to themselves).
      if (!torch::equal(patch.image.view(torch::kInt32), want.image.view(torch::kInt32))) {
        throw fuzz::PropertyViolation("direct read differs from H5Dread on an accepted chunk");
      }
    }
  };
  return fuzz::fuzzMain(argc, argv, target);
}
