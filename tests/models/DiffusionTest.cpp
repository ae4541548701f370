// Diffusion maths against closed forms evaluated here in float64: the cosine schedule, q_sample's
// moments, the ε/v conversions, the lesion-weighted L1, DDIM (K = T, η = 1) reproducing DDPM's
// ancestral update, and per-sample generators making draws independent of the batch split.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "core/Error.h"
#include "core/Rng.h"
#include "models/Diffusion.h"

namespace {
using namespace lddpm::models;
using lddpm::core::makeCpuGenerator;

// f(t) = cos²(π/2 · (t/T + s)/(1 + s)), Nichol & Dhariwal 2021 eq. 17.
double cosineF(double t, double T, double s = 0.008) {
  const double c = std::cos((t / T + s) / (1 + s) * M_PI / 2);
  return c * c;
}

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Four clean samples in [-1, 1], their noise and x_t at t = 0, 10, 500 and 999 of a T = 1000
// schedule: the set-up every prediction-conversion test starts from (seeded per test).
struct Noised {
  NoiseSchedule schedule{1000};
  torch::Tensor x0, noise, t, xt;
  explicit Noised(std::uint64_t seed) {
    Generators gens{makeCpuGenerator(seed)};
    x0 = randnFrom(gens, {4, 1, 3, 3, 3}, kF64).clamp(-1, 1);
    noise = randnFrom(gens, {4, 1, 3, 3, 3}, kF64);
    t = torch::tensor({0, 10, 500, 999});
    xt = qSample(schedule, x0, t, noise);
  }
};

TEST(NoiseSchedule, AlphaBarIsTheCosineClosedForm) {
  const std::int64_t T = 1000;
  NoiseSchedule schedule(T);
  ASSERT_EQ(schedule.timesteps(), T);
  // Unclipped steps telescope: ᾱ_t = f(t + 1) / f(0) (index t is noising step t + 1).
  for (std::int64_t t : {0, 1, 10, 250, 500, 900, 990, 998}) {
    const double expected = cosineF(static_cast<double>(t + 1), T) / cosineF(0, T);
    EXPECT_NEAR(schedule.alphaBar(t), expected, 1e-12 * expected + 1e-15) << "t = " << t;
  }
  // f(T) = 0 makes the last β 1: clipped to 0.999, so ᾱ_{T-1} = ᾱ_{T-2} · 0.001.
  EXPECT_DOUBLE_EQ(schedule.beta(T - 1), 0.999);
  EXPECT_NEAR(schedule.alphaBar(T - 1), cosineF(T - 1, T) / cosineF(0, T) * 0.001, 1e-15);
  for (std::int64_t t = 1; t < T; ++t) {
    ASSERT_LT(schedule.alphaBar(t), schedule.alphaBar(t - 1));
    ASSERT_GT(schedule.beta(t), 0.0);
    ASSERT_LE(schedule.beta(t), 0.999);
  }
  EXPECT_DOUBLE_EQ(schedule.alphaBarPrev(0), 1.0);
}

TEST(NoiseSchedule, AlphaBarAtTakesTheOptionsOfItsInput) {
  NoiseSchedule schedule(100);
  const auto like = torch::zeros({3, 1, 2, 2, 2}, torch::kFloat32);
  const auto a = schedule.alphaBarAt(torch::tensor({0, 50, 99}), like);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 1, 1, 1, 1}));
  EXPECT_EQ(a.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(a[1].item<float>(), static_cast<float>(schedule.alphaBar(50)));
}

TEST(QSample, MomentsMatchTheForwardProcess) {
  NoiseSchedule schedule(1000);
  const std::int64_t n = 32 * 32 * 32;
  const std::vector<double> x0Values{0.5, -0.7};
  const std::vector<std::int64_t> ts{100, 700};
  auto x0 = torch::empty({2, 1, 32, 32, 32}, kF64);
  x0[0].fill_(x0Values[0]);
  x0[1].fill_(x0Values[1]);
  Generators gens{makeCpuGenerator(7)};
  const auto noise = randnFrom(gens, x0.sizes(), kF64);
  const auto xt = qSample(schedule, x0, torch::tensor(ts), noise);
  for (int b = 0; b < 2; ++b) {
    const double a = schedule.alphaBar(ts[b]);
    const double mean = xt[b].mean().item<double>(), var = xt[b].var().item<double>();
    // 5 standard errors: mean error sd = sqrt((1-ᾱ)/n), variance error sd ≈ (1-ᾱ) sqrt(2/n).
    EXPECT_NEAR(mean, std::sqrt(a) * x0Values[b], 5 * std::sqrt((1 - a) / n)) << "t = " << ts[b];
    EXPECT_NEAR(var, 1 - a, 5 * (1 - a) * std::sqrt(2.0 / n)) << "t = " << ts[b];
  }
}

TEST(Prediction, VAndEpsilonConvertBackToX0AndNoise) {
  const Noised n(3);
  const auto& [schedule, x0, noise, t, xt] = n;
  for (auto p : {Prediction::Epsilon, Prediction::V}) {
    const auto target = predictionTarget(schedule, p, x0, t, noise);
    // t = 999 has ᾱ ≈ 1e-8: recovering x0 divides by sqrt(ᾱ) under ε-prediction, so compare there
    // with a tolerance scaled accordingly.
    const auto x0Hat = predictX0(schedule, p, xt, t, target);
    EXPECT_TRUE(torch::allclose(x0Hat.slice(0, 0, 3), x0.slice(0, 0, 3), 1e-9, 1e-9))
        << predictionName(p);
    EXPECT_TRUE(torch::allclose(predictEps(schedule, p, xt, t, target), noise, 1e-9, 1e-9))
        << predictionName(p);
  }
  // v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0 written out.
  const double a = schedule.alphaBar(500);
  const auto v = predictionTarget(schedule, Prediction::V, x0, t, noise)[2];
  EXPECT_TRUE(torch::allclose(v, std::sqrt(a) * noise[2] - std::sqrt(1 - a) * x0[2], 1e-12, 1e-12));
  EXPECT_EQ(parsePrediction("v"), Prediction::V);
  EXPECT_THROW(parsePrediction("x_0"), lddpm::core::UsageError);
}

TEST(Prediction, X0IsTheCleanImageAndImpliesTheNoise) {
  const Noised n(4);
  const auto& [schedule, x0, noise, t, xt] = n;
  const auto target = predictionTarget(schedule, Prediction::X0, x0, t, noise);
  EXPECT_TRUE(torch::equal(target, x0));
  EXPECT_TRUE(torch::equal(predictX0(schedule, Prediction::X0, xt, t, target), x0));
  // ε = (x_t − √ᾱ x0) / √(1 − ᾱ) written out at t = 10.
  const double a = schedule.alphaBar(10);
  const auto eps = predictEps(schedule, Prediction::X0, xt, t, target);
  EXPECT_TRUE(
      torch::allclose(eps[1], (xt[1] - std::sqrt(a) * x0[1]) / std::sqrt(1 - a), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(eps, noise, 1e-9, 1e-9));
  EXPECT_EQ(parsePrediction("x0"), Prediction::X0);
  EXPECT_EQ(predictionName(Prediction::X0), "x0");
}

TEST(Prediction, EdmPreconditioningConvertsBackAndIsVAtUnitSigma) {
  const Noised n(6);
  const auto& [schedule, x0, noise, t, xt] = n;
  const Prediction edm(Prediction::Edm, 0.5);
  const auto target = predictionTarget(schedule, edm, x0, t, noise);
  EXPECT_TRUE(torch::allclose(predictX0(schedule, edm, xt, t, target), x0, 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(predictEps(schedule, edm, xt, t, target).slice(0, 1),
                              noise.slice(0, 1), 1e-9, 1e-9));
  // Written out at t = 500 with ᾱ from the schedule: D = 1 - ᾱ + ᾱ/4,
  // F* = (sqrt(1 - ᾱ) x0 - sqrt(ᾱ) ε / 4) / (0.5 sqrt(D)), input x_t / sqrt(D).
  const double a = schedule.alphaBar(500), d = 1 - a + a / 4;
  EXPECT_TRUE(torch::allclose(
      target[2], (std::sqrt(1 - a) * x0[2] - std::sqrt(a) * noise[2] / 4) / (0.5 * std::sqrt(d)),
      1e-12, 1e-12));
  EXPECT_TRUE(
      torch::allclose(networkInput(schedule, edm, xt, t)[2], xt[2] / std::sqrt(d), 1e-12, 1e-12));
  EXPECT_TRUE(torch::equal(networkInput(schedule, Prediction::V, xt, t), xt));
  // σ_data = 1 is v-prediction with the opposite sign (F = x0-direction, v = ε-direction).
  const auto unit = predictionTarget(schedule, Prediction(Prediction::Edm, 1.0), x0, t, noise);
  EXPECT_TRUE(torch::allclose(unit, -predictionTarget(schedule, Prediction::V, x0, t, noise), 1e-12,
                              1e-12));
  EXPECT_EQ(parsePrediction("edm", 0.25).sigmaData, 0.25);
  EXPECT_EQ(predictionName(parsePrediction("edm")), "edm");
}

TEST(LossWeighting, MinSnrClosedForms) {
  // SNR 2 < γ = 5: x0 weight SNR itself, ε weight 1, v weight SNR / (SNR + 1).
  EXPECT_DOUBLE_EQ(minSnrWeight(2.0, 5.0, Prediction::X0), 2.0);
  EXPECT_DOUBLE_EQ(minSnrWeight(2.0, 5.0, Prediction::Epsilon), 1.0);
  EXPECT_DOUBLE_EQ(minSnrWeight(2.0, 5.0, Prediction::V), 2.0 / 3.0);
  // SNR 20 > γ: clipped to γ in x0 space.
  EXPECT_DOUBLE_EQ(minSnrWeight(20.0, 5.0, Prediction::X0), 5.0);
  EXPECT_DOUBLE_EQ(minSnrWeight(20.0, 5.0, Prediction::Epsilon), 0.25);
  EXPECT_DOUBLE_EQ(minSnrWeight(20.0, 5.0, Prediction::V), 5.0 / 21.0);
  // edm: min(SNR, γ) c_out² = min(SNR, γ) σ_d² / (1 + SNR σ_d²); σ_d = 1 is v's weight.
  EXPECT_DOUBLE_EQ(minSnrWeight(20.0, 5.0, Prediction(Prediction::Edm, 0.5)), 5.0 * 0.25 / 6.0);
  EXPECT_DOUBLE_EQ(minSnrWeight(2.0, 5.0, Prediction(Prediction::Edm, 1.0)), 2.0 / 3.0);
  // Per-sample weights from the schedule: SNR = ᾱ / (1 − ᾱ) with ᾱ the cosine closed form.
  const std::int64_t T = 1000;
  NoiseSchedule schedule(T);
  const auto t = torch::tensor({3, 200, 600});
  const auto like = torch::zeros({1}, torch::kFloat32);
  const auto w = lossWeights(schedule, LossWeighting::MinSnr, 5.0, Prediction::Epsilon, t, like);
  EXPECT_EQ(w.scalar_type(), torch::kFloat32);
  for (int i = 0; i < 3; ++i) {
    const double step = t[i].item<double>();
    const double a = cosineF(step + 1, T) / cosineF(0, T);
    const double snr = a / (1 - a);
    EXPECT_NEAR(w[i].item<double>(), std::min(snr, 5.0) / snr, 1e-6) << "t = " << step;
  }
  EXPECT_TRUE(
      torch::equal(lossWeights(schedule, LossWeighting::Uniform, 5.0, Prediction::X0, t, like),
                   torch::ones({3}, torch::kFloat32)));
  EXPECT_EQ(parseWeighting("min-snr"), LossWeighting::MinSnr);
  EXPECT_THROW(parseWeighting("snr"), lddpm::core::UsageError);
}

TEST(Samplers, QuadraticSpacingIsDenseNearZero) {
  // t_i = round((T − 1) (i / (K − 1))²), i = K−1 … 0.
  const auto ts = timestepSubsequence(1000, 10, Spacing::Quadratic);
  ASSERT_EQ(ts.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    const double u = (9 - i) / 9.0;
    EXPECT_EQ(ts[static_cast<std::size_t>(i)], std::llround(999 * u * u)) << "i = " << i;
  }
  // Where the quadratic crowds several steps onto one timestep, they are spread to distinct ones.
  const auto crowded = timestepSubsequence(20, 15, Spacing::Quadratic);
  ASSERT_EQ(crowded.size(), 15u);
  EXPECT_EQ(crowded.front(), 19);
  EXPECT_EQ(crowded.back(), 0);
  for (std::size_t i = 1; i < crowded.size(); ++i) EXPECT_LT(crowded[i], crowded[i - 1]);
  const auto all = timestepSubsequence(12, 12, Spacing::Quadratic);
  EXPECT_EQ(all, ddimTimesteps(12, 12));
  EXPECT_EQ(timestepSubsequence(50, 1, Spacing::Quadratic), (std::vector<std::int64_t>{49}));
  EXPECT_EQ(timestepSubsequence(50, 5, Spacing::Uniform), ddimTimesteps(50, 5));
  EXPECT_THROW(timestepSubsequence(10, 11, Spacing::Quadratic), lddpm::core::Error);
}

TEST(LesionWeightedL1, MatchesTheFormulaOnHandBuiltTensors) {
  // |a - b| = 1, 2, 3, 4; lesion on voxels 2 and 4; λ = 4: weights 1, 5, 1, 5.
  const auto a = torch::tensor({1.0, 2.0, 3.0, 4.0}, kF64).view({1, 1, 1, 1, 4});
  const auto b = torch::zeros({1, 1, 1, 1, 4}, kF64);
  const auto lesion = torch::tensor({0.0, 1.0, 0.0, 1.0}, kF64).view({1, 1, 1, 1, 4});
  EXPECT_DOUBLE_EQ(lesionWeightedL1(a, b, lesion, 4.0).item<double>(), (1 + 10 + 3 + 20) / 4.0);
  EXPECT_DOUBLE_EQ(lesionWeightedL1(a, b, lesion, 0.0).item<double>(), 10 / 4.0);
  // The lesion mask broadcasts over channels; uint8 masks are accepted.
  const auto a2 = torch::cat({a, -a}, 1);  // [1, 2, 1, 1, 4]
  const auto b2 = torch::zeros_like(a2);
  EXPECT_DOUBLE_EQ(lesionWeightedL1(a2, b2, lesion.to(torch::kUInt8), 4.0).item<double>(),
                   2 * 34 / 8.0);
}

TEST(Samplers, DdimWithEtaOneIsTheDdpmStep) {
  NoiseSchedule schedule(50);
  Generators gens{makeCpuGenerator(11)};
  const auto xt = randnFrom(gens, {2, 1, 4, 4, 4}, kF64);
  const auto output = randnFrom(gens, {2, 1, 4, 4, 4}, kF64);
  const auto noise = randnFrom(gens, {2, 1, 4, 4, 4}, kF64);
  for (auto p : {Prediction::Epsilon, Prediction::V}) {
    for (std::int64_t t : {0, 1, 7, 25, 49}) {
      for (bool clip : {false, true}) {
        const auto ddpm = ddpmStep(schedule, p, xt, t, output, noise, clip);
        const auto ddim = ddimStep(schedule, p, xt, t, t - 1, output, noise, /*eta=*/1.0, clip);
        EXPECT_TRUE(torch::allclose(ddpm, ddim, 1e-10, 1e-10)) << "t = " << t << " clip " << clip;
      }
    }
  }
}

TEST(Samplers, DdimOverAllStepsWithEtaOneReproducesDdpmSampling) {
  NoiseSchedule schedule(20);
  // A fixed smooth "network": any function of (x_t, t) will do for comparing the samplers.
  const Denoiser denoiser = [](const torch::Tensor& xt, const torch::Tensor& t) {
    return 0.5 * torch::tanh(xt) + 0.01 * t.to(xt.scalar_type()).view({-1, 1, 1, 1, 1});
  };
  Generators a{makeCpuGenerator(5), makeCpuGenerator(6)},
      b{makeCpuGenerator(5), makeCpuGenerator(6)};
  const auto ddpm = sample(schedule, Prediction::Epsilon, denoiser, {2, 1, 4, 4, 4}, kF64,
                           SamplerOptions().kind(SamplerKind::Ddpm), a);
  const auto ddim = sample(schedule, Prediction::Epsilon, denoiser, {2, 1, 4, 4, 4}, kF64,
                           SamplerOptions().kind(SamplerKind::Ddim).steps(20).eta(1.0), b);
  EXPECT_TRUE(torch::allclose(ddpm, ddim, 1e-9, 1e-9));
  EXPECT_LE(ddpm.abs().max().item<double>(), 1.0);
  // η = 0 is deterministic given x_T, and takes K steps.
  std::int64_t calls = 0;
  Generators c{makeCpuGenerator(5)}, d{makeCpuGenerator(5)};
  const auto counting = [&](const torch::Tensor& xt, const torch::Tensor& t) {
    ++calls;
    return denoiser(xt, t);
  };
  const auto once = sample(schedule, Prediction::Epsilon, counting, {1, 1, 4, 4, 4}, kF64,
                           SamplerOptions().steps(5), c);
  const auto twice = sample(schedule, Prediction::Epsilon, denoiser, {1, 1, 4, 4, 4}, kF64,
                            SamplerOptions().steps(5), d);
  EXPECT_EQ(calls, 5);
  EXPECT_TRUE(torch::equal(once, twice));
}

TEST(Samplers, DdimTimestepsSpanTheScheduleEvenly) {
  const auto ts = ddimTimesteps(1000, 50);
  ASSERT_EQ(ts.size(), 50u);
  EXPECT_EQ(ts.front(), 999);
  EXPECT_EQ(ts.back(), 0);
  for (std::size_t i = 1; i < ts.size(); ++i) EXPECT_LT(ts[i], ts[i - 1]);
  EXPECT_EQ(ddimTimesteps(10, 10), (std::vector<std::int64_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_THROW(ddimTimesteps(10, 11), lddpm::core::Error);
}

TEST(Generators, PerSampleDrawsDoNotDependOnTheBatchSplit) {
  Generators both{makeCpuGenerator(1), makeCpuGenerator(2)};
  Generators second{makeCpuGenerator(2)};
  const auto tBoth = randintFrom(both, 1000, 2, torch::kCPU);
  const auto nBoth = randnFrom(both, {2, 1, 3, 3, 3}, torch::kFloat32);
  const auto tSecond = randintFrom(second, 1000, 1, torch::kCPU);
  const auto nSecond = randnFrom(second, {1, 1, 3, 3, 3}, torch::kFloat32);
  EXPECT_EQ(tBoth[1].item<int64_t>(), tSecond[0].item<int64_t>());
  EXPECT_TRUE(torch::equal(nBoth[1], nSecond[0]));
  EXPECT_FALSE(torch::equal(nBoth[0], nBoth[1]));
}

}  // namespace
