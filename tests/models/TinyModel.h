#pragma once
// Model options small enough for unit tests (8 base channels, 2 levels, T = 100), shared by the
// models tests. `attentionLevels` "" leaves attention out (faster overfitting runs).
#include <string>

#include "models/Registry.h"

namespace lddpm::models::testutil {

inline ModelConfig tinyConfig(const std::string& model, const std::string& attentionLevels = "1") {
  ModelConfig c;
  c.model = model;
  c.baseChannels = 8;
  c.channelMultipliers = "1,2";
  c.attentionLevels = attentionLevels;
  c.attentionHeads = 2;
  c.groups = 4;
  c.timesteps = 100;
  c.discriminatorChannels = 8;
  c.discriminatorLayers = 2;
  return c;
}

}  // namespace lddpm::models::testutil
