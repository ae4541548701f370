#include "models/Diffusion.h"

#include <algorithm>
#include <cmath>

#include "core/Error.h"
#include "models/Conv3d.h"

namespace lddpm::models {

torch::Tensor randnFrom(Generators& gens, at::IntArrayRef shape,
                        const torch::TensorOptions& options) {
  LDDPM_CHECK(!gens.empty(), "randnFrom: no generator given");
  LDDPM_CHECK(gens.size() == 1 || static_cast<std::int64_t>(gens.size()) == shape[0],
              "randnFrom: ", gens.size(), " generators for a batch of ", shape[0]);
  const auto drawType = options.dtype() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto draw = [&](at::Generator& gen, at::IntArrayRef s) {
    return torch::randn(s, gen, torch::TensorOptions().dtype(drawType).device(gen.device()));
  };
  torch::Tensor noise;
  if (gens.size() == 1) {
    noise = draw(gens[0], shape);
  } else {
    std::vector<int64_t> one(shape.begin(), shape.end());
    one[0] = 1;
    std::vector<torch::Tensor> parts;
    for (auto& gen : gens) parts.push_back(draw(gen, one));
    noise = torch::cat(parts, 0);
  }
  return noise.to(options);
}

torch::Tensor randintFrom(Generators& gens, std::int64_t high, std::int64_t batch,
                          const torch::Device& device) {
  LDDPM_CHECK(!gens.empty(), "randintFrom: no generator given");
  LDDPM_CHECK(gens.size() == 1 || static_cast<std::int64_t>(gens.size()) == batch,
              "randintFrom: ", gens.size(), " generators for a batch of ", batch);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor t;
  if (gens.size() == 1) {
    t = torch::randint(high, {batch}, gens[0], opts.device(gens[0].device()));
  } else {
    std::vector<torch::Tensor> parts;
    for (auto& gen : gens)
      parts.push_back(torch::randint(high, {1}, gen, opts.device(gen.device())));
    t = torch::cat(parts, 0);
  }
  return t.to(device);
}

Prediction parsePrediction(const std::string& name, double sigmaData) {
  if (name == "eps") return Prediction::Epsilon;
  if (name == "v") return Prediction::V;
  if (name == "x0") return Prediction::X0;
  if (name == "edm") {
    LDDPM_CHECK(sigmaData > 0, "sigma-data must be > 0, got ", sigmaData);
    return Prediction(Prediction::Edm, sigmaData);
  }
  LDDPM_THROW(core::UsageError, "unknown prediction '", name, "' (expected eps, v, x0 or edm)");
}

std::string predictionName(Prediction prediction) {
  switch (prediction.kind) {
    case Prediction::V:
      return "v";
    case Prediction::X0:
      return "x0";
    case Prediction::Edm:
      return "edm";
    default:
      return "eps";
  }
}

namespace {
// D = 1 - ᾱ + ᾱ σ_data² of the edm preconditioning, as [B, 1, ...] like `a` (ᾱ).
torch::Tensor edmD(const torch::Tensor& a, double sigmaData) {
  return 1 - a + a * (sigmaData * sigmaData);
}
}  // namespace

LossWeighting parseWeighting(const std::string& name) {
  if (name == "uniform") return LossWeighting::Uniform;
  if (name == "min-snr") return LossWeighting::MinSnr;
  LDDPM_THROW(core::UsageError, "unknown loss weighting '", name,
              "' (expected uniform or min-snr)");
}

std::string weightingName(LossWeighting weighting) {
  return weighting == LossWeighting::MinSnr ? "min-snr" : "uniform";
}

Spacing parseSpacing(const std::string& name) {
  if (name == "uniform") return Spacing::Uniform;
  if (name == "quadratic") return Spacing::Quadratic;
  LDDPM_THROW(core::UsageError, "unknown timestep spacing '", name,
              "' (expected uniform or quadratic)");
}

std::string spacingName(Spacing spacing) {
  return spacing == Spacing::Quadratic ? "quadratic" : "uniform";
}

SamplerKind parseSampler(const std::string& name) {
  if (name == "ddpm") return SamplerKind::Ddpm;
  if (name == "ddim") return SamplerKind::Ddim;
  LDDPM_THROW(core::UsageError, "unknown sampler '", name, "' (expected ddpm or ddim)");
}

NoiseSchedule::NoiseSchedule(std::int64_t timesteps, double offset, double maxBeta) {
  LDDPM_CHECK(timesteps >= 1, "diffusion timesteps must be >= 1, got ", timesteps);
  LDDPM_CHECK(maxBeta > 0 && maxBeta < 1, "max beta must be in (0, 1), got ", maxBeta);
  const double T = static_cast<double>(timesteps);
  auto f = [&](double t) {
    const double c = std::cos((t / T + offset) / (1 + offset) * M_PI / 2);
    return c * c;
  };
  double product = 1.0;
  for (std::int64_t t = 0; t < timesteps; ++t) {
    const double beta =
        std::min(1.0 - f(static_cast<double>(t + 1)) / f(static_cast<double>(t)), maxBeta);
    betas_.push_back(beta);
    product *= 1.0 - beta;
    alphaBar_.push_back(product);
  }
  alphaBarTable_ = torch::tensor(alphaBar_, torch::kFloat64);
}

torch::Tensor NoiseSchedule::alphaBarAt(const torch::Tensor& t, const torch::Tensor& like) const {
  LDDPM_CHECK(t.dim() == 1, "alphaBarAt: timesteps must be [B], got ", t.sizes());
  std::vector<int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[0] = t.size(0);
  return alphaBarTable_.index_select(0, t.to(torch::kCPU, torch::kInt64))
      .to(like.options())
      .view(shape);
}

torch::Tensor qSample(const NoiseSchedule& schedule, const torch::Tensor& x0,
                      const torch::Tensor& t, const torch::Tensor& noise) {
  const auto a = schedule.alphaBarAt(t, x0);
  return a.sqrt() * x0 + (1 - a).sqrt() * noise;
}

torch::Tensor predictionTarget(const NoiseSchedule& schedule, Prediction prediction,
                               const torch::Tensor& x0, const torch::Tensor& t,
                               const torch::Tensor& noise) {
  if (prediction == Prediction::Epsilon) return noise;
  if (prediction == Prediction::X0) return x0;
  const auto a = schedule.alphaBarAt(t, x0);
  if (prediction == Prediction::Edm) {
    // F* = (x0 - c_skip x) / c_out = (sqrt(1 - ᾱ) x0 - σ_d² sqrt(ᾱ) ε) / (σ_d sqrt(D)).
    const double sd = prediction.sigmaData;
    return ((1 - a).sqrt() * x0 - (sd * sd) * a.sqrt() * noise) / (sd * edmD(a, sd).sqrt());
  }
  return a.sqrt() * noise - (1 - a).sqrt() * x0;
}

torch::Tensor predictX0(const NoiseSchedule& schedule, Prediction prediction,
                        const torch::Tensor& xt, const torch::Tensor& t,
                        const torch::Tensor& output) {
  if (prediction == Prediction::X0) return output;
  const auto a = schedule.alphaBarAt(t, xt);
  if (prediction == Prediction::Epsilon) return (xt - (1 - a).sqrt() * output) / a.sqrt();
  if (prediction == Prediction::Edm) {
    const double sd = prediction.sigmaData;
    const auto d = edmD(a, sd);
    return (sd * sd) * a.sqrt() * xt / d + (1 - a).sqrt() * sd / d.sqrt() * output;
  }
  return a.sqrt() * xt - (1 - a).sqrt() * output;
}

torch::Tensor predictEps(const NoiseSchedule& schedule, Prediction prediction,
                         const torch::Tensor& xt, const torch::Tensor& t,
                         const torch::Tensor& output) {
  if (prediction == Prediction::Epsilon) return output;
  const auto a = schedule.alphaBarAt(t, xt);
  if (prediction == Prediction::X0 || prediction == Prediction::Edm) {
    const auto x0 = predictX0(schedule, prediction, xt, t, output);
    return (xt - a.sqrt() * x0) / (1 - a).sqrt();
  }
  return (1 - a).sqrt() * xt + a.sqrt() * output;
}

torch::Tensor networkInput(const NoiseSchedule& schedule, Prediction prediction,
                           const torch::Tensor& xt, const torch::Tensor& t) {
  if (prediction != Prediction::Edm) return xt;
  return xt / edmD(schedule.alphaBarAt(t, xt), prediction.sigmaData).sqrt();
}

namespace {
torch::Tensor weightedError(const torch::Tensor& a, const torch::Tensor& b,
                            const torch::Tensor& lesion, double lambda) {
  const auto error = (a - b).abs();
  if (lambda == 0) return error;
  return (1 + lambda * lesion.to(error.scalar_type())) * error;
}
}  // namespace

torch::Tensor lesionWeightedL1(const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& lesion, double lambda) {
  return weightedError(a, b, lesion, lambda).mean();
}

torch::Tensor lesionWeightedL1PerSample(const torch::Tensor& a, const torch::Tensor& b,
                                        const torch::Tensor& lesion, double lambda) {
  return weightedError(a, b, lesion, lambda).flatten(1).mean(1);
}

double minSnrWeight(double snr, double gamma, Prediction prediction) {
  const double clipped = std::min(snr, gamma);
  const double sd2 = prediction.sigmaData * prediction.sigmaData;
  switch (prediction.kind) {
    case Prediction::X0:
      return clipped;
    case Prediction::V:
      return clipped / (snr + 1.0);
    case Prediction::Edm:
      return clipped * sd2 / (1.0 + snr * sd2);
    default:
      return clipped / snr;
  }
}

torch::Tensor lossWeights(const NoiseSchedule& schedule, LossWeighting weighting, double gamma,
                          Prediction prediction, const torch::Tensor& t,
                          const torch::Tensor& like) {
  LDDPM_CHECK(t.dim() == 1, "lossWeights: timesteps must be [B], got ", t.sizes());
  const auto ts = t.to(torch::kCPU, torch::kInt64).contiguous();
  std::vector<double> w(static_cast<std::size_t>(ts.size(0)), 1.0);
  if (weighting == LossWeighting::MinSnr) {
    for (std::size_t i = 0; i < w.size(); ++i) {
      w[i] = minSnrWeight(schedule.snr(ts.data_ptr<std::int64_t>()[i]), gamma, prediction);
    }
  }
  return torch::tensor(w, torch::kFloat64).to(like.options());
}

namespace {
torch::Tensor batchTimesteps(std::int64_t t, const torch::Tensor& like) {
  return torch::full({like.size(0)}, t, like.options().dtype(torch::kInt64));
}
torch::Tensor x0FromOutput(const NoiseSchedule& schedule, Prediction prediction,
                           const torch::Tensor& xt, std::int64_t t, const torch::Tensor& output,
                           bool clipX0) {
  auto x0 = predictX0(schedule, prediction, xt, batchTimesteps(t, xt), output);
  return clipX0 ? x0.clamp(-1, 1) : x0;
}
}  // namespace

torch::Tensor ddpmStep(const NoiseSchedule& schedule, Prediction prediction,
                       const torch::Tensor& xt, std::int64_t t, const torch::Tensor& output,
                       const torch::Tensor& noise, bool clipX0) {
  const auto x0 = x0FromOutput(schedule, prediction, xt, t, output, clipX0);
  const double a = schedule.alphaBar(t), aPrev = schedule.alphaBarPrev(t), beta = schedule.beta(t);
  const auto mean =
      (std::sqrt(aPrev) * beta / (1 - a)) * x0 + (std::sqrt(1 - beta) * (1 - aPrev) / (1 - a)) * xt;
  if (t == 0) return mean;
  LDDPM_CHECK(noise.defined(), "ddpmStep: noise required at t = ", t);
  return mean + std::sqrt(beta * (1 - aPrev) / (1 - a)) * noise;
}

torch::Tensor ddimStep(const NoiseSchedule& schedule, Prediction prediction,
                       const torch::Tensor& xt, std::int64_t t, std::int64_t tPrev,
                       const torch::Tensor& output, const torch::Tensor& noise, double eta,
                       bool clipX0) {
  const auto x0 = x0FromOutput(schedule, prediction, xt, t, output, clipX0);
  const double a = schedule.alphaBar(t), aPrev = tPrev < 0 ? 1.0 : schedule.alphaBar(tPrev);
  // ε consistent with the (clamped) x̂0, as in guided-diffusion: keeps x_t on the DDIM path.
  const auto eps = (xt - std::sqrt(a) * x0) / std::sqrt(1 - a);
  const double sigma = eta * std::sqrt((1 - aPrev) / (1 - a)) * std::sqrt(1 - a / aPrev);
  auto next = std::sqrt(aPrev) * x0 + std::sqrt(std::max(1 - aPrev - sigma * sigma, 0.0)) * eps;
  if (sigma > 0) {
    LDDPM_CHECK(noise.defined(), "ddimStep: noise required for eta = ", eta, " at t = ", t);
    next = next + sigma * noise;
  }
  return next;
}

std::vector<std::int64_t> ddimTimesteps(std::int64_t timesteps, std::int64_t steps) {
  LDDPM_CHECK(steps >= 1 && steps <= timesteps, "DDIM steps must be in [1, ", timesteps, "], got ",
              steps);
  std::vector<std::int64_t> ts;
  // Evenly spaced from T-1 down to 0 (rounded), always including both ends.
  for (std::int64_t i = steps - 1; i >= 0; --i) {
    const double pos = steps == 1 ? static_cast<double>(timesteps - 1)
                                  : static_cast<double>(i) * static_cast<double>(timesteps - 1) /
                                        static_cast<double>(steps - 1);
    ts.push_back(static_cast<std::int64_t>(std::llround(pos)));
  }
  return ts;
}

std::vector<std::int64_t> timestepSubsequence(std::int64_t timesteps, std::int64_t steps,
                                              Spacing spacing) {
  if (spacing == Spacing::Uniform) return ddimTimesteps(timesteps, steps);
  LDDPM_CHECK(steps >= 1 && steps <= timesteps, "timestep subsequence: steps must be in [1, ",
              timesteps, "], got ", steps);
  // Ascending t_i = round((T-1) (i / (K-1))²), then made strictly increasing (the quadratic
  // crowds several i onto one t near 0 when K is close to T) without passing T-1.
  std::vector<std::int64_t> up(static_cast<std::size_t>(steps));
  for (std::int64_t i = 0; i < steps; ++i) {
    const double u = steps == 1 ? 1.0 : static_cast<double>(i) / static_cast<double>(steps - 1);
    up[static_cast<std::size_t>(i)] =
        static_cast<std::int64_t>(std::llround(u * u * static_cast<double>(timesteps - 1)));
  }
  for (std::size_t i = 1; i < up.size(); ++i) up[i] = std::max(up[i], up[i - 1] + 1);
  up.back() = timesteps - 1;
  for (std::size_t i = up.size() - 1; i > 0; --i) up[i - 1] = std::min(up[i - 1], up[i] - 1);
  return {up.rbegin(), up.rend()};
}

torch::Tensor sample(const NoiseSchedule& schedule, Prediction prediction, const Denoiser& denoiser,
                     at::IntArrayRef shape, const torch::TensorOptions& options,
                     const SamplerOptions& sampler, Generators& gens) {
  InferenceScope inference;
  torch::Tensor x = randnFrom(gens, shape, options);
  const auto ts =
      sampler.kind() == SamplerKind::Ddpm
          ? ddimTimesteps(schedule.timesteps(), schedule.timesteps())
          : timestepSubsequence(schedule.timesteps(), sampler.steps(), sampler.spacing());
  const auto total = static_cast<std::int64_t>(ts.size());
  for (std::int64_t i = 0; i < total; ++i) {
    const std::int64_t t = ts[static_cast<std::size_t>(i)];
    const auto output = denoiser(x, batchTimesteps(t, x));
    if (sampler.kind() == SamplerKind::Ddpm) {
      x = ddpmStep(schedule, prediction, x, t, output,
                   t > 0 ? randnFrom(gens, shape, options) : torch::Tensor(), sampler.clipX0());
    } else {
      const std::int64_t tPrev = i + 1 < total ? ts[static_cast<std::size_t>(i + 1)] : -1;
      const bool noisy = sampler.eta() > 0 && tPrev >= 0;
      x = ddimStep(schedule, prediction, x, t, tPrev, output,
                   noisy ? randnFrom(gens, shape, options) : torch::Tensor(), sampler.eta(),
                   sampler.clipX0());
    }
    if (sampler.onStep()) sampler.onStep()(i + 1, total);
  }
  return x.clamp(-1, 1);
}

}  // namespace lddpm::models
