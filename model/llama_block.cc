#include "model/llama_block.h"

#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"
#include "parallel/ring_attention.h"
#include "parallel/tensor_parallel.h"

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
                         bool keep_all, const KvCacheLayer* cache) const {
  const int64_t b = ctx.batch, t = ctx.seq, n = b * t;
  const int64_t d = config_.hidden_size, f = config_.intermediate_size;
  const int64_t hd = config_.resolved_head_dim();
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;
  const int64_t rows = ctx.sp ? n / ctx.tp->size() : n;  // this rank's rows
  ROTOR_CHECK(x.ndim() == 2 && x.dim(0) == rows && x.dim(1) == d)
      << "block " << layer_ << ": x must be [" << rows << ", " << d << "], got " << x.str();

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

  a.attn = Tensor::empty_like(x, {b, t, hq, hd});
  a.lse = stat_like(x, {b, hq, t});
  a.entropy = ctx.attention_entropy ? stat_like(x, {b, hq, t}) : Tensor();
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
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
    ring_attention_forward(*ctx.cp, a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, a.entropy);
  } else {
    attention_forward(a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, a.entropy);
  }

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
  a.gate = Tensor::empty_like(x, {n, f});
  a.up = Tensor::empty_like(x, {n, f});
  matmul(a.xn2, w.gate_proj, a.gate, false, true);
  matmul(a.xn2, w.up_proj, a.up, false, true);
  a.act = Tensor::empty_like(x, {n, f});
  swiglu_forward(a.gate, a.up, a.act);
  if (ctx.sp) {
    Tensor down_partial = Tensor::empty_like(x, {n, d});
    matmul(a.act, w.down_proj, down_partial, false, true);
    tp_sum_to_rows(ctx.tp, ctx.sp, down_partial, y);
  } else {
    matmul(a.act, w.down_proj, y, false, true);
    tp_sum_to_rows(ctx.tp, ctx.sp, y, y);
  }
  add(y, a.h, y);

  if (!keep_all) {  // recompute: keep the input (and the statistics asked for)
    Tensor input = a.x, entropy = a.entropy;
    a = BlockActivations();
    a.x = input;
    a.entropy = entropy;
  }
}

void LlamaBlock::backward(const BlockWeights& w, const BlockWeights& g, const BlockContext& ctx,
                          const Tensor& q_scale, BlockActivations& a, const Tensor& dy,
                          const Tensor& dx) const {
  if (!a.xn1.defined()) {  // recompute: rebuild the activations from the saved input
    Tensor y = Tensor::empty_like(a.x);
    forward(w, ctx, q_scale, a.x, y, a, /*keep_all=*/true);
  }
  const int64_t b = ctx.batch, t = ctx.seq, n = b * t;
  const int64_t d = config_.hidden_size, f = config_.intermediate_size;
  const int64_t hd = config_.resolved_head_dim();
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;

  const bool sp = ctx.sp;
  const int64_t rows = sp ? n / ctx.tp->size() : n;
  // MLP: y = h + act Wd^T. Under SP the row-parallel output's gradient is gathered.
  const Tensor dy_full = tp_rows_to_full(ctx.tp, ctx.sp, dy);
  Tensor dact = Tensor::empty_like(dy, {n, f});
  matmul(dy_full, w.down_proj, dact);                          // [N, F]
  matmul(dy_full, a.act, g.down_proj, true, false, 1.0, 1.0);  // dWd += dy^T act
  Tensor dgate = Tensor::empty_like(dy, {n, f}), dup = Tensor::empty_like(dy, {n, f});
  swiglu_backward(dact, a.gate, a.up, dgate, dup);
  // Column-parallel gate/up: the input gradient is a partial sum over tp.
  Tensor dxn2_partial = Tensor::empty_like(dy, {n, d});
  matmul(dgate, w.gate_proj, dxn2_partial);
  matmul(dup, w.up_proj, dxn2_partial, false, false, 1.0, 1.0);
  matmul(dgate, a.xn2, g.gate_proj, true, false, 1.0, 1.0);
  matmul(dup, a.xn2, g.up_proj, true, false, 1.0, 1.0);
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
    ring_attention_backward(*ctx.cp, a.q, a.k, a.v, ctx.mask, scale, a.attn, a.lse, dattn, dq, dk, dv);
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
