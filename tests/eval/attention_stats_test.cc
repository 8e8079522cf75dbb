// eval/attention_stats: the kernel's entropy equals the entropy of explicitly
// built rows; attention distance and JS divergence on hand-made q/k with known
// answers; GQA head mapping; JS of a model against itself, symmetry, bounds.
#include "eval/attention_stats.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/testing.h"
#include "kernels/random.h"
#include "model/llama.h"

namespace rotor::eval {
namespace {

LlamaModel tiny_model(uint64_t seed, double theta) {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.initializer_range = 0.5;  // peaked attention rows, far from uniform
  LlamaOptions o;
  o.rope.theta = theta;
  o.logit_scale.kind = LogitScaleKind::kLogPosition;  // the scalar is in q: rows must include it
  o.logit_scale.base_length = 4;
  o.logit_scale.skip_layers = {0};
  absl::StatusOr<LlamaModel> m = LlamaModel::create(c, o);
  EXPECT_TRUE(m.ok()) << m.status();
  m->init_weights(seed);
  return *std::move(m);
}

Batch random_batch(int64_t b, int64_t t) {
  Batch x;
  x.input_ids = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b * t; ++i) x.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(77 + i) % 40);
  return x;
}

double row_entropy(const double* p, int64_t n) {
  double h = 0;
  for (int64_t j = 0; j < n; ++j)
    if (p[j] > 0) h -= p[j] * std::log(p[j]);
  return h;
}

TEST(AttentionStats, KernelEntropyEqualsExplicitRows) {
  LlamaModel model = tiny_model(3, 50.0);
  const int64_t B = 2, T = 12, H = 4, width = 4;
  const Batch batch = random_batch(B, T);
  absl::StatusOr<AttentionStats> s = attention_stats(model, batch, width);
  ASSERT_TRUE(s.ok()) << s.status();
  for (int64_t l = 0; l < 2; ++l) {
    const BlockActivations& act = model.activations(l);
    const Tensor rows = attention_matrix(act.q, act.k);  // [B, H, T, T]
    ASSERT_EQ(rows.shape(), Shape({B, H, T, T}));
    const double* p = rows.data<double>();
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> sum(3, 0.0);
      std::vector<int64_t> count(3, 0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i) {
          const double* r = p + ((b * H + h) * T + i) * T;
          double total = 0;
          for (int64_t j = 0; j < T; ++j) {
            if (j > i) EXPECT_EQ(r[j], 0.0) << "causal";
            total += r[j];
          }
          EXPECT_NEAR(total, 1.0, 1e-12);
          const double e = row_entropy(r, T);
          sum[static_cast<size_t>(bucket_index(i, width))] += e;
          ++count[static_cast<size_t>(bucket_index(i, width))];
        }
      for (int64_t k = 0; k < 3; ++k) {
        const double want = sum[static_cast<size_t>(k)] / static_cast<double>(count[static_cast<size_t>(k)]);
        if (k > 0) ASSERT_GT(want, 0.05) << "reference entropy must be non-trivial";
        // The kernel works in f32 (exp, log, sums over <= 12 keys): ~1e-6 absolute.
        EXPECT_NEAR(s->entropy.mean(l, h, k), want, 1e-5) << "layer " << l << " head " << h << " bucket " << k;
      }
      // Peaked, not uniform: the last bucket's entropy is clearly below ln(row length).
      EXPECT_LT(s->entropy.mean(l, h, 2), std::log(10.0));
    }
  }
}

// q = 0: uniform rows over j <= i, distance (i - 0 + ... + 0) / (i + 1) = i / 2.
// A key far along q only at position 0: every row looks back to 0, distance i.
TEST(AttentionStats, DistanceOnHandMadeQK) {
  const int64_t T = 4;
  HeadBucketTable uniform(1, 1, position_buckets(T, 2));
  const Tensor q0 = Tensor::zeros({1, T, 1, 2}, DType::kF32);
  const Tensor k0 = testing::random_tensor({1, T, 1, 2}, DType::kF32, 5);
  add_attention_distance(q0, k0, Tensor(), 0, 2, uniform);
  EXPECT_NEAR(uniform.mean(0, 0, 0), (0.0 + 0.5) / 2, 1e-12);
  EXPECT_NEAR(uniform.mean(0, 0, 1), (1.0 + 1.5) / 2, 1e-12);
  EXPECT_NEAR(uniform.mean(0, 0), 0.75, 1e-12);
  EXPECT_EQ(uniform.rows(0, 0), T);

  HeadBucketTable first(1, 1, position_buckets(T, 2));
  Tensor q = Tensor::zeros({1, T, 1, 2}, DType::kF32);
  Tensor k = Tensor::zeros({1, T, 1, 2}, DType::kF32);
  for (int64_t i = 0; i < T; ++i) q.data<float>()[i * 2] = 10;
  k.data<float>()[0] = 10;  // logit 100 / sqrt(2) at key 0, 0 elsewhere: p_0 = 1 - O(e^-70)
  add_attention_distance(q, k, Tensor(), 0, 2, first);
  EXPECT_NEAR(first.mean(0, 0, 0), 0.5, 1e-12);   // rows 0 and 1
  EXPECT_NEAR(first.mean(0, 0, 1), 2.5, 1e-12);   // rows 2 and 3
  // Positions other than 0..T-1 (a shard): distance is in positions.
  Tensor pos = Tensor::from_vector({10, 12, 14, 16}, {1, T}, DType::kI32);
  HeadBucketTable far(1, 1, position_buckets(17, 16));
  add_attention_distance(q, k, pos, 0, 16, far);
  EXPECT_NEAR(far.mean(0, 0, 0), (0.0 + 2 + 4) / 3, 1e-12);
  EXPECT_NEAR(far.mean(0, 0, 1), 6.0, 1e-12);
}

// Query head h reads kv head h / (Hq / Hkv).
TEST(AttentionStats, GqaHeadMapping) {
  const Tensor q = testing::random_tensor({1, 5, 4, 3}, DType::kF32, 1, -2, 2);
  const Tensor k = testing::random_tensor({1, 5, 2, 3}, DType::kF32, 2, -2, 2);
  const Tensor all = attention_matrix(q, k);
  for (int64_t h = 0; h < 4; ++h) {
    Tensor qh = Tensor::empty({1, 5, 1, 3}, DType::kF32);
    Tensor kh = Tensor::empty({1, 5, 1, 3}, DType::kF32);
    for (int64_t t = 0; t < 5; ++t)
      for (int64_t d = 0; d < 3; ++d) {
        qh.data<float>()[t * 3 + d] = q.data<float>()[(t * 4 + h) * 3 + d];
        kh.data<float>()[t * 3 + d] = k.data<float>()[(t * 2 + h / 2) * 3 + d];
      }
    const Tensor one = attention_matrix(qh, kh);
    for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(all.data<double>()[h * 25 + i], one.data<double>()[i]);
  }
}

// Two rows of 2 keys: row 0 sees only key 0 in both (JS 0); row 1 puts
// (almost) all mass on key 0 in a and on key 1 in b (JS -> ln 2).
TEST(AttentionStats, JsDivergenceOnHandMadeRows) {
  Tensor qa = Tensor::zeros({1, 2, 1, 1}, DType::kF32), ka = Tensor::zeros({1, 2, 1, 1}, DType::kF32);
  Tensor qb = Tensor::zeros({1, 2, 1, 1}, DType::kF32), kb = Tensor::zeros({1, 2, 1, 1}, DType::kF32);
  qa.data<float>()[1] = 10;
  ka.data<float>()[0] = 10;   // a: row 1 -> key 0 (logit 100)
  qb.data<float>()[1] = 10;
  kb.data<float>()[1] = 10;   // b: row 1 -> key 1
  HeadBucketTable t(1, 1, position_buckets(2, 1));
  add_js_divergence(qa, ka, qb, kb, Tensor(), 0, 1, t);
  EXPECT_NEAR(t.mean(0, 0, 0), 0.0, 1e-15);
  EXPECT_NEAR(t.mean(0, 0, 1), std::log(2.0), 1e-12);
  EXPECT_NEAR(t.mean(0, 0), std::log(2.0) / 2, 1e-12);
}

TEST(AttentionStats, JsDivergenceOfModels) {
  const Batch batch = random_batch(2, 10);
  LlamaModel a = tiny_model(3, 50.0);
  LlamaModel a2 = tiny_model(3, 50.0);
  LlamaModel b = tiny_model(4, 500.0);  // other weights and RoPE base
  absl::StatusOr<HeadBucketTable> self = attention_js_divergence(a, a2, batch, 4);
  absl::StatusOr<HeadBucketTable> ab = attention_js_divergence(a, b, batch, 4);
  absl::StatusOr<HeadBucketTable> ba = attention_js_divergence(b, a, batch, 4);
  ASSERT_TRUE(self.ok() && ab.ok() && ba.ok()) << ab.status();
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t h = -1; h < 4; ++h) {
      EXPECT_EQ(self->mean(l, h), 0.0) << "same model, same rows";
      const double x = ab->mean(l, h);
      ASSERT_TRUE(std::isfinite(x));
      EXPECT_GT(x, 1e-3) << "layer " << l << " head " << h;
      EXPECT_LE(x, std::log(2.0));
      // The per-key terms are added in the other order: f64 rounding only.
      EXPECT_NEAR(ba->mean(l, h), x, 1e-12);
      for (int64_t k = 0; k < 3; ++k) {
        EXPECT_LE(ab->mean(l, h, k), std::log(2.0));
        EXPECT_GE(ab->mean(l, h, k), 0.0);
      }
    }
  }
  EXPECT_EQ(ab->rows(0, 0), 2 * 10);
}

TEST(AttentionStats, NeedsActivations) {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 8;
  c.intermediate_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  LlamaOptions o;
  o.recompute = Recompute::kFull;
  absl::StatusOr<LlamaModel> m = LlamaModel::create(c, o);
  ASSERT_TRUE(m.ok());
  absl::StatusOr<AttentionStats> s = attention_stats(*m, random_batch(1, 4), 2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("recompute"), std::string::npos);
}

}  // namespace
}  // namespace rotor::eval
