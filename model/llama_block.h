// One Llama decoder block with explicit forward and backward:
//
//   xn1  = RMSNorm(x) * input_layernorm
//   q, k, v = xn1 Wq^T, xn1 Wk^T, xn1 Wv^T          (heads: Hq, Hkv; GQA)
//   q'   = RoPE(q) * logit_scale(layer, position)    (scalar fused into RoPE)
//   k'   = RoPE(k)
//   a    = causal attention(q', k', v), softmax scale 1/sqrt(head_dim)
//   h    = x + a Wo^T
//   xn2  = RMSNorm(h) * post_attention_layernorm
//   y    = h + down(silu(xn2 Wg^T) * (xn2 Wu^T))
//
// Tokens are flattened: N = B * T rows of width D = hidden_size. forward()
// keeps what backward needs (or only x when recompute is on, re-running the
// forward inside backward). Parameter gradients accumulate (+=); activation
// gradients are returned fresh.
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/tensor.h"
#include "model/config.h"
#include "parallel/communicator.h"

namespace rotor {

// Views of one block's parameters (or of their gradients); HF shapes.
struct BlockWeights {
  Tensor input_layernorm;           // [D]
  Tensor q_proj;                    // [Hq * hd, D]
  Tensor k_proj;                    // [Hkv * hd, D]
  Tensor v_proj;                    // [Hkv * hd, D]
  Tensor o_proj;                    // [D, Hq * hd]
  Tensor post_attention_layernorm;  // [D]
  Tensor gate_proj;                 // [F, D]
  Tensor up_proj;                   // [F, D]
  Tensor down_proj;                 // [D, F]
};

// Per-call inputs shared by every block of a forward pass.
struct BlockContext {
  int64_t batch = 0;         // B
  int64_t seq = 0;           // T
  Tensor positions;          // [B, T] i32 global positions
  AttentionMask mask;        // positions (and segment ids) for attention
  Tensor inv_freq;           // [hd / 2] f32
  double attention_factor = 1.0;
  // Communicators, never null (one rank: no parallelism on that axis).
  Communicator* cp = nullptr;  // context-parallel ring; one rank: local attention
  Communicator* tp = nullptr;  // tensor-parallel group (parallel/tensor_parallel.h)
  bool sp = false;             // sequence parallel (tp > 1 only): x, h, y hold rows [N/tp) of this rank
  // kv heads replicated over tp: the ranks holding this rank's kv head, over
  // which the k/v weight gradients (each rank's query heads' share) are summed.
  Communicator* kv_replicas = nullptr;
  // Evaluation: also compute the entropy of every query's attention row.
  bool attention_entropy = false;
};

// What backward needs from forward. All [N, ...] with N = B * T.
struct BlockActivations {
  Tensor x;         // [N, D] block input ([N/tp, D] under SP, as h, rstd1, rstd2)
  Tensor rstd1;     // [N]
  Tensor xn1;       // [N, D] (all rows: gathered under SP)
  Tensor q;         // [B, T, Hq, hd] after RoPE and the logit scalar
  Tensor k;         // [B, T, Hkv, hd] after RoPE
  Tensor v;         // [B, T, Hkv, hd]
  Tensor attn;      // [B, T, Hq, hd]
  Tensor lse;       // [B, Hq, T]
  Tensor entropy;   // [B, Hq, T] -sum_j p_j ln p_j per query row (ctx.attention_entropy only)
  Tensor h;         // [N, D] residual after attention
  Tensor rstd2;     // [N]
  Tensor xn2;       // [N, D]
  Tensor gate;      // [N, F]
  Tensor up;        // [N, F]
  Tensor act;       // [N, F] silu(gate) * up
};

// Decoding with a KV cache (model/decode.h): one layer's keys and values of a
// single sequence, [capacity, Hkv, hd] each, rows [0, start) filled by earlier
// calls. A forward() given the cache writes its T new rows (k after RoPE) at
// [start, start + T) and attends to rows [0, start + T), whose positions
// ctx.mask.k_pos [1, start + T] must give. One rank, batch 1.
struct KvCacheLayer {
  Tensor k, v;
  int64_t start = 0;
};

// With tensor parallelism the block is built with its rank's share of the
// config (num_attention_heads, num_key_value_heads and intermediate_size
// divided by tp, head_dim explicit) and holds that share of the weights;
// ctx.tp and ctx.sp say where the partial sums are combined. The x, y, dy, dx
// of forward/backward are [N, D], or [N/tp, D] (this rank's rows) under SP.
// RMSNorm backward (dweight +=); under sequence parallelism the weight
// gradient of this rank's rows is summed over tp first.
void norm_backward(const BlockContext& ctx, const Tensor& dy, const Tensor& x, const Tensor& weight,
                   const Tensor& rstd, const Tensor& dx, const Tensor& dweight);

class LlamaBlock {
 public:
  LlamaBlock(const LlamaConfig& config, int64_t layer) : config_(config), layer_(layer) {}

  // y [N, D] (=). q_scale: [B, T] query multiplier of this layer, or undefined.
  // Fills `acts` (all of it, or only acts.x when keep_all is false). With a
  // `cache`, attention reads earlier tokens' keys and values from it.
  void forward(const BlockWeights& w, const BlockContext& ctx, const Tensor& q_scale,
               const Tensor& x, const Tensor& y, BlockActivations& acts, bool keep_all,
               const KvCacheLayer* cache = nullptr) const;

  // dy [N, D] -> dx [N, D] (=); accumulates into grads. If `acts` holds only
  // x (recompute), the forward is re-run first.
  void backward(const BlockWeights& w, const BlockWeights& grads, const BlockContext& ctx,
                const Tensor& q_scale, BlockActivations& acts, const Tensor& dy,
                const Tensor& dx) const;

 private:
  LlamaConfig config_;
  int64_t layer_;
};

}  // namespace rotor
