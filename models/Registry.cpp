#include "models/Registry.h"

#include <algorithm>
#include <set>

#include "core/Error.h"
#include "core/Text.h"
#include "models/DiffusionModel.h"
#include "models/Pix2Pix.h"
#include "models/Segmenter.h"

namespace lddpm::models {

std::vector<std::int64_t> parseIntList(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> values;
  for (const std::string& item : core::splitString(text, ',')) {
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0) throw std::invalid_argument(item);
      values.push_back(v);
    } catch (const std::exception&) {
      LDDPM_THROW(core::UsageError, "option '--", option, "': '", text,
                  "' is not a comma-separated list of non-negative integers");
    }
  }
  return values;
}

core::po::options_description ModelConfig::describe() {
  namespace po = core::po;
  po::options_description d("Model options");
  d.add_options()("model", po::value(&model)->default_value(model),
                  "lesion-ddpm | cond-ddpm | pix2pix | seg")(
      "anatomy-channels", po::value(&anatomyChannels)->default_value(anatomyChannels),
      "channels of the anatomical mask: 3, the one-hot tissue classes of a store")(
      "base-channels", po::value(&baseChannels)->default_value(baseChannels),
      "U-Net width at full resolution")(
      "channel-mult", po::value(&channelMultipliers)->default_value(channelMultipliers),
      "width multiplier per level, comma-separated; volumes must divide by 2^(levels-1)")(
      "blocks-per-level", po::value(&blocksPerLevel)->default_value(blocksPerLevel),
      "ResBlocks per encoder level")(
      "attention-levels", po::value(&attentionLevels)->default_value(attentionLevels),
      "levels with self-attention (0 = finest), comma-separated; empty for none")(
      "attention-heads", po::value(&attentionHeads)->default_value(attentionHeads),
      "self-attention heads")("groups", po::value(&groups)->default_value(groups),
                              "GroupNorm groups")(
      "dropout", po::value(&dropout)->default_value(dropout), "dropout inside ResBlocks")(
      "checkpoint-levels", po::value(&checkpointLevels)->default_value(checkpointLevels),
      "levels whose blocks recompute activations in backward (activation checkpointing)")(
      "mask-sites", po::value(&maskSites)->default_value(maskSites),
      "lesion-ddpm: where the mask enters, any of input,encoder,bottleneck,decoder")(
      "modulation-hidden", po::value(&modulationHidden)->default_value(modulationHidden),
      "lesion-ddpm: hidden channels of each mask -> (gamma, beta) convolution")(
      "mask-embedding", po::value(&maskEmbedding)->default_value(maskEmbedding),
      "lesion-ddpm: block (each modulation convolves the mask itself, SPADE) | level (one mask "
      "embedding per level shared by its blocks: about half the FLOPs of the demo network)")(
      "timesteps", po::value(&timesteps)->default_value(timesteps), "diffusion steps T")(
      "prediction", po::value(&prediction)->default_value(prediction),
      "denoiser target: eps | v | x0 | edm (Karras et al.'s preconditioned x0)")(
      "sigma-data", po::value(&sigmaData)->default_value(sigmaData),
      "edm: standard deviation of the data the preconditioning assumes")(
      "loss-weighting", po::value(&lossWeighting)->default_value(lossWeighting),
      "per-timestep loss weight: uniform | min-snr (Min-SNR-gamma)")(
      "snr-gamma", po::value(&snrGamma)->default_value(snrGamma), "gamma of min-snr")(
      "train-steps", po::value(&trainSteps)->default_value(trainSteps),
      "train on K of the T timesteps only and sample with them (Fast-DDPM); 0 = all T")(
      "timestep-spacing", po::value(&timestepSpacing)->default_value(timestepSpacing),
      "spacing of a K-step subsequence (train-steps, DDIM): uniform | quadratic")(
      "lesion-weight", po::value(&lesionWeight)->default_value(lesionWeight),
      "lesion-ddpm: λ in the per-voxel loss weight 1 + λ·lesion")(
      "x0-weight", po::value(&x0Weight)->default_value(x0Weight),
      "lesion-ddpm: weight of the lesion-weighted x̂0 L1 term (0: off)")(
      "intensity-prior", po::value(&intensityPrior)->default_value(intensityPrior),
      "generators: none | class-mean (diffuse, or for pix2pix generate, the residual around each "
      "voxel's class-mean training intensity, taken from the store at the start of training)")(
      "l1-weight", po::value(&l1Weight)->default_value(l1Weight), "pix2pix: weight of the L1 term")(
      "disc-channels", po::value(&discriminatorChannels)->default_value(discriminatorChannels),
      "pix2pix: discriminator width")(
      "disc-layers", po::value(&discriminatorLayers)->default_value(discriminatorLayers),
      "pix2pix: discriminator stride-2 layers");
  return d;
}

UNetOptions ModelConfig::unetOptions(std::int64_t inChannels, std::int64_t outChannels) const {
  auto positive = [](std::int64_t v, const char* option) {
    if (v < 1) LDDPM_THROW(core::UsageError, "option '--", option, "': must be >= 1, got ", v);
  };
  positive(baseChannels, "base-channels");
  positive(blocksPerLevel, "blocks-per-level");
  positive(groups, "groups");
  positive(attentionHeads, "attention-heads");
  positive(modulationHidden, "modulation-hidden");
  if (dropout < 0 || dropout >= 1)
    LDDPM_THROW(core::UsageError, "option '--dropout': must be in [0, 1), got ", dropout);
  if (maskEmbedding != "block" && maskEmbedding != "level") {
    LDDPM_THROW(core::UsageError, "option '--mask-embedding': unknown value '", maskEmbedding,
                "' (expected block or level)");
  }
  UNetOptions o(inChannels, outChannels);
  o.baseChannels(baseChannels)
      .channelMultipliers(parseIntList(channelMultipliers, "channel-mult"))
      .blocksPerLevel(blocksPerLevel)
      .attentionLevels(parseIntList(attentionLevels, "attention-levels"))
      .attentionHeads(attentionHeads)
      .groups(groups)
      .dropout(dropout)
      .modulationHidden(modulationHidden)
      .sharedMaskEmbedding(maskEmbedding == "level")
      .checkpointLevels(parseIntList(checkpointLevels, "checkpoint-levels"));
  if (o.levels() < 1)
    LDDPM_THROW(core::UsageError, "option '--channel-mult': needs at least one level");
  for (std::int64_t l = 0; l < o.levels(); ++l) {
    if (o.channelsAt(l) < 1 || o.channelsAt(l) % groups != 0) {
      LDDPM_THROW(core::UsageError, "option '--groups': ", groups, " does not divide the ",
                  o.channelsAt(l), " channels of level ", l, " (--base-channels x --channel-mult)");
    }
  }
  for (auto l : o.attentionLevels()) {
    if (l >= o.levels())
      LDDPM_THROW(core::UsageError, "option '--attention-levels': level ", l, " of ", o.levels());
    if (o.channelsAt(l) % attentionHeads != 0) {
      LDDPM_THROW(core::UsageError, "option '--attention-heads': ", attentionHeads,
                  " does not divide the ", o.channelsAt(l), " channels of level ", l);
    }
  }
  for (auto l : o.checkpointLevels()) {
    if (l >= o.levels())
      LDDPM_THROW(core::UsageError, "option '--checkpoint-levels': level ", l, " of ", o.levels());
  }
  return o;
}

namespace {

bool parseIntensityPrior(const std::string& value) {
  if (value != "none" && value != "class-mean") {
    LDDPM_THROW(core::UsageError, "option '--intensity-prior': unknown value '", value,
                "' (expected none or class-mean)");
  }
  return value == "class-mean";
}

std::shared_ptr<ModelImpl> makeDiffusion(const ModelConfig& c, bool lesionDdpm) {
  UNetOptions unet = c.unetOptions(/*inChannels=*/1, /*outChannels=*/1);
  unet.maskChannels(c.anatomyChannels + 1);
  DiffusionOptions diffusion;
  if (c.timesteps < 1)
    LDDPM_THROW(core::UsageError, "option '--timesteps': must be >= 1, got ", c.timesteps);
  if (c.trainSteps < 0 || c.trainSteps > c.timesteps) {
    LDDPM_THROW(core::UsageError,
                "option '--train-steps': must be in [0, --timesteps = ", c.timesteps, "], got ",
                c.trainSteps);
  }
  if (!(c.snrGamma > 0))
    LDDPM_THROW(core::UsageError, "option '--snr-gamma': must be > 0, got ", c.snrGamma);
  if (!(c.sigmaData > 0))
    LDDPM_THROW(core::UsageError, "option '--sigma-data': must be > 0, got ", c.sigmaData);
  const auto named = [](const char* option, auto parse, const std::string& value) {
    try {
      return parse(value);
    } catch (const core::UsageError& e) {
      LDDPM_THROW(core::UsageError, "option '--", option, "': ", e.what());
    }
  };
  diffusion.timesteps(c.timesteps)
      .prediction(named(
          "prediction", [&](const std::string& v) { return parsePrediction(v, c.sigmaData); },
          c.prediction))
      .weighting(named("loss-weighting", parseWeighting, c.lossWeighting))
      .snrGamma(c.snrGamma)
      .trainSteps(c.trainSteps)
      .spacing(named("timestep-spacing", parseSpacing, c.timestepSpacing))
      .anatomyChannels(c.anatomyChannels)
      .classMeanPrior(parseIntensityPrior(c.intensityPrior));
  if (lesionDdpm) {
    std::set<std::string> sites;
    for (const std::string& item : core::splitString(c.maskSites, ',')) {
      if (item != "input" && item != "encoder" && item != "bottleneck" && item != "decoder") {
        LDDPM_THROW(core::UsageError, "option '--mask-sites': unknown site '", item,
                    "' (expected input, encoder, bottleneck, decoder)");
      }
      sites.insert(item);
    }
    const auto has = [&](const char* site) { return sites.count(site) > 0; };
    unet.maskAtInput(has("input"))
        .maskInEncoder(has("encoder"))
        .maskInBottleneck(has("bottleneck"))
        .maskInDecoder(has("decoder"));
    if (c.lesionWeight < 0) LDDPM_THROW(core::UsageError, "option '--lesion-weight': must be >= 0");
    diffusion.lesionWeight(c.lesionWeight).x0Weight(c.x0Weight);
  } else {
    // Med-DDPM's design, whatever the lesion-ddpm options say.
    unet.maskAtInput(true).maskInEncoder(false).maskInBottleneck(false).maskInDecoder(false);
    diffusion.lesionWeight(0).x0Weight(0);
  }
  return std::make_shared<DiffusionModelImpl>(lesionDdpm ? "lesion-ddpm" : "cond-ddpm", unet,
                                              diffusion);
}

void noIntensityPrior(const ModelConfig& c) {
  if (c.intensityPrior != "none") {
    LDDPM_THROW(core::UsageError, "option '--intensity-prior': ", c.model,
                " has none; only the generators (lesion-ddpm, cond-ddpm, pix2pix) take one");
  }
}

std::shared_ptr<ModelImpl> makePix2Pix(const ModelConfig& c) {
  UNetOptions generator = c.unetOptions(/*inChannels=*/c.anatomyChannels + 1, /*outChannels=*/1);
  generator.useTimestep(false).maskChannels(0);
  if (c.discriminatorChannels < 1 ||
      c.discriminatorChannels % std::min(c.groups, c.discriminatorChannels) != 0) {
    LDDPM_THROW(core::UsageError,
                "option '--disc-channels': must be >= 1 and divisible by --groups");
  }
  if (c.discriminatorLayers < 1)
    LDDPM_THROW(core::UsageError, "option '--disc-layers': must be >= 1");
  Pix2PixOptions options;
  options.anatomyChannels(c.anatomyChannels)
      .l1Weight(c.l1Weight)
      .discriminatorChannels(c.discriminatorChannels)
      .discriminatorLayers(c.discriminatorLayers)
      .classMeanPrior(parseIntensityPrior(c.intensityPrior));
  return std::make_shared<Pix2PixImpl>(generator, options);
}

std::shared_ptr<ModelImpl> makeSeg(const ModelConfig& c) {
  noIntensityPrior(c);
  UNetOptions unet = c.unetOptions(/*inChannels=*/1, /*outChannels=*/1);
  unet.useTimestep(false).maskChannels(0);
  return std::make_shared<SegmenterImpl>(unet);
}

}  // namespace

const std::vector<RegisteredModel>& registeredModels() {
  static const std::vector<RegisteredModel> table = {
      {"lesion-ddpm",
       "mask at the input and by modulation in encoder, bottleneck, decoder; lesion-weighted L1",
       [](const ModelConfig& c) { return makeDiffusion(c, /*lesionDdpm=*/true); }},
      {"cond-ddpm", "Med-DDPM baseline: mask concatenated at the input only, unweighted L1",
       [](const ModelConfig& c) { return makeDiffusion(c, /*lesionDdpm=*/false); }},
      {"pix2pix",
       "GAN baseline: U-Net generator mask -> FLAIR, 3-D PatchGAN, L1 + least-squares loss",
       &makePix2Pix},
      {"seg", "downstream lesion segmenter: 3-D U-Net, Dice + BCE, sliding-window inference",
       &makeSeg},
  };
  return table;
}

std::shared_ptr<ModelImpl> createModel(const ModelConfig& config) {
  // The store's anatomical mask is the one-hot of its three tissue classes
  // (data/StoreSchema.h): any other width would build a model no store can feed.
  if (config.anatomyChannels != 3) {
    LDDPM_THROW(core::UsageError, "option '--anatomy-channels': must be 3 (one-hot CSF, GM, WM, ",
                "the store's tissue classes), got ", config.anatomyChannels);
  }
  std::vector<std::string> names;
  for (const auto& entry : registeredModels()) {
    if (entry.name == config.model) return entry.create(config);
    names.push_back(entry.name);
  }
  LDDPM_THROW(core::UsageError, "option '--model': unknown model '", config.model,
              "' (known: ", core::joinStrings(names, ", "), ")");
}

std::vector<ModelSummary> summarizeModels(const ModelConfig& config, bool onlyConfigured) {
  std::vector<ModelSummary> out;
  for (const auto& entry : registeredModels()) {
    if (onlyConfigured && entry.name != config.model) continue;
    ModelConfig c = config;
    c.model = entry.name;
    const auto model = entry.create(c);
    ModelSummary s{entry.name, entry.summary, model->parameterCount(), {}, model->sizeDivisor()};
    for (const auto& g : model->parameterGroups()) {
      std::int64_t n = 0;
      for (const auto& p : g.parameters) n += p.numel();
      s.groups.emplace_back(g.name, n);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace lddpm::models
