// PatchSampler: the order is a permutation fixed by (seed, epoch); ranks take disjoint slices
// whose union is the global batch at any world size; the lesion fraction is within a binomial
// bound; a saved cursor continues the stream identically; patches stay inside the grid and
// lesion-centred ones contain their lesion voxel.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/Error.h"
#include "data/PatchSampler.h"

namespace {
using namespace lddpm;
using namespace lddpm::data;

SamplerOptions options(std::int64_t batch = 6, std::uint64_t seed = 42) {
  SamplerOptions o;
  o.seed = seed;
  o.batchSize = batch;
  o.repeats = 3;
  o.flip = true;
  o.intensity = true;
  return o;
}

bool samePlan(const SamplePlan& a, const SamplePlan& b) {
  return a.epoch == b.epoch && a.globalIndex == b.globalIndex && a.subject == b.subject &&
         a.lesionCentred == b.lesionCentred && a.centreDraw == b.centreDraw &&
         a.jitter == b.jitter && a.flipX == b.flipX && a.gain == b.gain && a.bias == b.bias;
}

TEST(Sampler, OrderIsADeterministicPermutationPerEpoch) {
  const PatchSampler s(10, options());
  const auto e0 = s.order(0), e1 = s.order(1);
  ASSERT_EQ(e0.size(), 30u);
  EXPECT_EQ(std::set<std::int64_t>(e0.begin(), e0.end()).size(), 30u);
  EXPECT_EQ(*std::max_element(e0.begin(), e0.end()), 29);
  EXPECT_EQ(e0, PatchSampler(10, options()).order(0));  // a fresh sampler agrees
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, PatchSampler(10, options(6, 43)).order(0));  // the seed matters
  // Each subject appears `repeats` times per epoch.
  std::vector<int> per(10, 0);
  for (auto i : e0) ++per[static_cast<std::size_t>(i % 10)];
  EXPECT_EQ(per, std::vector<int>(10, 3));
}

// A caller that makes the epoch's order once (the loader) gets the same plans; an order of
// another epoch size is refused.
TEST(Sampler, RankBatchWithTheEpochsOrderIsTheSame) {
  const PatchSampler s(7, options(3));
  for (const Cursor c : {Cursor{0, 0}, Cursor{0, 3}, Cursor{4, 6}}) {
    const auto given = s.rankBatch(c, 1, 2, s.order(c.epoch)), made = s.rankBatch(c, 1, 2);
    ASSERT_EQ(given.size(), made.size());
    for (std::size_t i = 0; i < given.size(); ++i) EXPECT_TRUE(samePlan(given[i], made[i]));
  }
  EXPECT_THROW(s.rankBatch({0, 0}, 0, 1, std::vector<std::int64_t>(6, 0)), lddpm::core::Error);
}

TEST(Sampler, RankSlicesAreDisjointAndCoverTheGlobalBatch) {
  for (std::int64_t batch : {1, 5, 6, 7}) {
    const PatchSampler s(9, options(batch));
    const Cursor c{2, batch * 2};
    const auto global = s.rankBatch(c, 0, 1);
    ASSERT_EQ(static_cast<std::int64_t>(global.size()), batch);
    for (int world : {1, 2, 3, 4, 8}) {
      std::vector<SamplePlan> joined;
      std::int64_t smallest = batch, largest = 0;
      for (int r = 0; r < world; ++r) {
        const auto mine = s.rankBatch(c, r, world);
        smallest = std::min<std::int64_t>(smallest, static_cast<std::int64_t>(mine.size()));
        largest = std::max<std::int64_t>(largest, static_cast<std::int64_t>(mine.size()));
        joined.insert(joined.end(), mine.begin(), mine.end());
      }
      ASSERT_EQ(joined.size(), global.size()) << "batch " << batch << " world " << world;
      for (std::size_t i = 0; i < joined.size(); ++i) {
        EXPECT_TRUE(samePlan(joined[i], global[i]))
            << "batch " << batch << " world " << world << " i " << i;
      }
      EXPECT_LE(largest - smallest, 1);  // batch % world spread over the first ranks
    }
  }
}

TEST(Sampler, LesionFractionWithinBinomialBound) {
  SamplerOptions o = options(1);
  o.repeats = 4000;
  const PatchSampler s(1, o);
  const auto order = s.order(0);
  int lesion = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) lesion += s.plan(0, i, order).lesionCentred;
  // 5 standard deviations of Binomial(n, 0.33): fails by chance with probability < 1e-6.
  const double sd = std::sqrt(n * 0.33 * 0.67);
  EXPECT_NEAR(lesion, n * 0.33, 5 * sd);
  o.lesionFraction = 0;
  EXPECT_FALSE(PatchSampler(1, o).plan(0, 7, order).lesionCentred);
}

TEST(Sampler, CursorRestoresTheExactContinuation) {
  const PatchSampler s(7, options(4));  // 21 samples/epoch: 5 batches, 1 sample dropped
  EXPECT_EQ(s.batchesPerEpoch(), 5);
  Cursor c;
  std::vector<std::vector<SamplePlan>> stream;
  std::vector<Cursor> cursors;
  for (int k = 0; k < 12; ++k) {
    cursors.push_back(c);
    stream.push_back(s.rankBatch(c, 1, 2));
    c = s.advance(c);
  }
  EXPECT_EQ(cursors[5], (Cursor{1, 0}));  // epoch rolls after the last whole batch
  const Cursor saved = Cursor::fromJson(core::Json::parse(cursors[7].toJson().dump()));
  const PatchSampler resumed(7, options(4));
  Cursor r = saved;
  for (int k = 7; k < 12; ++k) {
    const auto plans = resumed.rankBatch(r, 1, 2);
    ASSERT_EQ(plans.size(), stream[k].size());
    for (std::size_t i = 0; i < plans.size(); ++i)
      EXPECT_TRUE(samePlan(plans[i], stream[k][i])) << k;
    r = resumed.advance(r);
  }
}

TEST(Sampler, PatchStartsInsideGridAndLesionCentred) {
  const std::array<std::int64_t, 3> grid{32, 40, 36};
  const auto lesions = torch::tensor({1, 2, 3, 16, 20, 18, 31, 39, 35}, torch::kInt32).view({3, 3});
  const auto index = torch::tensor({4, 4, 4, 0, 12, 20, 28, 5}, torch::kInt32).view({2, 4});
  const PatchSampler s(3, options());
  const auto order = s.order(0);
  for (int i = 0; i < 9; ++i) {
    SamplePlan p = s.plan(0, i, order);
    for (bool lesionCentred : {true, false}) {
      p.lesionCentred = lesionCentred;
      const auto start = PatchSampler::patchStart(p, index, lesions, 8, grid, 16);
      for (int a = 0; a < 3; ++a) {
        EXPECT_GE(start[a], 0);
        EXPECT_LE(start[a] + 16, grid[a]);
      }
      if (lesionCentred) {
        const auto v = lesions[static_cast<std::int64_t>(p.centreDraw % 3)];
        for (int a = 0; a < 3; ++a) {
          EXPECT_LE(start[a], v[a].item<std::int64_t>());
          EXPECT_GT(start[a] + 16, v[a].item<std::int64_t>());
        }
      } else {  // centre within the chosen index cell [c - 4, c + 4)
        const auto row = index[static_cast<std::int64_t>(p.centreDraw % 2)];
        for (int a = 0; a < 3; ++a) {
          const auto c = std::clamp<std::int64_t>(start[a] + 8, 8, grid[a] - 8);
          const auto cell = row[a].item<std::int64_t>();
          if (cell - 4 >= 8 && cell + 4 <= grid[a] - 8) {
            EXPECT_GE(c, cell - 4);
            EXPECT_LT(c, cell + 4);
          }
        }
      }
    }
  }
}

TEST(Sampler, BadOptionsNameTheOption) {
  SamplerOptions o = options(100);
  try {
    PatchSampler s(3, o);
    FAIL() << "no error";
  } catch (const core::UsageError& e) {
    // Names the option that exists (lddpm train --batch), not an invented one.
    EXPECT_NE(std::string(e.what()).find("--batch"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("--batch-size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 subjects"), std::string::npos) << e.what();
  }
  o = options();
  o.lesionFraction = 1.5;
  EXPECT_THROW(PatchSampler(3, o), core::UsageError);
}

}  // namespace
