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
// keeps what backward needs, as the Recompute mode says (below), and
// backward re-runs what was not kept. Parameter gradients accumulate (+=);
// activation gradients are returned fresh.
//
// Sequence-tiled MLP (BlockContext::tile_tokens < N): the MLP runs over row
// tiles of xn2, so its [rows, F] intermediates (gate, up, silu(gate) * up)
// exist for one tile at a time, in forward and backward, instead of three
// [N, F] tensors per layer (ALST, arXiv 2506.13996; MsT). Backward recomputes
// each tile's gate and up from xn2 (2 of the MLP's 9 GEMMs again). Rows are
// independent, so outputs and input gradients are the untiled ones; the
// weight gradients are sums over tiles, the same terms in another order.
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/tensor.h"
#include "model/config.h"
#include "parallel/communicator.h"

namespace rotor {

// What a block's forward keeps for backward:
//   kNone       everything (the fastest backward)
//   kFull       the block input x only; backward re-runs the whole forward
//   kSelective  x, the attention output and its log-sum-exp; backward re-runs
//               the norms, projections, RoPE and MLP but not attention, the
//               one cost that grows with T^2 (DistFlashAttn's
//               rematerialisation-aware checkpointing)
// (and the attention entropy in every mode, when evaluation asks for it).
enum class Recompute { kNone, kFull, kSelective };

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
  Communicator* cp = nullptr;  // context-parallel group; one rank: local attention
  // Inside cp (parallel/ulysses_attention.h): the all-to-all group and the
  // ring; one rank and cp itself without Ulysses. Never null when cp is.
  Communicator* ulysses = nullptr;
  Communicator* ring = nullptr;
  Communicator* tp = nullptr;  // tensor-parallel group (parallel/tensor_parallel.h)
  bool sp = false;             // sequence parallel (tp > 1 only): x, h, y hold rows [N/tp) of this rank
  // kv heads replicated over tp: the ranks holding this rank's kv head, over
  // which the k/v weight gradients (each rank's query heads' share) are summed.
  Communicator* kv_replicas = nullptr;
  // Evaluation: also compute the entropy of every query's attention row.
  bool attention_entropy = false;
  // Rows of the MLP's tiles (see the top); 0 or >= N: the MLP in one piece.
  int64_t tile_tokens = 0;
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
  Tensor gate;      // [N, F] (untiled MLP only; tiles recompute theirs)
  Tensor up;        // [N, F]
  Tensor act;       // [N, F] silu(gate) * up
};

// Calls f(tensor) for every tensor field of `a` that a backward may read
// (all but entropy, an evaluation statistic), defined or not.
template <class F>
void for_each_saved(BlockActivations& a, F f) {
  for (Tensor* t : {&a.x, &a.rstd1, &a.xn1, &a.q, &a.k, &a.v, &a.attn, &a.lse, &a.h, &a.rstd2, &a.xn2, &a.gate,
                    &a.up, &a.act})
    f(*t);
}

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
  // Fills `acts` with what `keep` says. With a `cache`, attention reads
  // earlier tokens' keys and values from it. When `acts` arrives holding an
  // attention output and LSE (selective recompute's), attention is not run
  // again: they are used as they are.
  void forward(const BlockWeights& w, const BlockContext& ctx, const Tensor& q_scale,
               const Tensor& x, const Tensor& y, BlockActivations& acts, Recompute keep,
               const KvCacheLayer* cache = nullptr) const;

  // dy [N, D] -> dx [N, D] (=); accumulates into grads. What `acts` lacks
  // (kFull, kSelective) is rebuilt by a forward first.
  void backward(const BlockWeights& w, const BlockWeights& grads, const BlockContext& ctx,
                const Tensor& q_scale, BlockActivations& acts, const Tensor& dy,
                const Tensor& dx) const;

 private:
  // Attention of a.q, a.k, a.v (or of the cache) into a.attn, a.lse (and
  // a.entropy when ctx asks): Ulysses x ring attention over ctx.cp, else local.
  void attend(const BlockContext& ctx, const KvCacheLayer* cache, BlockActivations& a, double scale) const;
  // The MLP of forward: xn2 [N, D] -> out [N, D] (=), this rank's partial
  // sum under tp; keeps gate/up/act in `a` when untiled.
  void mlp_forward(const BlockWeights& w, const BlockContext& ctx, BlockActivations& a, const Tensor& out) const;
  // Its backward: dy_full [N, D] -> dxn2 partial [N, D] (=), weight
  // gradients (+=); recomputes each tile's intermediates when not kept.
  void mlp_backward(const BlockWeights& w, const BlockWeights& g, const BlockContext& ctx, const BlockActivations& a,
                    const Tensor& dy_full, const Tensor& dxn2) const;

  LlamaConfig config_;
  int64_t layer_;
};

}  // namespace rotor
