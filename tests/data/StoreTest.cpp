// The shard store: what is read equals what was written (every compression), the on-disk schema
// as an independent reader (Debian's h5py) sees it, the manifest's checksums, and the bad-input
// cases: corrupt or truncated shards and manifest mismatches give errors naming the file.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Json.h"
#include "data/Manifest.h"
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

constexpr std::array<std::int64_t, 3> kGrid = {12, 20, 16};

ShardHeader header(int index) { return ShardHeader{index, R"({"zmax":3})", {"FLAIR"}, kGrid}; }

std::string writeShard(const TempDir& dir, int index, const std::vector<SubjectData>& subjects,
                       StorageOptions storage = {Compression::None, 8}) {
  const std::string path = (dir.path / shardFileName(index)).string();
  ShardWriter writer(path, header(index), storage);
  for (const auto& s : subjects) writer.add(s);
  writer.commit();
  return path;
}

std::string runCapture(const std::string& cmd) {
  const auto r = lddpm::testutil::runShell(cmd);
  EXPECT_EQ(r.code, 0) << cmd << "\n" << r.out;
  return r.out;
}

class RoundTrip : public ::testing::TestWithParam<Compression> {};

TEST_P(RoundTrip, ReadEqualsWritten) {
  TempDir dir("store");
  const SubjectData a = syntheticSubject("P1_T1", kGrid, 1);
  const SubjectData b = syntheticSubject("P2_T2", kGrid, 2, /*lesionEdge=*/0);
  const std::string path = writeShard(dir, 3, {a, b}, {GetParam(), 8});

  ShardReader reader(path);
  EXPECT_EQ(reader.header().shardIndex, 3);
  EXPECT_EQ(reader.header().grid, kGrid);
  EXPECT_EQ(reader.header().parameters, R"({"zmax":3})");
  ASSERT_EQ(reader.subjects(), (std::vector<std::string>{"P1_T1", "P2_T2"}));
  for (const SubjectData* want : {&a, &b}) {
    const SubjectData got = reader.readSubject(want->id);
    EXPECT_TRUE(torch::equal(got.image, want->image)) << want->id;
    EXPECT_TRUE(torch::equal(got.tissue, want->tissue));
    EXPECT_TRUE(torch::equal(got.lesion, want->lesion));
    EXPECT_TRUE(torch::equal(got.patchIndex, want->patchIndex));
    EXPECT_TRUE(torch::equal(got.lesionVoxels, want->lesionVoxels));
    EXPECT_EQ(got.affine, want->affine);
    EXPECT_EQ(got.spacing, want->spacing);
    EXPECT_EQ(got.sourceShape, want->sourceShape);
    EXPECT_EQ(got.cropOffset, want->cropOffset);
    EXPECT_EQ(got.normMean, want->normMean);
    EXPECT_EQ(got.normStd, want->normStd);
    EXPECT_EQ(got.tissueMeans, want->tissueMeans);
    EXPECT_EQ(got.patient, want->patient);
    EXPECT_EQ(got.timepoint, want->timepoint);
    EXPECT_EQ(reader.readCounts(want->id),
              std::make_pair(want->brainVoxels(), want->lesionCount()));
  }
  // The index tables a row at a time, read from the file and through H5Dread, equal the written
  // tables; a row past the end is an error naming the table.
  ShardReader viaHdf5(path, ShardReader::kDefaultChunkCacheBytes, /*directReads=*/false);
  for (ShardReader* r : {&reader, &viaHdf5}) {
    for (const SubjectData* want : {&a, &b}) {
      const std::array<std::int64_t, 2> rows{want->patchIndex.size(0), want->lesionVoxels.size(0)};
      ASSERT_EQ(r->indexRows(want->id), rows) << want->id;
      for (int t = 0; t < 2; ++t) {
        const auto table = static_cast<ShardReader::IndexTable>(t);
        const torch::Tensor& written = t == 0 ? want->patchIndex : want->lesionVoxels;
        for (std::int64_t row = 0; row < rows[t]; ++row) {
          const auto zyx = r->readIndexRow(want->id, table, row);
          const torch::Tensor got = torch::tensor({zyx[0], zyx[1], zyx[2]}, torch::kInt32);
          ASSERT_TRUE(torch::equal(got, written[row].slice(0, 0, 3))) << want->id << " " << row;
        }
        const std::string m = errorOf([&] { r->readIndexRow(want->id, table, rows[t]); });
        EXPECT_NE(m.find(t == 0 ? "/patch_index" : "/lesion_voxels"), std::string::npos) << m;
      }
    }
  }
  // A patch is the same box of the whole volume.
  const PatchData p = reader.readPatch("P1_T1", {2, 5, 3}, {8, 8, 8});
  EXPECT_TRUE(torch::equal(p.image, a.image.slice(1, 2, 10).slice(2, 5, 13).slice(3, 3, 11)));
  EXPECT_TRUE(torch::equal(p.lesion, a.lesion.slice(0, 2, 10).slice(1, 5, 13).slice(2, 3, 11)));
}

INSTANTIATE_TEST_SUITE_P(Compressions, RoundTrip,
                         ::testing::Values(Compression::None, Compression::Deflate,
                                           Compression::Lz4, Compression::Zstd),
                         [](const auto& param) { return compressionName(param.param); });

TEST(Store, SchemaAsH5pySeesIt) {
  TempDir dir("schema");
  const std::string path =
      writeShard(dir, 0, {syntheticSubject("P1_T1", kGrid, 1)}, {Compression::Zstd, 8});
  // Debian's h5py, an independent reader: dtypes, shapes, chunks, filter and attributes.
  const std::string script =
      "import h5py,json,sys\n"
      "f=h5py.File(sys.argv[1],'r'); g=f['subjects/P1_T1']\n"
      "d=lambda n: [str(g[n].dtype), list(g[n].shape), list(g[n].chunks or [])]\n"
      "print(json.dumps({'format':f.attrs['format'].decode(),'version':int(f.attrs['format_version'"
      "]),"
      "'grid':[int(v) for v in f.attrs['grid']],'count':int(f.attrs['subject_count']),"
      "'image':d('image'),'tissue':d('tissue'),'lesion':d('lesion'),'index':d('patch_index'),"
      "'lesions':d('lesion_voxels'),'filters':list(g['image']._filters.keys()),"
      "'split':g.attrs['split'].decode(),'affine':[float(v) for v in g.attrs['affine']],"
      "'sum':float(g['image'][()].astype('float64').sum())}))\n";
  const auto j =
      core::Json::parse(runCapture(std::string(LDDPM_PYTHON) + " -c \"" + script + "\" " + path));
  EXPECT_EQ(j["format"], "lddpm-store");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["grid"], core::Json({12, 20, 16}));
  EXPECT_EQ(j["count"], 1);
  EXPECT_EQ(j["image"], core::Json::parse(R"(["float32",[1,12,20,16],[1,8,8,8]])"));
  EXPECT_EQ(j["tissue"], core::Json::parse(R"(["uint8",[12,20,16],[8,8,8]])"));
  EXPECT_EQ(j["lesion"], core::Json::parse(R"(["uint8",[12,20,16],[8,8,8]])"));
  EXPECT_EQ(j["index"][0], "int32");
  EXPECT_EQ(j["lesions"], core::Json::parse(R"(["int32",[27,3],[]])"));
  EXPECT_EQ(j["filters"], core::Json({"32001"}));
  EXPECT_EQ(j["split"], "train");
  EXPECT_EQ(j["affine"][0], 2.0);
  EXPECT_EQ(j["affine"][3], -10.0);
  const SubjectData s = syntheticSubject("P1_T1", kGrid, 1);
  EXPECT_NEAR(j["sum"].get<double>(), s.image.to(torch::kFloat64).sum().item<double>(), 1e-6);
}

TEST(Store, UncommittedWriterLeavesNothing) {
  TempDir dir("uncommitted");
  {
    ShardWriter writer((dir.path / "shard-00000.h5").string(), header(0), {});
    writer.add(syntheticSubject("P1_T1", kGrid, 1));
  }  // e.g. an exception before commit
  EXPECT_TRUE(fs::is_empty(dir.path));
}

TEST(Store, WriterRejectsWrongGrid) {
  TempDir dir("badgrid");
  ShardWriter writer((dir.path / "shard-00000.h5").string(), header(0), {});
  const std::string m = errorOf([&] { writer.add(syntheticSubject("P1_T1", {12, 20, 8}, 1)); });
  EXPECT_NE(m.find("P1_T1"), std::string::npos) << m;
  EXPECT_NE(m.find("grid"), std::string::npos) << m;
}

TEST(Checksum, KnownVectorAndFileAgree) {
  // XXH3-64 of the empty input, from the xxHash specification's test vectors.
  EXPECT_EQ(core::checksumHex(core::checksumBytes("", 0)), "2d06800538d394c2");
  TempDir dir("checksum");
  const std::string path = (dir.path / "f.bin").string();
  std::string content(3 << 20, '\0');  // > 1 buffer, so the streaming path is exercised
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 131 + 7);
  std::ofstream(path, std::ios::binary) << content;
  EXPECT_EQ(core::checksumFile(path), core::checksumBytes(content.data(), content.size()));
}

struct StoreFixture : ::testing::Test {
  TempDir dir{"manifest"};
  void SetUp() override {
    writeShard(dir, 0, {syntheticSubject("P1_T1", kGrid, 1), syntheticSubject("P3_T1", kGrid, 3)});
    writeShard(dir, 1, {syntheticSubject("P2_T1", kGrid, 2, 0)});
    writeManifest(dir.str(), buildManifest(dir.str(), {"shard-00000.h5", "shard-00001.h5"}));
  }
  std::string shard0() const { return (dir.path / "shard-00000.h5").string(); }
};

TEST_F(StoreFixture, ManifestDescribesShards) {
  const Manifest m = readManifest(dir.str());
  ASSERT_EQ(m.shards.size(), 2u);
  EXPECT_EQ(m.shards[0].bytes, static_cast<std::int64_t>(fs::file_size(shard0())));
  EXPECT_EQ(m.shards[0].checksum, core::checksumHex(core::checksumFile(shard0())));
  EXPECT_EQ(m.shards[0].subjects, 2);
  ASSERT_EQ(m.subjects.size(), 3u);
  EXPECT_EQ(m.subjects[1].id, "P2_T1");
  EXPECT_EQ(m.subjects[1].shard, "shard-00001.h5");
  EXPECT_EQ(m.subjects[0].lesionVoxels, 27);  // the 3^3 lesion cube
  EXPECT_EQ(m.subjects[1].lesionVoxels, 0);
  EXPECT_EQ(m.grid, kGrid);
  EXPECT_EQ(m.parameters["zmax"], 3);
  EXPECT_NO_THROW(verifyStore(dir.str(), m));
  const core::Json j = core::readJsonFile(manifestPath(dir.str()));
  EXPECT_EQ(j["counts"]["subjects"], 3);
  EXPECT_EQ(j["counts"]["lesion_voxels"], 54);
}

TEST_F(StoreFixture, CorruptShardNamedByVerify) {
  {
    std::fstream f(shard0(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard0()) / 2));
    f.put('\x5a').put('\xa5');
  }
  const std::string m = errorOf([&] { verifyStore(dir.str(), readManifest(dir.str())); });
  EXPECT_NE(m.find("shard-00000.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("checksum mismatch"), std::string::npos) << m;
}

TEST_F(StoreFixture, TruncatedShardNamedByVerifyAndReader) {
  fs::resize_file(shard0(), fs::file_size(shard0()) / 3);
  std::string m = errorOf([&] { verifyStore(dir.str(), readManifest(dir.str())); });
  EXPECT_NE(m.find("shard-00000.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  m = errorOf([&] {
    ShardReader r(shard0());
    r.readSubject("P3_T1");
  });
  EXPECT_NE(m.find("shard-00000.h5"), std::string::npos) << m;
}

TEST_F(StoreFixture, ManifestChecksumMismatchNamed) {
  core::Json j = core::readJsonFile(manifestPath(dir.str()));
  j["shards"][1]["xxh3_64"] = "0123456789abcdef";
  core::writeJsonFile(manifestPath(dir.str()), j);
  const std::string m = errorOf([&] { verifyStore(dir.str(), readManifest(dir.str())); });
  EXPECT_NE(m.find("shard-00001.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("0123456789abcdef"), std::string::npos) << m;
}

// A damaged or hostile manifest must not make a reader open files outside the store, nor name
// subjects whose ids would become output paths outside their folder: the manifest is refused,
// naming what is wrong, before any shard is opened. "outside/" holds a valid shard, so a reader
// that followed the name would succeed.
TEST_F(StoreFixture, ManifestNamesCannotLeaveTheStore) {
  fs::create_directories(dir.path / "outside");
  fs::copy_file(shard0(), dir.path / "outside" / "shard-00000.h5");
  const core::Json good = core::readJsonFile(manifestPath(dir.str()));
  const auto refused = [&](const std::function<void(core::Json&)>& edit, const std::string& what) {
    core::Json j = good;
    edit(j);
    core::writeJsonFile(manifestPath(dir.str()), j);
    const std::string m = errorOf([&] { readManifest(dir.str()); });
    EXPECT_NE(m.find(what), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
  };
  refused([](core::Json& j) { j["shards"][0]["file"] = "../outside/shard-00000.h5"; },
          "shard '../outside/shard-00000.h5' is not a file name inside the store");
  refused(
      [&](core::Json& j) {
        j["shards"][0]["file"] = (dir.path / "outside" / "shard-00000.h5").string();
      },
      "is not a file name inside the store");
  refused([](core::Json& j) { j["shards"][0]["file"] = ".."; }, "shard '..'");
  refused([](core::Json& j) { j["subjects"][0]["shard"] = "../outside/shard-00000.h5"; },
          "which the manifest does not list");
  refused([](core::Json& j) { j["subjects"][0]["id"] = "../../etc/x"; }, "is not a plain name");
  refused([](core::Json& j) { j["subjects"][0]["id"] = "a\nb"; }, "subject id 'a\\nb'");
  refused([](core::Json& j) { j["subjects"][1]["id"] = j["subjects"][0]["id"]; },
          "is listed twice");
  refused([](core::Json& j) { j["shards"][1] = j["shards"][0]; }, "is listed twice");
  refused([](core::Json& j) { j["grid"][1] = -4; }, "grid edge -4");
}

TEST_F(StoreFixture, MissingManifestIsNotAStore) {
  fs::remove(manifestPath(dir.str()));
  const std::string m = errorOf([&] { readManifest(dir.str()); });
  EXPECT_NE(m.find("not a complete store"), std::string::npos) << m;
}

TEST_F(StoreFixture, ForeignFileIsNotAShard) {
  const std::string path = (dir.path / "junk.h5").string();
  std::ofstream(path) << "not hdf5 at all";
  const std::string m = errorOf([&] { ShardReader r(path); });
  EXPECT_NE(m.find("junk.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("not an HDF5 file"), std::string::npos) << m;
}

TEST_F(StoreFixture, ShardsFromDifferentRunsRefused) {
  const std::string path = (dir.path / "shard-00002.h5").string();
  ShardWriter writer(path, ShardHeader{2, R"({"zmax":4})", {"FLAIR"}, kGrid}, {});
  writer.add(syntheticSubject("P9_T1", kGrid, 9));
  writer.commit();
  const std::string m = errorOf([&] {
    buildManifest(dir.str(), {"shard-00000.h5", "shard-00001.h5", "shard-00002.h5"});
  });
  EXPECT_NE(m.find("shard-00002.h5"), std::string::npos) << m;
}

}  // namespace
