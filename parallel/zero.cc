#include "parallel/zero.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/memory.h"

namespace rotor {

namespace {

Tensor flat(const Tensor& t) { return t.view({t.numel()}); }

}  // namespace

ShardedAdamW::ShardedAdamW(const std::vector<Tensor>& values, const AdamWHyper& hyper,
                           Communicator* dp)
    : hyper_(hyper), dp_(dp) {
  ROTOR_CHECK(!values.empty()) << "ShardedAdamW: no parameters";
  dp_size_ = dp ? dp->size() : 1;
  dp_rank_ = dp ? dp->rank() : 0;
  dtype_ = values[0].dtype();
  device_ = values[0].device();
  ROTOR_CHECK(dtype_ == DType::kF32 || dtype_ == DType::kF64)
      << "ShardedAdamW: parameters must be f32 (or f64), got " << dtype_name(dtype_);
  offsets_.push_back(0);
  for (const Tensor& t : values) {
    ROTOR_CHECK(t.dtype() == dtype_) << "ShardedAdamW: parameters of mixed dtypes";
    shapes_.push_back(t.shape());
    offsets_.push_back(offsets_.back() + t.numel());
  }
  total_ = offsets_.back();
  shard_ = (total_ + dp_size_ - 1) / dp_size_;
  begin_ = std::min(total_, dp_rank_ * shard_);
  end_ = std::min(total_, begin_ + shard_);
  MemoryTagScope tag(MemoryTag::kOptimizer);
  m_ = Tensor::zeros({shard_}, dtype_, device_);
  v_ = Tensor::zeros({shard_}, dtype_, device_);
}

void ShardedAdamW::check_params(const std::vector<Tensor>& values, const char* what) const {
  ROTOR_CHECK_EQ(values.size(), shapes_.size())
      << "ShardedAdamW: " << what << ": built for another parameter list";
  for (size_t i = 0; i < values.size(); ++i) {
    ROTOR_CHECK(values[i].shape() == shapes_[i] && values[i].dtype() == dtype_)
        << "ShardedAdamW: " << what << " " << i << " is " << values[i].str() << ", expected "
        << shapes_[i].str();
  }
}

ZeroStepInfo ShardedAdamW::step(const std::vector<Tensor>& values, const std::vector<Tensor>& grads,
                                double lr, double grad_clip, std::optional<double> grad_norm) {
  check_params(values, "parameter");
  check_params(grads, "gradient");
  ZeroStepInfo info;
  // The full gradients are identical on every dp rank (already reduced), so
  // every rank gets the same norm with no communication over dp, in
  // AdamWOptimizer's summation order.
  if (grad_norm.has_value()) {
    info.grad_norm = *grad_norm;
  } else {
    double sq = 0;
    for (const Tensor& g : grads) sq += squared_norm(g);
    info.grad_norm = std::sqrt(sq);
  }
  if (grad_clip > 0 && info.grad_norm > grad_clip) info.clip_scale = grad_clip / info.grad_norm;
  ++step_;

  // Update this rank's range, piece by piece (a piece = one parameter's part of it).
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t lo = std::max(begin_, offsets_[i]), hi = std::min(end_, offsets_[i + 1]);
    if (lo >= hi) continue;
    AdamWHyper hp = hyper_;
    hp.lr = lr;
    if (shapes_[i].ndim() == 1) hp.weight_decay = 0;  // norm weights: no decay
    const int64_t at = lo - offsets_[i], n = hi - lo;
    adamw_step(flat(values[i]).narrow(at, n), flat(grads[i]).narrow(at, n),
               m_.narrow(lo - begin_, n), v_.narrow(lo - begin_, n), step_, hp, info.clip_scale);
  }
  if (dp_size_ == 1) return info;

  // Pack the updated range, gather every rank's, unpack the others' ranges.
  Tensor local = Tensor::zeros({shard_}, dtype_, device_);
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t lo = std::max(begin_, offsets_[i]), hi = std::min(end_, offsets_[i + 1]);
    if (lo >= hi) continue;
    local.narrow(lo - begin_, hi - lo).copy_from(flat(values[i]).narrow(lo - offsets_[i], hi - lo));
  }
  gather_flat(local, values, /*skip_own=*/true);
  return info;
}

void ShardedAdamW::gather_flat(const Tensor& local, const std::vector<Tensor>& full,
                               bool skip_own) const {
  Tensor all;
  if (dp_size_ == 1) {
    all = local;
  } else {
    all = Tensor::empty({static_cast<int64_t>(dp_size_) * shard_}, dtype_, device_);
    dp_->all_gather(local, all);
  }
  for (size_t i = 0; i < full.size(); ++i) {
    const Tensor dst = flat(full[i]);
    int64_t lo = offsets_[i];
    const int64_t hi = offsets_[i + 1];
    while (lo < hi) {
      // Stop at the next owner boundary, so that this rank's own range can be skipped.
      const int64_t owner_end = (lo / shard_ + 1) * shard_;
      const int64_t stop = std::min(hi, owner_end);
      const bool own = lo >= begin_ && lo < end_;
      if (!(skip_own && own)) {
        dst.narrow(lo - offsets_[i], stop - lo).copy_from(all.narrow(lo, stop - lo));
      }
      lo = stop;
    }
  }
}

FullMoments ShardedAdamW::gather_moments() const {
  FullMoments out;
  for (const Shape& s : shapes_) {
    out.first.push_back(Tensor::empty(s, dtype_, device_));
    out.second.push_back(Tensor::empty(s, dtype_, device_));
  }
  gather_flat(m_, out.first, /*skip_own=*/false);
  gather_flat(v_, out.second, /*skip_own=*/false);
  return out;
}

void ShardedAdamW::load_moments(const std::vector<Tensor>& first,
                                const std::vector<Tensor>& second) {
  check_params(first, "first moment");
  check_params(second, "second moment");
  m_.zero();
  v_.zero();
  for (size_t i = 0; i < shapes_.size(); ++i) {
    const int64_t lo = std::max(begin_, offsets_[i]), hi = std::min(end_, offsets_[i + 1]);
    if (lo >= hi) continue;
    const int64_t at = lo - offsets_[i], n = hi - lo;
    m_.narrow(lo - begin_, n).copy_from(flat(first[i]).narrow(at, n));
    v_.narrow(lo - begin_, n).copy_from(flat(second[i]).narrow(at, n));
  }
}

}  // namespace rotor
