// KV-cache decoding equals full recomputation: for every RoPE method (and the
// log_position logit scalar) greedy decoding with the cache produces the same
// tokens and log-probs as LlamaModel::logits over the whole sequence at every
// step, across original_max_position so that dynamic NTK and LongRoPE change
// their frequencies while decoding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/decode.h"
#include "model/llama.h"

namespace rotor {
namespace {

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 13;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // GQA
  c.head_dim = 4;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = false;
  c.initializer_range = 0.5;  // large: peaked, input-dependent distributions
  return c;
}

constexpr int64_t kOriginal = 6;  // original_max_position: prompt 4 + 8 new tokens cross it

LlamaOptions options_for(RopeMethod method, DType dtype, bool log_scale) {
  LlamaOptions o;
  o.dtype = dtype;
  o.rope.method = method;
  o.rope.theta = 100.0;
  if (method != RopeMethod::kNone) {
    o.rope.factor = 4;
    o.rope.original_max_position = kOriginal;
  }
  if (method == RopeMethod::kLongRope) {
    o.rope.short_factor = {1.0, 1.5};
    o.rope.long_factor = {2.0, 5.0};
  }
  if (log_scale) {
    o.logit_scale.kind = LogitScaleKind::kLogPosition;
    o.logit_scale.base_length = 3;
    o.logit_scale.skip_layers = {0};
  }
  return o;
}

// Log-probs of the token after `ids` by a full forward pass.
std::vector<double> full_logprobs(LlamaModel& model, const std::vector<int32_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  Batch b;
  b.input_ids = Tensor::empty({1, n}, DType::kI32);
  std::copy(ids.begin(), ids.end(), b.input_ids.data<int32_t>());
  const Tensor logits = model.logits(b);
  const std::vector<double> all = logits.to_vector();
  const int64_t v = model.config().vocab_size;
  return log_softmax(std::span<const double>(all.data() + (n - 1) * v, static_cast<size_t>(v)));
}

struct Case {
  RopeMethod method;
  bool log_scale;
};

void check_decoding(DType dtype, double tol) {
  const Case cases[] = {{RopeMethod::kNone, false},    {RopeMethod::kNone, true},
                        {RopeMethod::kLinear, false},  {RopeMethod::kYarn, true},
                        {RopeMethod::kDynamic, false}, {RopeMethod::kDynamic, true},
                        {RopeMethod::kLlama3, false},  {RopeMethod::kLongRope, true}};
  for (const Case& k : cases) {
    SCOPED_TRACE(std::string(rope_method_name(k.method)) + (k.log_scale ? " + log_position" : ""));
    absl::StatusOr<LlamaModel> made = LlamaModel::create(tiny_config(), options_for(k.method, dtype, k.log_scale));
    ASSERT_TRUE(made.ok()) << made.status();
    LlamaModel& model = *made;
    model.init_weights(11);
    absl::StatusOr<Decoder> dec = Decoder::create(model);
    ASSERT_TRUE(dec.ok()) << dec.status();
    const std::vector<int32_t> prompt = {3, 7, 1, 12};
    const int64_t new_tokens = 8;
    const GreedyResult r = dec->greedy(prompt, new_tokens);
    ASSERT_EQ(static_cast<int64_t>(r.tokens.size()), new_tokens);
    std::vector<int32_t> seq = prompt;
    for (int64_t i = 0; i < new_tokens; ++i) {
      const std::vector<double> ref = full_logprobs(model, seq);
      double ref_abs = 0;
      for (double x : ref) {
        ASSERT_TRUE(std::isfinite(x));
        ref_abs += std::fabs(x);
      }
      ASSERT_GT(ref_abs, 0.0);
      const int32_t arg = static_cast<int32_t>(std::max_element(ref.begin(), ref.end()) - ref.begin());
      EXPECT_EQ(r.tokens[i], arg) << "step " << i;
      EXPECT_NEAR(r.logprobs[i], ref[arg], tol) << "step " << i;
      ASSERT_TRUE(std::isfinite(r.entropy[i]) && r.entropy[i] >= 0) << r.entropy[i];
      seq.push_back(r.tokens[i]);
    }
    // Every log-prob of the last step, not only the argmax's.
    seq.pop_back();
    std::vector<int32_t> head(seq.begin(), seq.end() - 1);
    dec->prefill(head);
    const std::vector<double> got = dec->step(seq.back());
    const std::vector<double> ref = full_logprobs(model, seq);
    for (size_t j = 0; j < ref.size(); ++j) EXPECT_NEAR(got[j], ref[j], tol) << "id " << j;
    // Dynamic NTK past the original length (and LongRoPE crossing it) must
    // have recomputed the cache; the other methods never do.
    const bool changes = k.method == RopeMethod::kDynamic || k.method == RopeMethod::kLongRope;
    EXPECT_EQ(dec->rebuilds() > 0, changes) << dec->rebuilds();
  }
}

// f64: the cached and full paths run the same kernels in a different
// grouping (matmuls over fewer rows, attention over the same keys), so they
// agree to rounding: 1e-9 leaves ~6 orders of magnitude of margin above
// double epsilon times the ~1e2 operations along a path.
TEST(Decode, CachedGreedyEqualsFullRecomputationF64) { check_decoding(DType::kF64, 1e-9); }

// f32: the same at float rounding (eps 6e-8, log-probs of magnitude ~3,
// a few hundred accumulations): 1e-4.
TEST(Decode, CachedGreedyEqualsFullRecomputationF32) { check_decoding(DType::kF32, 1e-4); }

TEST(Decode, EntropyOfTheAnsweringRowMatchesTheFullPass) {
  absl::StatusOr<LlamaModel> made = LlamaModel::create(tiny_config(), options_for(RopeMethod::kYarn, DType::kF64, true));
  ASSERT_TRUE(made.ok()) << made.status();
  made->init_weights(3);
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  Batch b;
  b.input_ids = Tensor::empty({1, 9}, DType::kI32);
  b.targets = Tensor::empty({1, 9}, DType::kI32);
  std::copy(ids.begin(), ids.end(), b.input_ids.data<int32_t>());
  std::copy(ids.begin(), ids.end(), b.targets.data<int32_t>());
  ForwardStats stats;
  stats.want_attention_entropy = true;
  made->evaluate(b, stats);
  double want = 0;
  const int64_t hq = 4, t = 9;
  for (const Tensor& e : stats.attention_entropy)
    for (int64_t h = 0; h < hq; ++h) want += e.item(h * t + t - 1);
  want /= static_cast<double>(stats.attention_entropy.size() * hq);
  ASSERT_GT(want, 0.0);
  absl::StatusOr<Decoder> dec = Decoder::create(*made);
  ASSERT_TRUE(dec.ok());
  dec->prefill(std::vector<int32_t>(ids.begin(), ids.end() - 1));
  dec->step(ids.back());
  EXPECT_NEAR(dec->last_entropy(), want, 1e-10);
}

}  // namespace
}  // namespace rotor
