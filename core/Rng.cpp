#include "core/Rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace lddpm::core {

at::Generator makeCpuGenerator(std::uint64_t seed) { return at::detail::createCPUGenerator(seed); }

void seedGlobal(std::uint64_t seed) { torch::manual_seed(seed); }

}  // namespace lddpm::core
