// The vocabulary-parallel embedding and cross-entropy pieces that run on the
// device (parallel/tensor_parallel.h combines them with collectives). A rank
// holds rows [vocab_start, vocab_start + V_s) of the [V, D] table; ids are ids
// of the whole vocabulary.
//
// embedding_slice_forward:   out[n] (=) table[ids[n] - vocab_start] when the id
//                            is in the slice, else 0        ids [N] i32, out [N, D]
// embedding_slice_backward:  dtable[ids[n] - vocab_start] (+=) dout[n] for ids in
//                            the slice                      dout [N, D]
//
// Cross-entropy over slices: cross_entropy_forward with vocab_size > 0 gives
// each slice's lse_s and loss_s (kernels/cross_entropy.h). With m = the max of
// lse_s over the slices (an all_reduce max of a copy of lse_s):
// cross_entropy_slice_partials writes
//   sums[i]     = exp(lse_s[i] - m[i])   (0 where m[i] is not finite)
//   sums[N + i] = lse_s[i] - loss_s[i] = the target's logit, where the target
//                 is in this slice; else 0
// and after sums is summed over the slices, cross_entropy_slice_combine
// writes the whole row's values:
//   lse[i]  = m[i] + log(sums[i])
//   loss[i] = lse[i] - sums[N + i], or 0 where targets[i] < 0.
// lse, loss, max_lse [N] and sums [2N] share one float dtype (f32 in
// training: the log-sum-exp is never bf16); arithmetic in f64 on the CPU.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor {

void embedding_slice_forward(const Tensor& ids, const Tensor& table, int64_t vocab_start, const Tensor& out);
void embedding_slice_backward(const Tensor& ids, const Tensor& dout, int64_t vocab_start, const Tensor& dtable);

void cross_entropy_slice_partials(const Tensor& lse, const Tensor& loss, const Tensor& targets,
                                  int64_t vocab_start, int64_t vocab_rows, const Tensor& max_lse,
                                  const Tensor& sums);
void cross_entropy_slice_combine(const Tensor& max_lse, const Tensor& sums, const Tensor& targets,
                                 const Tensor& lse, const Tensor& loss);

}  // namespace rotor
