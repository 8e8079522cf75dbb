#include "parallel/data_parallel.h"

#include "kernels/check.h"
#include "kernels/memory.h"

namespace rotor {

GradientReducer::GradientReducer(std::vector<Tensor> grads, Communicator* comm, int64_t bucket_bytes)
    : grads_(std::move(grads)), comm_(comm) {
  bucket_of_.assign(grads_.size(), -1);
  is_ready_.assign(grads_.size(), false);
  if (comm_ == nullptr || comm_->size() == 1 || grads_.empty()) return;
  const DType dtype = grads_[0].dtype();
  std::vector<size_t> members;
  int64_t bytes = 0;
  auto close = [&]() {
    if (members.empty()) return;
    int64_t numel = 0;
    for (size_t i : members) {
      numel += grads_[i].numel();
      bucket_of_[i] = static_cast<int64_t>(buckets_.size());
    }
    Bucket b;
    b.members = members;
    {
      MemoryTagScope tag(MemoryTag::kGradients);  // a second copy of the gradients, for the reduction
      b.flat = Tensor::empty({numel}, dtype, grads_[members[0]].device());
    }
    b.waiting = members.size();
    buckets_.push_back(std::move(b));
    members.clear();
    bytes = 0;
  };
  // Reverse parameter order: the gradients backward finishes first come first.
  for (size_t i = grads_.size(); i-- > 0;) {
    ROTOR_CHECK(grads_[i].dtype() == dtype) << "gradient reducer: mixed dtypes";
    const int64_t b = static_cast<int64_t>(grads_[i].nbytes());
    if (!members.empty() && bytes + b > bucket_bytes) close();
    members.push_back(i);
    bytes += b;
  }
  close();
}

int64_t GradientReducer::bucket_of(size_t param_index) const {
  ROTOR_CHECK(param_index < grads_.size())
      << "gradient reducer: parameter " << param_index << " of " << grads_.size();
  return bucket_of_[param_index];
}

void GradientReducer::ready(size_t param_index) {
  ROTOR_CHECK(param_index < grads_.size())
      << "gradient reducer: ready(" << param_index << ") of " << grads_.size() << " gradients";
  ROTOR_CHECK(!is_ready_[param_index])
      << "gradient reducer: gradient " << param_index << " reported ready twice in one step";
  is_ready_[param_index] = true;
  if (buckets_.empty()) return;
  Bucket& bucket = buckets_[static_cast<size_t>(bucket_of_[param_index])];
  --bucket.waiting;
  if (bucket.waiting == 0) launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets() && buckets_[static_cast<size_t>(next_launch_)].waiting == 0) {
    Bucket& bucket = buckets_[static_cast<size_t>(next_launch_)];
    // Pack: copies between views, so the same code serves host and device
    // gradients (copy_from runs on the tensors' device, in stream order
    // before the reduction on a GPU).
    int64_t at = 0;
    for (size_t i : bucket.members) {
      const int64_t n = grads_[i].numel();
      bucket.flat.narrow(at, n).copy_from(grads_[i].view({n}));
      at += n;
    }
    bucket.request = comm_->iall_reduce(bucket.flat, ReduceOp::kSum);
    ++next_launch_;
  }
}

void GradientReducer::finish() {
  for (Bucket& bucket : buckets_) bucket.waiting = 0;
  launch_ready_buckets();
  for (Bucket& bucket : buckets_) {
    bucket.request->wait();
    bucket.request.reset();
    int64_t at = 0;
    for (size_t i : bucket.members) {
      const int64_t n = grads_[i].numel();
      grads_[i].view({n}).copy_from(bucket.flat.narrow(at, n));
      at += n;
    }
    bucket.waiting = bucket.members.size();
  }
  is_ready_.assign(grads_.size(), false);
  next_launch_ = 0;
}

void GradientReducer::reduce() {
  for (size_t i = grads_.size(); i-- > 0;) {  // backward's order: buckets start as they fill
    if (!is_ready_[i]) ready(i);
  }
  finish();
}

}  // namespace rotor
