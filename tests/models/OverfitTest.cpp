// Each model can learn: a few Adam steps on one tiny volume (and its mirror image) (and, for the
// diffusion models, one fixed timestep and noise: the generators are reseeded every step) lower its
// loss at least 10x. A wiring mistake (mask not reaching the network, a detached loss, a zeroed
// gradient path) fails it.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/Rng.h"
#include "models/Registry.h"
#include "tests/models/TinyModel.h"

namespace {
using namespace lddpm::models;
using lddpm::core::makeCpuGenerator;

Batch tinyVolume() {
  // A smooth "brain" with a tissue map and a lesion blob that the image brightens: learnable from
  // the mask, as real FLAIR is.
  const std::int64_t s = 8;
  const auto r = torch::linspace(-1, 1, s);
  const auto z = r.view({s, 1, 1}), y = r.view({1, s, 1}), x = r.view({1, 1, s});
  const auto dist = (z * z + y * y + x * x).sqrt();
  const auto tissue = (dist < 0.4).to(torch::kInt64) * 3 +
                      ((dist >= 0.4) & (dist < 0.8)).to(torch::kInt64) * 2 +
                      ((dist >= 0.8) & (dist < 1.1)).to(torch::kInt64);
  const auto lesion = (((z - 0.3) * (z - 0.3) + y * y + (x + 0.3) * (x + 0.3)).sqrt() < 0.35);
  Batch b;
  b.anatomy =
      torch::stack({tissue == 1, tissue == 2, tissue == 3}, 0).unsqueeze(0).to(torch::kFloat32);
  b.lesion = lesion.unsqueeze(0).unsqueeze(0).to(torch::kFloat32);
  b.image = (-1 + 0.4 * tissue.to(torch::kFloat32) + 0.5 * lesion.to(torch::kFloat32))
                .clamp(-1, 1)
                .unsqueeze(0)
                .unsqueeze(0);
  // Batch 2 (the volume and its mirror image): at batch 1 and this size LibTorch picks its slow
  // reference conv3d over oneDNN's and the test takes 5x longer (docs/models.md "Performance").
  auto mirror = [](const torch::Tensor& t) { return torch::cat({t, t.flip({4})}, 0); };
  return {mirror(b.image), mirror(b.anatomy), mirror(b.lesion)};
}

// The loss the test watches for a model: its total, or for pix2pix the generator's L1 term (the
// adversarial terms settle at an equilibrium, not at zero).
double watched(const LossTerms& terms, const std::string& model) {
  if (model != "pix2pix") return terms.total.item<double>();
  for (const auto& [name, value] : terms.parts) {
    if (name == "g_l1") return value.item<double>();
  }
  return terms.total.item<double>();
}

class Overfit : public ::testing::TestWithParam<std::string> {};

TEST_P(Overfit, LossFallsTenfold) {
  const std::string name = GetParam();
  torch::manual_seed(0);
  auto model = createModel(testutil::tinyConfig(name, /*attentionLevels=*/""));
  model->train();
  const Batch batch = tinyVolume();
  std::vector<std::unique_ptr<torch::optim::Adam>> optimisers;
  const auto groups = model->parameterGroups();
  for (const auto& g : groups) {
    optimisers.push_back(
        std::make_unique<torch::optim::Adam>(g.parameters, torch::optim::AdamOptions(3e-3)));
  }
  double first = -1, last = -1;
  const int maxSteps = 400;
  int step = 0;
  for (; step < maxSteps; ++step) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
      Generators gens{makeCpuGenerator(17)};  // same t and ε every step
      model->zero_grad();
      const LossTerms terms = model->loss(batch, gens, groups[g].name);
      terms.total.backward();
      optimisers[g]->step();
      if (groups[g].name != "discriminator") {
        last = watched(terms, name);
        if (first < 0) first = last;
      }
    }
    if (last < first / 10) break;
  }
  RecordProperty("steps", step);
  std::cout << name << ": loss " << first << " -> " << last << " in " << step + 1 << " steps\n";
  EXPECT_LT(last, first / 10) << name << ": " << first << " -> " << last << " in " << step
                              << " steps";
}

// gtest names may not contain '-': lesion-ddpm -> lesion_ddpm.
std::string testName(const ::testing::TestParamInfo<std::string>& model) {
  std::string n = model.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Models, Overfit,
                         ::testing::Values("lesion-ddpm", "cond-ddpm", "pix2pix", "seg"), testName);

}  // namespace
