// Tensor and sequence parallelism (Megatron-LM: Shoeybi et al. 2019;
// Korthikanti et al. 2022), the communication at the boundaries of the layers.
//
// Over the tp ranks of a group, a block's weights are split by heads and by
// FFN columns:
//   q, k, v, gate, up   column-parallel: rank i holds rows [i, i+1) * out/tp
//                       (q: Hq/tp heads, k/v: Hkv/tp heads, gate/up: F/tp)
//   o, down             row-parallel: rank i holds columns [i, i+1) * in/tp
// so attention and the SwiGLU run on local heads / columns with no
// communication, and o/down produce partial sums of the full output.
//
// Without sequence parallelism the block input x [N, D] is replicated on the
// tp ranks; the partial outputs are all-reduced (Megatron's g; its conjugate f
// all-reduces the input gradients of the column-parallel layers in backward).
// With sequence parallelism the residual stream and the norms are split by
// rows: rank i holds rows [i, i+1) * N/tp; before a column-parallel layer the
// normed input is all-gathered (forward) / reduce-scattered (backward), after
// a row-parallel layer the partial sums are reduce-scattered (forward) /
// the gradient all-gathered (backward). Same bytes as the all-reduces (an
// all-reduce is a reduce-scatter plus an all-gather), 1/tp of the activation
// memory for the norms and residuals. Norm weights are replicated; under SP
// each rank's gradient covers only its rows and is summed over tp.
//
// The vocabulary (embedding and LM head) is split by rows: rank i holds ids
// [i, i+1) * V/tp. The embedding looks up only its own ids (zeros elsewhere)
// and the partial rows are summed like a row-parallel output. The loss
// combines the slices' log-sum-exps, so no rank ever holds all V logits.
//
// Every function takes tp == nullptr (or one rank) as "no tensor parallelism":
// then gather/scatter are copies and reductions do nothing.
#pragma once

#include <cstdint>

#include "kernels/cross_entropy.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

// The rows [N, D] of the whole group from this rank's rows (SP: all_gather;
// else `local` itself, which already holds every row).
Tensor tp_rows_to_full(Communicator* tp, bool sp, const Tensor& local);

// Sums partial results [N, D] over the group into this rank's rows: SP:
// reduce_scatter into `local` [N/tp, D]; else all_reduce of `partial` in place
// and `local` must be `partial` itself (same storage).
void tp_sum_to_rows(Communicator* tp, bool sp, const Tensor& partial, const Tensor& local);


// Checkpoints hold whole tensors (global shapes), so any layout can resume
// any other. tp_gather_whole: every tp rank gets the whole [R, C] tensor from
// the shards split along shard_dim (0 or 1; -1: `shard` is already whole).
// tp_shard_of: rank `rank`'s part of a whole tensor.
// `replicas` > 1: consecutive groups of that many tp ranks hold the same shard.
Tensor tp_gather_whole(Communicator* tp, const Tensor& shard, int shard_dim, int replicas = 1);
Tensor tp_shard_of(const Tensor& whole, int shard_dim, int tp, int rank, int replicas = 1);

// Vocabulary-parallel embedding: kernels/vocab_slice.h (embedding_slice_*);
// the partial rows are summed over tp with tp_sum_to_rows.

// Cross-entropy of h [N, D] (every rank: the same full rows) against the LM
// head sliced by vocabulary (w [Vl, D] = rows [vocab_start, +Vl) of V):
//   lse_n  = log sum_i exp(lse_slice_i)     (all-reduce max, then sum)
//   loss_n = lse_n - logit[target_n]        (the slice holding it contributes it)
// loss and lse (=) are the whole row's, identical on every rank. If dloss is
// defined, also dh (=): this rank's partial input gradient (to be summed over
// tp, tp_sum_to_rows) and dw (+=) for its slice. Ignored targets (< 0) give 0.
void vocab_parallel_cross_entropy(Communicator* tp, const Tensor& h, const Tensor& w,
                                  int64_t vocab_start, int64_t vocab_size, const Tensor& targets,
                                  const Tensor& loss, const Tensor& lse, const Tensor& dloss,
                                  const Tensor& dh, const Tensor& dw, CrossEntropyChunks chunks);

}  // namespace rotor
