// The device-agnostic promise of docs/models.md: every model, loss and sampler gives on a
// GPU what it gives on the CPU, and bf16 autocast runs the convolutions in bf16 while the loss
// stays close to float32. The CUDA cases skip without a GPU (they run in docs/gpu.md's check); the
// autocast shim itself is checked on the CPU, where LibTorch also autocasts conv3d to bf16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "core/Rng.h"
#include "models/Autocast.h"
#include "models/DiffusionModel.h"
#include "models/Registry.h"
#include "tests/models/TinyModel.h"

namespace {
using namespace lddpm;
using namespace lddpm::models;

#define SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

Batch tinyBatch(std::int64_t edge = 16) {
  auto gen = core::makeCpuGenerator(7);
  Batch b;
  b.image = torch::rand({2, 1, edge, edge, edge}, gen) * 2 - 1;
  b.anatomy = (torch::rand({2, 3, edge, edge, edge}, gen) > 0.5).to(torch::kFloat32);
  b.lesion = (torch::rand({2, 1, edge, edge, edge}, gen) > 0.9).to(torch::kFloat32);
  return b;
}

Batch to(const Batch& b, const torch::Device& d) {
  return {b.image.to(d), b.anatomy.to(d), b.lesion.to(d)};
}

Generators generators() { return {core::makeCpuGenerator(11), core::makeCpuGenerator(12)}; }

// Two identically initialised copies of one model, the second on `device`.
std::pair<std::shared_ptr<ModelImpl>, std::shared_ptr<ModelImpl>> twins(
    const ModelConfig& c, const torch::Device& device) {
  torch::manual_seed(3);
  auto a = createModel(c);
  torch::manual_seed(3);
  auto b = createModel(c);
  b->to(device);
  return {a, b};
}

TEST(Autocast, ScopeCastsConvolutionsAndRestoresTheState) {
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(2, 2, 3).padding(1));
  const auto x = torch::randn({1, 2, 4, 4, 4});
  ASSERT_FALSE(autocastEnabled(c10::DeviceType::CPU));
  const auto before = autocastDtype(c10::DeviceType::CPU);
  {
    AutocastScope outer(c10::DeviceType::CPU, true);
    EXPECT_TRUE(autocastEnabled(c10::DeviceType::CPU));
    EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
    {
      AutocastScope off(c10::DeviceType::CPU, false);  // a disabled scope changes nothing
      EXPECT_TRUE(autocastEnabled(c10::DeviceType::CPU));
    }
    EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_FALSE(autocastEnabled(c10::DeviceType::CPU));
  EXPECT_EQ(autocastDtype(c10::DeviceType::CPU), before);
  EXPECT_EQ(conv(x).scalar_type(), torch::kFloat32);
}

class CudaMatchesCpu : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaMatchesCpu, LossAndGradients) {
  SKIP_WITHOUT_GPU();
  const torch::Device gpu(torch::kCUDA, 0);
  auto [cpu, cuda] = twins(testutil::tinyConfig(GetParam()), gpu);
  const Batch batch = tinyBatch();
  const std::string group = cpu->parameterGroups().front().name;
  Generators g1 = generators(), g2 = generators();
  const auto lc = cpu->loss(batch, g1, group);
  const auto lg = cuda->loss(to(batch, gpu), g2, group);
  lc.total.backward();
  lg.total.backward();
  // cuDNN runs float32 convolutions in TF32 on Ampere and newer unless told otherwise (10-bit
  // mantissa): 1e-3 relative, not float32's 1e-6. Measured on an H200: up to 1.4e-4 (pix2pix).
  EXPECT_NEAR(lg.total.item<double>(), lc.total.item<double>(),
              1e-3 * std::abs(lc.total.item<double>()) + 1e-6);
  auto pc = cpu->named_parameters();
  auto pg = cuda->named_parameters();
  double worstGrad = 0;
  for (size_t i = 0; i < pc.size(); ++i) {
    if (!pc[i].value().grad().defined()) continue;
    const auto gc = pc[i].value().grad();
    const auto gg = pg[i].value().grad().cpu();
    const double diff = (gg - gc).abs().max().item<double>();
    const double scale = gc.abs().max().item<double>() + 1e-6;
    worstGrad = std::max(worstGrad, diff / scale);
    EXPECT_LE(diff, 1e-3 * scale) << pc[i].key();
  }
  // One line per model for tests/gpu/check.sh's table (it bounds them again).
  std::cout << "cpu-vs-gpu " << GetParam() << " loss_rel "
            << std::abs(lg.total.item<double>() - lc.total.item<double>()) /
                   (std::abs(lc.total.item<double>()) + 1e-12)
            << " grad_rel " << worstGrad << std::endl;
}

INSTANTIATE_TEST_SUITE_P(Models, CudaMatchesCpu,
                         ::testing::Values("lesion-ddpm", "cond-ddpm", "pix2pix", "seg"));

TEST(Cuda, Bf16AutocastStaysCloseToFloat32) {
  SKIP_WITHOUT_GPU();
  const torch::Device gpu(torch::kCUDA, 0);
  auto [unused, model] = twins(testutil::tinyConfig("lesion-ddpm"), gpu);
  const Batch batch = to(tinyBatch(), gpu);
  Generators g1 = generators(), g2 = generators();
  const double fp32 = model->loss(batch, g1).total.item<double>();
  LossTerms bf16;
  {
    AutocastScope autocast(c10::DeviceType::CUDA, true);
    bf16 = model->loss(batch, g2);
  }
  EXPECT_EQ(bf16.total.scalar_type(), torch::kFloat32);  // the loss is reduced in float32
  bf16.total.backward();
  EXPECT_NEAR(bf16.total.item<double>(), fp32, 0.05 * std::abs(fp32));
  for (const auto& p : model->parameters()) {
    if (p.grad().defined()) {
      EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32);  // fp32 master weights and gradients
      EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
    }
  }
}

TEST(Cuda, CheckpointedGradientsEqualPlainOnes) {
  SKIP_WITHOUT_GPU();
  const torch::Device gpu(torch::kCUDA, 0);
  ModelConfig plainConfig = testutil::tinyConfig("lesion-ddpm");
  ModelConfig ckptConfig = plainConfig;
  ckptConfig.checkpointLevels = "0,1";
  torch::manual_seed(5);
  auto plain = createModel(plainConfig);
  torch::manual_seed(5);
  auto ckpt = createModel(ckptConfig);
  plain->to(gpu);
  ckpt->to(gpu);
  const Batch batch = to(tinyBatch(), gpu);
  Generators g1 = generators(), g2 = generators();
  plain->loss(batch, g1).total.backward();
  ckpt->loss(batch, g2).total.backward();
  auto pp = plain->named_parameters();
  auto pc = ckpt->named_parameters();
  for (size_t i = 0; i < pp.size(); ++i) {
    if (!pp[i].value().grad().defined()) continue;
    EXPECT_TRUE(torch::allclose(pc[i].value().grad(), pp[i].value().grad(), 1e-4, 1e-6))
        << pp[i].key();
  }
}

TEST(Cuda, DdimSamplingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const torch::Device gpu(torch::kCUDA, 0);
  auto [cpu, cuda] = twins(testutil::tinyConfig("lesion-ddpm"), gpu);
  cpu->eval();
  cuda->eval();
  Batch condition = tinyBatch();
  condition = {condition.image.narrow(0, 0, 1), condition.anatomy.narrow(0, 0, 1),
               condition.lesion.narrow(0, 0, 1)};
  const SamplerOptions sampler = SamplerOptions().kind(SamplerKind::Ddim).steps(5);
  Generators g1{core::makeCpuGenerator(9)}, g2{core::makeCpuGenerator(9)};
  torch::NoGradGuard noGrad;
  const auto a = cpu->synthesize(condition, sampler, g1);
  const auto b = cuda->synthesize(to(condition, gpu), sampler, g2).cpu();
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-3);
}

}  // namespace
