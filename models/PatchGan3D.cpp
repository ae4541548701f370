#include "models/PatchGan3D.h"

#include <algorithm>

#include "core/Error.h"

namespace lddpm::models {

namespace nn = torch::nn;

PatchGan3DImpl::PatchGan3DImpl(const PatchGan3DOptions& options) {
  LDDPM_CHECK(options.layers() >= 1, "PatchGan3D: layers must be >= 1");
  nn::Sequential net;
  std::int64_t in = options.inChannels();
  for (std::int64_t l = 0; l < options.layers(); ++l) {
    const std::int64_t out =
        options.baseChannels() * (std::int64_t{1} << std::min<std::int64_t>(l, 3));
    net->push_back(nn::Conv3d(nn::Conv3dOptions(in, out, 3).stride(2).padding(1)));
    if (l > 0) net->push_back(nn::GroupNorm(options.groups(), out));  // none on the first: pix2pix
    net->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)));
    in = out;
  }
  net->push_back(nn::Conv3d(nn::Conv3dOptions(in, in, 3).padding(1)));
  net->push_back(nn::GroupNorm(options.groups(), in));
  net->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)));
  net->push_back(nn::Conv3d(nn::Conv3dOptions(in, 1, 3).padding(1)));
  net_ = register_module("net", net);
}

torch::Tensor PatchGan3DImpl::forward(const torch::Tensor& x) { return net_->forward(x); }

}  // namespace lddpm::models
