// The phantom cohort: deterministic from the seed, MSLesSeg geometry, lesions that are separate
// white-matter components of 20-1000 voxels, and the contrasts MS lesions have (bright on FLAIR
// and T2, dark on T1). Components are counted here with an independent flood fill.
#include <gtest/gtest.h>

#include <deque>
#include <filesystem>

#include "data/NiftiIo.h"
#include "data/Phantom.h"

namespace {
using namespace lddpm;
using data::PhantomScan;

bool haveTemplates() {
  return std::filesystem::exists(data::kDefaultPhantomTemplate) &&
         std::filesystem::exists(data::kDefaultPhantomAtlas);
}

// Sizes of the 26-connected components of a binary [D, H, W] mask.
std::vector<int> componentSizes(const torch::Tensor& mask) {
  const torch::Tensor m = (mask > 0.5).to(torch::kUInt8).contiguous();
  const std::int64_t D = m.size(0), H = m.size(1), W = m.size(2);
  std::vector<std::uint8_t> seen(static_cast<size_t>(m.numel()), 0);
  const std::uint8_t* p = m.data_ptr<std::uint8_t>();
  std::vector<int> sizes;
  for (std::int64_t start = 0; start < m.numel(); ++start) {
    if (!p[start] || seen[start]) continue;
    int size = 0;
    std::deque<std::int64_t> queue{start};
    seen[start] = 1;
    while (!queue.empty()) {
      const std::int64_t v = queue.front();
      queue.pop_front();
      ++size;
      const std::int64_t z = v / (H * W), y = (v / W) % H, x = v % W;
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const std::int64_t z2 = z + dz, y2 = y + dy, x2 = x + dx;
            if (z2 < 0 || y2 < 0 || x2 < 0 || z2 >= D || y2 >= H || x2 >= W) continue;
            const std::int64_t u = (z2 * H + y2) * W + x2;
            if (p[u] && !seen[u]) {
              seen[u] = 1;
              queue.push_back(u);
            }
          }
    }
    sizes.push_back(size);
  }
  return sizes;
}

class PhantomTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    if (!haveTemplates()) return;
    data::PhantomOptions o;
    o.trainSubjects = 1;
    o.testSubjects = 1;
    o.timepoints = 2;
    o.seed = 11;
    o.minLesions = 8;
    generator_ = std::make_unique<data::PhantomGenerator>(o);
    scans_ = generator_->generateSubject(0);
  }
  static void TearDownTestSuite() {
    generator_.reset();
    scans_.clear();
  }
  void SetUp() override {
    if (!haveTemplates()) GTEST_SKIP() << "needs Debian's mricron-data templates";
  }

 protected:
  static std::unique_ptr<data::PhantomGenerator> generator_;
  static std::vector<PhantomScan> scans_;
};
std::unique_ptr<data::PhantomGenerator> PhantomTest::generator_;
std::vector<PhantomScan> PhantomTest::scans_;

TEST_F(PhantomTest, MslessegGeometryFromTheAtlasGrid) {
  const data::NiftiHeaderInfo atlas = data::readNiftiHeader(data::kDefaultPhantomAtlas);
  ASSERT_EQ(scans_.size(), 2u);
  EXPECT_EQ(scans_[0].id, "P1_T1");
  EXPECT_EQ(scans_[1].id, "P1_T2");
  for (const PhantomScan& s : scans_) {
    for (const data::Volume* v : {&s.flair, &s.t1, &s.t2, &s.mask, &s.tissue}) {
      EXPECT_EQ(v->nx(), 182);
      EXPECT_EQ(v->ny(), 218);
      EXPECT_EQ(v->nz(), 182);
      EXPECT_LT(data::affineMaxAbsDiff(v->affine, atlas.affine), 1e-9);
    }
    EXPECT_TRUE(torch::isfinite(s.flair.data).all().item<bool>());
    EXPECT_TRUE(((s.mask.data == 0) | (s.mask.data == 1)).all().item<bool>());
    // Skull-stripped: zero outside the brain, non-zero inside.
    const torch::Tensor brain = s.tissue.data > 0;
    EXPECT_EQ((s.flair.data.masked_select(~brain) != 0).sum().item<std::int64_t>(), 0);
    EXPECT_GT(brain.sum().item<std::int64_t>(), 1000000);  // an adult brain is ~1.2-1.7 L
  }
}

TEST_F(PhantomTest, LesionsAreSeparateWhiteMatterComponentsOfMsSize) {
  for (const PhantomScan& s : scans_) {
    SCOPED_TRACE(s.id);
    const torch::Tensor lesion = s.mask.data > 0.5;
    const std::int64_t n = lesion.sum().item<std::int64_t>();
    ASSERT_GT(n, 0);
    const std::int64_t inWm =
        (lesion & (s.tissue.data == data::kWhiteMatter)).sum().item<std::int64_t>();
    EXPECT_GE(static_cast<double>(inWm) / n, 0.9);
    const std::vector<int> sizes = componentSizes(s.mask.data);
    EXPECT_EQ(static_cast<int>(sizes.size()), s.lesions);
    EXPECT_GE(sizes.size(), 1u);
    EXPECT_LE(sizes.size(), 40u);
    for (int size : sizes) {
      EXPECT_GE(size, 20);
      EXPECT_LE(size, 1000);
    }
  }
  EXPECT_GE(scans_[0].lesions, 8);  // minLesions
}

TEST_F(PhantomTest, LesionsBrightOnFlairAndT2DarkOnT1) {
  for (const PhantomScan& s : scans_) {
    SCOPED_TRACE(s.id);
    const torch::Tensor lesion = s.mask.data > 0.5;
    // Surrounding white matter: WM within 3 voxels of a lesion but not lesion.
    torch::Tensor grown = s.mask.data.unsqueeze(0);  // box dilation, one axis at a time
    grown = torch::max_pool3d(grown, {7, 1, 1}, {1, 1, 1}, {3, 0, 0});
    grown = torch::max_pool3d(grown, {1, 7, 1}, {1, 1, 1}, {0, 3, 0});
    grown = torch::max_pool3d(grown, {1, 1, 7}, {1, 1, 1}, {0, 0, 3});
    const torch::Tensor near = grown[0] > 0.5;
    const torch::Tensor ring = near & ~lesion & (s.tissue.data == data::kWhiteMatter);
    ASSERT_GT(ring.sum().item<std::int64_t>(), 0);
    const auto mean = [](const torch::Tensor& img, const torch::Tensor& where) {
      return img.masked_select(where).mean().item<double>();
    };
    EXPECT_GT(mean(s.flair.data, lesion), 1.3 * mean(s.flair.data, ring));
    EXPECT_GT(mean(s.t2.data, lesion), 1.3 * mean(s.t2.data, ring));
    EXPECT_LT(mean(s.t1.data, lesion), 0.8 * mean(s.t1.data, ring));
  }
}

TEST_F(PhantomTest, FollowUpEvolvesTheSameLesions) {
  const torch::Tensor a = scans_[0].mask.data > 0.5, b = scans_[1].mask.data > 0.5;
  const double overlap = (a & b).sum().item<double>();
  const double dice = 2 * overlap / (a.sum().item<double>() + b.sum().item<double>());
  EXPECT_FALSE(torch::equal(a, b));  // lesions changed
  EXPECT_GT(dice, 0.3);              // but they are the same patient's lesions
  EXPECT_TRUE(torch::equal(scans_[0].tissue.data, scans_[1].tissue.data));  // same anatomy
}

TEST_F(PhantomTest, SameSeedSameVoxelsOtherSeedDifferent) {
  data::PhantomOptions o = generator_->options();
  o.voxelSize = 2;  // determinism does not depend on the grid; a 2 mm grid is 8x cheaper
  const data::PhantomGenerator generator(o);
  const std::vector<PhantomScan> first = generator.generateSubject(1);  // test subject P2
  const std::vector<PhantomScan> again = data::PhantomGenerator(o).generateSubject(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].id, "P2");
  EXPECT_EQ(first[0].split, "test");
  EXPECT_TRUE(torch::equal(first[0].flair.data, again[0].flair.data));
  EXPECT_TRUE(torch::equal(first[0].t1.data, again[0].t1.data));
  EXPECT_TRUE(torch::equal(first[0].mask.data, again[0].mask.data));
  o.seed = 12;
  const std::vector<PhantomScan> other = data::PhantomGenerator(o).generateSubject(1);
  EXPECT_FALSE(torch::equal(first[0].flair.data, other[0].flair.data));
  EXPECT_FALSE(torch::equal(first[0].mask.data, other[0].mask.data));
  // Another subject of the same cohort has other anatomy.
  EXPECT_FALSE(torch::equal(first[0].tissue.data, generator.generateSubject(0)[0].tissue.data));
}

TEST(PhantomResample, ThroughTheAffinesMatchesAClosedForm) {
  // A linear ramp f(world) = x + 2y + 3z on a 1 mm grid, resampled onto a 2 mm grid that is
  // offset by half a voxel: linear interpolation of a linear function is exact.
  data::Volume src;
  const auto i = torch::arange(20, torch::kFloat32).view({1, 1, -1});
  const auto j = torch::arange(16, torch::kFloat32).view({1, -1, 1});
  const auto k = torch::arange(12, torch::kFloat32).view({-1, 1, 1});
  src.affine = {1, 0, 0, -10, 0, 1, 0, -8, 0, 0, 1, -6, 0, 0, 0, 1};
  src.data = ((i - 10) + 2 * (j - 8) + 3 * (k - 6)).contiguous();
  const data::Affine dst = {2, 0, 0, -8.5, 0, 2, 0, -6.5, 0, 0, 2, -4.5, 0, 0, 0, 1};
  const data::Volume out = data::resampleToGrid(src, dst, {8, 6, 4}, /*nearest=*/false);
  ASSERT_EQ(out.data.sizes(), torch::IntArrayRef({4, 6, 8}));
  for (int kk = 0; kk < 4; ++kk)
    for (int jj = 0; jj < 6; ++jj)
      for (int ii = 0; ii < 8; ++ii) {
        const double want = (2 * ii - 8.5) + 2 * (2 * jj - 6.5) + 3 * (2 * kk - 4.5);
        EXPECT_NEAR(out.data[kk][jj][ii].item<float>(), want, 1e-4);
      }
  EXPECT_DOUBLE_EQ(out.spacing[0], 2.0);
}

}  // namespace
