// models::Conv3d (models/Conv3d.h): in an InferenceScope it runs oneDNN directly — the value of a
// float64 convolution to rounding, the same bits for a case alone or in a batch and for any thread
// count, for a whole sampled volume too; elsewhere (autograd, or no-grad as in an activation
// checkpoint's forward) it is torch::nn::Conv3d bit for bit.
#include <gtest/gtest.h>

#include <vector>

#include "core/Rng.h"
#include "models/Conv3d.h"
#include "models/Diffusion.h"
#include "models/Registry.h"
#include "tests/models/TinyModel.h"

namespace {
using namespace lddpm::models;
namespace F = torch::nn::functional;

struct Shape {
  std::int64_t batch, in, out, kernel, stride, depth, height, width;
};

// The convolutions of the models at sizes where LibTorch 1.13 takes its slow kernel at batch 1:
// 3x3x3 at a coarse level, 1x1x1 (attention, residual), the stride-2 downsampling, and a batch.
const std::vector<Shape> kShapes = {{1, 16, 16, 3, 1, 6, 8, 6},
                                    {1, 8, 24, 1, 1, 6, 8, 6},
                                    {1, 8, 8, 3, 2, 12, 16, 12},
                                    {3, 4, 8, 3, 1, 8, 8, 8}};

Conv3d makeConv(const Shape& s) {
  Conv3d conv(
      torch::nn::Conv3dOptions(s.in, s.out, s.kernel).stride(s.stride).padding(s.kernel / 2));
  return conv;
}

torch::Tensor input(const Shape& s) {
  return torch::randn({s.batch, s.in, s.depth, s.height, s.width});
}

// Runs `f` with `threads` intra-op threads and restores the count.
template <typename Fn>
torch::Tensor withThreads(int threads, Fn f) {
  const int before = torch::get_num_threads();
  torch::set_num_threads(threads);
  torch::Tensor out = f();
  torch::set_num_threads(before);
  return out;
}

TEST(Conv3d, InferenceIsTheFloat64ConvolutionToRounding) {
  ASSERT_TRUE(at::hasMKLDNN()) << "LibTorch without oneDNN: the direct path cannot run";
  torch::manual_seed(1);
  for (const Shape& s : kShapes) {
    Conv3d conv = makeConv(s);
    const torch::Tensor x = input(s);
    InferenceScope inference;
    ASSERT_TRUE(usesDirectOneDnn(x));
    const torch::Tensor y = conv(x);
    const torch::Tensor reference =
        F::conv3d(x.to(torch::kFloat64), conv->weight.to(torch::kFloat64),
                  F::Conv3dFuncOptions()
                      .bias(conv->bias.to(torch::kFloat64))
                      .stride(s.stride)
                      .padding(s.kernel / 2));
    ASSERT_EQ(y.sizes(), reference.sizes());
    const double err = (y.to(torch::kFloat64) - reference).abs().max().item<double>();
    EXPECT_LE(err, 1e-5 * reference.abs().max().item<double>())
        << "batch " << s.batch << ", " << s.in << "->" << s.out << ", k " << s.kernel;
  }
}

TEST(Conv3d, ACaseIsTheSameBitsAloneOrInABatchAndOnAnyThreadCount) {
  torch::manual_seed(2);
  InferenceScope inference;
  for (Shape s : kShapes) {
    s.batch = 3;
    Conv3d conv = makeConv(s);
    const torch::Tensor x = input(s);
    const torch::Tensor batched = withThreads(2, [&] { return conv(x); });
    for (std::int64_t i = 0; i < s.batch; ++i) {
      const torch::Tensor alone = withThreads(1, [&] { return conv(x.narrow(0, i, 1)); });
      EXPECT_TRUE(torch::equal(alone[0], batched[i]))
          << "case " << i << ", " << s.in << "->" << s.out << ", k " << s.kernel << ": max |Δ| "
          << (alone[0] - batched[i]).abs().max().item<double>();
    }
  }
}

TEST(Conv3d, ANonContiguousInputGivesTheSameBits) {
  torch::manual_seed(3);
  const Shape s = kShapes[0];
  Conv3d conv = makeConv(s);
  const torch::Tensor wide = torch::randn({2, 2 * s.in, s.depth, s.height, s.width});
  const torch::Tensor view = wide.narrow(1, s.in, s.in);  // channels of a cat, as in the U-Net
  ASSERT_FALSE(view.is_contiguous());
  InferenceScope inference;
  EXPECT_TRUE(torch::equal(conv(view), conv(view.contiguous())));
}

TEST(Conv3d, WithAutogradOrOutsideAScopeItIsTorchsConv3dBitForBit) {
  torch::manual_seed(4);
  for (const Shape& s : kShapes) {
    Conv3d conv = makeConv(s);
    torch::nn::Conv3d plain(
        torch::nn::Conv3dOptions(s.in, s.out, s.kernel).stride(s.stride).padding(s.kernel / 2));
    {
      torch::NoGradGuard noGrad;
      plain->weight.copy_(conv->weight);
      plain->bias.copy_(conv->bias);
    }
    const torch::Tensor x = input(s).requires_grad_(true);
    {  // an activation checkpoint's forward: no grad, recomputed later with autograd
      torch::NoGradGuard noGrad;
      ASSERT_FALSE(usesDirectOneDnn(x));
      EXPECT_TRUE(torch::equal(conv(x), plain(x)));
    }
    {  // autograd inside a scope (not what a scope is for): still ATen's
      InferenceScope inference;
      torch::AutoGradMode enable(true);
      ASSERT_FALSE(usesDirectOneDnn(x));
    }
    const torch::Tensor y = conv(x), expected = plain(x);
    EXPECT_TRUE(torch::equal(y, expected));
    y.sum().backward();
    ASSERT_TRUE(conv->weight.grad().defined());
    expected.sum().backward();
    EXPECT_TRUE(torch::equal(conv->weight.grad(), plain->weight.grad()));
  }
}

// A whole DDIM sample (η = 1) of the tiny Lesion-DDPM with attention: each case the same bits
// alone on one thread as in a batch of three on two — what lets `lddpm sample` promise the same
// volumes whatever --batch, --threads and the number of ranks (docs/training.md).
TEST(Conv3d, ASampledVolumeIsTheSameBitsWhateverItsBatchAndThreads) {
  ModelConfig config = testutil::tinyConfig("lesion-ddpm", "1");
  torch::manual_seed(5);
  auto model = createModel(config);
  model->eval();
  {
    torch::NoGradGuard noGrad;  // the zero-initialised layers carry weight
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  const std::int64_t n = 3, side = 8;
  Batch condition;
  condition.image = torch::rand({n, 1, side, side, side}) * 2 - 1;
  const auto tissue = torch::randint(0, 4, {n, side, side, side});
  condition.anatomy = torch::stack({tissue == 1, tissue == 2, tissue == 3}, 1).to(torch::kFloat32);
  condition.lesion = (torch::rand({n, 1, side, side, side}) > 0.8).to(torch::kFloat32);
  const auto sampler = SamplerOptions().kind(SamplerKind::Ddim).steps(4).eta(1.0);
  const auto generators = [](std::int64_t first, std::int64_t count) {
    Generators gens;
    for (std::int64_t i = first; i < first + count; ++i)
      gens.push_back(lddpm::core::makeCpuGenerator(static_cast<std::uint64_t>(100 + i)));
    return gens;
  };
  const torch::Tensor batched = withThreads(2, [&] {
    Generators gens = generators(0, n);
    return model->synthesize(condition, sampler, gens);
  });
  for (std::int64_t i = 0; i < n; ++i) {
    const torch::Tensor alone = withThreads(1, [&] {
      Generators gens = generators(i, 1);
      const Batch one{condition.image.narrow(0, i, 1), condition.anatomy.narrow(0, i, 1),
                      condition.lesion.narrow(0, i, 1)};
      return model->synthesize(one, sampler, gens);
    });
    EXPECT_TRUE(torch::equal(alone[0], batched[i]))
        << "case " << i << ": max |Δ| " << (alone[0] - batched[i]).abs().max().item<double>();
  }
}

}  // namespace
