#include "model/llama_block.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"
#include "parallel/ring_attention.h"
#include "parallel/tensor_parallel.h"
#include "parallel/ulysses_attention.h"

namespace rotor {

namespace {
// A statistic beside activation x (rstd, attention lse and entropy): f32 when
// the activations are bf16 (kernels/tensor.h: compute_dtype).
Tensor stat_like(const Tensor& x, const Shape& shape) {
  return Tensor::empty(shape, compute_dtype(x.dtype()), x.device());
}
}  // namespace

void norm_backward(const BlockContext& ctx, const Tensor& dy, const Tensor& x, const Tensor& weight,
                   const Tensor& rstd, const Tensor& dx, const Tensor& dweight) {
  if (!(ctx.sp && ctx.tp->size() > 1)) {
    rmsnorm_backward(dy, x, weight, rstd, dx, dweight);
    return;
  }
  // Under SP this rank saw only its rows: its weight gradient is a partial sum.
  Tensor part = Tensor::zeros_like(dweight);
  rmsnorm_backward(dy, x, weight, rstd, dx, part);
  ctx.tp->all_reduce(part);
  add(dweight, part, dweight);
}

void LlamaBlock::forward(const BlockWeights& w, const BlockContext& ctx, const Tensor& q_scale,
                         const Tensor& x, const Tensor& y, BlockActivations& a,
                         Recompute keep, const KvCacheLayer* cache) const {
  const int64_t b = ctx.batch, t = ctx.seq, n = b * t;
  const int64_t d = config_.hidden_size;
  const int64_t hd = config_.resolved_head_dim();
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;
  const int64_t rows = ctx.sp ? n / ctx.tp->size() : n;  // this rank's rows
  ROTOR_CHECK(x.ndim() == 2 && x.dim(0) == rows && x.dim(1) == d)
      << "block " << layer_ << ": x must be [" << rows << ", " << d << "], got " << x.str();

  // Selective recompute's rebuild: the attention output and LSE are kept.
  const bool attention_kept = cache == nullptr && a.attn.defined() && a.lse.defined();
  a.x = x;
  a.rstd1 = stat_like(x, {rows});
  Tensor xn1 = Tensor::empty_like(x, {rows, d});
  rmsnorm_forward(x, w.input_layernorm, config_.rms_norm_eps, xn1, a.rstd1);
  a.xn1 = tp_rows_to_full(ctx.tp, ctx.sp, xn1);  // SP: all-gather before column-parallel q/k/v

  // Projections, then RoPE in place on q and k ([N, H*hd] viewed as [B, T, H, hd]).
  a.q = Tensor::empty_like(x, {b, t, hq, hd});
  a.k = Tensor::empty_like(x, {b, t, hkv, hd});
  a.v = Tensor::empty_like(x, {b, t, hkv, hd});
  matmul(a.xn1, w.q_proj, a.q.view({n, hq * hd}), false, true);
  matmul(a.xn1, w.k_proj, a.k.view({n, hkv * hd}), false, true);
  matmul(a.xn1, w.v_proj, a.v.view({n, hkv * hd}), false, true);
  rope_forward(a.q, ctx.positions, ctx.inv_freq, ctx.attention_factor, q_scale, a.q);
  rope_forward(a.k, ctx.positions, ctx.inv_freq, ctx.attention_factor, Tensor(), a.k);

  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  if (!attention_kept) attend(ctx, cache, a, scale);

  // Row-parallel o_proj: partial sums over tp -> this rank's rows.
  Tensor o_partial = Tensor::empty_like(x, {n, d});
  matmul(a.attn.view({n, hq * hd}), w.o_proj, o_partial, false, true);
  a.h = ctx.sp ? Tensor::empty_like(x, {rows, d}) : o_partial;
  tp_sum_to_rows(ctx.tp, ctx.sp, o_partial, a.h);
  add(a.h, x, a.h);

  a.rstd2 = stat_like(x, {rows});
  Tensor xn2 = Tensor::empty_like(x, {rows, d});
  rmsnorm_forward(a.h, w.post_attention_layernorm, config_.rms_norm_eps, xn2, a.rstd2);
  a.xn2 = tp_rows_to_full(ctx.tp, ctx.sp, xn2);
  if (ctx.sp) {
    Tensor down_partial = Tensor::empty_like(x, {n, d});
    mlp_forward(w, ctx, a, down_partial);
    tp_sum_to_rows(ctx.tp, ctx.sp, down_partial, y);
  } else {
    mlp_forward(w, ctx, a, y);
    tp_sum_to_rows(ctx.tp, ctx.sp, y, y);
  }
  add(y, a.h, y);

  if (keep != Recompute::kNone) {  // keep the input (and the statistics asked for)
    BlockActivations kept;
    kept.x = a.x;
    kept.entropy = a.entropy;
    if (keep == Recompute::kSelective) {
      kept.attn = a.attn;
      kept.lse = a.lse;
    }
    a = kept;
  }
}

void LlamaBlock::attend(const BlockContext& ctx, const KvCacheLayer* cache, BlockActivations& a,
                        double scale) const {
  const int64_t b = a.q.dim(0), t = a.q.dim(1), hq = a.q.dim(2), hd = a.q.dim(3), hkv = a.k.dim(2);
  a.attn = Tensor::empty_like(a.q);
  a.lse = stat_like(a.q, {b, hq, t});
  a.entropy = ctx.attention_entropy ? stat_like(a.q, {b, hq, t}) : Tensor();
  if (cache != nullptr) {
    ROTOR_CHECK(b == 1 && ctx.tp->size() == 1 && ctx.cp->size() == 1)
        << "block " << layer_ << ": a KV cache holds one sequence on one rank";
    const int64_t end = cache->start + t;
    cache->k.narrow(cache->start, t).copy_from(a.k.view({t, hkv, hd}));
    cache->v.narrow(cache->start, t).copy_from(a.v.view({t, hkv, hd}));
    attention_forward(a.q, cache->k.narrow(0, end).view({1, end, hkv, hd}),
                      cache->v.narrow(0, end).view({1, end, hkv, hd}), ctx.mask, scale, a.attn, a.lse,
                      a.entropy);
  } else if (ctx.cp->size() > 1) {
    ulysses_attention_forward(*ctx.ulysses, *ctx.ring, a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, a.entropy);
  } else {
    attention_forward(a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, a.entropy);
  }
}

namespace {
// Rows per MLP tile for n rows: ctx.tile_tokens, or all n.
int64_t mlp_tile(const BlockContext& ctx, int64_t n) {
  return ctx.tile_tokens > 0 && ctx.tile_tokens < n ? ctx.tile_tokens : n;
}
}  // namespace

void LlamaBlock::mlp_forward(const BlockWeights& w, const BlockContext& ctx, BlockActivations& a,
                             const Tensor& out) const {
  const Tensor& xn2 = a.xn2;  // [N, D]
  const int64_t n = xn2.dim(0), f = config_.intermediate_size, tile = mlp_tile(ctx, n);
  Tensor gate = Tensor::empty_like(xn2, {tile, f}), up = Tensor::empty_like(xn2, {tile, f});
  Tensor act = Tensor::empty_like(xn2, {tile, f});
  for (int64_t r0 = 0; r0 < n; r0 += tile) {
    const int64_t m = std::min(tile, n - r0);
    const Tensor g = gate.narrow(0, m), u = up.narrow(0, m), h = act.narrow(0, m);
    matmul(xn2.narrow(r0, m), w.gate_proj, g, false, true);  // [m, F]
    matmul(xn2.narrow(r0, m), w.up_proj, u, false, true);
    swiglu_forward(g, u, h);
    matmul(h, w.down_proj, out.narrow(r0, m), false, true);  // [m, D]
  }
  if (tile == n) {  // one piece: backward reads these instead of recomputing them
    a.gate = gate;
    a.up = up;
    a.act = act;
  }
}

void LlamaBlock::mlp_backward(const BlockWeights& w, const BlockWeights& g, const BlockContext& ctx,
                              const BlockActivations& a, const Tensor& dy_full, const Tensor& dxn2) const {
  const Tensor& xn2 = a.xn2;  // [N, D]
  const int64_t n = xn2.dim(0), f = config_.intermediate_size;
  const bool kept = a.gate.defined();
  const int64_t tile = kept ? n : mlp_tile(ctx, n);
  Tensor gate = kept ? a.gate : Tensor::empty_like(xn2, {tile, f});
  Tensor up = kept ? a.up : Tensor::empty_like(xn2, {tile, f});
  Tensor act = kept ? a.act : Tensor::empty_like(xn2, {tile, f});
  Tensor dact = Tensor::empty_like(dy_full, {tile, f});
  Tensor dgate = Tensor::empty_like(dy_full, {tile, f}), dup = Tensor::empty_like(dy_full, {tile, f});
  for (int64_t r0 = 0; r0 < n; r0 += tile) {
    const int64_t m = std::min(tile, n - r0);
    const Tensor x_t = xn2.narrow(r0, m), dy_t = dy_full.narrow(r0, m), dx_t = dxn2.narrow(r0, m);
    const Tensor gt = gate.narrow(0, m), ut = up.narrow(0, m), ht = act.narrow(0, m);
    if (!kept) {  // this tile's intermediates again
      matmul(x_t, w.gate_proj, gt, false, true);
      matmul(x_t, w.up_proj, ut, false, true);
      swiglu_forward(gt, ut, ht);
    }
    const Tensor da = dact.narrow(0, m), dg = dgate.narrow(0, m), du = dup.narrow(0, m);
    matmul(dy_t, w.down_proj, da);                          // [m, F]
    matmul(dy_t, ht, g.down_proj, true, false, 1.0, 1.0);  // dWd += dy^T act
    swiglu_backward(da, gt, ut, dg, du);
    // Column-parallel gate/up: the input gradient is a partial sum over tp.
    matmul(dg, w.gate_proj, dx_t);
    matmul(du, w.up_proj, dx_t, false, false, 1.0, 1.0);
    matmul(dg, x_t, g.gate_proj, true, false, 1.0, 1.0);
    matmul(du, x_t, g.up_proj, true, false, 1.0, 1.0);
  }
}

void LlamaBlock::backward(const BlockWeights& w, const BlockWeights& g, const BlockContext& ctx,
                          const Tensor& q_scale, BlockActivations& a, const Tensor& dy,
                          const Tensor& dx) const {
  if (!a.xn1.defined()) {  // recompute: rebuild the activations from the saved input
    Tensor y = Tensor::empty_like(a.x);
    forward(w, ctx, q_scale, a.x, y, a, Recompute::kNone);
  }
  const int64_t b = ctx.batch, t = ctx.seq, n = b * t;
  const int64_t d = config_.hidden_size;
  const int64_t hd = config_.resolved_head_dim();
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;

  const bool sp = ctx.sp;
  const int64_t rows = sp ? n / ctx.tp->size() : n;
  // MLP: y = h + act Wd^T. Under SP the row-parallel output's gradient is gathered.
  const Tensor dy_full = tp_rows_to_full(ctx.tp, ctx.sp, dy);
  Tensor dxn2_partial = Tensor::empty_like(dy, {n, d});
  mlp_backward(w, g, ctx, a, dy_full, dxn2_partial);
  Tensor dxn2 = sp ? Tensor::empty_like(dy, {rows, d}) : dxn2_partial;
  tp_sum_to_rows(ctx.tp, ctx.sp, dxn2_partial, dxn2);
  Tensor dh = Tensor::empty_like(dy, {rows, d});
  norm_backward(ctx, dxn2, a.h, w.post_attention_layernorm, a.rstd2, dh, g.post_attention_layernorm);
  add(dh, dy, dh);  // residual

  // Attention: h = x + attn Wo^T
  const Tensor dh_full = tp_rows_to_full(ctx.tp, ctx.sp, dh);
  Tensor dattn = Tensor::empty_like(dy, {b, t, hq, hd});
  matmul(dh_full, w.o_proj, dattn.view({n, hq * hd}));
  matmul(dh_full, a.attn.view({n, hq * hd}), g.o_proj, true, false, 1.0, 1.0);
  Tensor dq = Tensor::zeros_like(dy, {b, t, hq, hd});
  Tensor dk = Tensor::zeros_like(dy, {b, t, hkv, hd});
  Tensor dv = Tensor::zeros_like(dy, {b, t, hkv, hd});
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  if (ctx.cp->size() > 1) {
    ulysses_attention_backward(*ctx.ulysses, *ctx.ring, a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, dattn, dq,
                               dk, dv);
  } else {
    attention_backward(a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, dattn, dq, dk, dv);
  }
  rope_backward(dq, ctx.positions, ctx.inv_freq, ctx.attention_factor, q_scale, dq);
  rope_backward(dk, ctx.positions, ctx.inv_freq, ctx.attention_factor, Tensor(), dk);
  const Tensor dq2 = dq.view({n, hq * hd}), dk2 = dk.view({n, hkv * hd}),
               dv2 = dv.view({n, hkv * hd});
  Tensor dxn1_partial = Tensor::empty_like(dy, {n, d});
  matmul(dq2, w.q_proj, dxn1_partial);
  matmul(dk2, w.k_proj, dxn1_partial, false, false, 1.0, 1.0);
  matmul(dv2, w.v_proj, dxn1_partial, false, false, 1.0, 1.0);
  matmul(dq2, a.xn1, g.q_proj, true, false, 1.0, 1.0);
  if (ctx.kv_replicas->size() > 1) {
    // Replicated kv head: each rank saw only its query heads' share of it.
    Tensor gk = Tensor::empty_like(g.k_proj), gv = Tensor::empty_like(g.v_proj);
    matmul(dk2, a.xn1, gk, true, false);
    matmul(dv2, a.xn1, gv, true, false);
    ctx.kv_replicas->all_reduce(gk);
    ctx.kv_replicas->all_reduce(gv);
    add(g.k_proj, gk, g.k_proj);
    add(g.v_proj, gv, g.v_proj);
  } else {
    matmul(dk2, a.xn1, g.k_proj, true, false, 1.0, 1.0);
    matmul(dv2, a.xn1, g.v_proj, true, false, 1.0, 1.0);
  }
  Tensor dxn1 = sp ? Tensor::empty_like(dy, {rows, d}) : dxn1_partial;
  tp_sum_to_rows(ctx.tp, ctx.sp, dxn1_partial, dxn1);
  norm_backward(ctx, dxn1, a.x, w.input_layernorm, a.rstd1, dx, g.input_layernorm);
  add(dx, dh, dx);  // residual
}

}  // namespace rotor
