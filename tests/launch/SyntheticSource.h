#pragma once
// A BatchSource for engine tests: sample g is a smooth random volume with a tissue map and a
// lesion cube, a function of (seed, g) only — the property the real store loader has.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/Options.h"
#include "core/Rng.h"
#include "launch/engine/BatchSource.h"
#include "launch/engine/TrainConfig.h"
#include "models/Registry.h"

namespace lddpm::testutil {

class SyntheticSource : public launch::BatchSource {
 public:
  explicit SyntheticSource(std::int64_t edge = 16, std::uint64_t seed = 1)
      : edge_(edge), seed_(seed) {}

  models::Batch get(const std::vector<std::int64_t>& indices) override {
    std::vector<torch::Tensor> images, anatomy, lesions;
    for (std::int64_t g : indices) {
      if (onGet) onGet(g);
      auto gen = core::makeCpuGenerator(core::deriveSeed(seed_, core::RngStream::PatchCentre,
                                                         {static_cast<std::uint64_t>(g % 5)}));
      auto noise = torch::randn({1, 1, edge_ / 4, edge_ / 4, edge_ / 4}, gen);
      auto smooth = torch::nn::functional::interpolate(
          noise, torch::nn::functional::InterpolateFuncOptions()
                     .size(std::vector<int64_t>{edge_, edge_, edge_})
                     .mode(torch::kTrilinear)
                     .align_corners(false));
      auto image = torch::tanh(smooth)[0];
      auto classes = (image > -0.3).to(torch::kLong) + (image > 0.3).to(torch::kLong);
      auto oneHot = torch::nn::functional::one_hot(classes, 3).permute({3, 0, 1, 2, 4}).squeeze(-1);
      auto lesion = torch::zeros({1, edge_, edge_, edge_});
      const std::int64_t c = 3 + g % (edge_ - 8);
      lesion.slice(1, c, c + 3).slice(2, c, c + 3).slice(3, c, c + 3).fill_(1.0);
      images.push_back(torch::where(lesion > 0, torch::ones_like(image), image));
      anatomy.push_back(oneHot.to(torch::kFloat32).reshape({3, edge_, edge_, edge_}));
      lesions.push_back(lesion);
    }
    return {torch::stack(images), torch::stack(anatomy), torch::stack(lesions)};
  }
  std::int64_t voxelsPerSample() const override { return edge_ * edge_ * edge_; }

  std::function<void(std::int64_t)> onGet;  // test hook (e.g. raise a signal at some sample)

 private:
  std::int64_t edge_;
  std::uint64_t seed_;
};

// Model options small enough for unit tests.
inline std::vector<std::string> tinyModelArgs() {
  return {"--base-channels", "8", "--channel-mult", "1,2", "--attention-levels", "",
          "--groups",        "4", "--timesteps",    "50"};
}

// Engine options as a test writes them: `defaults` then `extra` as (option, value) pairs, the
// later pair winning, plus the tiny model; parsed through the real option descriptions.
struct RunSetup {
  launch::TrainConfig train;
  models::ModelConfig model;
};

inline RunSetup makeRunSetup(const std::map<std::string, std::string>& defaults,
                             const std::vector<std::string>& extra) {
  RunSetup s;
  core::po::options_description d;
  d.add(s.train.describe());
  d.add(s.model.describe());
  std::map<std::string, std::string> options = defaults;
  const auto tiny = tinyModelArgs();
  for (size_t i = 0; i + 1 < tiny.size(); i += 2) options.emplace(tiny[i], tiny[i + 1]);
  for (size_t i = 0; i + 1 < extra.size(); i += 2) options[extra[i]] = extra[i + 1];
  std::vector<std::string> args;
  for (const auto& [k, v] : options) {
    args.push_back(k);
    args.push_back(v);
  }
  core::parseOptions("train", args, d);
  return s;
}

}  // namespace lddpm::testutil
