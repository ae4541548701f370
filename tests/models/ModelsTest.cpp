// Every registered model through the engine's interface (models/Model.h): output shapes, loss
// terms, parameter groups and counts, the lesion-ddpm loss wired as the formula says, dtype
// following the input, and usage errors that name the option.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "core/Error.h"
#include "core/Rng.h"
#include "models/Conv3d.h"
#include "models/DiffusionModel.h"
#include "models/Pix2Pix.h"
#include "models/Registry.h"
#include "models/Segmenter.h"
#include "models/UNet3D.h"
#include "tests/models/TinyModel.h"

namespace {
using namespace lddpm::models;
using lddpm::core::makeCpuGenerator;

using lddpm::models::testutil::tinyConfig;

Batch tinyBatch(std::int64_t b = 2, std::int64_t side = 8) {
  torch::manual_seed(42);
  Batch batch;
  batch.image = torch::rand({b, 1, side, side, side}) * 2 - 1;
  const auto tissue = torch::randint(0, 4, {b, side, side, side});
  batch.anatomy = torch::stack({tissue == 1, tissue == 2, tissue == 3}, 1).to(torch::kUInt8);
  batch.lesion = (torch::rand({b, 1, side, side, side}) > 0.9).to(torch::kUInt8);
  return batch;
}

TEST(Registry, ListsTheFourModels) {
  std::vector<std::string> names;
  for (const auto& m : registeredModels()) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"lesion-ddpm", "cond-ddpm", "pix2pix", "seg"}));
}

TEST(Registry, EveryModelTrainsAndSynthesisesThroughTheInterface) {
  const Batch batch = tinyBatch();
  for (const auto& entry : registeredModels()) {
    SCOPED_TRACE(entry.name);
    auto model = createModel(tinyConfig(entry.name));
    EXPECT_EQ(model->name(), entry.name);
    EXPECT_EQ(model->sizeDivisor(), entry.name == "pix2pix" ? 4 : 2);
    std::int64_t count = 0;
    for (const auto& p : model->parameters()) count += p.numel();
    EXPECT_EQ(model->parameterCount(), count);
    EXPECT_GT(count, 1000);

    std::int64_t grouped = 0;
    for (const auto& group : model->parameterGroups()) {
      for (const auto& p : group.parameters) grouped += p.numel();
      Generators gens{makeCpuGenerator(1), makeCpuGenerator(2)};
      const LossTerms terms = model->loss(batch, gens, group.name);
      ASSERT_EQ(terms.total.dim(), 0);
      EXPECT_TRUE(std::isfinite(terms.total.item<double>()));
      EXPECT_TRUE(terms.total.requires_grad());
      EXPECT_FALSE(terms.parts.empty());
    }
    EXPECT_EQ(grouped, count);  // groups partition the parameters

    Generators gens{makeCpuGenerator(3)};
    if (entry.name == "seg") {
      EXPECT_THROW(model->synthesize(batch, SamplerOptions(), gens), lddpm::core::Error);
      auto seg = std::dynamic_pointer_cast<SegmenterImpl>(model);
      ASSERT_TRUE(seg);
      EXPECT_EQ(seg->logits(batch.image).sizes(), batch.image.sizes());
      const auto big = torch::rand({1, 1, 12, 8, 20});
      const auto p = seg->predict(big, SlidingWindowOptions().window({8, 8, 8}));
      EXPECT_EQ(p.sizes(), big.sizes());
      EXPECT_GE(p.min().item<double>(), 0.0);
      EXPECT_LE(p.max().item<double>(), 1.0);
      continue;
    }
    const auto image = model->synthesize(batch, SamplerOptions().steps(3), gens);
    EXPECT_EQ(image.sizes(), batch.image.sizes());
    EXPECT_LE(image.abs().max().item<double>(), 1.0);
    EXPECT_FALSE(image.requires_grad());
  }
}

TEST(Registry, MaskSitesControlTheModulation) {
  const auto lesion = createModel(tinyConfig("lesion-ddpm"));
  const auto cond = createModel(tinyConfig("cond-ddpm"));
  auto inputOnly = tinyConfig("lesion-ddpm");
  inputOnly.maskSites = "input";
  // With the mask at the input only, lesion-ddpm's network is cond-ddpm's.
  EXPECT_EQ(createModel(inputOnly)->parameterCount(), cond->parameterCount());
  EXPECT_GT(lesion->parameterCount(), cond->parameterCount());
  std::int64_t modulation = 0;
  for (const auto& item : lesion->named_parameters()) {
    if (item.key().find("mod") != std::string::npos) modulation += item.value().numel();
  }
  EXPECT_EQ(lesion->parameterCount() - cond->parameterCount(), modulation);
}

// --mask-embedding level: one embedding (3x3x3 Cm -> h, 3x3x3 h -> h) per level and one 1x1x1
// h -> 2 (in + out) convolution per block, counted by hand from the tiny U-Net's block widths.
TEST(Registry, SharedMaskEmbeddingHasTheParametersOfItsFormula) {
  auto shared = tinyConfig("lesion-ddpm");
  shared.maskEmbedding = "level";
  shared.modulationHidden = 6;
  const auto model = createModel(shared);
  const auto cond = createModel(tinyConfig("cond-ddpm"));
  const std::int64_t cm = 4, h = 6;  // mask channels: 3 tissue classes + lesion
  // (in, out) of the 8 blocks of base 8, multipliers 1,2: encoder, bottleneck, decoder with skips.
  const std::int64_t widths[][2] = {{8, 8},   {8, 16},  {16, 16}, {16, 16},
                                    {32, 16}, {24, 16}, {24, 8},  {16, 8}};
  std::int64_t expected = 2 * (cm * h * 27 + h + h * h * 27 + h);  // two levels' embeddings
  for (const auto& w : widths) expected += (h + 1) * 2 * (w[0] + w[1]);
  std::int64_t modulation = 0;
  for (const auto& item : model->named_parameters()) {
    if (item.key().find("mod") != std::string::npos) modulation += item.value().numel();
  }
  EXPECT_EQ(modulation, expected);
  EXPECT_EQ(model->parameterCount() - cond->parameterCount(), expected);
}

// The (γ, β) convolutions start at zero: an untrained shared modulation is the identity, so the
// network computes what the same weights compute with the mask at the input only; once γ, β are
// non-zero the mask changes the output through them.
TEST(UNet3D, SharedMaskEmbeddingStartsAsTheIdentity) {
  const auto options = [](bool modulated) {
    return UNetOptions(1, 1)
        .baseChannels(8)
        .channelMultipliers({1, 2})
        .attentionLevels({})
        .groups(4)
        .maskChannels(2)
        .maskInEncoder(modulated)
        .maskInBottleneck(modulated)
        .maskInDecoder(modulated)
        .modulationHidden(4)
        .sharedMaskEmbedding(true);
  };
  torch::manual_seed(3);
  UNet3D modulated(options(true)), plain(options(false));
  torch::NoGradGuard noGrad;
  for (auto& item : plain->named_parameters()) {
    item.value().normal_(0, 0.2);
    modulated->named_parameters()[item.key()].copy_(item.value());
  }
  const auto x = torch::randn({2, 1, 8, 8, 8});
  const auto mask = torch::rand({2, 2, 8, 8, 8});
  const auto t = torch::tensor({5, 50});
  EXPECT_TRUE(torch::equal(modulated(x, t, mask), plain(x, t, mask)));
  for (auto& item : modulated->named_parameters()) {
    if (item.key().find("mod_gamma_beta") != std::string::npos) item.value().normal_(0, 0.2);
  }
  const auto out = modulated(x, t, mask);
  EXPECT_GT((out - plain(x, t, mask)).abs().max().item<double>(), 1e-3);
  EXPECT_GT((out - modulated(x, t, torch::rand({2, 2, 8, 8, 8}))).abs().max().item<double>(), 1e-3);
}

// The mask's part of a forward pass made once (what a sampler does, DiffusionModelImpl::
// synthesize) gives the bits of the plain forward, in inference and with autograd, for per-block
// and per-level modulation and any budget; the budget holds blocks' maps in forward order, each
// 2 (Cin + Cout) channels at its level's grid.
TEST(UNet3D, MaskConditionMadeOnceGivesTheSameBits) {
  for (const bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "per level" : "per block");
    torch::manual_seed(5);
    UNet3D net(UNetOptions(1, 1)
                   .baseChannels(8)
                   .channelMultipliers({1, 2})
                   .attentionLevels({1})
                   .attentionHeads(2)
                   .groups(4)
                   .maskChannels(4)
                   .maskInEncoder(true)
                   .maskInBottleneck(true)
                   .maskInDecoder(true)
                   .modulationHidden(4)
                   .sharedMaskEmbedding(shared));
    {
      torch::NoGradGuard noGrad;  // every (γ, β) away from its zero start
      for (auto& p : net->parameters()) p.normal_(0, 0.2);
    }
    const auto x = torch::randn({2, 1, 8, 8, 8});
    const auto mask = torch::rand({2, 4, 8, 8, 8});
    const auto other = torch::rand({2, 4, 8, 8, 8});
    const auto t = torch::tensor({5, 50});
    // (Cin, Cout) of the 8 blocks in forward order (encoder, bottleneck, decoder with its skips),
    // with the voxels of their level's grid for a batch of 2: 8^3 at level 0, 4^3 at level 1.
    const std::int64_t blocks[][3] = {{8, 8, 1024},  {8, 16, 128},  {16, 16, 128}, {16, 16, 128},
                                      {32, 16, 128}, {24, 16, 128}, {24, 8, 1024}, {16, 8, 1024}};
    std::int64_t all = 0;
    for (const auto& b : blocks) all += 2 * (b[0] + b[1]) * b[2] * 4;
    const std::int64_t last = 2 * (16 + 8) * 1024 * 4;
    for (const bool inference : {true, false}) {
      SCOPED_TRACE(inference ? "inference" : "autograd");
      std::optional<InferenceScope> scope;
      if (inference) scope.emplace();
      const auto plain = net(x, t, mask);
      for (const std::int64_t budget : {std::int64_t{0}, all - 1, all}) {
        const MaskCondition c = net->condition(mask, torch::kFloat32, budget);
        EXPECT_TRUE(torch::equal(net->forwardWith(x, t, c), plain)) << "budget " << budget;
        EXPECT_LE(c.mapBytes, budget);
        EXPECT_EQ(c.mapBytes, budget == all ? all : budget == 0 ? 0 : all - last);
        EXPECT_EQ(c.maps.size(), budget == all ? 8u : budget == 0 ? 0u : 7u);
      }
      // The maps made for `mask` are what the blocks use: with another mask's levels beside
      // them, the output is neither network's on the other mask.
      MaskCondition stale = net->condition(mask, torch::kFloat32, all);
      const MaskCondition fresh = net->condition(other, torch::kFloat32, 0);
      stale.mask = fresh.mask;
      stale.levels = fresh.levels;
      EXPECT_GT((net->forwardWith(x, t, stale) - net(x, t, other)).abs().max().item<double>(),
                1e-3);
    }
  }
}

TEST(Registry, SummariesCountEveryParameterOnceInItsGroup) {
  const auto all = summarizeModels(tinyConfig("lesion-ddpm"), /*onlyConfigured=*/false);
  ASSERT_EQ(all.size(), registeredModels().size());
  for (size_t i = 0; i < all.size(); ++i) {
    const ModelSummary& s = all[i];
    SCOPED_TRACE(s.name);
    EXPECT_EQ(s.name, registeredModels()[i].name);
    // Counted independently: the parameters of a model built by createModel with the same options.
    std::int64_t count = 0;
    for (const auto& p : createModel(tinyConfig(s.name))->parameters()) count += p.numel();
    EXPECT_EQ(s.parameters, count);
    std::int64_t grouped = 0;
    for (const auto& group : s.groups) grouped += group.second;
    EXPECT_EQ(grouped, count);
    EXPECT_EQ(s.sizeDivisor, s.name == "pix2pix" ? 4 : 2);
  }
  const auto one = summarizeModels(tinyConfig("pix2pix"), /*onlyConfigured=*/true);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].name, "pix2pix");
  ASSERT_EQ(one[0].groups.size(), 2u);  // discriminator and generator, each counted
}

TEST(Registry, BadOptionsAreUsageErrorsNamingTheOption) {
  auto expectUsage = [](ModelConfig c, const std::string& option) {
    try {
      createModel(c);
      ADD_FAILURE() << "no error for " << option;
    } catch (const lddpm::core::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
    }
  };
  auto c = tinyConfig("lesion-ddpm");
  c.model = "unet9000";
  expectUsage(c, "--model");
  c = tinyConfig("lesion-ddpm");
  c.groups = 3;
  expectUsage(c, "--groups");
  c = tinyConfig("seg");
  c.channelMultipliers = "1,two";
  expectUsage(c, "--channel-mult");
  c.channelMultipliers = "1,2,";  // a stray comma is an empty item, not silently dropped
  expectUsage(c, "--channel-mult");
  c = tinyConfig("lesion-ddpm");
  c.maskSites = "input,everywhere";
  expectUsage(c, "--mask-sites");
  c.maskSites = "input,,decoder";
  expectUsage(c, "--mask-sites");
  c = tinyConfig("cond-ddpm");
  c.prediction = "x_0";
  expectUsage(c, "--prediction");
  c = tinyConfig("lesion-ddpm");
  c.lossWeighting = "snr";
  expectUsage(c, "--loss-weighting");
  c = tinyConfig("lesion-ddpm");
  c.trainSteps = 101;  // more than T = 100
  expectUsage(c, "--train-steps");
  c = tinyConfig("lesion-ddpm");
  c.timestepSpacing = "cubic";
  expectUsage(c, "--timestep-spacing");
  for (const char* model : {"lesion-ddpm", "cond-ddpm", "pix2pix"}) {
    c = tinyConfig(model);
    c.anatomyChannels = 2;  // no store holds a 2-channel anatomy: refused, not built
    expectUsage(c, "--anatomy-channels");
  }
  c = tinyConfig("lesion-ddpm");
  c.maskEmbedding = "voxel";
  expectUsage(c, "--mask-embedding");
  c = tinyConfig("lesion-ddpm");
  c.checkpointLevels = "5";
  expectUsage(c, "--checkpoint-levels");
  c = tinyConfig("cond-ddpm");
  c.intensityPrior = "atlas";
  expectUsage(c, "--intensity-prior");
  c = tinyConfig("seg");
  c.intensityPrior = "class-mean";  // only the generators have one
  expectUsage(c, "--intensity-prior");
}

TEST(DiffusionModel, LossIsTheLesionWeightedL1OfTheDenoiser) {
  auto model =
      std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(tinyConfig("lesion-ddpm")));
  ASSERT_TRUE(model);
  {
    torch::NoGradGuard noGrad;  // non-zero output layer, so the loss depends on the network
    for (auto& p : model->parameters()) p.normal_(0, 0.1);
  }
  const Batch batch = tinyBatch();
  Generators gens{makeCpuGenerator(8), makeCpuGenerator(9)};
  const auto loss = model->loss(batch, gens).total.item<double>();

  // The same draws by hand: per sample, t then ε from its own generator.
  Generators again{makeCpuGenerator(8), makeCpuGenerator(9)};
  const auto t = randintFrom(again, 100, 2, torch::kCPU);
  const auto noise = randnFrom(again, batch.image.sizes(), batch.image.options());
  const auto xt = qSample(model->schedule(), batch.image, t, noise);
  const auto out = model->denoise(xt, t, batch.condition(batch.image));
  const auto w = 1 + 4.0 * batch.lesion.to(torch::kFloat32);
  EXPECT_NEAR(loss, (w * (out - noise).abs()).mean().item<double>(), 1e-6);
}

// f(t) = cos²(π/2 · (t/T + s)/(1 + s)): ᾱ_t = f(t + 1)/f(0) below the clipped last step.
double cosineAlphaBar(double t, double T) {
  const auto f = [&](double u) {
    const double c = std::cos((u / T + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  return f(t + 1) / f(0);
}

TEST(DiffusionModel, MinSnrWeightedX0LossOnTheTrainingSubset) {
  auto c = tinyConfig("lesion-ddpm");
  c.prediction = "x0";
  c.lossWeighting = "min-snr";
  c.trainSteps = 4;
  c.timestepSpacing = "quadratic";
  c.x0Weight = 0.5;
  auto model = std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(c));
  ASSERT_TRUE(model);
  // Quadratic spacing of 4 steps over T = 100: round(99 (i/3)²) = 0, 11, 44, 99... ascending.
  EXPECT_EQ(model->trainingTimesteps(), (std::vector<std::int64_t>{0, 11, 44, 99}));
  {
    torch::NoGradGuard noGrad;
    for (auto& p : model->parameters()) p.normal_(0, 0.1);
  }
  const Batch batch = tinyBatch();
  Generators gens{makeCpuGenerator(8), makeCpuGenerator(9)};
  const LossTerms terms = model->loss(batch, gens);

  // By hand: per sample an index into the 4 steps, then ε; x̂0 is the output itself, so the x0
  // term repeats the target term (same error, same x0-space weight): total = 1.5 · mean(w · L1).
  Generators again{makeCpuGenerator(8), makeCpuGenerator(9)};
  const std::int64_t table[4] = {0, 11, 44, 99};
  const auto index = randintFrom(again, 4, 2, torch::kCPU);
  const auto t =
      torch::tensor({table[index[0].item<std::int64_t>()], table[index[1].item<std::int64_t>()]});
  const auto noise = randnFrom(again, batch.image.sizes(), batch.image.options());
  const auto xt = qSample(model->schedule(), batch.image, t, noise);
  const auto out = model->denoise(xt, t, batch.condition(batch.image));
  const auto lesionWeight = 1 + 4.0 * batch.lesion.to(torch::kFloat32);
  double expected = 0;
  for (int b = 0; b < 2; ++b) {
    const double step = t[b].item<double>();
    // ᾱ_99 is the clipped last step: ᾱ_98 · (1 − 0.999).
    const double a = step == 99 ? cosineAlphaBar(98, 100) * 0.001 : cosineAlphaBar(step, 100);
    const double w = std::min(a / (1 - a), 5.0);
    const double l1 = (lesionWeight[b] * (out[b] - batch.image[b]).abs()).mean().item<double>();
    expected += 1.5 * w * l1 / 2;
  }
  EXPECT_NEAR(terms.total.item<double>(), expected, 1e-5 * expected);
  ASSERT_EQ(terms.parts.size(), 2u);
  EXPECT_EQ(terms.parts[0].first, "target_l1");
  EXPECT_EQ(terms.parts[1].first, "x0_l1");
  // Sampling over all T refuses a model that trained on 4 steps; DDIM over them is fine.
  EXPECT_THROW(model->samplerFor(SamplerOptions().kind(SamplerKind::Ddpm)),
               lddpm::core::UsageError);
  EXPECT_EQ(model->samplerFor(SamplerOptions().steps(4)).spacing(), Spacing::Quadratic);
}

// Independent of the model's arithmetic: each voxel's class value by masked fill (a lesion voxel
// takes the lesion's value whatever its tissue), as the class-mean reference of `evaluate` does.
torch::Tensor classMeanImage(const Batch& batch, const ClassIntensities& m) {
  torch::Tensor out = torch::full(batch.lesion.sizes(), m.background, torch::kFloat64);
  const double tissueMeans[3] = {m.csf, m.greyMatter, m.whiteMatter};
  for (int c = 0; c < 3; ++c) out.masked_fill_(batch.anatomy.narrow(1, c, 1) != 0, tissueMeans[c]);
  return out.masked_fill_(batch.lesion != 0, m.lesion).to(torch::kFloat32);
}

std::shared_ptr<DiffusionModelImpl> priorModel(const std::string& prior) {
  auto c = tinyConfig("lesion-ddpm");
  c.prediction = "x0";
  c.intensityPrior = prior;
  return std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(c));
}

const ClassIntensities kMeans{-1.0, -0.45, 0.1, -0.05, 0.6};

TEST(IntensityPrior, AFreshNetworkSamplesTheClassMeanImage) {
  auto model = priorModel("class-mean");
  ASSERT_TRUE(model && model->wantsClassIntensities());
  model->setClassIntensities(kMeans);
  // The output layer starts at zero, so x̂0 of the residual is 0 at every step and the sample is
  // the prior itself, with ancestral noise (η = 1) or without.
  const Batch batch = tinyBatch();
  for (double eta : {0.0, 1.0}) {
    Generators gens{makeCpuGenerator(3)};
    const auto sample = model->synthesize(batch, SamplerOptions().steps(4).eta(eta), gens);
    EXPECT_TRUE(torch::allclose(sample, classMeanImage(batch, kMeans), 0, 1e-6)) << "eta " << eta;
  }
  EXPECT_TRUE(torch::allclose(model->intensityPrior(batch.condition(batch.image)),
                              classMeanImage(batch, kMeans), 0, 1e-6));
  // The values travel in the state (model.pt), as the buffer "class_means".
  bool found = false;
  for (const auto& b : model->named_buffers()) {
    if (b.key() == "class_means") {
      found = true;
      EXPECT_TRUE(torch::allclose(b.value(), torch::tensor({-1.0, -0.45, 0.1, -0.05, 0.6})));
    }
  }
  EXPECT_TRUE(found);
  // pix2pix's generator: μ + tanh(U(m)), U's output layer at zero as well.
  auto c = tinyConfig("pix2pix");
  c.intensityPrior = "class-mean";
  auto pix2pix = createModel(c);
  ASSERT_TRUE(pix2pix->wantsClassIntensities());
  pix2pix->setClassIntensities(kMeans);
  Generators gens{makeCpuGenerator(3)};
  EXPECT_TRUE(torch::allclose(pix2pix->synthesize(batch, SamplerOptions(), gens),
                              classMeanImage(batch, kMeans), 0, 1e-6));
}

TEST(IntensityPrior, TheLossIsTheLossOfTheResidual) {
  auto with = priorModel("class-mean");
  auto without = priorModel("none");
  EXPECT_FALSE(without->wantsClassIntensities());
  EXPECT_THROW(without->setClassIntensities(kMeans), lddpm::core::Error);
  EXPECT_TRUE(torch::equal(without->intensityPrior(tinyBatch().condition(tinyBatch().image)),
                           torch::zeros({2, 1, 8, 8, 8})));
  with->setClassIntensities(kMeans);
  {
    torch::NoGradGuard noGrad;  // one set of weights in both, non-zero output layer
    torch::manual_seed(5);
    for (auto& p : without->parameters()) p.normal_(0, 0.1);
    const auto source = without->named_parameters();
    for (auto& p : with->named_parameters()) p.value().copy_(source[p.key()]);
  }
  const Batch batch = tinyBatch();
  Batch residual = batch;
  residual.image = batch.image - classMeanImage(batch, kMeans);
  Generators a{makeCpuGenerator(8), makeCpuGenerator(9)};
  Generators b{makeCpuGenerator(8), makeCpuGenerator(9)};
  const double lossWith = with->loss(batch, a).total.item<double>();
  const double lossWithout = without->loss(residual, b).total.item<double>();
  EXPECT_NEAR(lossWith, lossWithout, 1e-6 * lossWithout);
  // ... and not the loss of the image itself.
  Generators c{makeCpuGenerator(8), makeCpuGenerator(9)};
  EXPECT_GT(std::abs(without->loss(batch, c).total.item<double>() - lossWith), 1e-3);
}

TEST(DiffusionModel, RunsInTheDtypeOfItsParametersAndInputs) {
  auto model =
      std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(tinyConfig("lesion-ddpm")));
  model->to(torch::kFloat64);
  Batch batch = tinyBatch(1);
  batch.image = batch.image.to(torch::kFloat64);
  Generators gens{makeCpuGenerator(1)};
  EXPECT_EQ(model->loss(batch, gens).total.scalar_type(), torch::kFloat64);
  EXPECT_EQ(model->synthesize(batch, SamplerOptions().steps(2), gens).scalar_type(),
            torch::kFloat64);
}

// Sampling makes the mask's modulation maps once per batch of cases (SamplerOptions::
// conditionCacheBytes): the samples are the bits of making them at every step.
TEST(DiffusionModel, SamplesAreTheSameBitsWhateverTheConditionCache) {
  auto model =
      std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(tinyConfig("lesion-ddpm")));
  {
    torch::NoGradGuard noGrad;  // γ, β and the output layer away from their zero start
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
  }
  const Batch batch = tinyBatch(2);
  std::vector<torch::Tensor> samples;
  for (const std::int64_t bytes :
       {std::int64_t{0}, std::int64_t{300} << 10, std::int64_t{1} << 30}) {
    Generators gens{makeCpuGenerator(1), makeCpuGenerator(2)};
    samples.push_back(model->synthesize(
        batch, SamplerOptions().steps(3).eta(1).conditionCacheBytes(bytes), gens));
  }
  EXPECT_TRUE(torch::equal(samples[0], samples[1]));
  EXPECT_TRUE(torch::equal(samples[0], samples[2]));
  EXPECT_GT(samples[0].std().item<double>(), 0.05);  // a sample, not a constant
}

TEST(DiffusionModel, RejectsMismatchedMasks) {
  auto model = createModel(tinyConfig("lesion-ddpm"));
  Batch batch = tinyBatch();
  batch.anatomy = batch.anatomy.slice(1, 0, 2);  // 2 tissue channels where 3 are expected
  Generators gens{makeCpuGenerator(1)};
  try {
    model->loss(batch, gens);
    ADD_FAILURE() << "no error";
  } catch (const lddpm::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("anatomy must be [2, 3, 8, 8, 8]"), std::string::npos)
        << e.what();
  }
}

TEST(Pix2Pix, DiscriminatorScoresPatches) {
  auto model = std::dynamic_pointer_cast<Pix2PixImpl>(createModel(tinyConfig("pix2pix")));
  ASSERT_TRUE(model);
  const Batch batch = tinyBatch(2, 16);
  const auto mask = batch.condition(batch.image);
  EXPECT_EQ(model->discriminate(mask, batch.image).sizes(), (std::vector<int64_t>{2, 1, 4, 4, 4}));
  EXPECT_EQ(model->parameterGroups().front().name, "discriminator");
}

TEST(Segmenter, DiceLossOnKnownOverlaps) {
  // Logits ±100 give probabilities 0/1: Dice of two 4-voxel sets sharing 2 voxels is 2·2/(4+4).
  auto logits = torch::full({1, 1, 1, 1, 8}, -100.0, torch::kFloat64);
  auto target = torch::zeros({1, 1, 1, 1, 8}, torch::kFloat64);
  logits.slice(4, 0, 4).fill_(100.0);
  target.slice(4, 2, 6).fill_(1.0);
  EXPECT_NEAR(softDiceLoss(logits, target).item<double>(), 1 - 0.5, 1e-6);
  EXPECT_NEAR(softDiceLoss(logits, (logits > 0).to(torch::kFloat64)).item<double>(), 0.0, 1e-6);
}

}  // namespace
