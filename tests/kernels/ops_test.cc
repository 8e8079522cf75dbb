// Forward checks of the CPU reference ops against independent formulations:
// a naive triple-loop matmul, unchunked logits for the fused cross-entropy,
// rotation invariants of RoPE, AdamW's first-step closed form, bf16 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

using testing::random_tensor;

// f32 GEMM with K-term sums of O(1) products vs an f64 loop: error ~ K eps_f32
// |max term| in the worst case; K <= 70 gives < 1e-5, so atol 1e-4 is safe.
TEST(Matmul, MatchesNaiveLoopOnOddShapesAllTransposes) {
  const int64_t m = 13, k = 67, n = 5;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, DType::kF32, 20 + ta);
      Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, DType::kF32, 30 + tb);
      Tensor c = Tensor::empty({m, n}, DType::kF32);
      c.fill(std::numeric_limits<double>::quiet_NaN());  // beta = 0 must ignore old c
      matmul(a, b, c, ta, tb);
      Tensor want = Tensor::empty({m, n}, DType::kF64);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p)
            s += a.item(ta ? p * m + i : i * k + p) * b.item(tb ? j * k + p : p * n + j);
          want.data<double>()[i * n + j] = s;
        }
      testing::expect_close(c, want, 1e-4, 0, "matmul");
      // beta = 1 accumulates: c + a b = 2 a b.
      matmul(a, b, c, ta, tb, 1.0, 1.0);
      scale(want, 2.0);
      testing::expect_close(c, want, 2e-4, 0, "matmul accumulate");
    }
  }
}

// Unchunked logits in f64 as the reference; f32 fused result within 1e-5
// relative (LSE of 50 O(1) logits, reordered sums).
TEST(CrossEntropy, ChunkedEqualsFullLogits) {
  const int64_t n = 9, v = 50, d = 16;
  Tensor h = random_tensor({n, d}, DType::kF32, 40), w = random_tensor({v, d}, DType::kF32, 41);
  Tensor targets = Tensor::from_vector({0, 49, 7, -1, 13, 13, 25, 48, 2}, {n}, DType::kI32);
  Tensor want = Tensor::empty({n}, DType::kF64);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> logits(v);
    double mx = -1e300;
    for (int64_t j = 0; j < v; ++j) {
      double s = 0;
      for (int64_t p = 0; p < d; ++p) s += h.item(i * d + p) * w.item(j * d + p);
      logits[j] = s;
      mx = std::max(mx, s);
    }
    double z = 0;
    for (double l : logits) z += std::exp(l - mx);
    const int t = static_cast<int>(targets.item(i));
    want.data<double>()[i] = t < 0 ? 0.0 : mx + std::log(z) - logits[t];
  }
  for (CrossEntropyChunks chunks : {CrossEntropyChunks{1024, 8192}, CrossEntropyChunks{2, 7},
                                    CrossEntropyChunks{4, 50}, CrossEntropyChunks{9, 1}}) {
    Tensor loss = Tensor::empty({n}, DType::kF32), lse = Tensor::empty({n}, DType::kF32);
    cross_entropy_forward(h, w, targets, loss, lse, chunks);
    testing::expect_close(loss, want, 1e-5, 1e-5, "fused cross-entropy");
    EXPECT_EQ(loss.item(3), 0.0) << "ignored target must give zero loss";
  }
  // The fused training path gives the same loss and LSE, for tiles of 1, 4 and all rows.
  for (int64_t rows : {1, 4, 9}) {
    Tensor loss = Tensor::empty({n}, DType::kF32), lse = Tensor::empty({n}, DType::kF32);
    Tensor dh = Tensor::empty({n, d}, DType::kF32), dw = Tensor::zeros({v, d}, DType::kF32);
    Tensor dl = Tensor::empty({n}, DType::kF32);
    dl.fill(0.125);
    cross_entropy_forward_backward(h, w, targets, dl, loss, lse, dh, dw,
                                   CrossEntropyChunks{.fused_tile_elements = rows * v});
    testing::expect_close(loss, want, 1e-5, 1e-5, "fused forward-backward loss");
    testing::expect_finite_nonzero(dw, "fused dw");
  }
}

// RoPE is a rotation: at attention_factor 1 and no scale it keeps norms, is
// the identity at position 0, and q.k after RoPE depends only on the distance.
TEST(RopeApply, RotationInvariants) {
  const int64_t d = 16;
  Tensor inv = Tensor::empty({d / 2}, DType::kF32);
  for (int64_t i = 0; i < d / 2; ++i) inv.data<float>()[i] = std::pow(10000.0, -2.0 * i / d);
  Tensor q = random_tensor({1, 1, 1, d}, DType::kF64, 50);
  Tensor k = random_tensor({1, 1, 1, d}, DType::kF64, 51);
  auto rot = [&](const Tensor& x, int p) {
    Tensor y = Tensor::empty(x.shape(), DType::kF64);
    rope_forward(x, Tensor::from_vector({double(p)}, {1, 1}, DType::kI32), inv, 1.0, Tensor(), y);
    return y;
  };
  auto dot = [](const Tensor& a, const Tensor& b) { return testing::weighted_sum(a, b); };
  testing::expect_close(rot(q, 0), q, 1e-12, 0, "position 0 is the identity");
  EXPECT_NEAR(dot(rot(q, 777), rot(q, 777)), dot(q, q), 1e-12);
  const double d1 = dot(rot(q, 100), rot(k, 40)), d2 = dot(rot(q, 1060), rot(k, 1000));
  EXPECT_NEAR(d1, d2, 1e-9) << "relative-position property";
  EXPECT_GT(std::fabs(d1 - dot(q, k)), 1e-3) << "rotation must change the logit";
}

TEST(RopeApply, AttentionFactorAndQueryScaleMultiply) {
  Tensor inv = Tensor::from_vector({0.5, 0.25}, {2}, DType::kF32);
  Tensor x = random_tensor({1, 2, 1, 4}, DType::kF64, 52);
  Tensor pos = Tensor::from_vector({3, 9}, {1, 2}, DType::kI32);
  Tensor plain = Tensor::empty(x.shape(), DType::kF64), scaled = Tensor::empty(x.shape(), DType::kF64);
  rope_forward(x, pos, inv, 1.0, Tensor(), plain);
  rope_forward(x, pos, inv, 1.5, Tensor::from_vector({2.0, 3.0}, {1, 2}, DType::kF64), scaled);
  for (int64_t i = 0; i < 8; ++i)
    EXPECT_NEAR(scaled.item(i), plain.item(i) * 1.5 * (i < 4 ? 2.0 : 3.0), 1e-12);
}

// First AdamW step: m_hat = g, v_hat = g^2, so p' = p (1 - lr wd) - lr g / (|g| + eps).
TEST(AdamW, FirstStepClosedFormAndWorkingCopy) {
  Tensor p = random_tensor({37}, DType::kF32, 60), g = random_tensor({37}, DType::kF32, 61);
  Tensor p0 = p.clone();
  Tensor m = Tensor::zeros({37}, DType::kF32), v = Tensor::zeros({37}, DType::kF32);
  Tensor work = Tensor::empty({37}, DType::kBF16);
  AdamWHyper hp{.lr = 0.01, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  adamw_step(p, g, m, v, 1, hp, 0.5, work);
  Tensor want = Tensor::empty({37}, DType::kF64);
  for (int64_t i = 0; i < 37; ++i) {
    const double gi = 0.5 * g.item(i);
    want.data<double>()[i] = p0.item(i) * (1 - 0.01 * 0.1) - 0.01 * gi / (std::fabs(gi) + 1e-8);
  }
  testing::expect_close(p, want, 1e-6, 1e-6, "adamw step 1");
  // bf16 keeps 8 significant bits: relative rounding error <= 2^-8.
  testing::expect_close(work, p, 0, 1.0 / 256, "bf16 working copy");
}

TEST(Elementwise, SquaredNormAndBf16Rounding) {
  Tensor x = random_tensor({1001}, DType::kF32, 70);
  double want = 0;
  for (int64_t i = 0; i < 1001; ++i) want += x.item(i) * x.item(i);
  ASSERT_GT(want, 0);
  EXPECT_NEAR(squared_norm(x), want, 1e-9 * want);
  // Ties round to even: 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6.
  Tensor f = Tensor::from_vector({1.0 + 1.0 / 256, 1.0 + 3.0 / 256, -2.5, 1e-3}, {4}, DType::kF32);
  Tensor b = Tensor::empty({4}, DType::kBF16);
  cast(f, b);
  EXPECT_EQ(b.item(0), 1.0);
  EXPECT_EQ(b.item(1), 1.0 + 4.0 / 256);
  EXPECT_EQ(b.item(2), -2.5);
  EXPECT_NEAR(b.item(3), 1e-3, 1e-3 / 256);
}

// copy_columns moves exactly the named block and nothing else (odd sizes, bf16
// and f64), and refuses a block past either edge.
TEST(Elementwise, CopyColumnsMovesOneBlock) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF64}) {
    Tensor src = random_tensor({5, 11}, DType::kF32, 71), dst = random_tensor({5, 6}, DType::kF32, 72);
    Tensor s = Tensor::empty(src.shape(), dt), d = Tensor::empty(dst.shape(), dt);
    s.copy_from(src);
    d.copy_from(dst);
    const std::vector<double> before = d.to_vector();
    copy_columns(s, 7, d, 2, 3);
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t j = 0; j < 6; ++j) {
        const double want = j >= 2 && j < 5 ? s.item(i * 11 + 7 + (j - 2)) : before[static_cast<size_t>(i * 6 + j)];
        EXPECT_EQ(d.item(i * 6 + j), want) << dtype_name(dt) << " row " << i << " col " << j;
      }
    }
    EXPECT_DEATH(copy_columns(s, 9, d, 0, 3), "copy_columns: columns \\[9, 12\\)");
    EXPECT_DEATH(copy_columns(s, 0, d, 4, 3), "into \\[4, 7\\)");
  }
}

TEST(Embedding, RepeatedIdsAccumulateInBackward) {
  Tensor ids = Tensor::from_vector({2, 2, 0}, {3}, DType::kI32);
  Tensor dout = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, DType::kF32);
  Tensor dt = Tensor::zeros({3, 2}, DType::kF32);
  embedding_backward(ids, dout, dt);
  EXPECT_EQ(dt.to_vector(), (std::vector<double>{5, 6, 0, 0, 4, 6}));
}

// bf16 activations, f32 weight gradient: 512 rows of one id, each 2^-9, add
// 1 to dtable's 1. In f32 that is exact; a bf16 accumulator would round every
// 1 + 2^-9 back to 1 (a tie, to even) and keep 1.
TEST(MixedPrecision, EmbeddingGradientOfBf16AccumulatesInF32) {
  const int64_t n = 512;
  Tensor ids = Tensor::zeros({n}, DType::kI32);
  Tensor dout = Tensor::empty({n, 2}, DType::kBF16);
  dout.fill(1.0 / 512);
  Tensor dt = Tensor::empty({3, 2}, DType::kF32);
  dt.fill(1.0);
  embedding_backward(ids, dout, dt);
  EXPECT_EQ(dt.to_vector(), (std::vector<double>{2, 2, 1, 1, 1, 1}));
}

// The dtype contract of kernels/tensor.h is enforced: with bf16 activations a
// statistic or weight gradient in bf16 is refused with a message that names
// the tensor and the dtype it must have; f64 activations want f64 ones.
TEST(MixedPrecision, StatisticsAndWeightGradientsMustBeTheComputeDtype) {
  auto bf = [](const Shape& s) { return Tensor::zeros(s, DType::kBF16); };
  auto f32 = [](const Shape& s) { return Tensor::zeros(s, DType::kF32); };
  const int64_t b = 1, t = 3, h = 2, d = 4;
  AttentionMask mask;
  mask.q_pos = Tensor::from_vector({0, 1, 2}, {b, t}, DType::kI32);
  mask.k_pos = mask.q_pos;
  const Tensor q = bf({b, t, h, d});
  EXPECT_DEATH(attention_forward(q, q, q, mask, 0.5, bf({b, t, h, d}), bf({b, h, t})),
               "attention_forward: lse must be f32 with bf16 activations");
  EXPECT_DEATH(attention_forward(q, q, q, mask, 0.5, bf({b, t, h, d}), f32({b, h, t}), bf({b, h, t})),
               "entropy must be f32");
  EXPECT_DEATH(attention_merge(bf({b, t, h, d}), bf({b, h, t}), Tensor(), bf({b, t, h, d}), f32({b, h, t}), Tensor()),
               "attention_merge: lse_acc must be f32");
  EXPECT_DEATH(rmsnorm_forward(bf({t, d}), bf({d}), 1e-5, bf({t, d}), bf({t})), "rmsnorm_forward: rstd must be f32");
  EXPECT_DEATH(rmsnorm_backward(bf({t, d}), bf({t, d}), bf({d}), f32({t}), bf({t, d}), bf({d})),
               "rmsnorm_backward: dw must be f32");
  const Tensor targets = Tensor::zeros({t}, DType::kI32);
  EXPECT_DEATH(cross_entropy_forward(bf({t, d}), bf({5, d}), targets, f32({t}), bf({t})),
               "cross_entropy_forward: lse must be f32");
  EXPECT_DEATH(cross_entropy_forward(bf({t, d}), bf({5, d}), targets, bf({t}), f32({t})),
               "cross_entropy_forward: loss must be f32");
  EXPECT_DEATH(cross_entropy_backward(bf({t, d}), bf({5, d}), targets, f32({t}), f32({t}), bf({t, d}), bf({5, d})),
               "cross_entropy_backward: dw must be f32");
  EXPECT_DEATH(cross_entropy_forward_backward(bf({t, d}), bf({5, d}), targets, bf({t}), f32({t}), f32({t}),
                                              bf({t, d}), f32({5, d})),
               "cross_entropy_forward_backward: dloss must be f32");
  EXPECT_DEATH(embedding_backward(targets, bf({t, d}), bf({5, d})), "embedding_backward: dtable must be f32");
  EXPECT_DEATH(matmul(bf({t, d}), bf({d, t}), Tensor::zeros({t, t}, DType::kF64)),
               "matmul: c must be bf16 or f32 with bf16 operands");
  EXPECT_DEATH(matmul(f32({t, d}), bf({d, t}), f32({t, t})), "matmul: dtype mismatch");
  // f64 (gradient checks) keeps f64 statistics.
  EXPECT_DEATH(rmsnorm_forward(Tensor::zeros({t, d}, DType::kF64), Tensor::zeros({d}, DType::kF64), 1e-5,
                               Tensor::zeros({t, d}, DType::kF64), f32({t})),
               "rstd must be f64 with f64 activations");
}

}  // namespace
}  // namespace rotor
