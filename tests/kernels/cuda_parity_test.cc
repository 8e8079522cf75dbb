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
// Reporting: a case compares every output in full and fails with one message
// per bad output (elements beyond the tolerance, the worst one, the first bad
// index), then the table goes on with the next case, so one run shows every
// broken op. On the GPU each case is its own test (CudaParityCase/<dtype>_
// <case>), recording its worst error (RecordProperty: in gtest's XML/JSON
// output), so that tests/gpu/stages/parity can report per case and rerun the
// rest when one crashes the process (a device fault poisons the CUDA context).
//
// Realistic sizes (CudaParityRealistic, GPU only): attention at T = 4096 and
// 16384 with head dims 128 and 64, logits scaled so that lse is ~16, causal
// and not, without entropy as in training; cross-entropy with vocabularies
// 32000 and 128256 at the training chunk sizes. Their CPU reference is
// sized to take seconds on a GPU machine's CPU (few heads: the attention
// reference parallelises over batch x kv heads, the batch carries the threads).
//
// GPU tests skip without a GPU, or fail under ROTOR_REQUIRE_GPU=1
// (ROTOR_SKIP_WITHOUT_GPU, tests/common/testing.h).
//
// The CUDA backend's state: docs/design.md ("Backends").
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <ostream>
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
#include "tests/common/testing.h"

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
    const uint64_t stream = seed_ + counter_;
#pragma omp parallel for schedule(static) if (v.size() > 100000)
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = static_cast<double>(lo + static_cast<int64_t>(uniform01(stream, i) * static_cast<double>(hi - lo)));
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
    const uint64_t stream = seed_ + 1000 * counter_;
    // Counter-based: element i depends only on (stream, i), so the threads
    // (the realistic cases draw 10^8 values) give the serial result.
#pragma omp parallel for schedule(static) if (v.size() > 100000)
    for (size_t i = 0; i < v.size(); ++i) v[i] = sigma * normal01(stream, i);
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

// One attention case: q, k, v [b, t, h, d] of normal(0, 1) values (q scaled
// by q_sigma, so the logits have standard deviation q_sigma and lse grows with
// it), positions i + 20 for the queries, j + 20 + k_offset for the keys
// (zigzag: below), segment ids position / seg_len. Forward, backward (onto
// random dq, dk, dv), and the LSE merge of the block with itself.
struct Att {
  int64_t b, tq, tk, hq, hkv, d, k_offset;
  bool segments;
  bool zigzag = false;
  bool causal = true;
  bool entropy = true;  // training runs without it
  double q_sigma = 1.0;
  int64_t seg_len = 16;
};

std::string attention_name(const Att& a) {
  return std::to_string(a.b) + "x" + std::to_string(a.tq) + "x" + std::to_string(a.tk) + " h" +
         std::to_string(a.hq) + "/" + std::to_string(a.hkv) + " d" + std::to_string(a.d) + " k" +
         std::to_string(a.k_offset) + (a.segments ? " seg" + std::to_string(a.seg_len) : "") +
         (a.zigzag ? " zigzag" : "") + (a.causal ? "" : " noncausal") + (a.entropy ? "" : " noentropy") +
         (a.q_sigma != 1.0 ? " qsigma" + std::to_string(static_cast<int>(a.q_sigma * 10)) : "");
}

std::vector<Tensor> run_attention(const Att& a, Env& e) {
  Tensor q = e.rand({a.b, a.tq, a.hq, a.d}, a.q_sigma), k = e.rand({a.b, a.tk, a.hkv, a.d});
  Tensor v = e.rand({a.b, a.tk, a.hkv, a.d});
  std::vector<double> qp, kp, qs, ks;
  const int64_t half = a.tq / 2;
  for (int64_t r = 0; r < a.b; ++r) {
    for (int64_t i = 0; i < a.tq; ++i) {
      const int64_t p = a.zigzag ? (i < half ? i + half : i - half + 6 * half) : i + 20;
      qp.push_back(static_cast<double>(p));
      qs.push_back(static_cast<double>(p / a.seg_len));
    }
    for (int64_t j = 0; j < a.tk; ++j) {
      const int64_t p = a.zigzag ? j : j + 20 + a.k_offset;
      kp.push_back(static_cast<double>(p));
      ks.push_back(static_cast<double>(p / a.seg_len));
    }
  }
  AttentionMask m;
  m.q_pos = e.ints_of(qp, {a.b, a.tq});
  m.k_pos = e.ints_of(kp, {a.b, a.tk});
  m.causal = a.causal;
  if (a.segments) {
    m.q_seg = e.ints_of(qs, {a.b, a.tq});
    m.k_seg = e.ints_of(ks, {a.b, a.tk});
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(a.d));
  Tensor out = e.out({a.b, a.tq, a.hq, a.d}), lse = e.out_f32({a.b, a.hq, a.tq});
  Tensor ent = a.entropy ? e.out_f32({a.b, a.hq, a.tq}) : Tensor();
  attention_forward(q, k, v, m, scale, out, lse, ent);
  e.as_stored(out);  // read by the backward and the merge
  Tensor dout = e.rand({a.b, a.tq, a.hq, a.d});
  Tensor dq = e.rand({a.b, a.tq, a.hq, a.d}), dk = e.rand({a.b, a.tk, a.hkv, a.d});
  Tensor dv = e.rand({a.b, a.tk, a.hkv, a.d});
  attention_backward(q, k, v, m, scale, out, lse, dout, dq, dk, dv);
  // Merge the block with itself shifted: out2/lse2 from the same keys.
  Tensor out2 = out.clone(), lse2 = lse.clone(), ent2 = a.entropy ? ent.clone() : Tensor();
  attention_merge(out2, lse2, ent2, out, lse, ent);
  if (!a.entropy) return {out, lse, dq, dk, dv, out2, lse2};
  // One key per row: the entropy is exactly 0 (an all-zero reference
  // proves nothing), so ent is checked through ent2 = ln 2 + ent only.
  if (a.tk == 1) return {out, lse, dq, dk, dv, out2, lse2, ent2};
  return {out, lse, ent, dq, dk, dv, out2, lse2, ent2};
}

// Cross-entropy targets: every fifth token ignored (-1), the others spread
// over the vocabulary (7919 is prime), the last one v - 1.
Tensor ce_targets(Env& e, int64_t n, int64_t v) {
  std::vector<double> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = i % 5 == 3 ? -1 : static_cast<double>((i * 7919) % v);
  if (n > 1) t.back() = static_cast<double>(v - 1);
  return e.ints_of(t, {n});
}

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
  // A GEMM on views that start inside a row (narrow of a [k, n + 1]-strided
  // matrix with odd n: operands only element-aligned), after the same shape
  // and leading dimensions on aligned views: cuBLASLt must not reuse the plan
  // of the aligned call (kernels/cuda/matmul.cc, alignment in the plan key).
  c.push_back({"matmul misaligned views", [](Env& e) {
                 const int64_t m = 33, k = 65, n = 17;
                 Tensor a = e.rand({m + 1, k}), b = e.rand({k + 1, n}, 0.125);
                 Tensor c0 = e.out({m, n}), c1 = e.out({m + 1, n});
                 matmul(a.narrow(0, m), b.narrow(0, k), c0);                      // 256-byte aligned
                 matmul(a.narrow(1, m), b.narrow(1, k), c1.narrow(1, m));         // a, b, c one row in
                 Tensor c2 = e.rand_f32({m + 1, n});                              // f32 c, misaligned rows
                 matmul(a.narrow(1, m), b.narrow(1, k), c2.narrow(1, m), false, false, 1.0, 1.0);
                 return std::vector<Tensor>{c0, c1.narrow(1, m), c2};
               }});
  // Cross-entropy: odd sizes, several tiles, ignored targets, a vocabulary slice.
  for (auto [n, d, v] : {std::array<int64_t, 3>{9, 16, 37}, std::array<int64_t, 3>{70, 64, 1000}}) {
    const std::string sz = std::to_string(n) + "x" + std::to_string(d) + "x" + std::to_string(v);
    const CrossEntropyChunks chunks{.tokens = 32, .vocab = 300, .fused_tile_elements = 4096};
    auto targets = [n, v](Env& e) { return ce_targets(e, n, v); };
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
                       Att{1, 130, 520, 8, 2, 128, 0, true, true}, Att{2, 130, 520, 8, 2, 64, 0, false, true},
                       // non-causal (an encoder-style or fully visible block), without entropy
                       Att{1, 100, 77, 8, 2, 128, 0, false, false, false, false},
                       Att{1, 70, 70, 4, 4, 64, 0, true, false, false, false}}) {
    c.push_back({"attention " + attention_name(a), [a](Env& e) { return run_attention(a, e); }});
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

// GPU-only cases at the sizes training runs (the top of the file), each with
// the dtype it runs in: the flash kernels are the bf16 path, so the long
// attention cases are bf16 (the simple f32 kernel adds dk / dv with atomics
// per query row, minutes at T = 16384); cross-entropy in both.
struct RealisticCase {
  OpCase op;
  DType dtype;
};

std::vector<RealisticCase> realistic_cases() {
  std::vector<RealisticCase> c;
  // q_sigma 4: logits ~ N(0, 16), so lse = ln sum_j exp(s_j) is ~16 (measured
  // means 14-17; CudaParityRealisticReference prints them): in bf16 lse would
  // be off by up to 0.06 there, and P = exp(s - lse) by 6%. seg3000: documents
  // of 3000 tokens (the zigzag and ring layouts are in the small table).
  // Cost of the CPU reference, measured on 2 shared cores of an EPYC: 5.5,
  // 3.8, 26 and 3.5 s, then 0.9 s (f32), 1-12 s per cross-entropy case (the
  // backward runs one thread per batch x kv head, so the long cases have Hq =
  // Hkv; inputs are drawn by all threads): about a minute of CPU in all, far
  // less on a GPU machine's 16 cores.
  const Att attention[] = {
      Att{1, 4096, 4096, 8, 2, 128, 0, false, false, true, false, 4.0},             // training: causal, no entropy
      Att{1, 4096, 4096, 4, 4, 64, 0, false, false, false, true, 4.0},              // non-causal, entropy
      Att{1, 16384, 16384, 4, 4, 128, 0, true, false, true, false, 4.0, 3000},      // long, documents
      Att{1, 16384, 16384, 2, 2, 64, 0, false, false, true, false, 4.0},            // long, head dim 64
  };
  for (const Att& a : attention)
    c.push_back({{"attention " + attention_name(a), [a](Env& e) { return run_attention(a, e); }}, DType::kBF16});
  c.push_back({{"attention " + attention_name(attention[1]), [a = attention[1]](Env& e) { return run_attention(a, e); }},
               DType::kF32});
  // Cross-entropy at Llama 2 / Llama 3 vocabularies with the training chunk
  // sizes (CrossEntropyChunks{}: 1024 x 8192 tiles, fused tiles of 8M
  // logits = 65 rows at V = 128256), 200 tokens (several fused tiles, the
  // last partial). dw starts small so that the gradient, not the starting
  // value, dominates what is compared.
  for (int64_t v : {int64_t{32000}, int64_t{128256}}) {
    const int64_t n = 200, d = 512;
    for (DType dt : {DType::kBF16, DType::kF32}) {
      c.push_back({{"cross_entropy n" + std::to_string(n) + " d" + std::to_string(d) + " v" + std::to_string(v),
                    [=](Env& e) {
                      Tensor h = e.rand({n, d}), w = e.rand({v, d}, 0.05), tg = ce_targets(e, n, v);
                      Tensor loss = e.out_f32({n}), lse = e.out_f32({n});
                      cross_entropy_forward(h, w, tg, loss, lse);
                      Tensor dloss = e.rand_f32({n}), dh = e.out({n, d}), dw = e.rand_f32({v, d}, 1e-4);
                      cross_entropy_backward(h, w, tg, lse, dloss, dh, dw);
                      return std::vector<Tensor>{loss, lse, dh, dw};
                    }},
                   dt});
      c.push_back({{"cross_entropy fused n" + std::to_string(n) + " d" + std::to_string(d) + " v" + std::to_string(v),
                    [=](Env& e) {
                      Tensor h = e.rand({n, d}), w = e.rand({v, d}, 0.05), tg = ce_targets(e, n, v);
                      Tensor dloss = e.rand_f32({n}), loss = e.out_f32({n}), lse = e.out_f32({n});
                      Tensor dh = e.out({n, d}), dw = e.rand_f32({v, d}, 1e-4);
                      cross_entropy_forward_backward(h, w, tg, dloss, loss, lse, dh, dw);
                      return std::vector<Tensor>{loss, lse, dh, dw};
                    }},
                   dt});
    }
  }
  return c;
}

double rms(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return x.empty() ? 0 : std::sqrt(s / static_cast<double>(x.size()));
}

// One output of one case against its reference.
struct OutputReport {
  int64_t size = 0;
  int64_t bad = 0;                // elements beyond the tolerance
  int64_t first_bad = -1;         // index of the first one
  int64_t worst_index = -1;       // index of the largest error ratio
  double worst = 0;               // largest |got - ref| / (|ref| + rms(ref))
};

// Compares got with want element by element: |got - ref| <= tol (|ref| +
// rms(ref)); an infinite reference (lse of a row that sees no key) must be
// matched exactly. Adds one failure for the output when any element is off
// (with the count, the worst and the first bad element), and one when the
// reference is vacuous (NaN, or all zero / infinite).
OutputReport compare_output(const std::vector<double>& w, const std::vector<double>& g, double tol, size_t o,
                            DType dt) {
  OutputReport r;
  r.size = static_cast<int64_t>(w.size());
  if (w.size() != g.size()) {
    ADD_FAILURE() << "output " << o << ": " << g.size() << " elements, the reference has " << w.size();
    r.bad = r.size;
    return r;
  }
  bool nonzero = false, nan_ref = false;
  std::vector<double> finite;
  for (double x : w) {
    nan_ref |= std::isnan(x);
    nonzero |= x != 0 && std::isfinite(x);
    if (std::isfinite(x)) finite.push_back(x);
  }
  EXPECT_FALSE(nan_ref) << "output " << o << ": the reference has NaN";
  EXPECT_TRUE(nonzero) << "output " << o << ": the reference is all zero";
  const double scale = rms(finite);
  for (size_t i = 0; i < w.size(); ++i) {
    double ratio = 0;
    bool ok = true;
    if (std::isinf(w[i])) {
      ok = w[i] == g[i];
      ratio = ok ? 0 : std::numeric_limits<double>::infinity();
    } else {
      const double err = std::abs(g[i] - w[i]), allowed = std::abs(w[i]) + scale;
      ratio = allowed > 0 ? err / allowed : (err == 0 ? 0 : std::numeric_limits<double>::infinity());
      ok = err <= tol * allowed;  // false for NaN
      if (std::isnan(g[i])) ratio = std::numeric_limits<double>::infinity();
    }
    if (r.worst_index < 0 || ratio > r.worst) {
      r.worst = ratio;
      r.worst_index = static_cast<int64_t>(i);
    }
    if (!ok) {
      if (r.first_bad < 0) r.first_bad = static_cast<int64_t>(i);
      ++r.bad;
    }
  }
  if (r.bad > 0) {
    const size_t f = static_cast<size_t>(r.first_bad), k = static_cast<size_t>(r.worst_index);
    ADD_FAILURE() << "output " << o << " (" << dtype_name(dt) << "): " << r.bad << " of " << r.size
                  << " elements beyond " << tol << " x (|ref| + rms(ref) = " << scale << "); worst "
                  << r.worst << " at " << k << " (got " << g[k] << ", ref " << w[k] << "); first bad at " << f
                  << " (got " << g[f] << ", ref " << w[f] << ")";
  }
  return r;
}

// Runs `oc` as the reference (CPU f32) and on `device` in `dtype` from the
// same seed, and compares every output with tol(its dtype). Records the
// worst ratio per output dtype in `worst`; returns the reports per output.
std::vector<OutputReport> check_case(const OpCase& oc, uint64_t seed, Device device, DType dtype,
                                     const std::function<double(DType)>& tol, std::map<DType, double>* worst) {
  SCOPED_TRACE(oc.name + " " + dtype_name(dtype) + " on " + device.str());
  Env ref(Device::cpu(), dtype, seed, /*reference=*/true), run(device, dtype, seed, false);
  const std::vector<Tensor> want = oc.run(ref);
  const std::vector<Tensor> got = oc.run(run);
  std::vector<OutputReport> reports;
  EXPECT_EQ(want.size(), got.size()) << "outputs";
  for (size_t o = 0; o < std::min(want.size(), got.size()); ++o) {
    const DType dt = got[o].dtype();
    reports.push_back(compare_output(want[o].to_vector(), got[o].to(Device::cpu()).to_vector(), tol(dt), o, dt));
    double& w = (*worst)[dt];
    w = std::max(w, reports.back().worst);
  }
  return reports;
}

// Every case of the table (no stop at a failing one).
void check_table(Device device, DType dtype, const std::function<double(DType)>& tol,
                 std::map<DType, double>* worst) {
  const std::vector<OpCase> all = cases();
  ASSERT_GT(all.size(), 40u);
  for (size_t ci = 0; ci < all.size(); ++ci) check_case(all[ci], 1000 + ci, device, dtype, tol, worst);
}

void print_worst(const std::map<DType, double>& worst) {
  for (const auto& [dt, ratio] : worst)
    std::printf("worst error of the %s outputs: %.3g of |ref| + rms(ref)\n", dtype_name(dt), ratio);
}

// The GPU tolerance of a run in `dt` (the top of the file).
double gpu_tolerance(DType dt) { return dt == DType::kF32 ? 1e-4 : 3e-2; }

// Records a case's result where gtest's XML / JSON output keeps it (string
// properties of the test): the worst ratio and first bad index per output,
// the overall worst and the tolerance; and prints them on one line
// ("parity-case key=value ..."), which survives a later crash of the process
// that leaves no JSON. tests/gpu/stages/parity reads both.
void record_case(const std::vector<OutputReport>& reports, double tol) {
  std::vector<std::pair<std::string, std::string>> props;
  char buf[32];
  double worst = 0;
  for (size_t o = 0; o < reports.size(); ++o) {
    std::snprintf(buf, sizeof(buf), "%.4g", reports[o].worst);
    props.emplace_back("out" + std::to_string(o) + "_worst", buf);
    props.emplace_back("out" + std::to_string(o) + "_first_bad", std::to_string(reports[o].first_bad));
    worst = std::max(worst, reports[o].worst);
  }
  std::snprintf(buf, sizeof(buf), "%.4g", worst);
  props.emplace_back("worst", buf);
  std::snprintf(buf, sizeof(buf), "%.4g", tol);
  props.emplace_back("tolerance", buf);
  std::string line = "parity-case";
  for (const auto& [key, value] : props) {
    ::testing::Test::RecordProperty(key, value);
    line += " " + key + "=" + value;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// A case name as a gtest parameter name: letters, digits and '_' (a minus
// sign before a digit becomes 'm': "k-12" -> "km12").
std::string param_name(const std::string& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto ch = static_cast<unsigned char>(s[i]);
    const bool minus = ch == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]));
    r += std::isalnum(ch) ? static_cast<char>(ch) : minus ? 'm' : '_';
  }
  return r;
}

// The table, built once (the parameter generators and the tests share it).
const std::vector<OpCase>& table() {
  static const std::vector<OpCase>* t = new std::vector<OpCase>(cases());
  return *t;
}
const std::vector<RealisticCase>& realistic_table() {
  static const std::vector<RealisticCase>* t = new std::vector<RealisticCase>(realistic_cases());
  return *t;
}

// The GPU column: one test per (dtype, case of the table).
struct TableParam {
  DType dtype;
  size_t index;  // into table(); the case's seed is 1000 + index
};
void PrintTo(const TableParam& p, std::ostream* os) { *os << dtype_name(p.dtype) << " " << table()[p.index].name; }

std::vector<TableParam> table_params() {
  std::vector<TableParam> v;
  for (DType dt : {DType::kF32, DType::kBF16})
    for (size_t i = 0; i < table().size(); ++i) v.push_back({dt, i});
  return v;
}

class CudaParityCase : public ::testing::TestWithParam<TableParam> {};

TEST_P(CudaParityCase, MatchesTheCpuReference) {
  ROTOR_SKIP_WITHOUT_GPU();
  const TableParam p = GetParam();
  const double tol = gpu_tolerance(p.dtype);
  std::map<DType, double> worst;
  record_case(check_case(table()[p.index], 1000 + p.index, Device::cuda(0), p.dtype, [tol](DType) { return tol; },
                         &worst),
              tol);
}

INSTANTIATE_TEST_SUITE_P(Table, CudaParityCase, ::testing::ValuesIn(table_params()),
                         [](const ::testing::TestParamInfo<TableParam>& i) {
                           // Unique: the case index where two names would collide.
                           std::set<std::string> seen;
                           std::string name;
                           for (size_t k = 0; k <= i.param.index; ++k) {
                             name = param_name(table()[k].name);
                             if (!seen.insert(name).second) name += "_" + std::to_string(k);
                           }
                           return std::string(dtype_name(i.param.dtype)) + "_" + name;
                         });

// The realistic cases, by index into realistic_table() (seed 5000 + index).
class CudaParityRealistic : public ::testing::TestWithParam<size_t> {};

TEST_P(CudaParityRealistic, MatchesTheCpuReference) {
  ROTOR_SKIP_WITHOUT_GPU();
  const RealisticCase& rc = realistic_table()[GetParam()];
  const double tol = gpu_tolerance(rc.dtype);
  std::map<DType, double> worst;
  const auto start = std::chrono::steady_clock::now();
  record_case(check_case(rc.op, 5000 + GetParam(), Device::cuda(0), rc.dtype, [tol](DType) { return tol; }, &worst),
              tol);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("seconds", std::to_string(seconds));
}

INSTANTIATE_TEST_SUITE_P(Sizes, CudaParityRealistic, ::testing::Range<size_t>(0, realistic_table().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           const RealisticCase& rc = realistic_table()[i.param];
                           return std::string(dtype_name(rc.dtype)) + "_" + param_name(rc.op.name);
                         });

// By hand (--gtest_also_run_disabled_tests): the CPU reference of every
// realistic case, timed, with the mean of each output's finite |values| (lse
// ~16 for the attention cases), to size the cases for the parity stage's
// budget on a GPU machine's CPU.
TEST(CudaParityRealisticReference, DISABLED_Timing) {
  for (size_t ci = 0; ci < realistic_table().size(); ++ci) {
    const RealisticCase& rc = realistic_table()[ci];
    Env ref(Device::cpu(), rc.dtype, 5000 + ci, /*reference=*/true);
    const auto start = std::chrono::steady_clock::now();
    const std::vector<Tensor> out = rc.op.run(ref);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-60s %s %7.1f s; mean |output|:", rc.op.name.c_str(), dtype_name(rc.dtype), seconds);
    for (const Tensor& t : out) {
      double sum = 0;
      int64_t n = 0;
      for (double x : t.to_vector())
        if (std::isfinite(x)) sum += std::abs(x), ++n;
      std::printf(" %.3g", n > 0 ? sum / static_cast<double>(n) : 0.0);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
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

// The comparison itself: a wrong element fails, and every bad output of a
// case is reported, not just the first.
TEST(ParityCompare, ReportsEveryBadOutputWithItsWorstAndFirstBadElement) {
  const std::vector<double> ref = {1.0, -2.0, 3.0, -std::numeric_limits<double>::infinity()};
  OutputReport good, bad_mid, bad_inf;
  good = compare_output(ref, {1.0, -2.0, 3.0 + 1e-6, ref[3]}, 1e-4, 0, DType::kF32);
  EXPECT_EQ(good.bad, 0);
  EXPECT_GT(good.worst, 0);
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter capture(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    bad_mid = compare_output(ref, {1.0, -2.5, 3.5, ref[3]}, 1e-4, 1, DType::kF32);
    bad_inf = compare_output(ref, {1.0, -2.0, 3.0, 0.0}, 1e-4, 2, DType::kF32);
  }
  ASSERT_EQ(failures.size(), 2) << "one failure per bad output";
  EXPECT_EQ(bad_mid.bad, 2);
  EXPECT_EQ(bad_mid.first_bad, 1);
  EXPECT_EQ(bad_mid.worst_index, 1);  // 0.5 / (2 + rms) beats 0.5 / (3 + rms)
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("first bad at 1"), std::string::npos)
      << failures.GetTestPartResult(0).message();
  EXPECT_EQ(bad_inf.first_bad, 3);
  EXPECT_TRUE(std::isinf(bad_inf.worst));
}

// Device tensors themselves: host <-> device copies, clone, fill, casts
// through copy_from, and the caching allocator reusing freed blocks.
TEST(CudaTensor, CopiesAndTheAllocatorReuses) {
  ROTOR_SKIP_WITHOUT_GPU();
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

// A token id outside the table is reported by the GPU op (kernels/cuda/
// fault.h), as the CPU op CHECKs it, instead of reading or writing V * D
// elements away; the same for a cross-entropy target past the vocabulary.
// Death tests: the report is a CHECK failure (threadsafe style: the child
// re-executes the binary, CUDA is not used across a fork).
TEST(CudaFault, EmbeddingIdOutsideTheTableIsReported) {
  ROTOR_SKIP_WITHOUT_GPU();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Device gpu = Device::cuda(0);
  const Tensor table = Tensor::zeros({10, 8}, DType::kF32, gpu);
  auto forward = [&] {
    const Tensor ids = Tensor::from_vector({1, 12, 3}, {3}, DType::kI32).to(gpu);
    const Tensor out = Tensor::empty({3, 8}, DType::kF32, gpu);
    embedding_forward(ids, table, out);
    out.to(Device::cpu());  // synchronises: the record is read then at the latest
  };
  EXPECT_DEATH(forward(), "token id outside the table.*value 12 at position 1, bound 10");
  auto backward = [&] {
    const Tensor ids = Tensor::from_vector({-1, 2}, {2}, DType::kI32).to(gpu);
    const Tensor dout = Tensor::zeros({2, 8}, DType::kBF16, gpu);
    embedding_backward(ids, dout, table);
    table.to(Device::cpu());
  };
  EXPECT_DEATH(backward(), "token id outside the table.*value -1 at position 0, bound 10");
  // In range: no report (the parity table covers the values).
  const Tensor ids = Tensor::from_vector({0, 9}, {2}, DType::kI32).to(gpu);
  const Tensor out = Tensor::empty({2, 8}, DType::kF32, gpu);
  embedding_forward(ids, table, out);
  EXPECT_EQ(out.to(Device::cpu()).to_vector(), std::vector<double>(16, 0.0));
}

TEST(CudaFault, CrossEntropyTargetPastTheVocabularyIsReported) {
  ROTOR_SKIP_WITHOUT_GPU();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Device gpu = Device::cuda(0);
  auto forward = [&] {
    const Tensor h = Tensor::zeros({3, 16}, DType::kBF16, gpu), w = Tensor::zeros({37, 16}, DType::kBF16, gpu);
    const Tensor targets = Tensor::from_vector({0, -1, 37}, {3}, DType::kI32).to(gpu);
    const Tensor loss = Tensor::empty({3}, DType::kF32, gpu), lse = Tensor::empty({3}, DType::kF32, gpu);
    cross_entropy_forward(h, w, targets, loss, lse);
    loss.to(Device::cpu());
  };
  EXPECT_DEATH(forward(), "target outside the vocabulary.*value 37 at position 2, bound 37");
}

// A copy between two GPUs waits for the source device's queued work and the
// source's later work waits for the copy (kernels/cuda/allocator.cc,
// ordered_copy): a tensor filled by a long chain of kernels on cuda:0 and
// copied to cuda:1 at once arrives with its final values, and overwriting the
// source right after the copy does not change what arrived.
TEST(CudaTensor, CopyBetweenGpusIsOrderedWithBothStreams) {
  ROTOR_SKIP_WITHOUT_GPU();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two GPUs, " << cuda_device_count() << " here";
  const int64_t n = int64_t{1} << 24;  // 64 MiB of f32: each pass takes a while
  Tensor src = Tensor::zeros({n}, DType::kF32, Device::cuda(0));
  const Tensor one = Tensor::zeros({n}, DType::kF32, Device::cuda(0));
  one.fill(1.0);
  for (int i = 0; i < 50; ++i) axpy(1.0, one, src);  // src = 50, queued on cuda:0
  Tensor dst = Tensor::empty({n}, DType::kF32, Device::cuda(1));
  dst.copy_from(src);
  src.fill(-7.0);  // queued on cuda:0 after the copy
  const std::vector<double> got = dst.to(Device::cpu()).to_vector();
  EXPECT_EQ(std::count(got.begin(), got.end(), 50.0), n);
}

}  // namespace
}  // namespace rotor
