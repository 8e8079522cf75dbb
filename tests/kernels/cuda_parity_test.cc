// Every op against the f32 CPU reference: one table of op cases (as ggml's
// test-backend-ops), each run twice from the same seeded inputs, once as the
// reference (CPU, every float tensor f32) and once in the storage dtypes under
// test, and compared element by element:
//   CudaParity/f32    GPU f32
//   CudaParity/bf16   GPU bf16 (mixed precision, below)
//   CpuBf16Parity     CPU bf16 (mixed precision; runs in every build)
// The CUDA columns skip, with the reason, where there is no GPU (or no CUDA
// build).
//
// Inputs: every case draws its tensors from Env::rand (a fixed seed per
// case, the same values on both runs). For bf16 the values are first rounded
// to bf16, and the reference computes in f32 on those rounded values, so the
// comparison measures only the run's own rounding and summation order.
//
// Dtypes of a bf16 run: the mixed-precision contract of kernels/tensor.h.
// Activations, working weights and their gradients are bf16 (Env::rand,
// Env::out); statistics (rstd, attention lse / entropy, cross-entropy loss /
// lse / dloss) and weight gradients (rmsnorm dw, embedding dtable,
// cross-entropy dw, matmul's f32 c) are f32 (Env::rand_f32, Env::out_f32), as
// are AdamW's master weights and moments.
// Outputs that an op overwrites are poisoned with NaN before the run (an
// element the kernel does not write fails); outputs it accumulates into
// (dw, dtable, dq, ...) start from the same random values on both sides, so
// "+=" is checked too.
//
// Tolerance (|got - ref| <= tol * (|ref| + rms(ref)), per output):
//   GPU f32  1e-4: the same f32 math in another summation order (tree
//        reductions, cuBLASLt's split-K), whose error grows ~sqrt(K) eps_f32
//        ~ 1e-6 for the sums here; 1e-4 leaves room and still catches any
//        wrong term.
//   GPU bf16 3e-2: bf16 outputs are rounded (up to 2^-8 = 4e-3 relative) and
//        some kernels round an intermediate to bf16 too (the dlogits tiles
//        cast for the dh / dw GEMMs, attention probabilities times bf16
//        values in the flash kernels), each ~4e-3, plus the f32 summation
//        order; a handful of those stay well under 3e-2, while a wrong index
//        or a missing term is O(1).
//   CPU bf16: the CPU computes a bf16 call as the f32 code on the widened
//        values (kernels/cpu/dispatch.h), and the reference rounds the one
//        activation that a later op of a case reads (attention's out:
//        Env::as_stored), so each output differs from the reference only by
//        the rounding of its own store:
//     bf16 outputs 4e-3: one rounding to nearest even, |x - bf16(x)| <= 2^-8
//        |x| = 3.9e-3 |x| (measured worst 3.2e-3). A second rounding on the
//        way breaks it (tried: y from a bf16-rounded rstd fails at 1.8e-2),
//        as does any wrong term.
//     f32 outputs 0 (bit for bit): lse, entropy, loss, rstd, dw, dtable and
//        the f32 c are the same f32 code on the same f32 values, so they are
//        equal exactly; this also pins that these stay f32 in a bf16 call.
// Every reference output must be finite and not all zero (a case that
// compares zeros with zeros would prove nothing).
//
// The CUDA backend's state: docs/design.md ("Backends").
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/memory.h"
#include "kernels/device.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/random.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"
#include "kernels/vocab_slice.h"
#include "kernels/reduce.h"
#include "kernels/position_scale.h"

namespace rotor {
namespace {

// Where and in which dtypes one run of a case happens: the reference (CPU,
// every float tensor f32, holding the values the `dtype` run sees) or the run
// under test (on `device`, activations in `dtype`, statistics and weight
// gradients f32).
class Env {
 public:
  Env(Device device, DType dtype, uint64_t seed, bool reference)
      : device_(device), dtype_(dtype), seed_(seed), reference_(reference) {
    ROTOR_CHECK(!reference || device.is_cpu()) << "the reference runs on the CPU";
  }

  // Activation input: normal(0, sigma) values (bf16-rounded for a bf16 run).
  Tensor rand(const Shape& shape, double sigma = 1.0) { return place(values(shape, sigma), shape, dtype_); }
  // f32 input whatever the run's dtype: AdamW master weights and moments, and
  // the f32 weight gradients that ops accumulate into (dw, dtable, f32 c).
  Tensor rand_f32(const Shape& shape, double sigma = 1.0, bool positive = false) {
    std::vector<double> v = values(shape, sigma);
    if (positive)
      for (double& x : v) x = std::abs(x);
    return place(v, shape, DType::kF32);
  }
  // i32 input in [lo, hi).
  Tensor ints(const Shape& shape, int64_t lo, int64_t hi) {
    std::vector<double> v(static_cast<size_t>(shape.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = static_cast<double>(lo + static_cast<int64_t>(uniform01(seed_ + counter_, i) * static_cast<double>(hi - lo)));
    }
    ++counter_;
    return Tensor::from_vector(v, shape, DType::kI32).to(device_);
  }
  Tensor ints_of(const std::vector<double>& v, const Shape& shape) {
    return Tensor::from_vector(v, shape, DType::kI32).to(device_);
  }
  // Activation output the op overwrites: NaN everywhere first.
  Tensor out(const Shape& shape) { return out_of(shape, dtype_); }
  // Statistic output (lse, entropy, loss, rstd): f32 whatever the run's dtype.
  Tensor out_f32(const Shape& shape) { return out_of(shape, DType::kF32); }
  Tensor out_of(const Shape& shape, DType dt) {
    Tensor t = Tensor::empty(shape, reference_ ? DType::kF32 : dt, device_);
    t.fill(std::numeric_limits<double>::quiet_NaN());
    return t;
  }
  // An activation output that a later op of the case reads: the reference
  // rounds it to the run's dtype, as the run under test stores it, so that
  // the later op is compared on the same inputs rather than on the rounding
  // the chain has accumulated.
  void as_stored(const Tensor& t) const {
    if (!reference_ || dtype_ == DType::kF32) return;
    Tensor rounded = Tensor::empty(t.shape(), dtype_);
    rounded.copy_from(t);
    t.copy_from(rounded);
  }
  // f64 accumulators (kernels/reduce.h), zero, on the run's device.
  Tensor zeros_f64(const Shape& shape) { return Tensor::zeros(shape, DType::kF64, device_); }
  bool on_cpu() const { return device_.is_cpu(); }
  DType dtype() const { return dtype_; }

 private:
  std::vector<double> values(const Shape& shape, double sigma) {
    std::vector<double> v(static_cast<size_t>(shape.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = sigma * normal01(seed_ + 1000 * counter_, i);
    ++counter_;
    return v;
  }
  // The reference keeps f32 (it computes in f32) holding the values the run
  // under test sees in `dt`.
  Tensor place(const std::vector<double>& v, const Shape& shape, DType dt) {
    Tensor rounded = Tensor::from_vector(v, shape, dt);
    if (reference_) {
      Tensor f = Tensor::empty(shape, DType::kF32);
      f.copy_from(rounded);
      return f;
    }
    return rounded.to(device_);
  }

  Device device_;
  DType dtype_;
  uint64_t seed_;
  bool reference_;
  uint64_t counter_ = 0;
};

// One op case: builds its inputs from the env, runs the op, returns the
// tensors to compare (outputs, and accumulated inputs).
struct OpCase {
  std::string name;
  std::function<std::vector<Tensor>(Env&)> run;
};

std::vector<OpCase> cases() {
  std::vector<OpCase> c;
  for (int64_t n : {1, 7, 4096 + 3}) {
    const std::string sz = std::to_string(n);
    c.push_back({"add " + sz, [n](Env& e) {
                   Tensor a = e.rand({n}), b = e.rand({n}), o = e.out({n});
                   add(a, b, o);
                   return std::vector<Tensor>{o};
                 }});
    c.push_back({"axpy " + sz, [n](Env& e) {
                   Tensor x = e.rand({n}), y = e.rand({n});
                   axpy(-0.75, x, y);
                   return std::vector<Tensor>{y};
                 }});
    c.push_back({"scale " + sz, [n](Env& e) {
                   Tensor x = e.rand({n});
                   scale(x, 1.5);
                   return std::vector<Tensor>{x};
                 }});
    c.push_back({"squared_norm " + sz, [n](Env& e) {
                   Tensor x = e.rand({n});
                   return std::vector<Tensor>{Tensor::from_vector({squared_norm(x)}, {1}, DType::kF64)};
                 }});
    c.push_back({"swiglu " + sz, [n](Env& e) {
                   Tensor g = e.rand({n}), u = e.rand({n}), h = e.out({n}), dh = e.rand({n});
                   Tensor dg = e.out({n}), du = e.out({n});
                   swiglu_forward(g, u, h);
                   swiglu_backward(dh, g, u, dg, du);
                   return std::vector<Tensor>{h, dg, du};
                 }});
  }
  // copy_columns: a column block (cudaMemcpy2DAsync on the GPU), exact.
  c.push_back({"copy_columns 13x(7 of 20 -> 9)", [](Env& e) {
                 Tensor src = e.rand({13, 20}), dst = e.rand({13, 9});
                 copy_columns(src, 11, dst, 1, 7);
                 return std::vector<Tensor>{dst};
               }});
  // cast f32 -> run dtype: round to nearest even on both sides.
  c.push_back({"cast f32->dtype 1029", [](Env& e) {
                 Tensor src = e.rand_f32({1029}, 3.0), dst = e.out({1029});
                 cast(src, dst);
                 return std::vector<Tensor>{dst};
               }});
  for (auto [n, d, v] : {std::array<int64_t, 3>{5, 8, 11}, std::array<int64_t, 3>{37, 129, 64}}) {
    const std::string sz = std::to_string(n) + "x" + std::to_string(d);
    c.push_back({"embedding " + sz, [n, d, v](Env& e) {
                   Tensor table = e.rand({v, d}), ids = e.ints({n}, 0, v), o = e.out({n, d});
                   embedding_forward(ids, table, o);
                   Tensor dout = e.rand({n, d}), dtable = e.rand_f32({v, d});  // += onto random values
                   embedding_backward(ids, dout, dtable);
                   return std::vector<Tensor>{o, dtable};
                 }});
  }
  for (auto [n, d] : {std::array<int64_t, 2>{3, 33}, std::array<int64_t, 2>{64, 4096}, std::array<int64_t, 2>{17, 1000}}) {
    const std::string sz = std::to_string(n) + "x" + std::to_string(d);
    c.push_back({"rmsnorm " + sz, [n, d](Env& e) {
                   Tensor x = e.rand({n, d}), w = e.rand({d}), y = e.out({n, d}), rstd = e.out_f32({n});
                   rmsnorm_forward(x, w, 1e-5, y, rstd);
                   Tensor dy = e.rand({n, d}), dx = e.out({n, d}), dw = e.rand_f32({d});
                   rmsnorm_backward(dy, x, w, rstd, dx, dw);
                   return std::vector<Tensor>{y, rstd, dx, dw};
                 }});
  }
  for (bool with_scale : {false, true}) {
    for (auto [b, t, h, d] : {std::array<int64_t, 4>{1, 5, 3, 8}, std::array<int64_t, 4>{2, 33, 4, 128}}) {
      const std::string sz = std::to_string(b) + "x" + std::to_string(t) + "x" + std::to_string(h) + "x" +
                             std::to_string(d) + (with_scale ? " scaled" : "");
      c.push_back({"rope " + sz, [=](Env& e) {
                     Tensor x = e.rand({b, t, h, d}), pos = e.ints({b, t}, 0, 70000);
                     std::vector<double> f(static_cast<size_t>(d / 2));
                     for (size_t i = 0; i < f.size(); ++i) f[i] = std::pow(500000.0, -2.0 * static_cast<double>(i) / d);
                     Tensor inv = Tensor::from_vector(f, {d / 2}, DType::kF32);
                     if (!e.on_cpu()) inv = inv.to(x.device());
                     Tensor s = with_scale ? e.rand({b, t}, 0.2) : Tensor();
                     Tensor y = e.out({b, t, h, d}), dx = e.out({b, t, h, d}), dy = e.rand({b, t, h, d});
                     rope_forward(x, pos, inv, 1.1, s, y);
                     rope_backward(dy, pos, inv, 1.1, s, dx);
                     return std::vector<Tensor>{y, dx};
                   }});
    }
  }
  for (auto [m, k, n] : {std::array<int64_t, 3>{13, 67, 5}, std::array<int64_t, 3>{256, 512, 384},
                         std::array<int64_t, 3>{1, 4096, 3}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const std::string sz = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                               (ta ? " ta" : "") + (tb ? " tb" : "");
        c.push_back({"matmul " + sz, [=](Env& e) {
                       const double s = 1.0 / std::sqrt(static_cast<double>(k));
                       Tensor a = e.rand(ta ? Shape{k, m} : Shape{m, k}), b = e.rand(tb ? Shape{n, k} : Shape{k, n}, s);
                       Tensor c0 = e.out({m, n});
                       matmul(a, b, c0, ta, tb);  // beta 0 over NaN
                       Tensor c1 = e.rand({m, n});
                       matmul(a, b, c1, ta, tb, 0.5, 1.0);
                       Tensor c2 = e.rand_f32({m, n});  // f32 c: dW += dy^T x of bf16 activations
                       matmul(a, b, c2, ta, tb, 1.0, 1.0);
                       Tensor c3 = e.out_f32({m, n});
                       matmul(a, b, c3, ta, tb);
                       return std::vector<Tensor>{c0, c1, c2, c3};
                     }});
      }
  }
  // Cross-entropy: odd sizes, several tiles, ignored targets, a vocabulary slice.
  for (auto [n, d, v] : {std::array<int64_t, 3>{9, 16, 37}, std::array<int64_t, 3>{70, 64, 1000}}) {
    const std::string sz = std::to_string(n) + "x" + std::to_string(d) + "x" + std::to_string(v);
    const CrossEntropyChunks chunks{.tokens = 32, .vocab = 300, .fused_tile_elements = 4096};
    auto targets = [n, v](Env& e) {
      std::vector<double> t(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = i % 5 == 3 ? -1 : static_cast<double>((i * 7919) % v);
      return e.ints_of(t, {n});
    };
    c.push_back({"cross_entropy " + sz, [=](Env& e) {
                   Tensor h = e.rand({n, d}), w = e.rand({v, d}, 0.3), tg = targets(e);
                   Tensor loss = e.out_f32({n}), lse = e.out_f32({n});
                   cross_entropy_forward(h, w, tg, loss, lse, chunks);
                   Tensor dloss = e.rand_f32({n}), dh = e.out({n, d}), dw = e.rand_f32({v, d});
                   cross_entropy_backward(h, w, tg, lse, dloss, dh, dw, chunks);
                   return std::vector<Tensor>{loss, lse, dh, dw};
                 }});
    c.push_back({"cross_entropy fused " + sz, [=](Env& e) {
                   Tensor h = e.rand({n, d}), w = e.rand({v, d}, 0.3), tg = targets(e), dloss = e.rand_f32({n});
                   Tensor loss = e.out_f32({n}), lse = e.out_f32({n}), dh = e.out({n, d}), dw = e.rand_f32({v, d});
                   cross_entropy_forward_backward(h, w, tg, dloss, loss, lse, dh, dw, chunks);
                   return std::vector<Tensor>{loss, lse, dh, dw};
                 }});
    c.push_back({"cross_entropy vocab slice " + sz, [=](Env& e) {
                   const int64_t slice = v / 2 + 1, start = v - slice;
                   Tensor h = e.rand({n, d}), w = e.rand({slice, d}, 0.3), tg = targets(e);
                   Tensor loss = e.out_f32({n}), lse = e.out_f32({n});
                   cross_entropy_forward(h, w, tg, loss, lse, chunks, start, v);
                   Tensor dloss = e.rand_f32({n}), dh = e.out({n, d}), dw = e.rand_f32({slice, d});
                   cross_entropy_backward(h, w, tg, lse, dloss, dh, dw, chunks, start, v);
                   return std::vector<Tensor>{loss, lse, dh, dw};
                 }});
  }
  // Attention: GQA, odd lengths, a shifted key block (ring step), segments.
  // bf16 with D = 64 / 128 runs the flash kernels (kernels/cuda/flash_attention.cu),
  // other cases the simple ones. zigzag: the query block holds two
  // non-contiguous chunks of length tq / 2 (rank 1 of cp = 4: chunks 1 and 6),
  // keys are the whole sequence 0 .. tk - 1 (tk = 8 * (tq / 2)); a query tile
  // of 64 rows straddles both chunks when tq / 2 is not a multiple of 64.
  struct Att {
    int64_t b, tq, tk, hq, hkv, d, k_offset;
    bool segments;
    bool zigzag = false;
  };
  for (const Att& a : {Att{1, 7, 7, 2, 1, 16, 0, false}, Att{2, 33, 45, 4, 2, 64, -12, true},
                       Att{1, 64, 64, 8, 8, 128, 0, true},
                       // flash: GQA 8:2, odd lengths, both head dims
                       Att{1, 1, 1, 8, 2, 128, 0, false}, Att{2, 63, 63, 8, 2, 64, 0, false},
                       Att{1, 65, 65, 8, 2, 128, 0, false}, Att{1, 257, 257, 8, 2, 64, 0, true},
                       Att{1, 257, 257, 8, 2, 128, 0, false},
                       // ring steps: keys after the first queries (rows that see no key: lse -inf),
                       // keys wholly in the past (non-causal-looking full block)
                       Att{1, 96, 64, 8, 2, 64, 40, false}, Att{1, 65, 130, 8, 2, 128, -130, true},
                       // zigzag query chunks against the whole sequence
                       Att{1, 130, 520, 8, 2, 128, 0, true, true}, Att{2, 130, 520, 8, 2, 64, 0, false, true}}) {
    const std::string sz = std::to_string(a.b) + "x" + std::to_string(a.tq) + "x" + std::to_string(a.tk) + " h" +
                           std::to_string(a.hq) + "/" + std::to_string(a.hkv) + " d" + std::to_string(a.d) +
                           " k" + std::to_string(a.k_offset) + (a.segments ? " seg" : "") +
                           (a.zigzag ? " zigzag" : "");
    c.push_back({"attention " + sz, [a](Env& e) {
                   Tensor q = e.rand({a.b, a.tq, a.hq, a.d}), k = e.rand({a.b, a.tk, a.hkv, a.d});
                   Tensor v = e.rand({a.b, a.tk, a.hkv, a.d});
                   std::vector<double> qp, kp, qs, ks;
                   const int64_t half = a.tq / 2;
                   for (int64_t r = 0; r < a.b; ++r) {
                     for (int64_t i = 0; i < a.tq; ++i) {
                       const int64_t p = a.zigzag ? (i < half ? i + half : i - half + 6 * half) : i + 20;
                       qp.push_back(static_cast<double>(p));
                       qs.push_back(static_cast<double>(p / 16));
                     }
                     for (int64_t j = 0; j < a.tk; ++j) {
                       const int64_t p = a.zigzag ? j : j + 20 + a.k_offset;
                       kp.push_back(static_cast<double>(p));
                       ks.push_back(static_cast<double>(p / 16));
                     }
                   }
                   AttentionMask m;
                   m.q_pos = e.ints_of(qp, {a.b, a.tq});
                   m.k_pos = e.ints_of(kp, {a.b, a.tk});
                   if (a.segments) {
                     m.q_seg = e.ints_of(qs, {a.b, a.tq});
                     m.k_seg = e.ints_of(ks, {a.b, a.tk});
                   }
                   const double scale = 1.0 / std::sqrt(static_cast<double>(a.d));
                   Tensor out = e.out({a.b, a.tq, a.hq, a.d}), lse = e.out_f32({a.b, a.hq, a.tq});
                   Tensor ent = e.out_f32({a.b, a.hq, a.tq});
                   attention_forward(q, k, v, m, scale, out, lse, ent);
                   e.as_stored(out);  // read by the backward and the merge
                   Tensor dout = e.rand({a.b, a.tq, a.hq, a.d});
                   Tensor dq = e.rand({a.b, a.tq, a.hq, a.d}), dk = e.rand({a.b, a.tk, a.hkv, a.d});
                   Tensor dv = e.rand({a.b, a.tk, a.hkv, a.d});
                   attention_backward(q, k, v, m, scale, out, lse, dout, dq, dk, dv);
                   // Merge the block with itself shifted: out2/lse2 from the same keys.
                   Tensor out2 = out.clone(), lse2 = lse.clone(), ent2 = ent.clone();
                   attention_merge(out2, lse2, ent2, out, lse, ent);
                   // One key per row: the entropy is exactly 0 (an all-zero reference
                   // proves nothing), so ent is checked through ent2 = ln 2 + ent only.
                   if (a.tk == 1) return std::vector<Tensor>{out, lse, dq, dk, dv, out2, lse2, ent2};
                   return std::vector<Tensor>{out, lse, ent, dq, dk, dv, out2, lse2, ent2};
                 }});
  }
  // The step's bookkeeping ops (kernels/vocab_slice.h, position_scale.h, reduce.h).
  c.push_back({"embedding_slice", [](Env& e) {
                 const int64_t n = 29, d = 40, v = 64, start = 32;  // this rank holds ids [32, 64)
                 Tensor table = e.rand({v - start, d}), ids = e.ints({n}, 0, v), o = e.out({n, d});
                 embedding_slice_forward(ids, table, start, o);
                 Tensor dout = e.rand({n, d}), dtable = e.rand_f32({v - start, d});
                 embedding_slice_backward(ids, dout, start, dtable);
                 return std::vector<Tensor>{o, dtable};
               }});
  c.push_back({"cross_entropy_slice", [](Env& e) {
                 const int64_t n = 37, start = 100, rows = 50;
                 Tensor lse = e.rand_f32({n}, 2.0), loss = e.rand_f32({n}, 1.0, true);
                 Tensor max_lse = e.rand_f32({n}, 0.5, true);
                 add(max_lse, lse, max_lse);  // m >= the slice's lse
                 Tensor targets = e.ints({n}, -1, 200), sums = e.out_f32({2 * n});
                 cross_entropy_slice_partials(lse, loss, targets, start, rows, max_lse, sums);
                 Tensor whole_lse = e.out_f32({n}), whole_loss = e.out_f32({n});
                 cross_entropy_slice_combine(max_lse, sums, targets, whole_lse, whole_loss);
                 return std::vector<Tensor>{sums, whole_lse, whole_loss};
               }});
  c.push_back({"log_position_scale", [](Env& e) {
                 Tensor pos = e.ints({3, 41}, 0, 70000), out = e.out({3, 41});
                 log_position_scale(pos, 4096, 1.0, out);
                 return std::vector<Tensor>{out};
               }});
  c.push_back({"sum_into squared_norm_into", [](Env& e) {
                 Tensor x = e.rand_f32({1031}), acc = e.zeros_f64({2});
                 sum_into(x, acc.narrow(0, 1));
                 sum_into(x, acc.narrow(0, 1));  // += : twice the sum
                 squared_norm_into(x, acc.narrow(1, 1), 2.0);
                 return std::vector<Tensor>{acc};
               }});
  c.push_back({"adamw", [](Env& e) {
                 const int64_t n = 1031;
                 Tensor p = e.rand_f32({n}), m = e.rand_f32({n}, 0.1), v = e.rand_f32({n}, 0.01, true);
                 Tensor g = e.rand({n}), working = e.out({n});
                 AdamWHyper hyper{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
                 adamw_step(p, g, m, v, 3, hyper, 0.7, working);
                 return std::vector<Tensor>{p, m, v, working};
               }});
  return c;
}

double rms(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return x.empty() ? 0 : std::sqrt(s / static_cast<double>(x.size()));
}

// Runs every case as the reference (CPU f32) and on `device` in `dtype`, and
// asserts each output of the run under test within tol(its dtype) * (|ref| +
// rms(ref)). `worst` gets the largest |got - ref| / (|ref| + rms(ref)) per
// dtype of the outputs under test (printed for the record).
void check_table(Device device, DType dtype, const std::function<double(DType)>& tol,
                 std::map<DType, double>* worst) {
  const std::vector<OpCase> all = cases();
  ASSERT_GT(all.size(), 40u);
  for (size_t ci = 0; ci < all.size(); ++ci) {
    const OpCase& oc = all[ci];
    SCOPED_TRACE(oc.name + " " + dtype_name(dtype) + " on " + device.str());
    Env ref(Device::cpu(), dtype, 1000 + ci, /*reference=*/true), run(device, dtype, 1000 + ci, false);
    const std::vector<Tensor> want = oc.run(ref);
    const std::vector<Tensor> got = oc.run(run);
    ASSERT_EQ(want.size(), got.size());
    for (size_t o = 0; o < want.size(); ++o) {
      const std::vector<double> w = want[o].to_vector(), g = got[o].to(Device::cpu()).to_vector();
      ASSERT_EQ(w.size(), g.size()) << "output " << o;
      bool nonzero = false;
      for (double x : w) {
        ASSERT_FALSE(std::isnan(x)) << "output " << o << ": the reference has NaN";
        nonzero |= x != 0 && std::isfinite(x);
      }
      ASSERT_TRUE(nonzero) << "output " << o << ": the reference is all zero";
      std::vector<double> finite;
      for (double x : w)
        if (std::isfinite(x)) finite.push_back(x);
      const double scale = rms(finite);
      const DType dt = got[o].dtype();
      const double bound = tol(dt);
      double& worst_dt = (*worst)[dt];
      for (size_t i = 0; i < w.size(); ++i) {
        if (std::isinf(w[i])) {  // lse of a row that sees no key: -inf on both sides
          ASSERT_EQ(w[i], g[i]) << "output " << o << " element " << i;
          continue;
        }
        const double err = std::abs(g[i] - w[i]), allowed = std::abs(w[i]) + scale;
        ASSERT_LE(err, bound * allowed) << "output " << o << " (" << dtype_name(dt) << ") element " << i
                                        << ": got " << g[i] << " ref " << w[i];
        worst_dt = std::max(worst_dt, err / allowed);
      }
    }
  }
}

void print_worst(const std::map<DType, double>& worst) {
  for (const auto& [dt, ratio] : worst)
    std::printf("worst error of the %s outputs: %.3g of |ref| + rms(ref)\n", dtype_name(dt), ratio);
}

class CudaParity : public ::testing::TestWithParam<DType> {};

TEST_P(CudaParity, EveryOpMatchesTheCpuReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const DType dt = GetParam();
  const double tol = dt == DType::kF32 ? 1e-4 : 3e-2;  // see the top of the file
  std::map<DType, double> worst;
  check_table(Device::cuda(0), dt, [tol](DType) { return tol; }, &worst);
  print_worst(worst);
}

// The CPU bf16 path (mixed precision) against the f32 reference, in every build.
TEST(CpuBf16Parity, EveryOpMatchesTheF32Reference) {
  const double bf16_tol = 4e-3, f32_tol = 0;  // see the top of the file
  std::map<DType, double> worst;
  check_table(Device::cpu(), DType::kBF16, [&](DType out) { return out == DType::kBF16 ? bf16_tol : f32_tol; },
              &worst);
  if (HasFatalFailure()) return;
  print_worst(worst);
  ASSERT_EQ(worst.count(DType::kBF16) + worst.count(DType::kF32), 2u) << "both kinds of output are compared";
  // The bf16 outputs were rounded: the run under test is not the reference again.
  EXPECT_GT(worst.at(DType::kBF16), 1e-4);
}

// The checked stand-in device (kernels/sim.h) runs the CPU kernels on memory
// host code may not touch: every op of the table runs there (no host access
// outside a kernel, no cpu tensor mixed in) and gives the CPU's results bit
// for bit, in f32 and in bf16.
TEST(SimParity, EveryOpOnSimIsTheCpuBitForBit) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    std::map<DType, double> worst;
    // f32: the reference itself (tolerance 0); bf16: as CpuBf16Parity.
    check_table(Device::sim(), dt, [dt](DType out) { return dt == DType::kBF16 && out == DType::kBF16 ? 4e-3 : 0.0; },
                &worst);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaParity, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

// Device tensors themselves: host <-> device copies, clone, fill, casts
// through copy_from, and the caching allocator reusing freed blocks.
TEST(CudaTensor, CopiesAndTheAllocatorReuses) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const Tensor host = Tensor::from_vector({1, -2.5, 3, 1e-3, 7}, {5}, DType::kF32);
  const Tensor dev = host.to(Device::cuda(0));
  EXPECT_EQ(dev.device(), Device::cuda(0));
  EXPECT_EQ(dev.to_vector(), host.to_vector());
  EXPECT_EQ(dev.clone().to_vector(), host.to_vector());
  Tensor b = Tensor::empty({5}, DType::kBF16, Device::cuda(0));
  b.copy_from(dev);  // the cast kernel
  Tensor want = Tensor::empty({5}, DType::kBF16);
  want.copy_from(host);
  EXPECT_EQ(b.to_vector(), want.to_vector());
  b.fill(0.5);
  EXPECT_EQ(b.to_vector(), std::vector<double>(5, 0.5));

  // A freed block comes back without a new cudaMalloc.
  { Tensor t = Tensor::empty({1 << 20}, DType::kF32, Device::cuda(0)); }
  const cuda::MemoryStats before = cuda::memory_stats(0);
  EXPECT_GT(before.cached_bytes, 0);
  { Tensor t = Tensor::empty({1 << 20}, DType::kF32, Device::cuda(0)); }
  EXPECT_EQ(cuda::memory_stats(0).device_allocations, before.device_allocations);
}

}  // namespace
}  // namespace rotor
