#pragma once
// Grey-scale and RGB PNG files through libpng (Debian libpng-dev): mid-slice montages of sampled
// volumes and the demo report's pictures. Written atomically.
#include <torch/torch.h>

#include <string>

namespace lddpm::data {

// `pixels` is uint8 [H, W] (grey) or [H, W, 3] (RGB). IoError naming the path on failure.
void writePng(const std::string& path, const torch::Tensor& pixels);

// A [H, W] float slice mapped linearly from [lo, hi] to 0..255 (clamped), flipped vertically so
// that the anterior/superior direction points up as radiologists expect for MNI-oriented grids.
torch::Tensor toGrey(const torch::Tensor& slice, double lo, double hi);

}  // namespace lddpm::data
