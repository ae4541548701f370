// `lddpm sample`: synthetic FLAIR for every conditioning mask of a store split, with a trained
// run's EMA weights. Ranks split the cases; each case is a function of (seed, case id) only, so the
// output does not depend on the number of ranks. Writes, per case, the synthetic and the real
// (normalised) FLAIR, the lesion, brain and tissue masks as NIfTI on the store's grid and geometry,
// a PNG montage of the axial slice with most lesion (real | synthetic | lesion), and one overview
// picture plus timings.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/Checkpoint.h"
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
#include "distributed/Communicator.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/engine/SampleResume.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/TrainedModel.h"
#include "models/DiffusionModel.h"
#include "models/Registry.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

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

}  // namespace

int runSample(const CommandArgs& args) {
  std::string run, checkpoint, store, split = "test", out, samplerName = "ddim", weights = "ema";
  std::string device = "cpu";
  std::int64_t steps = 0, maxCases = 0, batch = 1;
  double eta = 0.0;
  std::uint64_t seed = 0;
  po::options_description own("sample options");
  own.add_options()("run", po::value(&run)->value_name("DIR"),
                    "trained run: its newest complete checkpoint")(
      "checkpoint", po::value(&checkpoint)->value_name("DIR"),
      "a checkpoint folder instead of --run")("store",
                                              po::value(&store)->required()->value_name("DIR"),
                                              "store whose masks condition the samples")(
      "split", po::value(&split)->default_value(split), "train | test | all")(
      "out", po::value(&out)->required()->value_name("DIR"),
      "output folder: real/, synthetic/, lesion/, brain/, tissue/ (NIfTI), png/, overview.png, "
      "sampling.json")("sampler", po::value(&samplerName)->default_value(samplerName),
                       "ddim | ddpm")(
      "steps", po::value(&steps)->default_value(steps),
      "DDIM steps K (DDPM always runs all T); 0 = the model's --train-steps if it trained on a "
      "subset, else 50")("eta", po::value(&eta)->default_value(eta),
                         "DDIM stochasticity (0: deterministic)")(
      "seed", po::value(&seed)->default_value(seed), "seed; each case draws from (seed, case id)")(
      "cases", po::value(&maxCases)->default_value(maxCases),
      "sample only the first N cases; 0 = all")(
      "batch", po::value(&batch)->default_value(batch),
      "cases per forward pass: consecutive cases in groups of N, groups dealt to ranks. CPU conv3d "
      "is ~5x faster per case at N >= 2, but its sums then depend on threads per rank: results "
      "match across rank counts only at equal --threads (N = 1: always)")(
      "weights", po::value(&weights)->default_value(weights), "ema | model")(
      "device", po::value(&device)->default_value(device),
      "cpu | cuda (one GPU per rank by local rank)");
  const auto parsed =
      parseCommand("sample", "--run DIR --store DIR --out DIR [options]", args, own);
  if (!parsed) return 0;
  if (steps < 0) LDDPM_THROW(core::UsageError, "lddpm sample: option '--steps': must be >= 0");
  if (batch < 1) LDDPM_THROW(core::UsageError, "lddpm sample: option '--batch': must be >= 1");
  const data::Split which = data::parseSplit(split);  // a usage error before any file is read
  checkpoint = checkpointFromOptions("sample", run, checkpoint, weights);
  models::SamplerOptions sampler;
  sampler.kind(models::parseSampler(samplerName)).eta(eta);

  dist::World& world = dist::World::get();
  const torch::Device where = deviceOption(device, "lddpm sample", world.localRank());
  // The communicator only carries timings and barriers: it stays on the CPU whatever --device.
  auto comm = dist::makeCommunicator(dist::Backend::Auto, world);
  const data::Manifest manifest = data::readManifest(store);
  std::vector<data::SubjectEntry> cases = manifest.subjectsOf(which);
  if (cases.empty()) throw core::IoError(store, "has no '" + split + "' cases (option --split)");
  if (maxCases > 0 && static_cast<std::int64_t>(cases.size()) > maxCases)
    cases.resize(static_cast<size_t>(maxCases));

  const TrainedModel trained = loadTrainedModel(checkpoint, weights);
  const models::ModelConfig& modelConfig = trained.config;
  const std::shared_ptr<models::ModelImpl> model = trained.model;
  model->to(where);
  if (steps == 0) steps = modelConfig.trainSteps > 0 ? modelConfig.trainSteps : 50;
  sampler.steps(steps);
  if (auto diffusion = std::dynamic_pointer_cast<models::DiffusionModelImpl>(model)) {
    sampler = diffusion->samplerFor(sampler);  // the model's spacing; refuses what it cannot do
  }
  // Training and sampling must see the same geometry: a denoiser trained on patches has never
  // seen the whole grid's background, GroupNorm statistics or attention length (docs/models.md).
  const auto patchIt = trained.settings.find("patch");
  const std::int64_t trainedPatch =
      patchIt == trained.settings.end() ? 0 : std::stoll(patchIt->second);
  if (trainedPatch > 0 && modelConfig.model != "seg") {
    LDDPM_LOG(Warn) << checkpoint << " trained on " << trainedPatch << "^3 patches but sampling "
                    << "runs the whole " << manifest.grid[2] << "x" << manifest.grid[1] << "x"
                    << manifest.grid[0] << " grid: expect a geometry mismatch (train with "
                    << "--patch 0; docs/models.md)";
  }

  // Output folders are created by rank 0 before anyone writes; files are written atomically.
  const fs::path outDir(out);
  if (world.rank() == 0) {
    for (const char* sub : {"real", "synthetic", "lesion", "brain", "tissue", "png"}) {
      fs::create_directories(outDir / sub);
    }
    removeStaleTemporaries(out);  // of a killed earlier run into the same --out
    writeCommandConfig(out, "sample", *parsed, own);
  }
  comm->barrier()->wait();

  // Cases go in fixed groups of --batch consecutive cases, group g to rank g mod size: every case
  // is computed in the same batch whatever the number of ranks, so outputs do not depend on it.
  const auto group = static_cast<size_t>(batch);
  const size_t groups = (cases.size() + group - 1) / group;
  const auto rank = static_cast<size_t>(world.rank());
  const auto ranks = static_cast<size_t>(world.size());
  std::int64_t mine = 0;
  for (size_t g = rank; g < groups; g += ranks) {
    mine += static_cast<std::int64_t>(std::min(cases.size(), (g + 1) * group) - g * group);
  }
  LDDPM_LOG(Info) << "sampling " << cases.size() << " " << split << " case(s) with " << samplerName
                  << (sampler.kind() == models::SamplerKind::Ddim ? " K=" + std::to_string(steps)
                                                                  : "")
                  << " in batches of " << batch << " on " << world.size() << " rank(s), weights "
                  << weights << " of " << checkpoint;
  core::Progress progress("sample", mine);
  std::vector<double> seconds(cases.size(), 0.0);
  std::int64_t done = 0;
  std::map<std::string, std::unique_ptr<data::ShardReader>> readers;
  // A rerun into the same --out skips groups whose cases all finished with the same settings
  // (launch/engine/SampleResume.h); a group is redone whole, so batch neighbours never change.
  const std::string key = samplingKey(
      {{"checkpoint_meta", core::checksumHex(core::checksumFile(checkpoint + "/meta.json"))},
       {"store_manifest", core::checksumHex(core::checksumFile(data::manifestPath(store)))},
       {"split", split},
       {"cases", cases.size()},
       {"sampler", samplerName},
       {"steps", steps},
       {"eta", eta},
       {"seed", seed},
       {"batch", batch},
       {"weights", weights},
       {"device", where.is_cuda() ? "cuda" : "cpu"}});
  std::int64_t skipped = 0;
  for (size_t g = rank; g < groups; g += ranks) {
    const size_t first = g * group;
    const size_t last = std::min(cases.size(), first + group);
    std::vector<std::optional<double>> before;
    for (size_t i = first; i < last; ++i) before.push_back(finishedCase(out, cases[i].id, key));
    if (std::all_of(before.begin(), before.end(), [](const auto& b) { return b.has_value(); })) {
      for (size_t i = first; i < last; ++i) {
        seconds[i] = *before[i - first];
        progress.update(++done, cases[i].id + " (finished before)");
      }
      skipped += static_cast<std::int64_t>(last - first);
      continue;
    }
    std::vector<data::SubjectData> subjects;
    std::vector<torch::Tensor> images, anatomy, lesions;
    models::Generators gens;  // one per case: its draws do not depend on its batch neighbours
    for (size_t i = first; i < last; ++i) {
      const data::SubjectEntry& c = cases[i];
      auto& reader = readers[c.shard];
      if (!reader)
        reader = std::make_unique<data::ShardReader>((fs::path(store) / c.shard).string());
      subjects.push_back(reader->readSubject(c.id));
      const data::SubjectData& subject = subjects.back();
      images.push_back(subject.image.narrow(0, 0, 1));
      anatomy.push_back(tissueOneHot(subject.tissue.unsqueeze(0).unsqueeze(0))[0]);
      lesions.push_back(subject.lesion.unsqueeze(0).to(torch::kFloat32));
      gens.push_back(core::makeCpuGenerator(
          core::deriveSeed(seed, core::RngStream::Sampling, {core::nameKey(c.id)})));
    }
    core::Stopwatch watch;
    // Noise comes from CPU generators whatever the device, so a case is the same draw on both.
    const models::Batch condition{torch::stack(images).to(where), torch::stack(anatomy).to(where),
                                  torch::stack(lesions).to(where)};
    const torch::Tensor synth =
        model->synthesize(condition, sampler, gens).cpu();  // [B, 1, D, H, W]
    const double each = watch.seconds() / static_cast<double>(last - first);

    for (size_t i = first; i < last; ++i) {
      const data::SubjectEntry& c = cases[i];
      const data::SubjectData& subject = subjects[i - first];
      seconds[i] = each;
      const torch::Tensor synthetic = synth[static_cast<long>(i - first)][0].contiguous();
      const torch::Tensor real = subject.image[0].contiguous();
      data::Volume volume;
      volume.affine = subject.affine;
      volume.spacing = subject.spacing;
      const std::string file = c.id + ".nii.gz";
      volume.data = synthetic;
      data::writeNifti((outDir / "synthetic" / file).string(), volume);
      volume.data = real;
      data::writeNifti((outDir / "real" / file).string(), volume);
      volume.data = subject.lesion.to(torch::kFloat32);
      data::writeNifti((outDir / "lesion" / file).string(), volume, data::NiftiDtype::UInt8);
      volume.data = subject.tissue.gt(0).logical_or(subject.lesion.gt(0)).to(torch::kFloat32);
      data::writeNifti((outDir / "brain" / file).string(), volume, data::NiftiDtype::UInt8);
      volume.data = subject.tissue.to(torch::kFloat32);
      data::writeNifti((outDir / "tissue" / file).string(), volume, data::NiftiDtype::UInt8);
      data::writePng((outDir / "png" / (c.id + ".png")).string(),
                     montage(real, synthetic, subject.lesion));
      recordFinishedCase(out, c.id, key, seconds[i]);
      char detail[64];
      std::snprintf(detail, sizeof detail, "%s %.1f s", c.id.c_str(), seconds[i]);
      progress.update(++done, detail);
    }
  }
  progress.finish();
  if (skipped > 0)
    LDDPM_LOG(Info) << "skipped " << skipped << " case(s) finished by an earlier run";

  // Rank 0 gathers the timings and stacks every case's montage into one overview.
  torch::Tensor all = torch::tensor(seconds, torch::kFloat64);
  comm->allreduce(all, dist::ReduceOp::Sum)->wait();
  if (world.rank() == 0) {
    std::vector<torch::Tensor> rows;
    core::Json perCase = core::Json::object();
    double total = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string file = cases[i].id + ".nii.gz";
      const auto real = data::readNifti((outDir / "real" / file).string()).data;
      const auto synth = data::readNifti((outDir / "synthetic" / file).string()).data;
      const auto lesion = data::readNifti((outDir / "lesion" / file).string()).data;
      rows.push_back(montage(real, synth, lesion));
      perCase[cases[i].id] = all[static_cast<long>(i)].item<double>();
      total += all[static_cast<long>(i)].item<double>();
    }
    data::writePng((outDir / "overview.png").string(), torch::cat(rows, 0));
    const double perVolume = total / static_cast<double>(cases.size());
    core::writeJsonFile(
        (outDir / "sampling.json").string(),
        {{"sampler", samplerName},
         {"steps", sampler.kind() == models::SamplerKind::Ddim ? steps : modelConfig.timesteps},
         {"eta", eta},
         {"cases", cases.size()},
         {"ranks", world.size()},
         {"seconds_per_volume", perVolume},
         {"seconds", perCase},
         {"checkpoint", checkpoint},
         {"weights", weights},
         {"device", where.str()},
         {"batch", batch}});
    std::cout << "sampled " << cases.size() << " case(s) into " << out << ": " << perVolume
              << " s per volume (" << samplerName << ")\n";
  }
  return 0;
}

}  // namespace lddpm::launch
