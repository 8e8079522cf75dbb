// The whole tiny Llama: every parameter's gradient against central finite
// differences in f64 (2 layers, GQA, tied and untied head, YaRN RoPE, the
// entropy-aware logit scalar, document masking), recompute equivalence, and
// parameter naming/initialisation.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "kernels/random.h"
#include "kernels/memory.h"
#include "model/llama.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

LlamaConfig tiny_config(bool tied) {
  LlamaConfig c;
  c.vocab_size = 13;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // GQA: 2 query heads per kv head
  c.head_dim = 4;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  c.initializer_range = 0.5;  // large enough that every path carries gradient
  return c;
}

LlamaOptions tiny_options(DType dtype) {
  LlamaOptions o;
  o.dtype = dtype;
  o.rope.method = RopeMethod::kYarn;
  o.rope.factor = 4;
  o.rope.original_max_position = 4;
  // log_position with base 2 scales every query past position 1, skip layer 0.
  o.logit_scale.kind = LogitScaleKind::kLogPosition;
  o.logit_scale.base_length = 2;
  o.logit_scale.skip_layers = {0};
  o.ce_chunks = {3, 5};  // chunk sizes that divide neither N nor V
  return o;
}

Batch tiny_batch(bool segments) {
  Batch b;
  b.input_ids = Tensor::from_vector({1, 5, 7, 2, 12, 3, 0, 9, 9, 4}, {2, 5}, DType::kI32);
  b.targets = Tensor::from_vector({5, 7, 2, -100, 3, 0, 9, 9, 4, 11}, {2, 5}, DType::kI32);
  if (segments) {
    b.segments = Tensor::from_vector({0, 0, 1, 1, 1, 0, 0, 0, 0, 1}, {2, 5}, DType::kI32);
    b.positions = Tensor::from_vector({0, 1, 0, 1, 2, 3, 4, 5, 6, 0}, {2, 5}, DType::kI32);
  }
  return b;
}

void check_model_gradients(bool tied, bool segments, Recompute recompute = Recompute::kNone, int64_t tile = 0) {
  LlamaOptions o = tiny_options(DType::kF64);
  o.recompute = recompute;
  o.tile_tokens = tile;
  absl::StatusOr<LlamaModel> made = LlamaModel::create(tiny_config(tied), o);
  ASSERT_TRUE(made.ok()) << made.status();
  LlamaModel& model = *made;
  model.init_weights(7);
  for (Parameter& p : model.parameters())  // norms away from 1 so their gradients matter
    if (p.value.ndim() == 1) p.value.copy_from(testing::random_tensor(p.value.shape(), DType::kF64, hash_name(p.name.c_str()), 0.5, 1.5));
  const Batch batch = tiny_batch(segments);
  model.zero_grad();
  const double loss = model.forward_backward(batch);
  ASSERT_TRUE(std::isfinite(loss) && loss > 0);
  for (Parameter& p : model.parameters()) {
    testing::expect_gradient_matches(
        p.value, p.grad, [&] { return model.forward(batch).mean(); }, p.name);
  }
}

TEST(LlamaGradients, UntiedMatchesFiniteDifferences) { check_model_gradients(false, false); }
TEST(LlamaGradients, TiedMatchesFiniteDifferences) { check_model_gradients(true, false); }
TEST(LlamaGradients, DocumentMaskingMatchesFiniteDifferences) { check_model_gradients(false, true); }
// Selective recompute with the MLP in tiles of 5 rows (the last one shorter).
TEST(LlamaGradients, SelectiveRecomputeTiledMlpMatchesFiniteDifferences) {
  check_model_gradients(false, true, Recompute::kSelective, 5);
}

// Recompute re-runs the same deterministic forward: gradients are identical.
TEST(LlamaRecompute, SameLossAndGradients) {
  LlamaOptions with = tiny_options(DType::kF32), without = tiny_options(DType::kF32);
  with.recompute = Recompute::kFull;
  auto a = LlamaModel::create(tiny_config(false), without);
  auto b = LlamaModel::create(tiny_config(false), with);
  ASSERT_TRUE(a.ok() && b.ok());
  a->init_weights(11);
  b->init_weights(11);
  const Batch batch = tiny_batch(true);
  EXPECT_EQ(a->forward_backward(batch), b->forward_backward(batch));
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    testing::expect_finite_nonzero(a->parameters()[i].grad, a->parameters()[i].name);
    EXPECT_EQ(testing::max_abs_diff(a->parameters()[i].grad, b->parameters()[i].grad), 0.0)
        << a->parameters()[i].name;
  }
}

// The two-phase path (forward, then backward recomputing logits tiles) and
// the fused training path give the same gradients. f64, so only summation
// order differs: 1e-12 relative to the largest gradient.
TEST(LlamaLossHead, TwoPhaseEqualsFusedForwardBackward) {
  auto a = LlamaModel::create(tiny_config(false), tiny_options(DType::kF64));
  auto b = LlamaModel::create(tiny_config(false), tiny_options(DType::kF64));
  ASSERT_TRUE(a.ok() && b.ok());
  a->init_weights(3);
  b->init_weights(3);
  const Batch batch = tiny_batch(false);
  const LossSum la = a->forward(batch);
  a->backward(1.0 / static_cast<double>(la.count));
  const double lb = b->forward_backward(batch);
  EXPECT_NEAR(la.mean(), lb, 1e-12);
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    const Parameter& p = a->parameters()[i];
    testing::expect_close(b->parameters()[i].grad, p.grad, 1e-12 * testing::max_abs(p.grad), 0,
                          p.name);
  }
}

// set_gradient_ready reports every parameter once, in the documented order
// (untied head, final norm, blocks last to first in parameters() order, the
// embedding), each when its gradient is final: the gradient at the report is
// the one at the end of backward, bit for bit (a report before the last
// contribution would see a partial sum). Both backward paths; a first
// micro-batch without the hook accumulates, as in the trainer.
void check_gradient_ready(bool tied, bool fused) {
  auto made = LlamaModel::create(tiny_config(tied), tiny_options(DType::kF32));
  ASSERT_TRUE(made.ok()) << made.status();
  LlamaModel& model = *made;
  model.init_weights(5);
  model.zero_grad();
  model.forward_backward(tiny_batch(false), 0.05);
  std::vector<Parameter>& params = model.parameters();
  std::vector<std::string> order;
  std::vector<Tensor> at_report(params.size());
  model.set_gradient_ready([&](size_t i) {
    ASSERT_LT(i, params.size());
    order.push_back(params[i].name);
    at_report[i] = params[i].grad.clone();
  });
  const Batch batch = tiny_batch(true);
  if (fused) {
    model.forward_backward(batch, 0.1);
  } else {
    model.forward(batch);
    model.backward(0.1);
  }
  model.set_gradient_ready(nullptr);

  std::vector<std::string> want;
  if (!tied) want.push_back("lm_head.weight");
  want.push_back("model.norm.weight");
  for (int l = 1; l >= 0; --l)
    for (const Parameter& p : params)
      if (p.name.rfind("model.layers." + std::to_string(l) + ".", 0) == 0) want.push_back(p.name);
  want.push_back("model.embed_tokens.weight");
  EXPECT_EQ(order, want);
  for (size_t i = 0; i < params.size(); ++i) {
    testing::expect_finite_nonzero(params[i].grad, params[i].name);
    ASSERT_TRUE(at_report[i].defined()) << params[i].name << " never reported";
    EXPECT_EQ(testing::max_abs_diff(at_report[i], params[i].grad), 0.0) << params[i].name;
  }
  // Cleared: a later backward reports nothing.
  model.forward_backward(batch, 0.1);
  EXPECT_EQ(order.size(), want.size());
}

TEST(LlamaGradientReady, UntiedFused) { check_gradient_ready(false, true); }
TEST(LlamaGradientReady, UntiedTwoPhase) { check_gradient_ready(false, false); }
TEST(LlamaGradientReady, TiedFused) { check_gradient_ready(true, true); }
TEST(LlamaGradientReady, TiedTwoPhase) { check_gradient_ready(true, false); }

TEST(LlamaParameters, HfNamesShapesAndDeterministicInit) {
  auto m = LlamaModel::create(tiny_config(false), tiny_options(DType::kF32));
  ASSERT_TRUE(m.ok());
  std::set<std::string> names;
  for (const Parameter& p : m->parameters()) names.insert(p.name);
  for (const char* want : {"model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.weight",
                           "model.layers.0.mlp.down_proj.weight", "model.norm.weight",
                           "lm_head.weight"}) {
    EXPECT_TRUE(names.count(want)) << want;
  }
  EXPECT_EQ(m->find("model.layers.0.self_attn.k_proj.weight")->value.shape(), (Shape{8, 8}));
  EXPECT_EQ(m->find("model.layers.0.self_attn.o_proj.weight")->value.shape(), (Shape{8, 16}));
  EXPECT_EQ(m->find("model.layers.0.mlp.down_proj.weight")->value.shape(), (Shape{8, 12}));
  int64_t total = 0;
  for (const Parameter& p : m->parameters()) total += p.value.numel();
  EXPECT_EQ(total, tiny_config(false).num_parameters());

  auto tied = LlamaModel::create(tiny_config(true), tiny_options(DType::kF32));
  EXPECT_EQ(tied->find("lm_head.weight"), nullptr);

  // Same seed -> same weights; another seed -> different; std close to initializer_range.
  auto m2 = LlamaModel::create(tiny_config(false), tiny_options(DType::kF32));
  m->init_weights(5);
  m2->init_weights(5);
  const Tensor& w1 = m->find("model.embed_tokens.weight")->value;
  EXPECT_EQ(testing::max_abs_diff(w1, m2->find("model.embed_tokens.weight")->value), 0.0);
  m2->init_weights(6);
  EXPECT_GT(testing::max_abs_diff(w1, m2->find("model.embed_tokens.weight")->value), 0.1);
  EXPECT_EQ(m->find("model.norm.weight")->value.item(3), 1.0);
}

TEST(LlamaConfigErrors, NameTheField) {
  LlamaConfig c = tiny_config(false);
  c.num_key_value_heads = 3;
  auto m = LlamaModel::create(c, tiny_options(DType::kF32));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("num_key_value_heads"), std::string::npos) << m.status();
  LlamaOptions o = tiny_options(DType::kF32);
  o.rope.factor = 0.5;
  m = LlamaModel::create(tiny_config(false), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("rope.factor"), std::string::npos) << m.status();
}

// The MFU numerator on Llama-2-7B (LlamaConfig's defaults) at 4096 tokens:
// 6 * 6.607e9 matmul weights (all parameters but the input embedding and the
// norms) + 12 * 32 layers * 32 heads * 128 * 4096 = 46.08 GFLOP per token.
TEST(LlamaConfig, TrainingFlopsPerToken) {
  const LlamaConfig c;
  const int64_t norms = c.hidden_size * (2 * c.num_hidden_layers + 1);
  const double matmul_weights =
      static_cast<double>(c.num_parameters() - c.vocab_size * c.hidden_size - norms);
  EXPECT_NEAR(matmul_weights, 6.607e9, 1e6);
  const double want = 6 * matmul_weights + 12.0 * 32 * 32 * 128 * 4096;
  EXPECT_DOUBLE_EQ(c.training_flops_per_token(4096), want);
  EXPECT_NEAR(c.training_flops_per_token(4096) / 1e9, 46.08, 0.01);
}

// Selective recompute (attention kept) and the sequence-tiled MLP against
// keeping everything, on the tiny model with document masking (2 x 16 = 32
// rows; tiles of 5 rows leave a short last tile). Recompute modes re-run the
// same ops in the same order: identical bits. Tiling computes every row as
// before (rows are independent), but in GEMMs of other heights, which BLAS may
// block differently, and sums the MLP weight gradients tile by tile: f32
// rounding apart, allowed 1e-5 of each gradient's largest element (f32
// epsilon 1.2e-7 times sums of 32 terms, with margin).
TEST(LlamaRecompute, SelectiveAndTiledMlpMatch) {
  auto run = [](Recompute mode, int64_t tile) {
    LlamaOptions o = tiny_options(DType::kF32);
    o.recompute = mode;
    o.tile_tokens = tile;
    absl::StatusOr<LlamaModel> m = LlamaModel::create(tiny_config(false), o);
    EXPECT_TRUE(m.ok()) << m.status();
    m->init_weights(11);
    const double loss = m->forward_backward(tiny_batch(true));
    std::vector<Tensor> grads;
    for (const Parameter& p : m->parameters()) grads.push_back(p.grad.clone());
    return std::make_pair(loss, grads);
  };
  const auto [loss, grads] = run(Recompute::kNone, 0);
  for (const Tensor& g : grads) testing::expect_finite_nonzero(g, "reference gradient");
  for (Recompute mode : {Recompute::kFull, Recompute::kSelective}) {
    const auto [l, g] = run(mode, 0);
    EXPECT_EQ(l, loss);
    for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(testing::max_abs_diff(g[i], grads[i]), 0.0) << i;
  }
  for (Recompute mode : {Recompute::kNone, Recompute::kSelective}) {
    const auto [l, g] = run(mode, 5);
    EXPECT_NEAR(l, loss, 1e-6 * std::abs(loss));
    for (size_t i = 0; i < g.size(); ++i) {
      const std::vector<double> ref = grads[i].to_vector();
      double largest = 0;
      for (double v : ref) largest = std::max(largest, std::abs(v));
      EXPECT_LE(testing::max_abs_diff(g[i], grads[i]), 1e-5 * largest) << "parameter " << i;
    }
  }
}

// train.offload_activations: each block's checkpoint goes to the host pool
// after its forward and comes back for its backward. The copies are exact, so
// loss and gradients equal the run without offload bit for bit, on the CPU
// and on sim; between forward and backward the device holds no block's
// checkpoint (only the final norm's tensors), the host pool all of them; and
// backward leaves nothing offloaded.
TEST(LlamaOffload, SameGradientsAndCheckpointsLeaveTheDevice) {
  for (Device device : {Device::cpu(), Device::sim()}) {
    for (Recompute mode : {Recompute::kNone, Recompute::kSelective}) {
      auto run = [&](bool offload, int64_t* device_acts, int64_t* host_acts) {
        LlamaOptions o = tiny_options(DType::kF32);
        o.recompute = mode;
        o.device = device;
        o.offload_activations = offload;
        absl::StatusOr<LlamaModel> m = LlamaModel::create(tiny_config(false), o);
        EXPECT_TRUE(m.ok()) << m.status();
        m->init_weights(11);
        const Batch batch = tiny_batch(true);
        const int64_t acts0 = memory_usage(device)[MemoryTag::kActivations];
        const int64_t host0 = memory_usage(Device::cpu())[MemoryTag::kOffloaded];
        const LossSum loss = m->forward(batch);
        *device_acts = memory_usage(device)[MemoryTag::kActivations] - acts0;
        *host_acts = memory_usage(Device::cpu())[MemoryTag::kOffloaded] - host0;
        m->backward(1.0 / static_cast<double>(loss.count));
        EXPECT_EQ(memory_usage(Device::cpu())[MemoryTag::kOffloaded], host0);
        std::vector<Tensor> grads;
        for (const Parameter& p : m->parameters()) grads.push_back(p.grad.to(Device::cpu()));
        return std::make_pair(loss.sum, grads);
      };
      int64_t kept = 0, kept_host = 0, left = 0, moved = 0;
      const auto [loss, grads] = run(false, &kept, &kept_host);
      const auto [l, g] = run(true, &left, &moved);
      const std::string what = device.str() + (mode == Recompute::kNone ? " none" : " selective");
      EXPECT_EQ(l, loss) << what;
      for (size_t i = 0; i < g.size(); ++i) {
        testing::expect_finite_nonzero(grads[i], "reference gradient");
        EXPECT_EQ(testing::max_abs_diff(g[i], grads[i]), 0.0) << what << " parameter " << i;
      }
      // The final norm's input, output ([N, D] each) and rstd ([N]) stay.
      const auto cfg = tiny_config(false);
      const int64_t n = 10, final_bytes = (2 * n * cfg.hidden_size + n) * 4;
      EXPECT_EQ(kept_host, 0) << what;
      EXPECT_EQ(left, final_bytes) << what;
      EXPECT_EQ(moved, kept - final_bytes) << what;
      EXPECT_GT(moved, 0) << what;
    }
  }
}

// evaluate(): per-token losses add up to the loss; each row's attention
// entropy lies in [0, ln(visible keys)] (0 for the first token, which sees
// only itself), with and without recompute.
TEST(LlamaEvaluate, TokenLossesAndEntropyBounds) {
  for (bool recompute : {false, true}) {
    LlamaOptions o = tiny_options(DType::kF64);
    o.recompute = recompute ? Recompute::kFull : Recompute::kNone;
    absl::StatusOr<LlamaModel> made = LlamaModel::create(tiny_config(false), o);
    ASSERT_TRUE(made.ok()) << made.status();
    made->init_weights(3);
    const Batch batch = tiny_batch(false);
    ForwardStats stats;
    stats.want_attention_entropy = true;
    const LossSum loss = made->evaluate(batch, stats);
    ASSERT_TRUE(std::isfinite(loss.sum) && loss.sum > 0);
    ASSERT_EQ(stats.token_loss.shape(), (Shape{2, 5}));
    double sum = 0;
    for (int64_t i = 0; i < 10; ++i) sum += stats.token_loss.item(i);
    EXPECT_NEAR(sum, loss.sum, 1e-12 * loss.sum);  // the same f64 values, summed in another order
    EXPECT_EQ(stats.token_loss.item(3), 0.0);      // target -100 is ignored
    ASSERT_EQ(stats.attention_entropy.size(), 2u);
    double total = 0;
    for (const Tensor& e : stats.attention_entropy) {
      ASSERT_EQ(e.shape(), (Shape{2, 4, 5}));  // [B, Hq, T]
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 4; ++h)
          for (int64_t t = 0; t < 5; ++t) {
            const double v = e.item((b * 4 + h) * 5 + t);
            EXPECT_GE(v, t == 0 ? 0.0 : -1e-12);
            EXPECT_LE(v, std::log(static_cast<double>(t + 1)) + 1e-12);
            if (t == 0) EXPECT_NEAR(v, 0.0, 1e-12);
            total += v;
          }
    }
    EXPECT_GT(total, 0);  // the initialised model does not attend to one key only
    if (!recompute) EXPECT_EQ(made->activations(1).q.shape(), (Shape{2, 5, 4, 4}));
  }
}

}  // namespace
}  // namespace rotor
