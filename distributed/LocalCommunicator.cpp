#include "distributed/LocalCommunicator.h"

#include "core/Error.h"

namespace lddpm::dist {
namespace {

class DoneWork final : public Work {
 public:
  bool isCompleted() override { return true; }
  void wait() override {}
};

// One shared finished handle: no allocation per collective.
WorkPtr done() {
  static const WorkPtr work = std::make_shared<DoneWork>();
  return work;
}

void copyIfDistinct(torch::Tensor& output, const torch::Tensor& input, const char* what) {
  LDDPM_CHECK(output.numel() == input.numel(), what, ": output has ", output.numel(),
              " elements, input ", input.numel());
  if (!output.is_same(input)) output.view({-1}).copy_(input.reshape({-1}));
}

}  // namespace

WorkPtr LocalCommunicator::allreduce(torch::Tensor, ReduceOp) { return done(); }

WorkPtr LocalCommunicator::reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp,
                                         std::vector<int64_t> counts) {
  detail::resolveCounts(std::move(counts), input.numel(), 1, "reduceScatter");
  copyIfDistinct(output, input, "reduceScatter");
  return done();
}

WorkPtr LocalCommunicator::allgather(torch::Tensor output, torch::Tensor input,
                                     std::vector<int64_t> counts) {
  detail::resolveCounts(std::move(counts), output.numel(), 1, "allgather");
  copyIfDistinct(output, input, "allgather");
  return done();
}

WorkPtr LocalCommunicator::broadcast(torch::Tensor, int root) {
  LDDPM_CHECK(root == 0, "broadcast: root ", root, " does not exist in a world of one");
  return done();
}

WorkPtr LocalCommunicator::barrier() { return done(); }

}  // namespace lddpm::dist
