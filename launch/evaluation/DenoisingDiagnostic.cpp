#include "launch/evaluation/DenoisingDiagnostic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/Error.h"
#include "core/Progress.h"
#include "core/Rng.h"
#include "data/Manifest.h"
#include "data/ShardReader.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/TrainedModel.h"
#include "launch/evaluation/Summary.h"
#include "models/DiffusionModel.h"
#include "models/Metrics.h"

namespace lddpm::launch::evaluation {
namespace fs = std::filesystem;
namespace po = core::po;

namespace {
constexpr const char* kCommand = "lddpm evaluate denoising";

// The trained timestep nearest to `t` (the model may have trained on a K-step subset).
std::int64_t nearestTrained(const std::vector<std::int64_t>& trained, std::int64_t t) {
  return *std::min_element(trained.begin(), trained.end(), [&](std::int64_t a, std::int64_t b) {
    return std::llabs(a - t) < std::llabs(b - t);
  });
}

std::vector<std::int64_t> chooseTimesteps(const std::string& text,
                                          const models::DiffusionModelImpl& model) {
  const std::int64_t T = model.schedule().timesteps();
  std::vector<std::int64_t> ts;
  if (text.empty()) {
    const auto& trained = model.trainingTimesteps();
    ts.push_back(trained.front());
    for (const double f : {0.25, 0.5, 0.75, 1.0}) {
      ts.push_back(nearestTrained(trained, static_cast<std::int64_t>(std::llround(f * T)) - 1));
    }
  } else {
    ts = models::parseIntList(text, "timesteps");
    for (const auto t : ts) {
      if (t >= T) {
        LDDPM_THROW(core::UsageError, kCommand, ": option '--timesteps': ", t,
                    " is not below the model's T = ", T);
      }
    }
  }
  std::sort(ts.begin(), ts.end());
  ts.erase(std::unique(ts.begin(), ts.end()), ts.end());
  return ts;
}

double nanMean(const std::vector<double>& v) { return summarize(v).mean; }

}  // namespace

po::options_description DenoisingOptions::describe() {
  po::options_description d("evaluate denoising options");
  // clang-format off
  d.add_options()
      ("run", po::value(&run)->value_name("DIR"), "trained diffusion run: its newest complete checkpoint")
      ("checkpoint", po::value(&checkpoint)->value_name("DIR"), "a checkpoint folder instead of --run")
      ("weights", po::value(&weights)->default_value(weights), "ema | model")
      ("store", po::value(&store)->required()->value_name("STORE"), "store holding the real scans")
      ("split", po::value(&split)->default_value(split), "train | test | all")
      ("timesteps", po::value(&timesteps)->value_name("LIST"),
       "comma-separated timesteps; default: the smallest trained t and T/4, T/2, 3T/4, T (nearest "
       "trained timesteps)")
      ("cases", po::value(&maxCases)->default_value(maxCases), "only the first N cases; 0 = all")
      ("seed", po::value(&seed)->default_value(seed), "seed of the noise; each case and t draws from (seed, case, t)");
  // clang-format on
  return d;
}

void DenoisingOptions::validate() const {
  checkpointFromOptions("evaluate denoising", run, checkpoint, weights);
  data::parseSplit(split);
  if (!fs::is_directory(store)) {
    LDDPM_THROW(core::UsageError, kCommand, ": option '--store': no such folder: '", store, "'");
  }
  if (maxCases < 0) LDDPM_THROW(core::UsageError, kCommand, ": option '--cases': must be >= 0");
}

namespace {

// Per timestep and measure, the values over cases.
enum Measure { kBackground, kBrain, kLesion, kSsim, kTexture, kTrivial, kMeasures };
using CaseValues = std::vector<std::array<std::vector<double>, kMeasures>>;

// One case noised at every t of `ts` (noise from (seed, case, t)) and denoised in one step; the
// measures of x̂0 against the real scan appended to `values`. Returns the real scan's WM texture.
double diagnoseCase(models::DiffusionModelImpl& model, const data::SubjectData& subject,
                    const std::string& id, const std::vector<std::int64_t>& ts, std::uint64_t seed,
                    CaseValues& values) {
  const torch::Tensor x0 = subject.image.narrow(0, 0, 1).unsqueeze(0);  // [1, 1, D, H, W]
  const models::Batch condition{x0, tissueOneHot(subject.tissue.unsqueeze(0).unsqueeze(0)),
                                subject.lesion.unsqueeze(0).unsqueeze(0).to(torch::kFloat32)};
  for (int a = 2; a < 5; ++a) {
    if (x0.size(a) % model.sizeDivisor() != 0) {
      LDDPM_THROW(core::Error, "evaluate denoising: ", id, ": grid ", x0.sizes().slice(2),
                  " is not divisible by the model's ", model.sizeDivisor());
    }
  }
  const auto& schedule = model.schedule();
  const torch::Tensor mask = condition.condition(x0);
  const torch::Tensor prior = model.intensityPrior(mask);
  const torch::Tensor real = subject.image[0];
  const torch::Tensor brain = subject.tissue.gt(0) | subject.lesion.gt(0);
  const torch::Tensor nawm = subject.tissue.eq(models::kWhiteMatterLabel) & subject.lesion.eq(0);
  const auto regionMae = [&](const torch::Tensor& estimate, const torch::Tensor& region) {
    return models::regionMeanAbsoluteError(real, estimate, region).item<double>();
  };
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const std::int64_t t = ts[k];
    models::Generators gens{core::makeCpuGenerator(core::deriveSeed(
        seed, core::RngStream::Diagnostic, {core::nameKey(id), static_cast<std::uint64_t>(t)}))};
    const torch::Tensor noise = models::randnFrom(gens, x0.sizes(), x0.options());
    const torch::Tensor tt = torch::full({1}, t, torch::kInt64);
    // With a class-mean prior the model diffuses the residual around it (zero without one).
    const torch::Tensor xt = models::qSample(schedule, x0 - prior, tt, noise);
    const torch::Tensor output = model.denoise(xt, tt, mask);
    const torch::Tensor x0Hat =
        (models::predictX0(schedule, model.options().prediction(), xt, tt, output) + prior)
            .clamp(-1, 1)[0][0];
    const torch::Tensor trivial = (xt / std::sqrt(schedule.alphaBar(t)) + prior).clamp(-1, 1)[0][0];
    auto& v = values[k];
    v[kBackground].push_back(regionMae(x0Hat, ~brain));
    v[kBrain].push_back(regionMae(x0Hat, brain));
    v[kLesion].push_back(regionMae(x0Hat, subject.lesion));
    v[kSsim].push_back(models::regionSsim(real, x0Hat, brain).item<double>());
    v[kTexture].push_back(models::highPassStd(x0Hat, nawm).item<double>());
    v[kTrivial].push_back(regionMae(trivial, brain));
  }
  return models::highPassStd(real, nawm).item<double>();
}

}  // namespace

DenoisingReport diagnoseDenoising(const DenoisingOptions& o) {
  const std::string checkpoint =
      checkpointFromOptions("evaluate denoising", o.run, o.checkpoint, o.weights);
  const TrainedModel trained = loadTrainedModel(checkpoint, o.weights);
  auto model = std::dynamic_pointer_cast<models::DiffusionModelImpl>(trained.model);
  if (!model) {
    LDDPM_THROW(core::UsageError, kCommand, ": '", checkpoint, "' holds a ", trained.config.model,
                " model, not a diffusion model (lesion-ddpm, cond-ddpm)");
  }
  const auto cases = data::readManifest(o.store).casesOf(o.split, o.maxCases, o.store);
  const std::vector<std::int64_t> ts = chooseTimesteps(o.timesteps, *model);
  const auto& schedule = model->schedule();

  DenoisingReport report;
  report.checkpoint = checkpoint;
  report.model = trained.config.model;
  report.prediction = trained.config.prediction;
  report.timestepsTotal = schedule.timesteps();
  CaseValues values(ts.size());
  std::vector<double> realTexture;
  data::StoreReader store(o.store);
  core::Progress progress("evaluate denoising", static_cast<std::int64_t>(cases.size()));
  torch::NoGradGuard noGrad;
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const auto& entry = cases[c];
    report.cases.push_back(entry.id);
    realTexture.push_back(
        diagnoseCase(*model, store.readSubject(entry), entry.id, ts, o.seed, values));
    progress.update(static_cast<std::int64_t>(c + 1), entry.id);
  }
  progress.finish();
  report.realWmTexture = nanMean(realTexture);
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const auto& v = values[k];
    DenoisingRow row;
    row.t = ts[k];
    row.alphaBar = schedule.alphaBar(ts[k]);
    row.sigma = std::sqrt(1 - row.alphaBar);
    row.backgroundMae = nanMean(v[kBackground]);
    row.brainMae = nanMean(v[kBrain]);
    row.lesionMae = nanMean(v[kLesion]);
    row.brainSsim = nanMean(v[kSsim]);
    row.wmTexture = nanMean(v[kTexture]);
    row.trivialBrainMae = nanMean(v[kTrivial]);
    row.caseBrainMae = v[kBrain];
    report.rows.push_back(row);
  }
  return report;
}

core::Json toJson(const DenoisingReport& r) {
  core::Json out;
  out["mode"] = "denoising";
  out["checkpoint"] = r.checkpoint;
  out["model"] = r.model;
  out["prediction"] = r.prediction;
  out["timesteps_total"] = r.timestepsTotal;
  out["cases"] = r.cases;
  out["real_wm_texture"] = number(r.realWmTexture);
  core::Json rows = core::Json::array();
  for (const auto& row : r.rows) {
    core::Json j;
    j["t"] = row.t;
    j["alpha_bar"] = number(row.alphaBar);
    j["sigma"] = number(row.sigma);
    j["background_mae"] = number(row.backgroundMae);
    j["brain_mae"] = number(row.brainMae);
    j["lesion_mae"] = number(row.lesionMae);
    j["brain_ssim"] = number(row.brainSsim);
    j["wm_texture"] = number(row.wmTexture);
    j["trivial_brain_mae"] = number(row.trivialBrainMae);
    core::Json perCase = core::Json::array();
    for (double v : row.caseBrainMae) perCase.push_back(number(v));
    j["case_brain_mae"] = perCase;
    rows.push_back(j);
  }
  out["rows"] = rows;
  return out;
}

std::string toMarkdown(const DenoisingReport& r) {
  std::ostringstream out;
  out << "One-step x̂0 of " << r.model << " (" << r.prediction
      << "-prediction, T = " << r.timestepsTotal << ") from x_t of the real scan, mean over "
      << r.cases.size() << " case(s); trivial = clamp(x_t / √ᾱ). Real white-matter texture: "
      << formatValue(r.realWmTexture) << ".\n\n"
      << "| t | ᾱ | σ | background MAE | brain MAE | lesion MAE | brain SSIM | WM texture | "
         "trivial brain MAE |\n"
      << "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& row : r.rows) {
    out << "| " << row.t << " | " << formatValue(row.alphaBar) << " | " << formatValue(row.sigma)
        << " | " << formatValue(row.backgroundMae) << " | " << formatValue(row.brainMae) << " | "
        << formatValue(row.lesionMae) << " | " << formatValue(row.brainSsim) << " | "
        << formatValue(row.wmTexture) << " | " << formatValue(row.trivialBrainMae) << " |\n";
  }
  return out.str();
}

}  // namespace lddpm::launch::evaluation
