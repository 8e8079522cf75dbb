// Tensor-level CUDA ops: argument checks, then the launchers of launch.h on
// the device's compute stream. See ops.h.
#include "kernels/cuda/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fault.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/matmul.h"

namespace rotor::cuda {
namespace {

Float float_of(const Tensor& t, const char* op) {
  ROTOR_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16)
      << op << ": the CUDA ops compute on f32 or bf16 tensors, got " << t.str();
  return t.dtype() == DType::kF32 ? Float::kF32 : Float::kBF16;
}

// Every defined tensor of `ts` on the GPU of the first; returns its index.
int check_on_device(std::initializer_list<const Tensor*> ts, const char* op) {
  const Tensor& first = **ts.begin();
  ROTOR_CHECK(first.defined() && first.device().is_cuda()) << op << ": expected a GPU tensor, got " << first.str();
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    ROTOR_CHECK(t->device() == first.device())
        << op << ": tensors on different devices: " << first.str() << " and " << t->str();
  }
  return first.device().index;
}

void check_same_float(std::initializer_list<const Tensor*> ts, const char* op) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    ROTOR_CHECK(t->dtype() == first.dtype()) << op << ": dtypes differ: " << first.str() << " and " << t->str();
  }
}

cudaStream_t stream_of(int device) { return device_context(device).stream; }

// A statistic or weight gradient (`what` of `op`): f32 whatever the activations
// are (compute_dtype of f32 and bf16 alike; kernels/tensor.h).
float* f32_of(const Tensor& t, DType activations, const char* op, const char* what) {
  check_compute_dtype(t, activations, op, what);
  return t.data<float>();
}
float* f32_or_null(const Tensor& t, DType activations, const char* op, const char* what) {
  return t.defined() ? f32_of(t, activations, op, what) : nullptr;
}

const int32_t* i32(const Tensor& t) { return t.defined() ? t.data<int32_t>() : nullptr; }

}  // namespace

void add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int dev = check_on_device({&a, &b, &out}, "add");
  check_same_float({&a, &b, &out}, "add");
  ROTOR_CHECK(a.shape() == b.shape() && a.shape() == out.shape()) << "add: shapes " << a.str() << " " << b.str() << " " << out.str();
  cuda::add(float_of(a, "add"), a.raw(), b.raw(), out.raw(), a.numel(), stream_of(dev));
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  const int dev = check_on_device({&x, &y}, "axpy");
  check_same_float({&x, &y}, "axpy");
  ROTOR_CHECK(x.numel() == y.numel()) << "axpy: " << x.str() << " and " << y.str();
  cuda::axpy(float_of(x, "axpy"), alpha, x.raw(), y.raw(), x.numel(), stream_of(dev));
}

void scale(const Tensor& x, double alpha) {
  const int dev = check_on_device({&x}, "scale");
  cuda::scale(float_of(x, "scale"), x.raw(), alpha, x.numel(), stream_of(dev));
}

double squared_norm(const Tensor& x) {
  const int dev = check_on_device({&x}, "squared_norm");
  Tensor result = Tensor::empty({1}, DType::kF64, x.device());
  Tensor work = Tensor::empty({static_cast<int64_t>(squared_norm_scratch_bytes(x.numel())) / 4 + 1}, DType::kF32,
                              x.device());
  cuda::squared_norm(float_of(x, "squared_norm"), x.raw(), x.numel(), result.data<double>(), work.raw(),
                     stream_of(dev));
  return result.item(0);  // copies to the host: waits for the kernel
}

void cast(const Tensor& src, const Tensor& dst) {
  const int dev = check_on_device({&src, &dst}, "cast");
  ROTOR_CHECK(src.numel() == dst.numel()) << "cast: " << src.str() << " into " << dst.str();
  cuda::cast(float_of(src, "cast"), src.raw(), float_of(dst, "cast"), dst.raw(), src.numel(), stream_of(dev));
}

void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  const int dev = check_on_device({&ids, &table, &out}, "embedding_forward");
  check_same_float({&table, &out}, "embedding_forward");
  ROTOR_CHECK(ids.dtype() == DType::kI32 && table.ndim() == 2 && out.numel() == ids.numel() * table.dim(1))
      << "embedding_forward: ids [N] i32, table [V, D], out [N, D]; got " << ids.str() << " " << table.str()
      << " " << out.str();
  // Ids are checked on the device (launch.h); a fault of this call or an
  // earlier one is reported here once its kernel has run (fault.h).
  cuda::embedding_forward(float_of(table, "embedding_forward"), ids.data<int32_t>(), table.raw(), out.raw(),
                          ids.numel(), table.dim(1), table.dim(0), fault_record(dev), stream_of(dev));
  check_faults(dev);
}

void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  const char* op = "embedding_backward";
  const int dev = check_on_device({&ids, &dout, &dtable}, op);
  ROTOR_CHECK(ids.dtype() == DType::kI32 && dtable.ndim() == 2 && dout.numel() == ids.numel() * dtable.dim(1))
      << "embedding_backward: ids [N] i32, dout [N, D], dtable [V, D]";
  cuda::embedding_backward(float_of(dout, op), ids.data<int32_t>(), dout.raw(),
                           f32_of(dtable, dout.dtype(), op, "dtable"), ids.numel(), dtable.dim(1),
                           dtable.dim(0), fault_record(dev), stream_of(dev));
  check_faults(dev);
}

void rmsnorm_forward(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  const int dev = check_on_device({&x, &w, &y, &rstd}, op);
  check_same_float({&x, &w, &y}, op);
  const int64_t d = w.numel(), n = x.numel() / std::max<int64_t>(d, 1);
  ROTOR_CHECK(x.numel() == n * d && y.numel() == x.numel() && rstd.numel() == n)
      << "rmsnorm_forward: x [N, D], w [D], y [N, D], rstd [N]; got " << x.str() << " " << w.str();
  cuda::rmsnorm_forward(float_of(x, op), x.raw(), w.raw(), eps, y.raw(), f32_of(rstd, x.dtype(), op, "rstd"),
                        n, d, stream_of(dev));
}

void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx,
                      const Tensor& dw) {
  const char* op = "rmsnorm_backward";
  const int dev = check_on_device({&dy, &x, &w, &rstd, &dx, &dw}, op);
  check_same_float({&dy, &x, &w, &dx}, op);
  const int64_t d = w.numel(), n = x.numel() / std::max<int64_t>(d, 1);
  ROTOR_CHECK(x.numel() == n * d && dy.numel() == x.numel() && dx.numel() == x.numel() && rstd.numel() == n &&
              dw.numel() == d)
      << "rmsnorm_backward: shapes " << dy.str() << " " << x.str() << " " << w.str();
  Tensor work = Tensor::empty({static_cast<int64_t>(rmsnorm_backward_scratch_bytes(n, d)) / 4 + 1}, DType::kF32,
                              x.device());
  cuda::rmsnorm_backward(float_of(x, op), dy.raw(), x.raw(), w.raw(), f32_of(rstd, x.dtype(), op, "rstd"),
                         dx.raw(), f32_of(dw, x.dtype(), op, "dw"), n, d, work.raw(), stream_of(dev));
}

namespace {
void check_rope(const Tensor& x, const Tensor& pos, const Tensor& inv_freq, const Tensor& s, const Tensor& y,
                const char* op) {
  check_on_device({&x, &pos, &inv_freq, &s, &y}, op);
  check_same_float({&x, &s, &y}, op);
  ROTOR_CHECK(x.ndim() == 4 && x.shape() == y.shape() && x.dim(3) % 2 == 0)
      << op << ": x and y [B, T, H, D], D even; got " << x.str() << " " << y.str();
  ROTOR_CHECK(pos.dtype() == DType::kI32 && pos.numel() == x.dim(0) * x.dim(1))
      << op << ": pos [B, T] i32, got " << pos.str();
  ROTOR_CHECK(inv_freq.dtype() == DType::kF32 && inv_freq.numel() == x.dim(3) / 2)
      << op << ": inv_freq [D/2] f32, got " << inv_freq.str();
  ROTOR_CHECK(!s.defined() || s.numel() == x.dim(0) * x.dim(1)) << op << ": scale [B, T], got " << s.str();
}
}  // namespace

void rope_forward(const Tensor& x, const Tensor& pos, const Tensor& inv_freq, double attention_factor,
                  const Tensor& s, const Tensor& y) {
  check_rope(x, pos, inv_freq, s, y, "rope_forward");
  cuda::rope_forward(float_of(x, "rope_forward"), x.raw(), pos.data<int32_t>(), inv_freq.data<float>(),
                     attention_factor, s.defined() ? s.raw() : nullptr, y.raw(), x.dim(0), x.dim(1), x.dim(2),
                     x.dim(3), stream_of(x.device().index));
}

void rope_backward(const Tensor& dy, const Tensor& pos, const Tensor& inv_freq, double attention_factor,
                   const Tensor& s, const Tensor& dx) {
  check_rope(dy, pos, inv_freq, s, dx, "rope_backward");
  cuda::rope_backward(float_of(dy, "rope_backward"), dy.raw(), pos.data<int32_t>(), inv_freq.data<float>(),
                      attention_factor, s.defined() ? s.raw() : nullptr, dx.raw(), dy.dim(0), dy.dim(1),
                      dy.dim(2), dy.dim(3), stream_of(dy.device().index));
}

void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& h) {
  const int dev = check_on_device({&gate, &up, &h}, "swiglu_forward");
  check_same_float({&gate, &up, &h}, "swiglu_forward");
  ROTOR_CHECK(gate.shape() == up.shape() && gate.shape() == h.shape()) << "swiglu_forward: shapes differ";
  cuda::swiglu_forward(float_of(gate, "swiglu_forward"), gate.raw(), up.raw(), h.raw(), gate.numel(),
                       stream_of(dev));
}

void swiglu_backward(const Tensor& dh, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                     const Tensor& dup) {
  const int dev = check_on_device({&dh, &gate, &up, &dgate, &dup}, "swiglu_backward");
  check_same_float({&dh, &gate, &up, &dgate, &dup}, "swiglu_backward");
  ROTOR_CHECK(gate.shape() == up.shape() && gate.shape() == dh.shape() && dgate.shape() == dh.shape() &&
              dup.shape() == dh.shape())
      << "swiglu_backward: shapes differ";
  cuda::swiglu_backward(float_of(dh, "swiglu_backward"), dh.raw(), gate.raw(), up.raw(), dgate.raw(), dup.raw(),
                        dh.numel(), stream_of(dev));
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, int64_t step,
                const AdamWHyper& hyper, double grad_scale, const Tensor& working) {
  const int dev = check_on_device({&param, &grad, &m, &v, &working}, "adamw_step");
  for (const Tensor* t : {&param, &m, &v}) {
    ROTOR_CHECK(t->dtype() == DType::kF32) << "adamw_step: master weights and moments are f32, got " << t->str();
  }
  for (const Tensor* t : {&grad, &m, &v, &working}) {
    ROTOR_CHECK(!t->defined() || t->numel() == param.numel()) << "adamw_step: " << t->str() << " vs " << param.str();
  }
  ROTOR_CHECK(step >= 1) << "adamw_step: step is 1-based, got " << step;
  cuda::adamw_step(param.data<float>(), float_of(grad, "adamw_step"), grad.raw(), m.data<float>(), v.data<float>(),
                   param.numel(), step, hyper.lr, hyper.beta1, hyper.beta2, hyper.eps, hyper.weight_decay,
                   grad_scale, working.defined() ? float_of(working, "adamw_step") : Float::kF32,
                   working.defined() ? working.raw() : nullptr, stream_of(dev));
}

void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b, double alpha,
            double beta) {
  const int dev = check_on_device({&a, &b, &c}, "matmul");
  check_same_float({&a, &b}, "matmul");
  // c in a's dtype, or f32 from bf16 operands (weight gradients: cuBLASLt
  // takes A/B in CUDA_R_16BF with C/D in CUDA_R_32F, compute 32F).
  ROTOR_CHECK(c.dtype() == a.dtype() || c.dtype() == DType::kF32)
      << "matmul: c must be " << dtype_name(a.dtype()) << " or f32 with " << dtype_name(a.dtype())
      << " operands, got " << c.str();
  ROTOR_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2) << "matmul: 2-D tensors, got " << a.str() << " "
                                                                << b.str() << " " << c.str();
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  ROTOR_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n)
      << "matmul: op(a) " << m << "x" << k << ", op(b) " << kb << "x" << n << ", c " << c.str();
  gemm(device_context(dev), float_of(a, "matmul"), a.raw(), b.raw(), float_of(c, "matmul"), c.raw(), m, n, k,
       trans_a, trans_b, a.dim(1), b.dim(1), c.dim(1), alpha, beta);
}

// ---- cross-entropy ------------------------------------------------------------
// Tiles: logits [rows, cols] f32 = h[rows] w[cols]^T (cuBLASLt, f32 output),
// the online LSE over the vocabulary tiles (ce_tile_accumulate), the loss
// (ce_finish), and for the gradients dlogits in place (ce_tile_dlogits),
// cast to the dtype of h and w, then dh (+)= dlogits w (in h's dtype) and
// dw += dlogits^T h (f32: cuBLASLt with bf16 A/B and an f32 C). loss, lse,
// dloss and dw are f32 whatever h and w are.
namespace {

struct CeArgs {
  int dev = 0;
  Float t = Float::kF32;
  int64_t n = 0, d = 0, vs = 0;  // tokens, hidden, vocabulary rows of w
};

CeArgs check_ce(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse, const char* op) {
  CeArgs a;
  a.dev = check_on_device({&h, &w, &targets, &lse}, op);
  check_same_float({&h, &w}, op);
  a.t = float_of(h, op);
  check_compute_dtype(lse, h.dtype(), op, "lse");
  ROTOR_CHECK(h.ndim() == 2 && w.ndim() == 2 && h.dim(1) == w.dim(1))
      << op << ": h [N, D] and w [V, D], got " << h.str() << " and " << w.str();
  ROTOR_CHECK(targets.dtype() == DType::kI32 && targets.numel() == h.dim(0)) << op << ": targets [N] i32";
  ROTOR_CHECK(lse.numel() == h.dim(0)) << op << ": lse [N]";
  a.n = h.dim(0);
  a.d = h.dim(1);
  a.vs = w.dim(0);
  return a;
}

// logits tile [rows, cols] (f32, ld cols) = h[r0, r0 + rows) w[c0, c0 + cols)^T
void logits_tile(const CeArgs& a, const Tensor& h, const Tensor& w, int64_t r0, int64_t rows, int64_t c0,
                 int64_t cols, float* tile) {
  gemm(device_context(a.dev), a.t, h.narrow(r0, rows).raw(), w.narrow(c0, cols).raw(), Float::kF32, tile, rows,
       cols, a.d, false, true, a.d, a.d, cols, 1.0, 0.0);
}

// dh[r0..] (beta) += dlogits w[c0..], dw[c0..] += dlogits^T h[r0..], from
// an f32 dlogits tile converted to the compute dtype first.
void tile_gradients(const CeArgs& a, const Tensor& h, const Tensor& w, const Tensor& dh, const Tensor& dw,
                    int64_t r0, int64_t rows, int64_t c0, int64_t cols, float* dlogits, const Tensor& low,
                    double dh_beta) {
  const void* dl = dlogits;
  if (a.t != Float::kF32) {
    cuda::cast(Float::kF32, dlogits, a.t, low.raw(), rows * cols, stream_of(a.dev));
    dl = low.raw();
  }
  DeviceContext& ctx = device_context(a.dev);
  gemm(ctx, a.t, dl, w.narrow(c0, cols).raw(), a.t, dh.narrow(r0, rows).raw(), rows, a.d, cols, false, false,
       cols, a.d, a.d, 1.0, dh_beta);
  gemm(ctx, a.t, dl, h.narrow(r0, rows).raw(), Float::kF32, dw.narrow(c0, cols).raw(), cols, a.d, rows, true,
       false, cols, a.d, a.d, 1.0, 1.0);
}

// Running max, sum and target logit per row [N] f32 (ce_tile_accumulate:
// the first vocabulary tile of a row initialises them).
struct RowState {
  Tensor max, sum, target_logit;
};

// Targets must lie below this (the CPU op's check): the whole vocabulary, or
// the rows of w without vocabulary parallelism.
int64_t target_limit(const CeArgs& a, int64_t vocab_size) { return vocab_size > 0 ? vocab_size : a.vs; }

RowState row_state(const CeArgs& a, const Tensor& like) {
  return {Tensor::empty({a.n}, DType::kF32, like.device()), Tensor::empty({a.n}, DType::kF32, like.device()),
          Tensor::empty({a.n}, DType::kF32, like.device())};
}

}  // namespace

void cross_entropy_forward(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& loss,
                           const Tensor& lse, CrossEntropyChunks chunks, int64_t vocab_start, int64_t vocab_size) {
  const char* op = "cross_entropy_forward";
  const CeArgs a = check_ce(h, w, targets, lse, op);
  check_on_device({&h, &loss}, op);
  ROTOR_CHECK(loss.numel() == a.n) << "cross_entropy_forward: loss [N]";
  float* loss_p = f32_of(loss, h.dtype(), op, "loss");
  ROTOR_CHECK(vocab_size == 0 || vocab_start + a.vs <= vocab_size) << "cross_entropy_forward: slice past the vocabulary";
  const int64_t tr = std::min(chunks.tokens, std::max<int64_t>(a.n, 1)), tv = std::min(chunks.vocab, a.vs);
  Tensor tile = Tensor::empty({tr * tv}, DType::kF32, h.device());
  RowState s = row_state(a, h);
  cudaStream_t st = stream_of(a.dev);
  for (int64_t r0 = 0; r0 < a.n; r0 += tr) {
    const int64_t rows = std::min(tr, a.n - r0);
    for (int64_t c0 = 0; c0 < a.vs; c0 += tv) {
      const int64_t cols = std::min(tv, a.vs - c0);
      logits_tile(a, h, w, r0, rows, c0, cols, tile.data<float>());
      ce_tile_accumulate(tile.data<float>(), rows, cols, cols, c0, targets.data<int32_t>() + r0, vocab_start,
                         s.max.data<float>() + r0, s.sum.data<float>() + r0, s.target_logit.data<float>() + r0, st);
    }
  }
  ce_finish(s.max.data<float>(), s.sum.data<float>(), s.target_logit.data<float>(), targets.data<int32_t>(),
            vocab_start, a.vs, target_limit(a, vocab_size), loss_p, lse.data<float>(), a.n, 0,
            fault_record(a.dev), st);
  check_faults(a.dev);
}

void cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse,
                            const Tensor& dloss, const Tensor& dh, const Tensor& dw, CrossEntropyChunks chunks,
                            int64_t vocab_start, int64_t vocab_size) {
  const char* op = "cross_entropy_backward";
  const CeArgs a = check_ce(h, w, targets, lse, op);
  check_on_device({&h, &dloss, &dh, &dw}, op);
  check_same_float({&h, &dh}, op);
  const float* dloss_p = f32_of(dloss, h.dtype(), op, "dloss");
  f32_of(dw, h.dtype(), op, "dw");
  ROTOR_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape() && dloss.numel() == a.n)
      << "cross_entropy_backward: dh like h, dw like w, dloss [N]";
  ROTOR_CHECK(vocab_size == 0 || vocab_start + a.vs <= vocab_size) << "cross_entropy_backward: slice past the vocabulary";
  const int64_t tr = std::min(chunks.tokens, std::max<int64_t>(a.n, 1)), tv = std::min(chunks.vocab, a.vs);
  Tensor tile = Tensor::empty({tr * tv}, DType::kF32, h.device());
  Tensor low = a.t == Float::kF32 ? Tensor() : Tensor::empty({tr * tv}, h.dtype(), h.device());
  cudaStream_t st = stream_of(a.dev);
  for (int64_t r0 = 0; r0 < a.n; r0 += tr) {
    const int64_t rows = std::min(tr, a.n - r0);
    for (int64_t c0 = 0; c0 < a.vs; c0 += tv) {
      const int64_t cols = std::min(tv, a.vs - c0);
      logits_tile(a, h, w, r0, rows, c0, cols, tile.data<float>());
      ce_tile_dlogits(tile.data<float>(), rows, cols, cols, c0, targets.data<int32_t>() + r0, vocab_start,
                      lse.data<float>() + r0, dloss_p + r0, st);
      tile_gradients(a, h, w, dh, dw, r0, rows, c0, cols, tile.data<float>(), low, c0 == 0 ? 0.0 : 1.0);
    }
  }
}

void cross_entropy_forward_backward(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& dloss,
                                    const Tensor& loss, const Tensor& lse, const Tensor& dh, const Tensor& dw,
                                    CrossEntropyChunks chunks) {
  const char* op = "cross_entropy_forward_backward";
  const CeArgs a = check_ce(h, w, targets, lse, op);
  check_on_device({&h, &dloss, &loss, &dh, &dw}, op);
  check_same_float({&h, &dh}, op);
  const float* dloss_p = f32_of(dloss, h.dtype(), op, "dloss");
  float* loss_p = f32_of(loss, h.dtype(), op, "loss");
  f32_of(dw, h.dtype(), op, "dw");
  ROTOR_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape() && dloss.numel() == a.n && loss.numel() == a.n)
      << "cross_entropy_forward_backward: dh like h, dw like w, dloss and loss [N]";
  // Whole rows per tile: the logits of a row are formed once (3 GEMMs a step).
  const int64_t tr = std::clamp<int64_t>(chunks.fused_tile_elements / std::max<int64_t>(a.vs, 1), 1,
                                         std::max<int64_t>(a.n, 1));
  Tensor tile = Tensor::empty({tr * a.vs}, DType::kF32, h.device());
  Tensor low = a.t == Float::kF32 ? Tensor() : Tensor::empty({tr * a.vs}, h.dtype(), h.device());
  RowState s = row_state(a, h);
  cudaStream_t st = stream_of(a.dev);
  for (int64_t r0 = 0; r0 < a.n; r0 += tr) {
    const int64_t rows = std::min(tr, a.n - r0);
    logits_tile(a, h, w, r0, rows, 0, a.vs, tile.data<float>());
    ce_tile_accumulate(tile.data<float>(), rows, a.vs, a.vs, 0, targets.data<int32_t>() + r0, 0,
                       s.max.data<float>() + r0, s.sum.data<float>() + r0, s.target_logit.data<float>() + r0, st);
    ce_finish(s.max.data<float>() + r0, s.sum.data<float>() + r0, s.target_logit.data<float>() + r0,
              targets.data<int32_t>() + r0, 0, a.vs, a.vs, loss_p + r0, lse.data<float>() + r0, rows, r0,
              fault_record(a.dev), st);
    ce_tile_dlogits(tile.data<float>(), rows, a.vs, a.vs, 0, targets.data<int32_t>() + r0, 0,
                    lse.data<float>() + r0, dloss_p + r0, st);
    tile_gradients(a, h, w, dh, dw, r0, rows, 0, a.vs, tile.data<float>(), low, 0.0);
  }
  check_faults(a.dev);
}

// ---- attention -----------------------------------------------------------------
namespace {
AttentionShape attention_shape(const Tensor& q, const Tensor& k, const AttentionMask& mask, double scale,
                               const char* op) {
  ROTOR_CHECK(q.ndim() == 4 && k.ndim() == 4 && q.dim(0) == k.dim(0) && q.dim(3) == k.dim(3) &&
              q.dim(2) % k.dim(2) == 0)
      << op << ": q [B, Tq, Hq, D], k [B, Tk, Hkv, D], Hq % Hkv == 0; got " << q.str() << " " << k.str();
  ROTOR_CHECK(mask.q_pos.dtype() == DType::kI32 && mask.q_pos.numel() == q.dim(0) * q.dim(1) &&
              mask.k_pos.dtype() == DType::kI32 && mask.k_pos.numel() == k.dim(0) * k.dim(1))
      << op << ": q_pos [B, Tq] and k_pos [B, Tk] i32";
  ROTOR_CHECK(mask.q_seg.defined() == mask.k_seg.defined()) << op << ": q_seg and k_seg come together";
  AttentionShape s;
  s.b = q.dim(0);
  s.tq = q.dim(1);
  s.tk = k.dim(1);
  s.hq = q.dim(2);
  s.hkv = k.dim(2);
  s.d = q.dim(3);
  s.causal = mask.causal;
  s.scale = scale;
  return s;
}

// lse / entropy [B, Hq, Tq] (their dtype is checked where the pointer is taken).
void check_attention_stat(const Tensor& t, const AttentionShape& s, const char* op, const char* what) {
  ROTOR_CHECK(t.numel() == s.b * s.hq * s.tq) << op << ": " << what << " must be [B, Hq, Tq] = [" << s.b << ", "
                                               << s.hq << ", " << s.tq << "], got " << t.str();
}
}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, double scale,
                       const Tensor& out, const Tensor& lse, const Tensor& entropy) {
  const int dev = check_on_device({&q, &k, &v, &mask.q_pos, &mask.k_pos, &mask.q_seg, &mask.k_seg, &out, &lse,
                                   &entropy},
                                  "attention_forward");
  const char* op = "attention_forward";
  check_same_float({&q, &k, &v, &out}, op);
  const AttentionShape s = attention_shape(q, k, mask, scale, op);
  check_attention_stat(lse, s, op, "lse");
  if (entropy.defined()) check_attention_stat(entropy, s, op, "entropy");
  cuda::attention_forward(float_of(q, op), s, q.raw(), k.raw(), v.raw(), i32(mask.q_pos), i32(mask.k_pos),
                          i32(mask.q_seg), i32(mask.k_seg), out.raw(), f32_of(lse, q.dtype(), op, "lse"),
                          f32_or_null(entropy, q.dtype(), op, "entropy"), stream_of(dev));
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, double scale,
                        const Tensor& out, const Tensor& lse, const Tensor& dout, const Tensor& dq,
                        const Tensor& dk, const Tensor& dv) {
  const int dev = check_on_device({&q, &k, &v, &mask.q_pos, &mask.k_pos, &mask.q_seg, &mask.k_seg, &out, &lse,
                                   &dout, &dq, &dk, &dv},
                                  "attention_backward");
  const char* op = "attention_backward";
  check_same_float({&q, &k, &v, &out, &dout, &dq, &dk, &dv}, op);
  const AttentionShape s = attention_shape(q, k, mask, scale, op);
  check_attention_stat(lse, s, op, "lse");
  cuda::attention_backward(float_of(q, op), s, q.raw(), k.raw(), v.raw(), i32(mask.q_pos), i32(mask.k_pos),
                           i32(mask.q_seg), i32(mask.k_seg), out.raw(), f32_of(lse, q.dtype(), op, "lse"),
                           dout.raw(), dq.raw(), dk.raw(), dv.raw(), stream_of(dev));
}

void attention_merge(const Tensor& out_acc, const Tensor& lse_acc, const Tensor& entropy_acc,
                     const Tensor& out_blk, const Tensor& lse_blk, const Tensor& entropy_blk) {
  const int dev = check_on_device({&out_acc, &lse_acc, &entropy_acc, &out_blk, &lse_blk, &entropy_blk},
                                  "attention_merge");
  const char* op = "attention_merge";
  check_same_float({&out_acc, &out_blk}, op);
  ROTOR_CHECK(out_acc.ndim() == 4 && out_acc.shape() == out_blk.shape() && lse_acc.shape() == lse_blk.shape())
      << "attention_merge: out [B, Tq, Hq, D] and lse [B, Hq, Tq] pairs of one shape";
  AttentionShape s;
  s.b = out_acc.dim(0);
  s.tq = out_acc.dim(1);
  s.hq = out_acc.dim(2);
  s.d = out_acc.dim(3);
  for (const Tensor* t : {&lse_acc, &entropy_acc, &lse_blk, &entropy_blk})
    if (t->defined()) check_attention_stat(*t, s, op, "lse/entropy");
  const bool with_entropy = entropy_acc.defined() && entropy_blk.defined();
  const DType act = out_acc.dtype();
  cuda::attention_merge(float_of(out_acc, op), s, out_acc.raw(), f32_of(lse_acc, act, op, "lse_acc"),
                        with_entropy ? f32_of(entropy_acc, act, op, "entropy_acc") : nullptr, out_blk.raw(),
                        f32_of(lse_blk, act, op, "lse_blk"),
                        with_entropy ? f32_of(entropy_blk, act, op, "entropy_blk") : nullptr, stream_of(dev));
}

}  // namespace rotor::cuda
