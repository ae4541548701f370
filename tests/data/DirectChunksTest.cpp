// Direct chunk reads (data/DirectChunks.h): every box read by locating chunks through HDF5 and
// decoding them outside it equals HDF5's own hyperslab read (H5Dread, the independent reference)
// and the volume that was written, for every compression and for boxes crossing chunk and grid
// edges; a corrupt or missing chunk is an IoError naming the file and the chunk, never garbage or a
// crash; datasets the direct path does not decode are recognised and read through HDF5.
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "core/Error.h"
#include "data/DirectChunks.h"
#include "data/ShardReader.h"
#include "data/ShardWriter.h"
#include "tests/common/Errors.h"
#include "tests/common/Shell.h"
#include "tests/data/StoreTestUtil.h"

namespace {
using lddpm::testutil::errorOf;
using namespace lddpm;
using namespace lddpm::data;
using data::testing::syntheticSubject;
using data::testing::TempDir;
namespace fs = std::filesystem;

// Neither axis but the last is a multiple of the chunk edge 8: edge chunks are padded.
constexpr std::array<std::int64_t, 3> kGrid = {12, 20, 16};

// Two channels, so the leading axis of the image is read too.
SubjectData twoChannelSubject(const std::string& id, std::uint64_t seed) {
  SubjectData s = syntheticSubject(id, kGrid, seed);
  s.channels = {"FLAIR", "T1"};
  s.image = torch::cat({s.image, torch::rand_like(s.image)}, 0);
  return s;
}

std::string writeShard(const TempDir& dir, Compression compression,
                       const std::vector<SubjectData>& subjects) {
  const std::string path = (dir.path / shardFileName(0)).string();
  ShardWriter writer(path, ShardHeader{0, "{}", {"FLAIR", "T1"}, kGrid}, {compression, 8});
  for (const auto& s : subjects) writer.add(s);
  writer.commit();
  return path;
}

torch::Tensor box(const torch::Tensor& volume, const std::array<std::int64_t, 3>& start,
                  const std::array<std::int64_t, 3>& size) {
  const std::int64_t lead = volume.dim() - 3;
  torch::Tensor t = volume;
  for (int a = 0; a < 3; ++a) t = t.narrow(lead + a, start[a], size[a]);
  return t;
}

class DirectReads : public ::testing::TestWithParam<Compression> {};

TEST_P(DirectReads, EveryBoxEqualsHdf5sReadAndTheWrittenVolume) {
  TempDir dir("direct");
  const std::vector<SubjectData> written = {twoChannelSubject("P1_T1", 1),
                                            twoChannelSubject("P2_T1", 2)};
  const std::string path = writeShard(dir, GetParam(), written);
  ShardReader direct(path), hdf5(path, ShardReader::kDefaultChunkCacheBytes, false);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 120; ++trial) {
    const SubjectData& s = written[static_cast<std::size_t>(trial % 2)];
    std::array<std::int64_t, 3> start{}, size{};
    for (int a = 0; a < 3; ++a) {
      if (trial == 0) {  // the whole grid, then single corner voxels
        size[a] = kGrid[a];
      } else if (trial < 3) {
        size[a] = 1;
        start[a] = trial == 1 ? 0 : kGrid[a] - 1;
        continue;
      } else {
        size[a] = std::uniform_int_distribution<std::int64_t>(1, kGrid[a])(rng);
      }
      start[a] = std::uniform_int_distribution<std::int64_t>(0, kGrid[a] - size[a])(rng);
    }
    ASSERT_TRUE(direct.readsDirectly(s.id));
    ASSERT_FALSE(hdf5.readsDirectly(s.id));
    const PatchData got = direct.readPatch(s.id, start, size);
    const PatchData want = hdf5.readPatch(s.id, start, size);
    const std::string where = s.id + " box " + std::to_string(start[0]) + "," +
                              std::to_string(start[1]) + "," + std::to_string(start[2]) + " + " +
                              std::to_string(size[0]) + "," + std::to_string(size[1]) + "," +
                              std::to_string(size[2]);
    ASSERT_TRUE(torch::equal(got.image, want.image)) << where;
    ASSERT_TRUE(torch::equal(got.tissue, want.tissue)) << where;
    ASSERT_TRUE(torch::equal(got.lesion, want.lesion)) << where;
    ASSERT_TRUE(torch::equal(got.image, box(s.image, start, size))) << where;
    ASSERT_TRUE(torch::equal(got.lesion, box(s.lesion, start, size))) << where;
  }
}

INSTANTIATE_TEST_SUITE_P(Compressions, DirectReads,
                         ::testing::Values(Compression::None, Compression::Deflate,
                                           Compression::Lz4, Compression::Zstd),
                         [](const auto& param) { return compressionName(param.param); });

// Overwrites the stored bytes of the image's first chunk, found by h5py (an independent reader).
void clobberFirstImageChunk(const std::string& path, const std::string& subject) {
  const std::string cmd = std::string(LDDPM_PYTHON) +
                          " -c \"import h5py,sys; d=h5py.File(sys.argv[1],'r')['subjects/" +
                          subject +
                          "/image']; i=d.id.get_chunk_info_by_coord((0,0,0,0)); "
                          "print(i.byte_offset, i.size)\" " +
                          path;
  const auto where = lddpm::testutil::runShell(cmd);
  ASSERT_EQ(where.code, 0) << cmd << "\n" << where.out;
  std::istringstream in(where.out);
  std::uint64_t offset = 0, bytes = 0;
  ASSERT_TRUE(in >> offset >> bytes) << where.out;
  ASSERT_GT(bytes, 0u);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  const std::string junk(bytes, '\xa5');
  f.write(junk.data(), static_cast<std::streamsize>(bytes));
}

class CorruptChunk : public ::testing::TestWithParam<Compression> {};

TEST_P(CorruptChunk, IsAnErrorNamingFileAndChunk) {
  TempDir dir("corrupt");
  const std::string path = writeShard(dir, GetParam(), {twoChannelSubject("P1_T1", 1)});
  clobberFirstImageChunk(path, "P1_T1");
  ShardReader direct(path), hdf5(path, ShardReader::kDefaultChunkCacheBytes, false);
  const std::string m = errorOf([&] { direct.readPatch("P1_T1", {0, 0, 0}, {4, 4, 4}); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("/image chunk at (0,0,0,0)"), std::string::npos) << m;
  EXPECT_NE(m.find("corrupt shard"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
  // HDF5 refuses the chunk too (the direct path is not more lenient than the reference) ...
  EXPECT_NE(errorOf([&] { hdf5.readPatch("P1_T1", {0, 0, 0}, {4, 4, 4}); }), "");
  // ... and a box that does not touch the chunk still reads.
  EXPECT_NO_THROW(direct.readPatch("P1_T1", {8, 8, 8}, {4, 4, 4}));
}

INSTANTIATE_TEST_SUITE_P(Compressions, CorruptChunk,
                         ::testing::Values(Compression::Deflate, Compression::Lz4,
                                           Compression::Zstd),
                         [](const auto& param) { return compressionName(param.param); });

TEST(DirectReadsFaults, ShardTruncatedUnderAnOpenReaderIsAnError) {
  TempDir dir("truncated");
  const std::string path = writeShard(
      dir, Compression::None, {twoChannelSubject("P1_T1", 1), twoChannelSubject("P2_T1", 2)});
  ShardReader direct(path);
  ASSERT_NO_THROW(direct.readPatch("P2_T1", {0, 0, 0}, {4, 4, 4}));
  fs::resize_file(path, fs::file_size(path) / 3);  // P2_T1's chunks were written last
  const std::string m = errorOf([&] { direct.readPatch("P2_T1", {8, 16, 8}, {4, 4, 8}); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
}

// A reader keeps the chunk tables of as many subjects as `tableBytes` holds; one more takes the
// slot of the least recently read, and every patch still reads its own subject's chunks.
TEST(DirectReadsTables, BoundedByTheBudgetLeastRecentlyReadGoesFirst) {
  TempDir dir("tables");
  std::vector<SubjectData> written;
  for (int k = 0; k < 5; ++k)
    written.push_back(twoChannelSubject("P" + std::to_string(k) + "_T1", 10 + k));
  const std::string path = writeShard(dir, Compression::None, written);
  // Chunks of edge 8 over the 12 x 20 x 16 grid: 2 * 3 * 2 per channel; 2 channels + 2 masks.
  const std::size_t perSubject = (2 + 1 + 1) * 2 * 3 * 2 * sizeof(ChunkEntry);
  ShardReader direct(path, ShardReader::kDefaultChunkCacheBytes, true, 2 * perSubject + 1),
      hdf5(path, ShardReader::kDefaultChunkCacheBytes, false);
  const auto read = [&](std::size_t k, const std::array<std::int64_t, 3>& start) {
    const std::string& id = written[k].id;
    const PatchData got = direct.readPatch(id, start, {5, 9, 7});
    const PatchData want = hdf5.readPatch(id, start, {5, 9, 7});
    EXPECT_TRUE(torch::equal(got.image, want.image) && torch::equal(got.tissue, want.tissue) &&
                torch::equal(got.lesion, want.lesion))
        << id << " at " << start[0] << "," << start[1] << "," << start[2];
  };
  read(0, {0, 0, 0});
  read(1, {1, 2, 3});
  EXPECT_EQ(direct.keptTableBytes(), 2 * perSubject);
  read(0, {4, 5, 6});  // P0 is now the more recently read
  read(2, {7, 11, 9});
  EXPECT_TRUE(direct.keepsTables("P0_T1"));
  EXPECT_FALSE(direct.keepsTables("P1_T1"));
  EXPECT_TRUE(direct.keepsTables("P2_T1"));
  std::mt19937 rng(3);  // many evictions, in every order
  for (int trial = 0; trial < 60; ++trial) {
    read(rng() % written.size(),
         {static_cast<std::int64_t>(rng() % 8), static_cast<std::int64_t>(rng() % 12),
          static_cast<std::int64_t>(rng() % 10)});
  }
  EXPECT_EQ(direct.keptTableBytes(), 2 * perSubject);
  // A budget under one subject still keeps one; the default keeps the whole shard.
  ShardReader one(path, ShardReader::kDefaultChunkCacheBytes, true, 1);
  one.readPatch("P3_T1", {0, 0, 0}, {2, 2, 2});
  EXPECT_EQ(one.keptTableBytes(), perSubject);
  ShardReader all(path);
  all.readPatch("P3_T1", {0, 0, 0}, {2, 2, 2});
  EXPECT_EQ(all.keptTableBytes(), written.size() * perSubject);
}

// Datasets made with HDF5's C API in ways the store never writes.
class Layouts : public ::testing::Test {
 protected:
  void SetUp() override { file = h5::createFile((dir.path / "layouts.h5").string()); }
  h5::Handle make(const std::string& name, hid_t fileType, bool chunked,
                  const std::function<void(hid_t)>& configure = {}) {
    const hsize_t dims[3] = {12, 20, 16}, chunk[3] = {8, 8, 8};
    h5::Handle space(H5Screate_simple(3, dims, nullptr), &H5Sclose);
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), &H5Pclose);
    if (chunked) H5Pset_chunk(dcpl.get(), 3, chunk);
    if (configure) configure(dcpl.get());
    return h5::Handle(H5Dcreate2(file.get(), name.c_str(), fileType, space.get(), H5P_DEFAULT,
                                 dcpl.get(), H5P_DEFAULT),
                      &H5Dclose);
  }
  std::string why(const h5::Handle& d) {
    return ChunkedDataset(file.get(), d.get(), H5T_NATIVE_FLOAT, "layouts.h5:/d").whyNotDirect();
  }
  TempDir dir{"layouts"};
  h5::Handle file;
};

TEST_F(Layouts, WhatTheDirectPathDoesNotDecodeIsRecognised) {
  EXPECT_EQ(why(make("contiguous", H5T_NATIVE_FLOAT, false)), "not chunked");
  EXPECT_EQ(why(make("big_endian", H5T_IEEE_F32BE, true)),
            "stored type differs from the native one");
  EXPECT_EQ(why(make("fletcher", H5T_NATIVE_FLOAT, true, [](hid_t p) { H5Pset_fletcher32(p); })),
            "filter pipeline this reader does not decode");
  const float fill = 3.5f;
  EXPECT_EQ(why(make("filled", H5T_NATIVE_FLOAT, true,
                     [&](hid_t p) { H5Pset_fill_value(p, H5T_NATIVE_FLOAT, &fill); })),
            "user-defined fill value");
  EXPECT_EQ(why(make("plain", H5T_NATIVE_FLOAT, true)), "");
}

// A chunk holding several channels of [C, D, H, W] (the store chunks one channel at a time): a
// box's part in such a chunk spans several planes on two axes, read by one odometer.
TEST_F(Layouts, ChunksAcrossChannelsReadAsHdf5Does) {
  const hsize_t dims[4] = {3, 12, 20, 16}, chunk[4] = {2, 8, 8, 8};
  h5::Handle space(H5Screate_simple(4, dims, nullptr), &H5Sclose);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), &H5Pclose);
  H5Pset_chunk(dcpl.get(), 4, chunk);
  const h5::Handle d(H5Dcreate2(file.get(), "channels", H5T_NATIVE_FLOAT, space.get(), H5P_DEFAULT,
                                dcpl.get(), H5P_DEFAULT),
                     &H5Dclose);
  const torch::Tensor volume = torch::rand({3, 12, 20, 16});
  ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, volume.data_ptr()),
            0);
  H5Fflush(file.get(), H5F_SCOPE_GLOBAL);
  const ChunkedDataset layout(file.get(), d.get(), H5T_NATIVE_FLOAT, "layouts.h5:/channels");
  ASSERT_TRUE(layout.direct());
  const ShardFile raw((dir.path / "layouts.h5").string());
  ChunkScratch scratch;
  for (const auto& [start, size] :
       std::vector<std::pair<std::array<std::int64_t, 3>, std::array<std::int64_t, 3>>>{
           {{0, 0, 0}, {12, 20, 16}}, {{3, 5, 7}, {7, 11, 9}}, {{7, 15, 1}, {2, 3, 14}}}) {
    torch::Tensor got = torch::full({3, size[0], size[1], size[2]}, -7.0f);
    layout.readBox(raw, start, size, got.data_ptr(), scratch);
    const torch::Tensor want = volume.slice(1, start[0], start[0] + size[0])
                                   .slice(2, start[1], start[1] + size[1])
                                   .slice(3, start[2], start[2] + size[2]);
    EXPECT_TRUE(torch::equal(got, want))
        << "box at " << start[0] << "," << start[1] << "," << start[2];
  }
}

TEST_F(Layouts, UnwrittenChunksReadAsHdf5sDefaultFill) {
  const h5::Handle d = make("partial", H5T_NATIVE_FLOAT, true);
  // Only the box [0, 8)^3 is written: one chunk of the 2 x 3 x 2 exists in the file.
  const torch::Tensor part = torch::rand({8, 8, 8});
  const hsize_t offset[3] = {0, 0, 0}, count[3] = {8, 8, 8};
  h5::Handle fileSpace(H5Dget_space(d.get()), &H5Sclose);
  H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr);
  h5::Handle memSpace(H5Screate_simple(3, count, nullptr), &H5Sclose);
  ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, memSpace.get(), fileSpace.get(), H5P_DEFAULT,
                     part.data_ptr()),
            0);
  H5Fflush(file.get(), H5F_SCOPE_GLOBAL);
  torch::Tensor want = torch::empty({12, 20, 16});
  ASSERT_GE(H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, want.data_ptr()), 0);
  const ChunkedDataset layout(file.get(), d.get(), H5T_NATIVE_FLOAT, "layouts.h5:/partial");
  ASSERT_TRUE(layout.direct());
  const ShardFile raw((dir.path / "layouts.h5").string());
  ChunkScratch scratch;
  torch::Tensor got = torch::full({12, 20, 16}, -7.0f);
  layout.readBox(raw, {0, 0, 0}, {12, 20, 16}, got.data_ptr(), scratch);
  EXPECT_TRUE(torch::equal(got, want));
  EXPECT_TRUE(torch::equal(got.slice(0, 0, 8).slice(1, 0, 8).slice(2, 0, 8), part));
  got.slice(0, 0, 8).slice(1, 0, 8).slice(2, 0, 8).zero_();
  EXPECT_TRUE(torch::equal(got, torch::zeros_like(got)));  // zeros everywhere else
}

}  // namespace
