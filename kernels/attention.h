// Blockwise causal attention with GQA, global positions and document masking.
//
// One call computes attention of a block of queries against a block of keys.
// Blocks carry the *global* positions of their tokens, so the same kernel
// serves a whole sequence, one step of ring attention (a query chunk against a
// K/V chunk that came from another rank, e.g. the zigzag pair r and 2cp-1-r),
// and a decode step against a KV cache.
//
// Shapes (B = batch, Tq/Tk = tokens in the block, Hq/Hkv = heads, D = head dim):
//   q        [B, Tq, Hq, D]
//   k, v     [B, Tk, Hkv, D]        Hq % Hkv == 0; query head h reads kv head h / (Hq / Hkv)
//   q_pos    [B, Tq] i32            global position of each query token
//   k_pos    [B, Tk] i32            global position of each key token
//   q_seg    [B, Tq] i32 (optional) document id of each query token
//   k_seg    [B, Tk] i32 (optional) document id of each key token
//   out      [B, Tq, Hq, D]
//   lse      [B, Hq, Tq]            log-sum-exp of the scaled logits of the row
//   entropy  [B, Hq, Tq] (optional) -sum_j p_j ln p_j of the row's distribution
// Dtypes (kernels/tensor.h): q, k, v, out, dout, dq, dk, dv share one storage
// dtype, f32 or bf16 (f64 on the CPU, for gradient checks); lse and entropy
// are in its compute dtype: f32 for f32 and bf16, f64 for f64. A bf16 lse is
// refused (CHECK): every recomputed p = exp(s - lse) would carry its rounding
// error, up to |lse| 2^-8, as a relative error. Math runs in the compute
// dtype (bf16 loaded to f32, outputs rounded to nearest even once).
//
// Visibility: key j is visible to query i iff (!causal || k_pos[j] <= q_pos[i])
// and (no segment ids || q_seg[i] == k_seg[j]). Logits are scale * q.k.
// A query row that sees no key in this block gets out = 0, lse = -inf,
// entropy = 0: the identity element of attention_merge.
#pragma once

#include "kernels/tensor.h"

namespace rotor {

struct AttentionMask {
  Tensor q_pos;  // [B, Tq] i32
  Tensor k_pos;  // [B, Tk] i32
  Tensor q_seg;  // [B, Tq] i32, or undefined: one document
  Tensor k_seg;  // [B, Tk] i32, or undefined
  bool causal = true;
};

// Writes (=) out, lse and, if defined, entropy.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionMask& mask, double scale, const Tensor& out,
                       const Tensor& lse, const Tensor& entropy = Tensor());

// Gradients of one block pair, given the *final* out and lse of the query rows
// (after merging every key block), exactly as ring attention's backward needs:
//   p_ij  = exp(scale * q_i.k_j - lse_i)          (visible pairs only)
//   dv_j += sum_i p_ij dout_i
//   ds_ij = p_ij (dout_i.v_j - dout_i.out_i)
//   dq_i += scale sum_j ds_ij k_j,   dk_j += scale sum_i ds_ij q_i
// Accumulates (+=) into dq [B, Tq, Hq, D], dk and dv [B, Tk, Hkv, D], so the
// caller zeroes them once and sums over key blocks (dq) or query blocks (dk, dv).
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionMask& mask, double scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const Tensor& dq,
                        const Tensor& dk, const Tensor& dv);

// Merges the partial result of one more key block into an accumulator, by
// log-sum-exp: out_acc and out_blk in the storage dtype (f32, bf16; f64 on
// the CPU), lse_* and entropy_* in its compute dtype (f32 for bf16 out), the
// math in the compute dtype:
//   lse   = logaddexp(lse_acc, lse_blk)
//   out   = exp(lse_acc - lse) out_acc + exp(lse_blk - lse) out_blk
//   entropy (if both defined) = lse - sum_b exp(lse_b - lse) (lse_b - H_b)
// Rows where both LSEs are -inf stay out = 0, lse = -inf, entropy = 0; equal
// and very negative LSEs are handled without overflow or NaN.
// Updates out_acc [B, Tq, Hq, D], lse_acc [B, Hq, Tq] and entropy_acc in place.
void attention_merge(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                     const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk);

}  // namespace rotor
