// The C++ side of the Python twin's test (tests/e2e/python_twin.sh): a trained checkpoint's model,
// optionally with every parameter moved by Gaussian noise (so the zero-initialised layers of a
// barely trained network are exercised too), run on a reproducible random input. Writes the
// weights it used in `lddpm export`'s format and the input and output tensors, for
// python/lesion_ddpm to recompute. The output is the raw denoiser output (lesion-ddpm, cond-ddpm),
// the generator's image (pix2pix) or the lesion logits (seg).
//   PythonTwinOracle CHECKPOINT WEIGHTS_OUT TENSORS_OUT D,H,W [RANDOMIZE_SEED]
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/Rng.h"
#include "launch/engine/RunLayout.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/TrainedModel.h"
#include "models/DiffusionModel.h"
#include "models/Pix2Pix.h"
#include "models/Segmenter.h"

int main(int argc, char** argv) {
  using namespace lddpm;
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: PythonTwinOracle CHECKPOINT WEIGHTS_OUT TENSORS_OUT D,H,W [SEED]\n";
    return 2;
  }
  try {
    launch::TrainedModel trained = launch::loadTrainedModel(argv[1], "ema");
    auto& model = *trained.model;
    torch::NoGradGuard noGrad;
    if (argc == 6) {
      auto gen = core::makeCpuGenerator(std::strtoull(argv[5], nullptr, 10));
      for (auto& p : model.parameters()) p.add_(0.05 * torch::randn(p.sizes(), gen, p.options()));
    }
    core::saveTensorDict(argv[2], launch::moduleWeights(model));

    const auto grid = models::parseIntList(argv[4], "grid");
    LDDPM_CHECK(grid.size() == 3, "grid must be D,H,W");
    auto gen = core::makeCpuGenerator(1);
    const std::int64_t b = 2;
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    const auto tissue = torch::randint(4, {b, 1, grid[0], grid[1], grid[2]}, gen, f32);
    const auto lesion =
        torch::rand({b, 1, grid[0], grid[1], grid[2]}, gen, f32).lt(0.1).to(torch::kFloat32);
    const auto x = torch::randn({b, 1, grid[0], grid[1], grid[2]}, gen, f32);
    // The conditioning mask as the engine makes it from a store's tissue labels and lesion mask.
    const auto condition = models::Batch{x, launch::tissueOneHot(tissue), lesion}.condition(x);
    core::TensorDict out{{"condition", condition}, {"x", x}};
    if (auto* diffusion = dynamic_cast<models::DiffusionModelImpl*>(&model)) {
      const std::int64_t T = diffusion->schedule().timesteps();
      const auto t = torch::tensor({T - 1, T / 3}, torch::kInt64);
      out["t"] = t;
      out["output"] = diffusion->denoise(x, t, condition);
    } else if (auto* pix2pix = dynamic_cast<models::Pix2PixImpl*>(&model)) {
      out["output"] = pix2pix->generate(condition);
    } else if (auto* seg = dynamic_cast<models::SegmenterImpl*>(&model)) {
      out["output"] = seg->logits(x);
    } else {
      LDDPM_THROW(core::Error, "unknown model type");
    }
    core::saveTensorDict(argv[3], out);
  } catch (const std::exception& e) {
    std::cerr << "PythonTwinOracle: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
