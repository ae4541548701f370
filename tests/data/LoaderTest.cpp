// Loader on a small synthetic store: each sample is its stored box, flipped and rescaled as its
// plan says; the batches do not depend on the number of prefetch threads nor on the read path; the
// union of the ranks' batches is the one-rank batch; a restored cursor continues identically;
// lesion-centred patches hold lesion; a shard that goes bad mid-run surfaces as an error naming it
// in next(), and destroying a loader with a full queue returns; batch storage is recycled only
// once the caller lets a batch go.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/Error.h"
#include "data/Loader.h"
#include "data/ShardReader.h"
#include "data/ShardWriter.h"
#include "tests/data/StoreTestUtil.h"

namespace {
using namespace lddpm;
using namespace lddpm::data;
using data::testing::syntheticSubject;
using data::testing::TempDir;
namespace fs = std::filesystem;

constexpr std::array<std::int64_t, 3> kGrid = {16, 24, 20};

struct LoaderFixture : ::testing::Test {
  TempDir dir{"loader"};
  void SetUp() override {
    for (int shard = 0; shard < 2; ++shard) {
      ShardWriter w((dir.path / shardFileName(shard)).string(),
                    ShardHeader{shard, R"({"index_stride":8})", {"FLAIR"}, kGrid},
                    {Compression::Lz4, 8});
      for (int i = shard; i < 5; i += 2) {
        w.add(syntheticSubject("P" + std::to_string(i) + "_T1", kGrid, 10 + i, i == 3 ? 0 : 3));
      }
      w.commit();
    }
    writeManifest(dir.str(), buildManifest(dir.str(), {"shard-00000.h5", "shard-00001.h5"}));
  }
  LoaderOptions options(int threads, int rank = 0, int world = 1) const {
    LoaderOptions o;
    o.store = dir.str();
    o.patch = 8;
    o.sampler.batchSize = 3;
    o.sampler.repeats = 4;
    o.sampler.seed = 5;
    o.sampler.flip = true;
    o.sampler.intensity = true;
    o.rank = rank;
    o.worldSize = world;
    o.threads = threads;
    o.queueDepth = 2;
    return o;
  }
};

void expectSameBatch(const Batch& a, const Batch& b, const std::string& what) {
  EXPECT_EQ(a.subjects, b.subjects) << what;
  EXPECT_EQ(a.starts, b.starts) << what;
  EXPECT_TRUE(torch::equal(a.image, b.image)) << what;
  EXPECT_TRUE(torch::equal(a.tissue, b.tissue)) << what;
  EXPECT_TRUE(torch::equal(a.lesion, b.lesion)) << what;
  EXPECT_EQ(a.cursor, b.cursor) << what;
}

TEST_F(LoaderFixture, IndependentOfPrefetchThreads) {
  Loader sync(options(0)), one(options(1)), two(options(2));
  for (int k = 0; k < 9; ++k) {  // 20 samples/epoch = 6 batches: crosses an epoch boundary
    const Batch a = sync.next(), b = one.next(), c = two.next();
    ASSERT_EQ(a.image.sizes(), (std::vector<std::int64_t>{3, 1, 8, 8, 8}));
    ASSERT_EQ(a.lesion.sizes(), (std::vector<std::int64_t>{3, 1, 8, 8, 8}));
    expectSameBatch(a, b, "1 thread, batch " + std::to_string(k));
    expectSameBatch(a, c, "2 threads, batch " + std::to_string(k));
    EXPECT_TRUE(a.image.le(1).all().item<bool>() && a.image.ge(-1).all().item<bool>());
  }
  EXPECT_EQ(sync.cursor(), (Cursor{1, 9}));
}

// The reference is the whole stored volume (read once per subject), cut, flipped and rescaled in
// float64 as the plan says: independent of the patch path, the batch assembly and the in-place
// augmentation.
TEST_F(LoaderFixture, EachSampleIsItsStoredBoxAugmentedAsPlanned) {
  Loader loader(options(1));
  StoreReader store(dir.str());
  int flipped = 0, rescaled = 0;
  for (int k = 0; k < 6; ++k) {
    const Batch b = loader.next();
    for (std::size_t i = 0; i < b.plans.size(); ++i) {
      const SamplePlan& plan = b.plans[i];
      const SubjectEntry& entry = loader.subjects()[plan.subject];
      ASSERT_EQ(entry.id, b.subjects[i]);
      const SubjectData whole = store.readSubject(entry);
      // The loader reads one index row per patch: the start is the whole tables' (PatchSampler).
      EXPECT_EQ(b.starts[i],
                PatchSampler::patchStart(plan, whole.patchIndex, whole.lesionVoxels, 8, kGrid, 8));
      const auto [z, y, x] = b.starts[i];
      auto cut = [&](const torch::Tensor& t) {
        const std::int64_t lead = t.dim() - 3;
        return t.narrow(lead, z, 8).narrow(lead + 1, y, 8).narrow(lead + 2, x, 8);
      };
      torch::Tensor image = cut(whole.image).to(torch::kFloat64);
      torch::Tensor tissue = cut(whole.tissue), lesion = cut(whole.lesion);
      const torch::Tensor brain = tissue.gt(0).unsqueeze(0);
      image = torch::where(brain, (image * plan.gain + plan.bias).clamp(-1, 1), image);
      if (plan.flipX) {
        image = image.flip({3});
        tissue = tissue.flip({2});
        lesion = lesion.flip({2});
      }
      flipped += plan.flipX;
      rescaled += plan.gain != 1.0;
      const std::string what = "batch " + std::to_string(k) + " sample " + std::to_string(i);
      EXPECT_TRUE(torch::allclose(b.image[static_cast<std::int64_t>(i)].to(torch::kFloat64), image,
                                  0, 1e-6))
          << what;
      EXPECT_TRUE(torch::equal(b.tissue[static_cast<std::int64_t>(i)][0], tissue)) << what;
      EXPECT_TRUE(torch::equal(b.lesion[static_cast<std::int64_t>(i)][0], lesion)) << what;
    }
  }
  EXPECT_GT(flipped, 0);  // both augmentations were exercised
  EXPECT_GT(rescaled, 0);
}

TEST_F(LoaderFixture, IndependentOfTheReadPath) {
  LoaderOptions viaHdf5 = options(1);
  viaHdf5.directReads = false;
  Loader direct(options(1)), hdf5(viaHdf5);
  for (int k = 0; k < 6; ++k) {
    expectSameBatch(direct.next(), hdf5.next(), "batch " + std::to_string(k));
  }
}

TEST_F(LoaderFixture, RanksSplitTheGlobalBatch) {
  Loader global(options(1));
  Loader r0(options(1, 0, 2)), r1(options(1, 1, 2));
  for (int k = 0; k < 4; ++k) {
    const Batch g = global.next(), a = r0.next(), b = r1.next();
    EXPECT_EQ(a.subjects.size(), 2u);  // 3 = 2 + 1
    EXPECT_EQ(b.subjects.size(), 1u);
    Batch joined;
    joined.subjects = a.subjects;
    joined.subjects.insert(joined.subjects.end(), b.subjects.begin(), b.subjects.end());
    joined.starts = a.starts;
    joined.starts.insert(joined.starts.end(), b.starts.begin(), b.starts.end());
    joined.image = torch::cat({a.image, b.image});
    joined.tissue = torch::cat({a.tissue, b.tissue});
    joined.lesion = torch::cat({a.lesion, b.lesion});
    joined.cursor = a.cursor;
    expectSameBatch(g, joined, "batch " + std::to_string(k));
  }
}

TEST_F(LoaderFixture, RestoredCursorContinuesIdentically) {
  Loader first(options(2));
  std::vector<Batch> stream;
  for (int k = 0; k < 8; ++k) stream.push_back(first.next());
  LoaderOptions o = options(2);
  o.start = stream[5].cursor;
  Loader resumed(o);
  for (int k = 5; k < 8; ++k)
    expectSameBatch(resumed.next(), stream[k], "resumed batch " + std::to_string(k));
  EXPECT_EQ(resumed.cursor(), stream[7].next);
}

TEST_F(LoaderFixture, LesionCentredPatchesHoldLesion) {
  LoaderOptions o = options(1);
  o.sampler.lesionFraction = 1.0;
  o.sampler.flip = false;
  Loader loader(o);
  for (int k = 0; k < 6; ++k) {
    const Batch b = loader.next();
    for (std::size_t i = 0; i < b.subjects.size(); ++i) {
      if (b.subjects[i] == "P3_T1") continue;  // no lesion: falls back to a brain patch
      EXPECT_GT(b.lesion[static_cast<std::int64_t>(i)].sum().item<std::int64_t>(), 0)
          << b.subjects[i];
    }
  }
}

TEST_F(LoaderFixture, WholeVolumesWhenPatchIsZero) {
  LoaderOptions o = options(0);
  o.patch = 0;
  Loader loader(o);
  const Batch b = loader.next();
  EXPECT_EQ(b.image.sizes(), (std::vector<std::int64_t>{3, 1, 16, 24, 20}));
}

TEST_F(LoaderFixture, BadShardSurfacesInNextNamingIt) {
  fs::resize_file(dir.path / "shard-00001.h5", 2000);  // after the manifest was read
  Loader loader(options(2));
  std::string message;
  try {
    for (int k = 0; k < 10; ++k) loader.next();
  } catch (const core::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("shard-00001.h5"), std::string::npos) << message;
  EXPECT_THROW(loader.next(), core::Error);  // stays failed, does not hang
}

TEST_F(LoaderFixture, DestroyWithFullQueueReturns) {
  for (int threads : {1, 2, 3}) {
    Loader loader(options(threads));
    loader.next();
  }  // workers blocked on a full queue must be woken and joined
  SUCCEED();
}

// Batch storage is recycled (Loader.cpp): a batch the caller still holds is never reused, even
// after the loader is gone, and the recycled ones still read as a fresh loader's.
TEST_F(LoaderFixture, BatchesTheCallerKeepsStayIntact) {
  for (int threads : {0, 2}) {
    const std::string what = std::to_string(threads) + " threads";
    std::vector<Batch> fresh;
    {
      Loader reference(options(threads));
      for (int k = 0; k < 8; ++k) fresh.push_back(reference.next());  // none recycled
    }
    Batch kept;
    std::vector<torch::Tensor> copies;
    {
      Loader loader(options(threads));
      kept = loader.next();
      copies = {kept.image.clone(), kept.tissue.clone(), kept.lesion.clone()};
      for (int k = 1; k < 8; ++k) expectSameBatch(loader.next(), fresh[k], what);
    }
    expectSameBatch(kept, fresh[0], what);
    EXPECT_TRUE(torch::equal(kept.image, copies[0]) && torch::equal(kept.tissue, copies[1]) &&
                torch::equal(kept.lesion, copies[2]))
        << what;
  }
}

TEST_F(LoaderFixture, PatchLargerThanGridIsAUsageError) {
  LoaderOptions o = options(0);
  o.patch = 32;
  EXPECT_THROW(Loader{o}, core::UsageError);
}

}  // namespace
