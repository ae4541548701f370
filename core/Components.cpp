#include "core/Components.h"

#include <vector>

#include "core/Error.h"

namespace lddpm::core {

std::pair<torch::Tensor, std::int64_t> connectedComponents(const torch::Tensor& mask) {
  LDDPM_CHECK(mask.dim() == 3, "connectedComponents: expects one volume [D, H, W], got ",
              mask.sizes());
  const torch::Tensor fg = (mask.to(torch::kCPU) != 0).to(torch::kUInt8).contiguous();
  torch::Tensor labels = torch::zeros(fg.sizes(), torch::TensorOptions().dtype(torch::kInt32));
  const std::int64_t nz = fg.size(0), ny = fg.size(1), nx = fg.size(2);
  const std::uint8_t* in = fg.data_ptr<std::uint8_t>();
  std::int32_t* out = labels.data_ptr<std::int32_t>();
  std::int64_t count = 0;
  std::vector<std::int64_t> stack;  // flat indices still to visit (depth-first flood fill)
  for (std::int64_t start = 0; start < fg.numel(); ++start) {
    if (!in[start] || out[start]) continue;
    out[start] = static_cast<std::int32_t>(++count);
    stack.push_back(start);
    while (!stack.empty()) {
      const std::int64_t i = stack.back();
      stack.pop_back();
      const std::int64_t z = i / (ny * nx), y = (i / nx) % ny, x = i % nx;
      for (std::int64_t dz = -1; dz <= 1; ++dz) {
        for (std::int64_t dy = -1; dy <= 1; ++dy) {
          for (std::int64_t dx = -1; dx <= 1; ++dx) {
            const std::int64_t zz = z + dz, yy = y + dy, xx = x + dx;
            if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
            const std::int64_t j = (zz * ny + yy) * nx + xx;
            if (in[j] && !out[j]) {
              out[j] = static_cast<std::int32_t>(count);
              stack.push_back(j);
            }
          }
        }
      }
    }
  }
  return {labels, count};
}

}  // namespace lddpm::core
