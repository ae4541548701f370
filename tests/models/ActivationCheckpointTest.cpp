// Activation checkpointing must change memory, never results: gradients of a checkpointed U-Net
// are bitwise those of the plain one on CPU, with dropout on (the RNG state is replayed), and a
// stage whose inputs do not require grad still passes gradients to its parameters.
#include <gtest/gtest.h>

#include "models/ActivationCheckpoint.h"
#include "models/UNet3D.h"

namespace {
using namespace lddpm::models;

UNetOptions smallUNet(std::vector<std::int64_t> checkpointLevels, bool sharedMaskEmbedding) {
  return UNetOptions(1, 1)
      .baseChannels(8)
      .channelMultipliers({1, 2})
      .attentionLevels({1})
      .attentionHeads(2)
      .groups(4)
      .dropout(0.3)
      .maskChannels(2)
      .maskInEncoder(true)
      .maskInBottleneck(true)
      .maskInDecoder(true)
      .modulationHidden(8)
      .sharedMaskEmbedding(sharedMaskEmbedding)
      .checkpointLevels(std::move(checkpointLevels));
}

struct StepResult {
  std::vector<torch::Tensor> grads;
  torch::Tensor output, inputGrad, nextDraw;
};

// Forward + backward from a fixed global RNG state (dropout draws from it), then one more draw to
// see where the stream was left.
StepResult trainStep(UNet3D& net, const torch::Tensor& x, const torch::Tensor& t,
                     const torch::Tensor& mask) {
  net->zero_grad();
  torch::manual_seed(1234);
  auto input = x.clone().requires_grad_(true);
  auto out = net(input, t, mask);
  (out * out).sum().backward();
  StepResult run;
  for (const auto& p : net->parameters()) run.grads.push_back(p.grad().clone());
  run.output = out.detach();
  run.inputGrad = input.grad().clone();
  run.nextDraw = torch::rand({4});
  return run;
}

// Both mask modulations: per block, and one embedding per level shared by the level's blocks,
// whose gradient sums over the blocks (checkpointed or not) in the same order.
class CheckpointedUNet : public ::testing::TestWithParam<bool> {};

TEST_P(CheckpointedUNet, GradientsAreBitwiseEqualWithDropout) {
  torch::manual_seed(0);
  UNet3D plain(smallUNet({}, GetParam()));
  UNet3D checkpointed(smallUNet({0, 1}, GetParam()));
  // Same weights; the zero-initialised layers get random values so every path carries gradient.
  {
    torch::NoGradGuard noGrad;
    auto src = plain->parameters();
    auto dst = checkpointed->parameters();
    ASSERT_EQ(src.size(), dst.size());
    for (std::size_t i = 0; i < src.size(); ++i) {
      src[i].normal_(0, 0.2);
      dst[i].copy_(src[i]);
    }
  }
  const auto x = torch::randn({2, 1, 8, 8, 8});
  const auto mask = torch::rand({2, 2, 8, 8, 8});
  const auto t = torch::tensor({3, 70});
  const StepResult a = trainStep(plain, x, t, mask);
  const StepResult b = trainStep(checkpointed, x, t, mask);
  EXPECT_TRUE(torch::equal(a.output, b.output));
  EXPECT_TRUE(torch::equal(a.inputGrad, b.inputGrad));
  const auto names = plain->named_parameters().keys();
  for (std::size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.grads[i], b.grads[i]))
        << names[i] << " max diff " << (a.grads[i] - b.grads[i]).abs().max().item<double>()
        << " of " << a.grads[i].abs().max().item<double>();
  }
  // The replay restored the RNG stream: training continues as if nothing had been recomputed.
  EXPECT_TRUE(torch::equal(a.nextDraw, b.nextDraw));
  // And dropout really was on: another seed gives different gradients.
  torch::manual_seed(99);
  checkpointed->zero_grad();
  auto out = checkpointed(x, t, mask);
  (out * out).sum().backward();
  EXPECT_FALSE(torch::equal(checkpointed->parameters().front().grad(), a.grads.front()));
}

INSTANTIATE_TEST_SUITE_P(MaskEmbedding, CheckpointedUNet, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "PerLevel" : "PerBlock"; });

TEST(ActivationCheckpoint, InputsWithoutGradStillReachTheParameters) {
  torch::manual_seed(0);
  torch::nn::Linear layer(3, 2);
  const auto x = torch::randn({5, 3});  // requires no grad: a re-entrant checkpoint loses the graph
  const CheckpointStage stage = [&](const torch::autograd::variable_list& in) {
    return torch::autograd::variable_list{torch::tanh(layer(in[0]))};
  };
  const auto out = checkpoint(stage, {x}, layer->parameters())[0];
  ASSERT_TRUE(out.requires_grad());
  out.sum().backward();
  const auto wCkpt = layer->weight.grad().clone(), bCkpt = layer->bias.grad().clone();
  layer->zero_grad();
  torch::tanh(layer(x)).sum().backward();
  EXPECT_TRUE(torch::equal(wCkpt, layer->weight.grad()));
  EXPECT_TRUE(torch::equal(bCkpt, layer->bias.grad()));
}

TEST(ActivationCheckpoint, UndefinedInputsAndNoGradModePassThrough) {
  torch::manual_seed(0);
  torch::nn::Linear layer(3, 3);
  const auto x = torch::randn({2, 3}, torch::requires_grad());
  const CheckpointStage stage = [&](const torch::autograd::variable_list& in) {
    EXPECT_FALSE(in[1].defined());
    return torch::autograd::variable_list{layer(in[0]) * in[2]};
  };
  const auto scale = torch::full({2, 3}, 2.0);
  const auto out = checkpoint(stage, {x, torch::Tensor(), scale}, layer->parameters())[0];
  out.sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), 2 * layer->weight.sum(0).expand({2, 3})));
  torch::NoGradGuard noGrad;
  EXPECT_FALSE(
      checkpoint(stage, {x, torch::Tensor(), scale}, layer->parameters())[0].requires_grad());
}

}  // namespace
