#pragma once
// Gaussian diffusion: the cosine noise schedule (Nichol & Dhariwal 2021), q_sample, ε- and
// v-prediction, the lesion-weighted L1 loss, and the DDPM ancestral and DDIM samplers. Randomness
// comes only from generators passed in: one per sample, so a sample's timestep and noise depend on
// its own stream and not on how the batch was split across ranks.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lddpm::models {

// One generator for the whole batch, or one per sample (size B). The engine derives each from
// (seed, stream, step, global sample index): core/Rng.h.
using Generators = std::vector<at::Generator>;

// Standard normal noise of `shape` ([B, ...]) with `options`; sample b drawn from gens[b] (or the
// whole batch from gens[0] when there is one). Drawn on the generator's device, in float32 unless
// `options` asks for float64, then moved/cast: the same seeds give the same noise on every device.
torch::Tensor randnFrom(Generators& gens, at::IntArrayRef shape,
                        const torch::TensorOptions& options);
// Integers uniform in [0, high), one per sample, int64 on `device`.
torch::Tensor randintFrom(Generators& gens, std::int64_t high, std::int64_t batch,
                          const torch::Device& device);

// What the denoiser outputs. ε is the DDPM / Med-DDPM choice; v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0
// (Salimans & Ho 2022) keeps the target's scale constant over t; x0 is the clean image itself
// (WDM, MedSyn, Fast-DDPM-style regressors); edm is Karras et al.'s (2022) preconditioned output F
// with x̂0 = c_skip(t) x + c_out(t) F for a data standard deviation σ_data: the identity comes
// for free at low noise (as with v, which is edm at σ_data = 1) and the network predicts the
// image itself at high noise. With x = x_t / sqrt(ᾱ), σ² = (1 - ᾱ)/ᾱ and
// D = 1 - ᾱ + ᾱ σ_data²: c_skip x = σ_data² sqrt(ᾱ) x_t / D, c_out = sqrt(1 - ᾱ) σ_data / sqrt(D),
// and the network sees x_t / sqrt(D) (unit variance at every t).
struct Prediction {
  enum Kind { Epsilon, V, X0, Edm };
  Prediction(Kind k = Epsilon, double sigma = 0.5) : kind(k), sigmaData(sigma) {}
  Kind kind;
  double sigmaData;  // edm only
  bool operator==(Kind k) const { return kind == k; }
  bool operator!=(Kind k) const { return kind != k; }
};
// "eps" | "v" | "x0" | "edm"; UsageError naming the value otherwise.
Prediction parsePrediction(const std::string& name, double sigmaData = 0.5);
std::string predictionName(Prediction prediction);

// Per-sample weight of the training loss over timesteps. Uniform: 1. Min-SNR-γ (Hang et al. 2023):
// the weight whose x0-space equivalent is min(SNR, γ), so no timestep dominates the gradient.
enum class LossWeighting { Uniform, MinSnr };
LossWeighting parseWeighting(const std::string& name);  // "uniform" | "min-snr"
std::string weightingName(LossWeighting weighting);

// How a K-step subsequence of the T timesteps is spaced (training subsets and DDIM sampling).
// Uniform: evenly from T-1 to 0 (DDIM). Quadratic: t_i ∝ i² (DDIM paper's "quad"), dense near
// t = 0, where the last fine texture is drawn.
enum class Spacing { Uniform, Quadratic };
Spacing parseSpacing(const std::string& name);  // "uniform" | "quadratic"
std::string spacingName(Spacing spacing);

// ᾱ(t) = f(t) / f(0), f(t) = cos²(π/2 · (t/T + s) / (1 + s)); β_t = min(1 - ᾱ_t / ᾱ_{t-1}, βmax),
// and ᾱ recomputed as the product of (1 - β) so the clipped last steps stay consistent. Index t = 0
// is the first noising step (ᾱ_0 < 1). Kept in float64: 1 - ᾱ near t = 0 loses digits in float32.
class NoiseSchedule {
 public:
  explicit NoiseSchedule(std::int64_t timesteps = 1000, double offset = 0.008,
                         double maxBeta = 0.999);

  std::int64_t timesteps() const { return static_cast<std::int64_t>(alphaBar_.size()); }
  double beta(std::int64_t t) const { return betas_.at(static_cast<std::size_t>(t)); }
  double alphaBar(std::int64_t t) const { return alphaBar_.at(static_cast<std::size_t>(t)); }
  // ᾱ before step t: ᾱ_{t-1}, and 1 for t = 0 (clean data).
  double alphaBarPrev(std::int64_t t) const { return t == 0 ? 1.0 : alphaBar(t - 1); }
  // Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t).
  double snr(std::int64_t t) const { return alphaBar(t) / (1.0 - alphaBar(t)); }
  // ᾱ_t for timesteps t [B] as [B, 1, 1, 1, 1] with the options of `like`.
  torch::Tensor alphaBarAt(const torch::Tensor& t, const torch::Tensor& like) const;

 private:
  std::vector<double> betas_, alphaBar_;
  torch::Tensor alphaBarTable_;  // [T] float64 CPU, for gathering
};

// x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε. x0, noise [B, ...]; t [B].
torch::Tensor qSample(const NoiseSchedule& schedule, const torch::Tensor& x0,
                      const torch::Tensor& t, const torch::Tensor& noise);
// The denoiser's regression target for (x0, t, ε).
torch::Tensor predictionTarget(const NoiseSchedule& schedule, Prediction prediction,
                               const torch::Tensor& x0, const torch::Tensor& t,
                               const torch::Tensor& noise);
// x̂0 and ε̂ implied by the denoiser output at (x_t, t); no clamping.
torch::Tensor predictX0(const NoiseSchedule& schedule, Prediction prediction,
                        const torch::Tensor& xt, const torch::Tensor& t,
                        const torch::Tensor& output);
torch::Tensor predictEps(const NoiseSchedule& schedule, Prediction prediction,
                         const torch::Tensor& xt, const torch::Tensor& t,
                         const torch::Tensor& output);

// mean over voxels of (1 + λ·lesion) · |a - b|. lesion broadcasts against a ([B, 1, ...] vs
// [B, C, ...]). λ = 0 is the plain L1 of cond-ddpm.
torch::Tensor lesionWeightedL1(const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& lesion, double lambda);
// The same per sample: [B], each the mean over that sample's voxels.
torch::Tensor lesionWeightedL1PerSample(const torch::Tensor& a, const torch::Tensor& b,
                                        const torch::Tensor& lesion, double lambda);

// Min-SNR-γ weight of one timestep for a denoiser predicting `prediction` (Hang et al. 2023,
// eq. 10 and its ε / v forms): the weight whose x0-space equivalent is min(SNR, γ). x0:
// min(SNR, γ); ε: min(SNR, γ) / SNR; v: min(SNR, γ) / (SNR + 1); edm: min(SNR, γ) c_out² =
// min(SNR, γ) σ_data² / (1 + SNR σ_data²).
double minSnrWeight(double snr, double gamma, Prediction prediction);
// The network input for x_t: x_t itself, or x_t / sqrt(D) under edm (c_in).
torch::Tensor networkInput(const NoiseSchedule& schedule, Prediction prediction,
                           const torch::Tensor& xt, const torch::Tensor& t);
// Per-sample loss weights [B] (float64 → the dtype/device of `like`) for timesteps t [B]. The x0
// term of the loss is weighted in x0 space, i.e. with prediction = X0.
torch::Tensor lossWeights(const NoiseSchedule& schedule, LossWeighting weighting, double gamma,
                          Prediction prediction, const torch::Tensor& t, const torch::Tensor& like);

// The model output at (x_t, t [B]) for a fixed condition; samplers call it once per step.
using Denoiser = std::function<torch::Tensor(const torch::Tensor& xt, const torch::Tensor& t)>;

enum class SamplerKind { Ddpm, Ddim };
SamplerKind parseSampler(const std::string& name);  // "ddpm" | "ddim"

struct SamplerOptions {
  TORCH_ARG(SamplerKind, kind) = SamplerKind::Ddim;
  TORCH_ARG(std::int64_t, steps) = 50;             // DDIM steps K (DDPM always takes T)
  TORCH_ARG(Spacing, spacing) = Spacing::Uniform;  // of the K DDIM steps
  TORCH_ARG(double, eta) = 0.0;    // DDIM stochasticity: 0 deterministic, 1 DDPM-like
  TORCH_ARG(bool, clipX0) = true;  // clamp x̂0 to [-1, 1] at every step
  // Memory for what the mask contributes to every step, made once per batch of cases: the
  // modulation maps of the blocks that fit (UNet3DImpl::condition). Speed only: same bits.
  TORCH_ARG(std::int64_t, conditionCacheBytes) = std::int64_t{4096} << 20;
  // Called after each step with (steps done, total) — hook for core::Progress.
  TORCH_ARG(std::function<void(std::int64_t, std::int64_t)>, onStep) = nullptr;
};

// One DDPM ancestral step t -> t-1: posterior mean from the (clamped) x̂0 plus σ_t z with
// σ_t² = β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t); no noise at t = 0. t is one step for the batch.
torch::Tensor ddpmStep(const NoiseSchedule& schedule, Prediction prediction,
                       const torch::Tensor& xt, std::int64_t t, const torch::Tensor& output,
                       const torch::Tensor& noise, bool clipX0);
// One DDIM step t -> tPrev (tPrev = -1 means to clean data), Song et al. 2021 eq. 12 with ε
// re-derived from the clamped x̂0; noise may be undefined when η = 0 or tPrev < 0.
torch::Tensor ddimStep(const NoiseSchedule& schedule, Prediction prediction,
                       const torch::Tensor& xt, std::int64_t t, std::int64_t tPrev,
                       const torch::Tensor& output, const torch::Tensor& noise, double eta,
                       bool clipX0);

// The DDIM timestep subsequence for K steps: K values from T-1 down to 0, evenly spaced.
std::vector<std::int64_t> ddimTimesteps(std::int64_t timesteps, std::int64_t steps);
// K distinct timesteps from T-1 down to 0 with the given spacing (uniform = ddimTimesteps);
// UsageError unless 1 <= K <= T.
std::vector<std::int64_t> timestepSubsequence(std::int64_t timesteps, std::int64_t steps,
                                              Spacing spacing);

// Runs the sampler from x_T ~ N(0, I) of `shape` (drawn from gens first, then one noise draw per
// stochastic step) and returns x_0 [shape], clamped to [-1, 1]. Runs in an InferenceScope
// (models/Conv3d.h).
torch::Tensor sample(const NoiseSchedule& schedule, Prediction prediction, const Denoiser& denoiser,
                     at::IntArrayRef shape, const torch::TensorOptions& options,
                     const SamplerOptions& sampler, Generators& gens);

}  // namespace lddpm::models
