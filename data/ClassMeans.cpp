#include "data/ClassMeans.h"

#include <torch/torch.h>

#include <array>
#include <cmath>

#include "core/Error.h"
#include "data/ShardReader.h"

namespace lddpm::data {

ClassMeans classMeans(const std::string& store, Split split) {
  const Manifest manifest = readManifest(store);
  const auto subjects = manifest.subjectsOf(split);
  if (subjects.empty()) {
    throw core::IoError(store, "has no " + splitName(split) + " subjects to take class means from");
  }
  std::array<double, 6> sum{}, count{};  // background, CSF, GM, WM, lesion, brain
  StoreReader reader(store);
  for (const auto& s : subjects) {
    const SubjectData subject = reader.readSubject(s);
    const torch::Tensor image = subject.image[0].to(torch::kFloat64);
    const torch::Tensor lesion = subject.lesion != 0;
    const torch::Tensor tissue = subject.tissue.to(torch::kInt64);
    const torch::Tensor regions[6] = {(tissue == kBackground) & ~lesion,
                                      (tissue == kCsf) & ~lesion,
                                      (tissue == kGreyMatter) & ~lesion,
                                      (tissue == kWhiteMatter) & ~lesion,
                                      lesion,
                                      (tissue != kBackground) | lesion};
    for (int c = 0; c < 6; ++c) {
      sum[c] += image.masked_select(regions[c]).sum().item<double>();
      count[c] += static_cast<double>(regions[c].sum().item<std::int64_t>());
    }
  }
  const auto mean = [&](int c) { return count[c] > 0 ? sum[c] / count[c] : std::nan(""); };
  ClassMeans m{mean(0), mean(1), mean(2), mean(3), mean(4), mean(5)};
  for (double* v : {&m.csf, &m.greyMatter, &m.whiteMatter, &m.lesion}) {
    if (std::isnan(*v)) *v = m.brain;
  }
  return m;
}

}  // namespace lddpm::data
