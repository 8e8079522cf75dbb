#include "parallel/tensor_parallel.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/check.h"
#include "kernels/elementwise.h"
#include "kernels/vocab_slice.h"

namespace rotor {

namespace {
bool active(Communicator* tp) { return tp != nullptr && tp->size() > 1; }
}  // namespace

Tensor tp_rows_to_full(Communicator* tp, bool sp, const Tensor& local) {
  if (!active(tp) || !sp) return local;
  Tensor full = Tensor::empty({local.dim(0) * tp->size(), local.dim(1)}, local.dtype(), local.device());
  tp->all_gather(local, full);
  return full;
}

void tp_sum_to_rows(Communicator* tp, bool sp, const Tensor& partial, const Tensor& local) {
  if (!active(tp)) {
    if (!local.same_data(partial)) local.copy_from(partial);
    return;
  }
  if (partial.dtype() == DType::kBF16) {
    // bf16 partial sums are added in f32 (so tp adds no rounding of its own,
    // and MPI cannot reduce bf16): through f32 copies, rounded once at the end.
    const Tensor wide = Tensor::empty(partial.shape(), DType::kF32, partial.device());
    wide.copy_from(partial);
    const Tensor wide_local = sp ? Tensor::empty(local.shape(), DType::kF32, local.device()) : wide;
    tp_sum_to_rows(tp, sp, wide, wide_local);
    local.copy_from(wide_local);
    return;
  }
  if (sp) {
    tp->reduce_scatter(partial, const_cast<Tensor&>(local));
  } else {
    ROTOR_CHECK(local.same_data(partial)) << "tp_sum_to_rows without SP reduces in place";
    tp->all_reduce(const_cast<Tensor&>(partial));
  }
}


Tensor tp_gather_whole(Communicator* tp, const Tensor& shard, int shard_dim, int replicas) {
  if (!active(tp) || shard_dim < 0) return shard;
  const int64_t rows = shard.dim(0), cols = shard.dim(1);
  Tensor stacked = Tensor::empty({rows * tp->size(), cols}, shard.dtype(), shard.device());  // rank-major
  tp->all_gather(shard, stacked);
  const int n = tp->size() / replicas;  // distinct shards
  if (replicas > 1) {  // keep the first rank of each group of replicas
    Tensor distinct = Tensor::empty({rows * n, cols}, shard.dtype(), shard.device());
    for (int r = 0; r < n; ++r) distinct.narrow(r * rows, rows).copy_from(stacked.narrow(r * replicas * rows, rows));
    stacked = distinct;
  }
  if (shard_dim == 0) return stacked;
  // Columns: rank r's [rows, cols] block goes to columns [r cols, (r + 1) cols).
  Tensor whole = Tensor::empty({rows, cols * n}, shard.dtype(), shard.device());
  for (int r = 0; r < n; ++r) copy_columns(stacked.narrow(r * rows, rows), 0, whole, r * cols, cols);
  return whole;
}

Tensor tp_shard_of(const Tensor& whole, int shard_dim, int tp, int rank, int replicas) {
  tp /= replicas;
  rank /= replicas;
  if (shard_dim < 0 || tp == 1) return whole;
  ROTOR_CHECK(whole.ndim() == 2 && whole.dim(shard_dim) % tp == 0)
      << "tensor-parallel shard: " << whole.str() << " does not split " << tp << " ways along dim "
      << shard_dim;
  if (shard_dim == 0) return whole.narrow(whole.dim(0) / tp * rank, whole.dim(0) / tp).clone();
  const int64_t rows = whole.dim(0), cols = whole.dim(1) / tp;
  Tensor out = Tensor::empty({rows, cols}, whole.dtype(), whole.device());
  copy_columns(whole, rank * cols, out, 0, cols);
  return out;
}

void vocab_parallel_cross_entropy(Communicator* tp, const Tensor& h, const Tensor& w,
                                  int64_t vocab_start, int64_t vocab_size, const Tensor& targets,
                                  const Tensor& loss, const Tensor& lse, const Tensor& dloss,
                                  const Tensor& dh, const Tensor& dw, CrossEntropyChunks chunks) {
  const int64_t n = h.dim(0);
  if (!active(tp)) {
    cross_entropy_forward(h, w, targets, loss, lse, chunks);
    if (dloss.defined()) cross_entropy_backward(h, w, targets, lse, dloss, dh, dw, chunks);
    return;
  }
  // This slice's lse and (lse_slice - target logit, or lse_slice); then the
  // whole row's lse from the slices' (kernels/vocab_slice.h), all on the device.
  cross_entropy_forward(h, w, targets, loss, lse, chunks, vocab_start, vocab_size);
  Tensor mx = lse.clone(), sums = Tensor::empty_like(lse, {2 * n});
  tp->all_reduce(mx, ReduceOp::kMax);
  cross_entropy_slice_partials(lse, loss, targets, vocab_start, w.dim(0), mx, sums);
  tp->all_reduce(sums);
  cross_entropy_slice_combine(mx, sums, targets, lse, loss);
  if (dloss.defined())
    cross_entropy_backward(h, w, targets, lse, dloss, dh, dw, chunks, vocab_start, vocab_size);
}

}  // namespace rotor
