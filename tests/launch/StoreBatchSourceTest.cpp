// The BatchSource contract on a real (small) HDF5 store: what StoreBatchSource returns is a
// function of the seed and the global indices asked for — the same indices twice give the same
// samples (pix2pix's two groups in one step), a source started at step s (a resumed run) gives
// what an uninterrupted one gives there, the ranks' slices together are the one-rank batch, any
// order of access gives the same content, and indices that are not a rank's slice are refused.
// At the engine level, pix2pix's discriminator and generator see one batch per step, and a
// class-mean prior takes the store's class intensities on a fresh run and its checkpoint's on
// resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "core/Error.h"
#include "core/StopSignal.h"
#include "data/Manifest.h"
#include "data/ShardWriter.h"
#include "distributed/LocalCommunicator.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/Trainer.h"
#include "tests/data/StoreTestUtil.h"
#include "tests/launch/SyntheticSource.h"

namespace {
using namespace lddpm;
using data::testing::syntheticSubject;
using data::testing::TempDir;

constexpr std::array<std::int64_t, 3> kGrid = {16, 16, 16};

struct StoreFixture : ::testing::Test {
  TempDir dir{"batch-source"};
  void SetUp() override {
    data::ShardWriter w((dir.path / data::shardFileName(0)).string(),
                        data::ShardHeader{0, R"({"index_stride":8})", {"FLAIR"}, kGrid},
                        {data::Compression::None, 8});
    for (int i = 0; i < 5; ++i) {
      w.add(syntheticSubject("P" + std::to_string(i) + "_T1", kGrid, 40 + i, i == 2 ? 0 : 3));
    }
    w.commit();
    data::writeManifest(dir.str(), data::buildManifest(dir.str(), {"shard-00000.h5"}));
  }
  // Global batch 4 in 2 micro-batches; 8³ patches, a third on lesions, flips.
  launch::TrainConfig config(std::int64_t patch = 8) const {
    launch::TrainConfig c;
    c.data.store = dir.str();
    c.data.patch = patch;
    c.batch = 4;
    c.accumulate = 2;
    c.seed = 9;
    c.data.threads = 1;
    return c;
  }
};

void expectSame(const models::Batch& a, const models::Batch& b, const std::string& what) {
  EXPECT_TRUE(torch::equal(a.image, b.image)) << what;
  EXPECT_TRUE(torch::equal(a.anatomy, b.anatomy)) << what;
  EXPECT_TRUE(torch::equal(a.lesion, b.lesion)) << what;
}

TEST_F(StoreFixture, SameIndicesTwiceGiveTheSameSamples) {
  launch::StoreBatchSource source(config(), 0, 1);
  source.start(0);
  const auto step0 = launch::localIndices(0, 0, 4, 2, 0, 1);
  const models::Batch first = source.get(step0);
  source.prefetch(launch::localIndices(0, 1, 4, 2, 0, 1));  // the engine's hint in between
  expectSame(first, source.get(step0), "asked twice");
  // Two micro-batches of one step differ (different samples), as do consecutive steps.
  const models::Batch second = source.get(launch::localIndices(0, 1, 4, 2, 0, 1));
  EXPECT_FALSE(torch::equal(first.image, second.image));
}

TEST_F(StoreFixture, ContentDependsOnIndicesNotOnHistory) {
  // Sequential reading over 7 steps (the epoch of 5 subjects wraps: 2 micro-batches per epoch).
  launch::StoreBatchSource straight(config(), 0, 1);
  straight.start(0);
  std::map<std::pair<std::int64_t, std::int64_t>, models::Batch> seen;
  for (std::int64_t step = 0; step < 7; ++step) {
    for (std::int64_t micro = 0; micro < 2; ++micro) {
      seen[{step, micro}] = straight.get(launch::localIndices(step, micro, 4, 2, 0, 1));
    }
  }
  // A resumed run: started at step 5.
  launch::StoreBatchSource resumed(config(), 0, 1);
  resumed.start(5);
  expectSame(resumed.get(launch::localIndices(5, 0, 4, 2, 0, 1)), seen[{5, 0}], "resume at 5");
  expectSame(resumed.get(launch::localIndices(5, 1, 4, 2, 0, 1)), seen[{5, 1}], "resume at 5.1");
  // Out of order, backwards and forwards, without start().
  launch::StoreBatchSource jumping(config(), 0, 1);
  for (const auto& [step, micro] :
       std::vector<std::pair<std::int64_t, std::int64_t>>{{6, 1}, {2, 0}, {0, 0}, {4, 1}, {2, 0}}) {
    expectSame(jumping.get(launch::localIndices(step, micro, 4, 2, 0, 1)), seen[{step, micro}],
               "step " + std::to_string(step) + "." + std::to_string(micro));
  }
}

TEST_F(StoreFixture, RankSlicesTogetherAreTheOneRankBatch) {
  launch::StoreBatchSource one(config(), 0, 1);
  launch::StoreBatchSource rank0(config(), 0, 2), rank1(config(), 1, 2);
  for (std::int64_t step : {0, 3}) {
    const models::Batch all = one.get(launch::localIndices(step, 1, 4, 2, 0, 1));
    const models::Batch a = rank0.get(launch::localIndices(step, 1, 4, 2, 0, 2));
    const models::Batch b = rank1.get(launch::localIndices(step, 1, 4, 2, 1, 2));
    ASSERT_EQ(a.image.size(0), 1);
    expectSame({torch::cat({a.image, b.image}), torch::cat({a.anatomy, b.anatomy}),
                torch::cat({a.lesion, b.lesion})},
               all, "step " + std::to_string(step));
  }
}

TEST_F(StoreFixture, IndicesThatAreNotARankSliceAreRefused) {
  launch::StoreBatchSource rank1(config(), 1, 2);
  // Rank 0's slice asked of rank 1, and a slice that straddles two micro-batches.
  EXPECT_THROW(rank1.get(launch::localIndices(0, 0, 4, 2, 0, 2)), core::Error);
  EXPECT_THROW(rank1.get({1, 2}), core::Error);
}

// A BatchSource that records every get(), forwarding to the store-backed one.
class Recording : public launch::BatchSource {
 public:
  explicit Recording(launch::BatchSource& inner) : inner_(inner) {}
  void start(std::int64_t step) override { inner_.start(step); }
  models::Batch get(const std::vector<std::int64_t>& indices) override {
    calls.emplace_back(indices, inner_.get(indices));
    return calls.back().second;
  }
  void prefetch(const std::vector<std::int64_t>& indices) override { inner_.prefetch(indices); }
  std::int64_t voxelsPerSample() const override { return inner_.voxelsPerSample(); }
  std::vector<std::pair<std::vector<std::int64_t>, models::Batch>> calls;

 private:
  launch::BatchSource& inner_;
};

TEST_F(StoreFixture, Pix2PixGroupsSeeOneBatchPerStep) {
  core::StopSignal::reset();
  TempDir run("batch-source-run");
  testutil::RunSetup setup = testutil::makeRunSetup({{"--store", dir.str()},
                                                     {"--run", run.str()},
                                                     {"--model", "pix2pix"},
                                                     {"--steps", "3"},
                                                     {"--batch", "2"},
                                                     {"--patch", "8"},
                                                     {"--warmup", "1"},
                                                     {"--checkpoint-every", "100"},
                                                     {"--disc-channels", "4"},
                                                     {"--disc-layers", "1"}},
                                                    {});
  dist::LocalCommunicator comm;
  launch::StoreBatchSource store(setup.train, 0, 1);
  Recording recording(store);
  launch::Trainer trainer(setup.train, setup.model, recording, comm, "");
  trainer.run();
  // Per step: the discriminator's get, then the generator's, with the same indices and samples.
  ASSERT_EQ(recording.calls.size(), 6u);
  for (std::size_t s = 0; s < 3; ++s) {
    const auto& [dIndices, dBatch] = recording.calls[2 * s];
    const auto& [gIndices, gBatch] = recording.calls[2 * s + 1];
    EXPECT_EQ(dIndices, gIndices) << "step " << s;
    expectSame(dBatch, gBatch, "step " + std::to_string(s));
    if (s > 0) {
      EXPECT_FALSE(torch::equal(dBatch.image, recording.calls[2 * s - 2].second.image))
          << "step " << s << " repeats the previous step's batch";
    }
  }
}

// Mean FLAIR per class over the fixture's five subjects, regenerated (not read back from the
// store): background, CSF, GM, WM outside lesions, then lesion.
std::array<double, 5> fixtureClassMeans() {
  std::array<double, 5> sum{}, count{};
  for (int i = 0; i < 5; ++i) {
    const data::SubjectData s =
        syntheticSubject("P" + std::to_string(i) + "_T1", kGrid, 40 + i, i == 2 ? 0 : 3);
    const torch::Tensor image = s.image[0].to(torch::kFloat64);
    for (int c = 0; c < 5; ++c) {
      const torch::Tensor region =
          c < 4 ? (s.tissue == c).logical_and(s.lesion == 0) : (s.lesion != 0);
      sum[c] += (image * region).sum().item<double>();
      count[c] += region.sum().item<double>();
    }
  }
  std::array<double, 5> mean{};
  for (int c = 0; c < 5; ++c) mean[c] = sum[c] / count[c];
  return mean;
}

torch::Tensor classMeansBuffer(launch::Trainer& trainer) {
  for (const auto& b : trainer.model().named_buffers()) {
    if (b.key() == "class_means") return b.value().to(torch::kFloat64);
  }
  return {};
}

TEST_F(StoreFixture, AClassMeanPriorStartsFromTheStoreAndResumesFromItsCheckpoint) {
  core::StopSignal::reset();
  TempDir run("batch-source-prior");
  const std::map<std::string, std::string> options = {{"--store", dir.str()},
                                                      {"--run", run.str()},
                                                      {"--model", "lesion-ddpm"},
                                                      {"--prediction", "x0"},
                                                      {"--intensity-prior", "class-mean"},
                                                      {"--steps", "2"},
                                                      {"--batch", "2"},
                                                      {"--patch", "0"},
                                                      {"--warmup", "1"},
                                                      {"--modulation-hidden", "4"},
                                                      {"--checkpoint-every", "1"}};
  const std::array<double, 5> expected = fixtureClassMeans();
  const torch::Tensor want =
      torch::tensor(std::vector<double>(expected.begin(), expected.end())).to(torch::kFloat64);
  testutil::RunSetup setup = testutil::makeRunSetup(options, {});
  dist::LocalCommunicator comm;
  {
    launch::StoreBatchSource store(setup.train, 0, 1);
    launch::Trainer trainer(setup.train, setup.model, store, comm, "");
    EXPECT_TRUE(torch::allclose(classMeansBuffer(trainer), want, 0, 1e-6))
        << classMeansBuffer(trainer) << " vs " << want;
    trainer.run();
  }
  // A resumed run takes them from model.pt: a source that cannot give class intensities (the
  // recording wrapper does not forward them) is not asked.
  setup.train.steps = 3;
  {
    launch::StoreBatchSource store(setup.train, 0, 1);
    Recording recording(store);
    launch::Trainer trainer(setup.train, setup.model, recording, comm, "");
    EXPECT_EQ(trainer.step(), 2);
    EXPECT_TRUE(torch::allclose(classMeansBuffer(trainer), want, 0, 1e-6));
  }
  // A fresh run from such a source is refused, naming the option.
  TempDir fresh("batch-source-prior-fresh");
  setup.train.run = fresh.str();
  launch::StoreBatchSource store(setup.train, 0, 1);
  Recording recording(store);
  try {
    launch::Trainer trainer(setup.train, setup.model, recording, comm, "");
    ADD_FAILURE() << "a class-mean prior trained without class intensities";
  } catch (const core::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--intensity-prior"), std::string::npos) << e.what();
  }
}

}  // namespace
