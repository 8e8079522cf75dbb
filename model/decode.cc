// KV-cache decoding. See decode.h; each step runs the shipped LlamaBlock
// forward with the layer's cache (model/llama_block.h: KvCacheLayer).
#include "model/decode.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"

namespace rotor {

absl::StatusOr<Decoder> Decoder::create(LlamaModel& model) {
  const ParallelContext& p = model.options().parallel;
  if (p.tp_size() > 1 || p.cp_size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV-cache decoding runs on one rank: the model has parallel.tp ", p.tp_size(),
        " and parallel.cp ", p.cp_size(), " (evaluate with tp = cp = 1)"));
  }
  return Decoder(model);
}

Decoder::Decoder(LlamaModel& model) : model_(&model) {}

void Decoder::ensure_capacity(int64_t n) {
  if (n <= capacity_ && !k_.empty()) return;
  const LlamaConfig& c = model_->config();
  const int64_t hkv = c.num_key_value_heads, hd = c.resolved_head_dim();
  const int64_t cap = std::max<int64_t>({n, 2 * capacity_, 64});
  const DType dt = model_->options().dtype;
  const int64_t valid = std::min<int64_t>(capacity_, length());
  k_.resize(static_cast<size_t>(c.num_hidden_layers));
  v_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (size_t l = 0; l < k_.size(); ++l) {
    for (Tensor* t : {&k_[l], &v_[l]}) {
      Tensor grown = Tensor::empty({cap, hkv, hd}, dt, model_->options().device);
      if (t->defined() && valid > 0) grown.narrow(0, valid).copy_from(t->narrow(0, valid));
      *t = grown;
    }
  }
  capacity_ = cap;
}

std::vector<double> Decoder::prefill(std::span<const int32_t> prompt) {
  ROTOR_CHECK(!prompt.empty()) << "prefill needs at least one token";
  tokens_.assign(prompt.begin(), prompt.end());
  inv_freq_.clear();  // no valid cache
  return run(0);
}

std::vector<double> Decoder::step(int32_t token) {
  ROTOR_CHECK(!tokens_.empty()) << "step() needs a prefill() first";
  tokens_.push_back(token);
  return run(length() - 1);
}

std::vector<double> Decoder::run(int64_t start) {
  LlamaModel& model = *model_;
  const LlamaConfig& c = model.config();
  const int64_t n = length();
  ROTOR_CHECK(n <= std::numeric_limits<int32_t>::max()) << n << " tokens: too many for i32 positions";
  for (int64_t i = start; i < n; ++i) {
    ROTOR_CHECK(tokens_[i] >= 0 && tokens_[i] < c.vocab_size)
        << "token " << i << ": id " << tokens_[i] << " outside [0, " << c.vocab_size << ")";
  }
  // The new tokens [start, n) as a batch of one sequence at their global
  // positions: prepare_context gives the RoPE tables of length n and the query
  // multipliers, as a full forward pass of n tokens would.
  auto context_for = [&](int64_t first) {
    Batch batch;
    batch.input_ids = Tensor::empty({1, n - first}, DType::kI32);
    batch.positions = Tensor::empty({1, n - first}, DType::kI32);
    for (int64_t i = first; i < n; ++i) {
      batch.input_ids.data<int32_t>()[i - first] = tokens_[i];
      batch.positions.data<int32_t>()[i - first] = static_cast<int32_t>(i);
    }
    model.prepare_context(batch);
  };
  context_for(start);
  const std::vector<float> inv_freq = model.inv_freq_host_;  // what ctx_.inv_freq holds
  if (start > 0 && (inv_freq != inv_freq_ || model.ctx_.attention_factor != attention_factor_)) {
    start = 0;  // the cache was computed with other frequencies: recompute it
    ++rebuilds_;
    context_for(0);
  }
  inv_freq_ = inv_freq;
  attention_factor_ = model.ctx_.attention_factor;
  ensure_capacity(n);

  BlockContext ctx = model.ctx_;
  Tensor k_pos = Tensor::empty({1, n}, DType::kI32);  // the cache's rows [0, n)
  for (int64_t j = 0; j < n; ++j) k_pos.data<int32_t>()[j] = static_cast<int32_t>(j);
  ctx.mask.k_pos = k_pos.to(model.options().device);
  ctx.attention_entropy = true;

  const int64_t m = n - start, d = c.hidden_size, hq = c.num_attention_heads;
  Tensor x = model.act({m, d});
  embedding_forward(model.batch_.input_ids.view({m}), model.params_[model.embed_index_].compute(), x);
  double entropy_sum = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const KvCacheLayer cache{k_[l], v_[l], start};
    BlockActivations acts;
    Tensor y = model.act({m, d});
    model.blocks_[l].forward(model.block_weights(l, false), ctx, model.q_scales_[l], x, y, acts,
                             Recompute::kFull, &cache);
    const Tensor entropy = acts.entropy.to(Device::cpu());  // [1, Hq, m]
    for (int64_t head = 0; head < hq; ++head) entropy_sum += entropy.item(head * m + m - 1);
    x = y;
  }
  last_entropy_ = entropy_sum / static_cast<double>(c.num_hidden_layers * hq);

  // Final norm and the head, last row only.
  const Tensor last = x.narrow(m - 1, 1);
  Tensor last_n = model.act({1, d}), last_rstd = model.stat({1});
  rmsnorm_forward(last, model.final_norm().compute(), c.rms_norm_eps, last_n, last_rstd);
  Tensor logits = model.act({1, c.vocab_size});
  matmul(last_n, model.head_weight(false), logits, false, true);
  return log_softmax(logits.to(Device::cpu()).to_vector());
}

GreedyResult Decoder::greedy(std::span<const int32_t> prompt, int64_t max_new_tokens,
                             std::optional<int32_t> stop) {
  GreedyResult r;
  if (max_new_tokens <= 0) return r;
  std::vector<double> lp = prefill(prompt);
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int32_t next = static_cast<int32_t>(std::max_element(lp.begin(), lp.end()) - lp.begin());
    r.tokens.push_back(next);
    r.logprobs.push_back(lp[static_cast<size_t>(next)]);
    r.entropy.push_back(last_entropy_);
    if ((stop && next == *stop) || i + 1 == max_new_tokens) break;
    lp = step(next);
  }
  return r;
}

}  // namespace rotor
