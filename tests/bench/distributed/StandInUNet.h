#pragma once
// A stand-in for the Lesion-DDPM network (models/ was not committed when this benchmark was
// written): a 3-D conv U-Net of similar size and shape — three levels (32, 64, 128 channels), two
// GroupNorm-SiLU-conv residual blocks per level and at the bottleneck, strided-conv down,
// transposed-conv up, skip concatenation — ≈ 6 M parameters. It only has to produce realistic
// compute per byte of gradient for the communication benchmarks.
#include <torch/torch.h>

namespace lddpm::bench {

struct ResBlockImpl : torch::nn::Module {
  ResBlockImpl(int64_t in, int64_t out) {
    norm1 = register_module("norm1", torch::nn::GroupNorm(8, in));
    conv1 = register_module("conv1",
                            torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 3).padding(1)));
    norm2 = register_module("norm2", torch::nn::GroupNorm(8, out));
    conv2 = register_module("conv2",
                            torch::nn::Conv3d(torch::nn::Conv3dOptions(out, out, 3).padding(1)));
    if (in != out)
      skip = register_module("skip", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 1)));
  }
  torch::Tensor forward(torch::Tensor x) {  // [B, in, D, H, W] → [B, out, D, H, W]
    auto h = conv1(torch::silu(norm1(x)));
    h = conv2(torch::silu(norm2(h)));
    return h + (skip ? skip(x) : x);
  }
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
};
TORCH_MODULE(ResBlock);

struct StandInUNetImpl : torch::nn::Module {
  StandInUNetImpl(int64_t inChannels = 3, int64_t outChannels = 1) {
    const int64_t c[3] = {32, 64, 128};
    stem = register_module(
        "stem", torch::nn::Conv3d(torch::nn::Conv3dOptions(inChannels, c[0], 3).padding(1)));
    for (int l = 0; l < 3; ++l) {
      enc->push_back(ResBlock(l == 0 ? c[0] : c[l - 1], c[l]));
      enc->push_back(ResBlock(c[l], c[l]));
      if (l < 2)
        down->push_back(
            torch::nn::Conv3d(torch::nn::Conv3dOptions(c[l], c[l], 3).stride(2).padding(1)));
    }
    mid->push_back(ResBlock(c[2], c[2]));
    mid->push_back(ResBlock(c[2], c[2]));
    for (int l = 1; l >= 0; --l) {
      up->push_back(torch::nn::ConvTranspose3d(
          torch::nn::ConvTranspose3dOptions(c[l + 1], c[l], 2).stride(2)));
      dec->push_back(ResBlock(2 * c[l], c[l]));
      dec->push_back(ResBlock(c[l], c[l]));
    }
    head = register_module(
        "head", torch::nn::Conv3d(torch::nn::Conv3dOptions(c[0], outChannels, 3).padding(1)));
    register_module("enc", enc);
    register_module("down", down);
    register_module("mid", mid);
    register_module("up", up);
    register_module("dec", dec);
  }
  torch::Tensor forward(torch::Tensor x) {  // [B, 3, D, H, W] → [B, 1, D, H, W], D divisible by 4
    x = stem(x);
    std::vector<torch::Tensor> skips;
    for (int l = 0; l < 3; ++l) {
      x = enc[2 * l]->as<ResBlock>()->forward(x);
      x = enc[2 * l + 1]->as<ResBlock>()->forward(x);
      if (l < 2) {
        skips.push_back(x);
        x = down[l]->as<torch::nn::Conv3d>()->forward(x);
      }
    }
    x = mid[1]->as<ResBlock>()->forward(mid[0]->as<ResBlock>()->forward(x));
    for (int i = 0; i < 2; ++i) {
      x = up[i]->as<torch::nn::ConvTranspose3d>()->forward(x);
      x = torch::cat({x, skips[static_cast<size_t>(1 - i)]}, 1);
      x = dec[2 * i]->as<ResBlock>()->forward(x);
      x = dec[2 * i + 1]->as<ResBlock>()->forward(x);
    }
    return head(x);
  }
  torch::nn::Conv3d stem{nullptr}, head{nullptr};
  torch::nn::ModuleList enc, down, mid, up, dec;
};
TORCH_MODULE(StandInUNet);

}  // namespace lddpm::bench
