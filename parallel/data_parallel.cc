#include "parallel/data_parallel.h"

#include "kernels/check.h"

namespace rotor {

GradientReducer::GradientReducer(std::vector<Tensor> grads, Communicator* comm, int64_t bucket_bytes)
    : grads_(std::move(grads)), comm_(comm) {
  if (comm_ == nullptr || comm_->size() == 1 || grads_.empty()) return;
  const DType dtype = grads_[0].dtype();
  std::vector<size_t> members;
  int64_t bytes = 0;
  auto close = [&]() {
    if (members.empty()) return;
    int64_t numel = 0;
    for (size_t i : members) numel += grads_[i].numel();
    buckets_.push_back({members, Tensor::empty({numel}, dtype, grads_[members[0]].device())});
    members.clear();
    bytes = 0;
  };
  for (size_t i = 0; i < grads_.size(); ++i) {
    ROTOR_CHECK(grads_[i].dtype() == dtype) << "gradient reducer: mixed dtypes";
    const int64_t b = static_cast<int64_t>(grads_[i].nbytes());
    if (!members.empty() && bytes + b > bucket_bytes) close();
    members.push_back(i);
    bytes += b;
  }
  close();
}

void GradientReducer::reduce() {
  // Pack, sum, unpack: copies between views, so the same code serves host and
  // device gradients (copy_from runs on the tensors' device).
  for (Bucket& bucket : buckets_) {
    int64_t at = 0;
    for (size_t i : bucket.members) {
      const int64_t n = grads_[i].numel();
      bucket.flat.narrow(at, n).copy_from(grads_[i].view({n}));
      at += n;
    }
    comm_->all_reduce(bucket.flat, ReduceOp::kSum);
    at = 0;
    for (size_t i : bucket.members) {
      const int64_t n = grads_[i].numel();
      grads_[i].view({n}).copy_from(bucket.flat.narrow(at, n));
      at += n;
    }
  }
}

}  // namespace rotor
