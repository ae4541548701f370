#pragma once
// Model names -> factories: `lesion-ddpm`, `cond-ddpm`, `pix2pix`, `seg`. One options struct
// (ModelConfig, with its po::options_description) configures all of them; the engine builds a model
// by name and trains it through the ModelImpl interface alone (models/Model.h).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/Options.h"
#include "models/Model.h"
#include "models/UNetOptions.h"

namespace lddpm::models {

// Defaults are for the phantom demo (48³-64³ patches on CPU); docs/models.md gives the reasons.
struct ModelConfig {
  std::string model = "lesion-ddpm";
  std::int64_t anatomyChannels = 3;  // one-hot CSF, GM, WM (data/StoreSchema.h TissueLabel)
  std::int64_t baseChannels = 16;
  std::string channelMultipliers = "1,2,4,4";
  std::int64_t blocksPerLevel = 1;
  std::string attentionLevels = "3";
  std::int64_t attentionHeads = 4;
  std::int64_t groups = 8;
  double dropout = 0.0;
  std::string checkpointLevels;                                // empty: keep every activation
  std::string maskSites = "input,encoder,bottleneck,decoder";  // lesion-ddpm ablations
  std::int64_t modulationHidden = 32;   // channels of the mask -> (γ, β) convolution
  std::string maskEmbedding = "block";  // block | level (UNetOptions::sharedMaskEmbedding)
  std::int64_t timesteps = 1000;
  std::string prediction = "eps";
  double sigmaData = 0.5;  // σ_data of --prediction edm
  std::string lossWeighting = "uniform";
  double snrGamma = 5.0;
  std::int64_t trainSteps = 0;  // 0: train on all T timesteps
  std::string timestepSpacing = "uniform";
  double lesionWeight = 4.0;
  double x0Weight = 0.0;
  std::string intensityPrior = "none";  // none | class-mean (DiffusionOptions::classMeanPrior)
  double l1Weight = 100.0;
  std::int64_t discriminatorChannels = 16;
  std::int64_t discriminatorLayers = 3;

  // Options bound to this struct's members ("--model", "--base-channels", ...): the struct must
  // stay alive and in place until the command line has been parsed into it.
  core::po::options_description describe();
  // The U-Net options these settings give for `inChannels` -> `outChannels`; UsageError naming the
  // option for a malformed list or a width GroupNorm or attention cannot split.
  UNetOptions unetOptions(std::int64_t inChannels, std::int64_t outChannels) const;
};

struct RegisteredModel {
  std::string name;
  std::string summary;
  std::function<std::shared_ptr<ModelImpl>(const ModelConfig&)> create;
};

// Every model this build knows, in a stable order.
const std::vector<RegisteredModel>& registeredModels();
// Builds config.model; UsageError naming --model (and listing the names) when unknown.
std::shared_ptr<ModelImpl> createModel(const ModelConfig& config);

// What `lddpm models` lists: a model built with `config`'s options, its size in parameters, per
// parameter group, and the multiple its grid sides must be.
struct ModelSummary {
  std::string name, summary;
  std::int64_t parameters = 0;
  std::vector<std::pair<std::string, std::int64_t>> groups;  // in the model's group order
  std::int64_t sizeDivisor = 1;
};
// Every registered model (or, with `onlyConfigured`, config.model alone) built with `config`.
std::vector<ModelSummary> summarizeModels(const ModelConfig& config, bool onlyConfigured);

// "1,2,4" -> {1, 2, 4}; "" -> {}. UsageError naming `option` on anything else.
std::vector<std::int64_t> parseIntList(const std::string& text, const std::string& option);

}  // namespace lddpm::models
