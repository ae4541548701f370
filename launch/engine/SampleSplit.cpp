#include "launch/engine/SampleSplit.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "core/Rng.h"
#include "core/Timer.h"
#include "data/Manifest.h"
#include "data/NiftiIo.h"
#include "data/Png.h"
#include "data/ShardReader.h"
#include "launch/engine/SampleResume.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/TrainedModel.h"
#include "models/DiffusionModel.h"

namespace lddpm::launch {
namespace fs = std::filesystem;
namespace po = core::po;

po::options_description SampleOptions::describe() {
  po::options_description d("sample options");
  d.add_options()("run", po::value(&run)->value_name("DIR"),
                  "trained run: its newest complete checkpoint")(
      "checkpoint", po::value(&checkpoint)->value_name("DIR"),
      "a checkpoint folder instead of --run")("store",
                                              po::value(&store)->required()->value_name("DIR"),
                                              "store whose masks condition the samples")(
      "split", po::value(&split)->default_value(split), "train | test | all")(
      "out", po::value(&out)->required()->value_name("DIR"),
      "output folder: real/, synthetic/, lesion/, brain/, tissue/ (NIfTI), png/, overview.png, "
      "sampling.json")("sampler", po::value(&sampler)->default_value(sampler), "ddim | ddpm")(
      "steps", po::value(&steps)->default_value(steps),
      "DDIM steps K (DDPM always runs all T); 0 = the model's --train-steps if it trained on a "
      "subset, else 50")("eta", po::value(&eta)->default_value(eta),
                         "DDIM stochasticity (0: deterministic)")(
      "seed", po::value(&seed)->default_value(seed), "seed; each case draws from (seed, case id)")(
      "cases", po::value(&cases)->default_value(cases), "sample only the first N cases; 0 = all")(
      "batch", po::value(&batch)->default_value(batch),
      "cases per forward pass: consecutive cases in groups of N, groups dealt to ranks. On the "
      "CPU a case comes out the same bits whatever N, --threads and the rank count, and N = 1 "
      "is the fastest per case (docs/BENCHMARKS.md); N > 1 is for a GPU")(
      "condition-cache-mib", po::value(&conditionCacheMib)->default_value(conditionCacheMib),
      "memory for the mask's modulation maps, made once per group of cases and reused at every "
      "step (about 1.5x faster sampling of the demo network); blocks beyond it make theirs at "
      "every step. Speed only: the samples are the same bits whatever it is; 0 = none")(
      "weights", po::value(&weights)->default_value(weights), "ema | model")(
      "device", po::value(&device)->default_value(device),
      "cpu | cuda (one GPU per rank by local rank)");
  return d;
}

void SampleOptions::validate() {
  if (steps < 0) LDDPM_THROW(core::UsageError, "lddpm sample: option '--steps': must be >= 0");
  if (batch < 1) LDDPM_THROW(core::UsageError, "lddpm sample: option '--batch': must be >= 1");
  if (cases < 0) LDDPM_THROW(core::UsageError, "lddpm sample: option '--cases': must be >= 0");
  if (conditionCacheMib < 0 || conditionCacheMib > (std::int64_t{1} << 30)) {
    LDDPM_THROW(core::UsageError,
                "lddpm sample: option '--condition-cache-mib': must be in [0, 2^30]");
  }
  data::parseSplit(split);
  models::parseSampler(sampler);
  checkpoint = checkpointFromOptions("sample", run, checkpoint, weights);
}

namespace {

// The axial slice a montage shows: the one with the most lesion voxels (the nearest to the middle
// among equals), so the lesions a user looks for are in the picture; the middle without lesions.
std::int64_t montageSlice(const torch::Tensor& lesion) {
  const torch::Tensor perSlice = lesion.gt(0).flatten(1).sum(1);  // [D]
  const std::int64_t middle = lesion.size(0) / 2;
  std::int64_t best = middle, most = perSlice[middle].item<std::int64_t>();
  for (std::int64_t z = 0; z < lesion.size(0); ++z) {
    const std::int64_t n = perSlice[z].item<std::int64_t>();
    if (n > most || (n == most && std::llabs(z - middle) < std::llabs(best - middle))) {
      best = z;
      most = n;
    }
  }
  return best;
}

// [H, W] montage panels side by side: real | synthetic | lesion (white on black) on the axial
// slice of montageSlice, enlarged by whole pixels (nearest neighbour) to at least 192 rows so
// small grids stay readable.
torch::Tensor montage(const torch::Tensor& real, const torch::Tensor& synth,
                      const torch::Tensor& lesion) {
  const std::int64_t z = montageSlice(lesion);
  const torch::Tensor panels =
      torch::cat({data::toGrey(real[z], -1, 1), data::toGrey(synth[z], -1, 1),
                  data::toGrey(lesion[z].to(torch::kFloat32), 0, 1)},
                 1);
  const std::int64_t scale = std::max<std::int64_t>(1, (192 + panels.size(0) - 1) / panels.size(0));
  return panels.repeat_interleave(scale, 0).repeat_interleave(scale, 1).contiguous();
}

// What every rank resolves before sampling: the cases, the model and the sampler it accepts.
struct Plan {
  data::Manifest manifest;
  std::vector<data::SubjectEntry> cases;
  TrainedModel trained;
  models::SamplerOptions sampler;
  std::int64_t steps = 0;  // DDIM K, or the model's T for DDPM
};

Plan makePlan(const SampleOptions& o, const torch::Device& device) {
  Plan p{data::readManifest(o.store), {}, loadTrainedModel(o.checkpoint, o.weights), {}, 0};
  p.cases = p.manifest.casesOf(o.split, o.cases, o.store);
  p.trained.model->to(device);
  const models::ModelConfig& config = p.trained.config;
  const std::int64_t k = o.steps > 0 ? o.steps : (config.trainSteps > 0 ? config.trainSteps : 50);
  p.sampler.kind(models::parseSampler(o.sampler))
      .eta(o.eta)
      .steps(k)
      .conditionCacheBytes(o.conditionCacheMib << 20);
  if (auto diffusion = std::dynamic_pointer_cast<models::DiffusionModelImpl>(p.trained.model)) {
    p.sampler = diffusion->samplerFor(p.sampler);  // the model's spacing; refuses what it cannot
  }
  p.steps = p.sampler.kind() == models::SamplerKind::Ddim ? k : config.timesteps;
  // Training and sampling must see the same geometry: a denoiser trained on patches has never
  // seen the whole grid's background, GroupNorm statistics or attention length (docs/models.md).
  const auto patch = p.trained.settings.find("patch");
  const std::int64_t trainedPatch =
      patch == p.trained.settings.end() ? 0 : std::stoll(patch->second);
  if (trainedPatch > 0 && config.model != "seg") {
    const auto& g = p.manifest.grid;
    LDDPM_LOG(Warn) << o.checkpoint << " trained on " << trainedPatch << "^3 patches but sampling "
                    << "runs the whole " << g[2] << "x" << g[1] << "x" << g[0]
                    << " grid: expect a geometry mismatch (train with --patch 0; docs/models.md)";
  }
  return p;
}

// Everything that decides a case's output (SampleResume.h): equal keys, equal outputs.
std::string resumeKey(const SampleOptions& o, const Plan& p, const torch::Device& device) {
  return samplingKey(
      {{"checkpoint_meta", core::checksumHex(core::checksumFile(o.checkpoint + "/meta.json"))},
       {"store_manifest", core::checksumHex(core::checksumFile(data::manifestPath(o.store)))},
       {"split", o.split},
       {"cases", p.cases.size()},
       {"sampler", o.sampler},
       {"steps", p.steps},
       {"eta", o.eta},
       {"seed", o.seed},
       {"batch", o.batch},
       {"weights", o.weights},
       {"device", device.is_cuda() ? "cuda" : "cpu"}});
}

// One case's files: synthetic and real FLAIR, lesion, brain and tissue masks, the montage.
void writeCase(const fs::path& out, const std::string& id, const data::SubjectData& subject,
               const torch::Tensor& synthetic) {
  const torch::Tensor real = subject.image[0].contiguous();
  data::Volume volume;
  volume.affine = subject.affine;
  volume.spacing = subject.spacing;
  const std::string file = id + ".nii.gz";
  volume.data = synthetic;
  data::writeNifti((out / "synthetic" / file).string(), volume);
  volume.data = real;
  data::writeNifti((out / "real" / file).string(), volume);
  volume.data = subject.lesion.to(torch::kFloat32);
  data::writeNifti((out / "lesion" / file).string(), volume, data::NiftiDtype::UInt8);
  volume.data = subject.tissue.gt(0).logical_or(subject.lesion.gt(0)).to(torch::kFloat32);
  data::writeNifti((out / "brain" / file).string(), volume, data::NiftiDtype::UInt8);
  volume.data = subject.tissue.to(torch::kFloat32);
  data::writeNifti((out / "tissue" / file).string(), volume, data::NiftiDtype::UInt8);
  data::writePng((out / "png" / (id + ".png")).string(), montage(real, synthetic, subject.lesion));
}

// Samples one group of consecutive cases [first, last) in one forward batch and writes them;
// returns the seconds per case.
double sampleGroup(const SampleOptions& o, Plan& p, const torch::Device& device, size_t first,
                   size_t last, data::StoreReader& store) {
  std::vector<data::SubjectData> subjects;
  std::vector<torch::Tensor> images, anatomy, lesions;
  models::Generators gens;  // one per case: its draws do not depend on its batch neighbours
  for (size_t i = first; i < last; ++i) {
    const data::SubjectEntry& c = p.cases[i];
    subjects.push_back(store.readSubject(c));
    const data::SubjectData& subject = subjects.back();
    images.push_back(subject.image.narrow(0, 0, 1));
    anatomy.push_back(tissueOneHot(subject.tissue.unsqueeze(0).unsqueeze(0))[0]);
    lesions.push_back(subject.lesion.unsqueeze(0).to(torch::kFloat32));
    gens.push_back(core::makeCpuGenerator(
        core::deriveSeed(o.seed, core::RngStream::Sampling, {core::nameKey(c.id)})));
  }
  core::Stopwatch watch;
  // Noise comes from CPU generators whatever the device, so a case is the same draw on both.
  const models::Batch condition{torch::stack(images).to(device), torch::stack(anatomy).to(device),
                                torch::stack(lesions).to(device)};
  const torch::Tensor synth =
      p.trained.model->synthesize(condition, p.sampler, gens).cpu();  // [B, 1, D, H, W]
  const double each = watch.seconds() / static_cast<double>(last - first);
  for (size_t i = first; i < last; ++i) {
    writeCase(o.out, p.cases[i].id, subjects[i - first],
              synth[static_cast<long>(i - first)][0].contiguous());
  }
  return each;
}

// Rank 0, after every rank finished: overview.png of every montage and sampling.json.
double writeOverview(const SampleOptions& o, const Plan& p, const torch::Tensor& seconds,
                     const torch::Device& device, int ranks) {
  const fs::path out(o.out);
  std::vector<torch::Tensor> rows;
  core::Json perCase = core::Json::object();
  double total = 0;
  for (size_t i = 0; i < p.cases.size(); ++i) {
    const std::string file = p.cases[i].id + ".nii.gz";
    rows.push_back(montage(data::readNifti((out / "real" / file).string()).data,
                           data::readNifti((out / "synthetic" / file).string()).data,
                           data::readNifti((out / "lesion" / file).string()).data));
    const double s = seconds[static_cast<long>(i)].item<double>();
    perCase[p.cases[i].id] = s;
    total += s;
  }
  data::writePng((out / "overview.png").string(), torch::cat(rows, 0));
  const double perVolume = total / static_cast<double>(p.cases.size());
  core::writeJsonFile((out / "sampling.json").string(), {{"sampler", o.sampler},
                                                         {"steps", p.steps},
                                                         {"eta", o.eta},
                                                         {"cases", p.cases.size()},
                                                         {"ranks", ranks},
                                                         {"seconds_per_volume", perVolume},
                                                         {"seconds", perCase},
                                                         {"checkpoint", o.checkpoint},
                                                         {"weights", o.weights},
                                                         {"device", device.str()},
                                                         {"batch", o.batch}});
  return perVolume;
}

}  // namespace

SampleSummary sampleSplit(const SampleOptions& o, dist::Communicator& comm,
                          const torch::Device& device) {
  Plan plan = makePlan(o, device);
  if (comm.rank() == 0) {  // folders exist before anyone writes; files are written atomically
    for (const char* sub : {"real", "synthetic", "lesion", "brain", "tissue", "png"}) {
      fs::create_directories(fs::path(o.out) / sub);
    }
    removeStaleTemporaries(o.out);  // of a killed earlier run into the same --out
  }
  comm.barrier()->wait();

  const auto group = static_cast<size_t>(o.batch);
  const size_t groups = (plan.cases.size() + group - 1) / group;
  const auto rank = static_cast<size_t>(comm.rank()), ranks = static_cast<size_t>(comm.size());
  std::int64_t mine = 0;
  for (size_t g = rank; g < groups; g += ranks) {
    mine += static_cast<std::int64_t>(std::min(plan.cases.size(), (g + 1) * group) - g * group);
  }
  LDDPM_LOG(Info) << "sampling " << plan.cases.size() << " " << o.split << " case(s) with "
                  << o.sampler << (plan.sampler.kind() == models::SamplerKind::Ddim ? " K=" : " T=")
                  << plan.steps << " in batches of " << o.batch << " on " << ranks
                  << " rank(s), weights " << o.weights << " of " << o.checkpoint;
  core::Progress progress("sample", mine);
  std::vector<double> seconds(plan.cases.size(), 0.0);
  data::StoreReader store(o.store);
  const std::string key = resumeKey(o, plan, device);
  SampleSummary summary;
  std::int64_t done = 0;
  for (size_t g = rank; g < groups; g += ranks) {
    const size_t first = g * group, last = std::min(plan.cases.size(), first + group);
    // A group is redone whole when any of its cases is unfinished: batch neighbours never change.
    std::vector<std::optional<double>> before;
    for (size_t i = first; i < last; ++i)
      before.push_back(finishedCase(o.out, plan.cases[i].id, key));
    const bool finished =
        std::all_of(before.begin(), before.end(), [](const auto& b) { return b.has_value(); });
    const double each = finished ? 0.0 : sampleGroup(o, plan, device, first, last, store);
    for (size_t i = first; i < last; ++i) {
      seconds[i] = finished ? *before[i - first] : each;
      if (!finished) recordFinishedCase(o.out, plan.cases[i].id, key, seconds[i]);
      char detail[96];
      std::snprintf(detail, sizeof detail, "%s %.1f s%s", plan.cases[i].id.c_str(), seconds[i],
                    finished ? " (finished before)" : "");
      progress.update(++done, detail);
    }
    if (finished) summary.skipped += static_cast<std::int64_t>(last - first);
  }
  progress.finish();
  if (summary.skipped > 0)
    LDDPM_LOG(Info) << "skipped " << summary.skipped << " case(s) finished by an earlier run";

  torch::Tensor all = torch::tensor(seconds, torch::kFloat64);  // rank 0 gathers the timings
  comm.allreduce(all, dist::ReduceOp::Sum)->wait();
  summary.cases = static_cast<std::int64_t>(plan.cases.size());
  if (comm.rank() == 0) summary.secondsPerVolume = writeOverview(o, plan, all, device, comm.size());
  return summary;
}

}  // namespace lddpm::launch
