// The CUDA backend against the CPU reference: one table of op cases (as
// ggml's test-backend-ops), each run twice from the same seeded inputs, on
// the CPU in f32 and on the GPU in f32 and in bf16, and compared element by
// element. Skips, with the reason, where there is no GPU (or no CUDA build).
//
// Inputs: every case draws its tensors from Env::rand (a fixed seed per
// case, the same values on both runs). For bf16 the values are first rounded
// to bf16, and the CPU reference computes in f32 on those rounded values, so
// the comparison measures only the GPU's own rounding and summation order.
// Outputs that an op overwrites are poisoned with NaN before the run (an
// element the kernel does not write fails); outputs it accumulates into
// (dw, dtable, dq, ...) start from the same random values on both sides, so
// "+=" is checked too.
//
// Tolerance (|gpu - cpu| <= tol * (|cpu| + rms(cpu)), per output):
//   f32  1e-4: the same f32 math in another summation order (tree reductions,
//        cuBLASLt's split-K), whose error grows ~sqrt(K) eps_f32 ~ 1e-6 for
//        the sums here; 1e-4 leaves room and still catches any wrong term.
//   bf16 3e-2: outputs are rounded to bf16 (2^-9 = 2e-3 relative) and some
//        ops store an intermediate in bf16 too (rstd, logits tiles cast for
//        the dlogits GEMMs, attention probabilities times bf16 values), each
//        ~2e-3; a handful of those stay well under 3e-2, while a wrong index
//        or a missing term is O(1).
// Every reference output must be finite and not all zero (a case that
// compares zeros with zeros would prove nothing).
//
// The CUDA backend's state: docs/design.md ("Backends").
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
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

namespace rotor {
namespace {

// Where and in which dtype one run of a case happens.
class Env {
 public:
  Env(Device device, DType dtype, uint64_t seed) : device_(device), dtype_(dtype), seed_(seed) {}

  // Float input: normal(0, sigma) values (bf16-rounded for a bf16 run).
  Tensor rand(const Shape& shape, double sigma = 1.0) { return place(values(shape, sigma), shape, dtype_); }
  // f32 input whatever the run's dtype (AdamW master weights and moments).
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
  // Output the op overwrites: NaN everywhere first.
  Tensor out(const Shape& shape) { return out_of(shape, dtype_); }
  Tensor out_of(const Shape& shape, DType dt) {
    Tensor t = Tensor::empty(shape, on_cpu() ? DType::kF32 : dt, device_);
    t.fill(std::numeric_limits<double>::quiet_NaN());
    return t;
  }
  bool on_cpu() const { return device_.is_cpu(); }
  DType dtype() const { return dtype_; }

 private:
  std::vector<double> values(const Shape& shape, double sigma) {
    std::vector<double> v(static_cast<size_t>(shape.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = sigma * normal01(seed_ + 1000 * counter_, i);
    ++counter_;
    return v;
  }
  // The CPU run keeps f32 (the reference computes in f32) holding the values
  // the GPU run sees in `dt`.
  Tensor place(const std::vector<double>& v, const Shape& shape, DType dt) {
    Tensor rounded = Tensor::from_vector(v, shape, dt);
    if (on_cpu()) {
      Tensor f = Tensor::empty(shape, DType::kF32);
      f.copy_from(rounded);
      return f;
    }
    return rounded.to(device_);
  }

  Device device_;
  DType dtype_;
  uint64_t seed_;
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
                   Tensor dout = e.rand({n, d}), dtable = e.rand({v, d});  // += onto random values
                   embedding_backward(ids, dout, dtable);
                   return std::vector<Tensor>{o, dtable};
                 }});
  }
  for (auto [n, d] : {std::array<int64_t, 2>{3, 33}, std::array<int64_t, 2>{64, 4096}, std::array<int64_t, 2>{17, 1000}}) {
    const std::string sz = std::to_string(n) + "x" + std::to_string(d);
    c.push_back({"rmsnorm " + sz, [n, d](Env& e) {
                   Tensor x = e.rand({n, d}), w = e.rand({d}), y = e.out({n, d}), rstd = e.out({n});
                   rmsnorm_forward(x, w, 1e-5, y, rstd);
                   Tensor dy = e.rand({n, d}), dx = e.out({n, d}), dw = e.rand({d});
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
                       return std::vector<Tensor>{c0, c1};
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
                   Tensor loss = e.out({n}), lse = e.out({n});
                   cross_entropy_forward(h, w, tg, loss, lse, chunks);
                   Tensor dloss = e.rand({n}), dh = e.out({n, d}), dw = e.rand({v, d});
                   cross_entropy_backward(h, w, tg, lse, dloss, dh, dw, chunks);
                   return std::vector<Tensor>{loss, lse, dh, dw};
                 }});
    c.push_back({"cross_entropy fused " + sz, [=](Env& e) {
                   Tensor h = e.rand({n, d}), w = e.rand({v, d}, 0.3), tg = targets(e), dloss = e.rand({n});
                   Tensor loss = e.out({n}), lse = e.out({n}), dh = e.out({n, d}), dw = e.rand({v, d});
                   cross_entropy_forward_backward(h, w, tg, dloss, loss, lse, dh, dw, chunks);
                   return std::vector<Tensor>{loss, lse, dh, dw};
                 }});
    c.push_back({"cross_entropy vocab slice " + sz, [=](Env& e) {
                   const int64_t slice = v / 2 + 1, start = v - slice;
                   Tensor h = e.rand({n, d}), w = e.rand({slice, d}, 0.3), tg = targets(e);
                   Tensor loss = e.out({n}), lse = e.out({n});
                   cross_entropy_forward(h, w, tg, loss, lse, chunks, start, v);
                   Tensor dloss = e.rand({n}), dh = e.out({n, d}), dw = e.rand({slice, d});
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
                   Tensor out = e.out({a.b, a.tq, a.hq, a.d}), lse = e.out({a.b, a.hq, a.tq});
                   Tensor ent = e.out({a.b, a.hq, a.tq});
                   attention_forward(q, k, v, m, scale, out, lse, ent);
                   Tensor dout = e.rand({a.b, a.tq, a.hq, a.d});
                   Tensor dq = e.rand({a.b, a.tq, a.hq, a.d}), dk = e.rand({a.b, a.tk, a.hkv, a.d});
                   Tensor dv = e.rand({a.b, a.tk, a.hkv, a.d});
                   attention_backward(q, k, v, m, scale, out, lse, dout, dq, dk, dv);
                   // Merge the block with itself shifted: out2/lse2 from the same keys.
                   Tensor out2 = out.clone(), lse2 = lse.clone(), ent2 = ent.clone();
                   attention_merge(out2, lse2, ent2, out, lse, ent);
                   return std::vector<Tensor>{out, lse, ent, dq, dk, dv, out2, lse2, ent2};
                 }});
  }
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

class CudaParity : public ::testing::TestWithParam<DType> {};

TEST_P(CudaParity, EveryOpMatchesTheCpuReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const DType dt = GetParam();
  const double tol = dt == DType::kF32 ? 1e-4 : 3e-2;
  const std::vector<OpCase> all = cases();
  ASSERT_GT(all.size(), 40u);
  for (size_t ci = 0; ci < all.size(); ++ci) {
    const OpCase& oc = all[ci];
    SCOPED_TRACE(oc.name + " " + dtype_name(dt));
    Env cpu(Device::cpu(), dt, 1000 + ci), gpu(Device::cuda(0), dt, 1000 + ci);
    const std::vector<Tensor> want = oc.run(cpu);
    const std::vector<Tensor> got = oc.run(gpu);
    ASSERT_EQ(want.size(), got.size());
    for (size_t o = 0; o < want.size(); ++o) {
      const std::vector<double> w = want[o].to_vector(), g = got[o].to_vector();
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
      for (size_t i = 0; i < w.size(); ++i) {
        if (std::isinf(w[i])) {  // lse of a row that sees no key: -inf on both sides
          ASSERT_EQ(w[i], g[i]) << "output " << o << " element " << i;
          continue;
        }
        ASSERT_LE(std::abs(g[i] - w[i]), tol * (std::abs(w[i]) + scale))
            << "output " << o << " element " << i << ": gpu " << g[i] << " cpu " << w[i];
      }
    }
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
