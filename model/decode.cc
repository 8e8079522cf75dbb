// KV-cache decoding. See decode.h; the block math mirrors model/llama_block.cc
// (forward, one rank) with the keys and values of earlier tokens from the cache.
#include "model/decode.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"

namespace rotor {

std::vector<double> log_softmax(std::span<const double> logits) {
  double mx = -std::numeric_limits<double>::infinity();
  for (double x : logits) mx = std::max(mx, x);
  double sum = 0;
  for (double x : logits) sum += std::exp(x - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - lse;
  return out;
}

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
      Tensor grown = Tensor::empty({cap, hkv, hd}, dt);
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
  const LlamaOptions& o = model.options();
  const int64_t n = length();
  ROTOR_CHECK(n <= std::numeric_limits<int32_t>::max()) << n << " tokens: too many for i32 positions";
  for (int64_t i = start; i < n; ++i) {
    ROTOR_CHECK(tokens_[i] >= 0 && tokens_[i] < c.vocab_size)
        << "token " << i << ": id " << tokens_[i] << " outside [0, " << c.vocab_size << ")";
  }

  // The tables a forward pass of n tokens uses (LlamaModel::prepare_context).
  RopeConfig rope = o.rope;
  rope.sequence_length = n;
  absl::StatusOr<RopeTables> tables = compute_rope(rope, c.resolved_head_dim());
  ROTOR_CHECK(tables.ok()) << tables.status();  // validated by LlamaModel::create
  if (start > 0 && (tables->inv_freq != inv_freq_ || tables->attention_factor != attention_factor_)) {
    start = 0;  // the cache was computed with other frequencies: recompute it
    ++rebuilds_;
  }
  inv_freq_ = tables->inv_freq;
  attention_factor_ = tables->attention_factor;
  ensure_capacity(n);

  const int64_t m = n - start;  // new tokens
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.resolved_head_dim();
  const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  const DType dt = o.dtype;
  Tensor ids = Tensor::empty({m}, DType::kI32);
  Tensor q_pos = Tensor::empty({1, m}, DType::kI32), k_pos = Tensor::empty({1, n}, DType::kI32);
  for (int64_t i = 0; i < m; ++i) {
    ids.data<int32_t>()[i] = tokens_[start + i];
    q_pos.data<int32_t>()[i] = static_cast<int32_t>(start + i);
  }
  for (int64_t j = 0; j < n; ++j) k_pos.data<int32_t>()[j] = static_cast<int32_t>(j);
  Tensor inv_freq = Tensor::empty({hd / 2}, DType::kF32);
  std::copy(inv_freq_.begin(), inv_freq_.end(), inv_freq.data<float>());
  AttentionMask mask;
  mask.q_pos = q_pos;
  mask.k_pos = k_pos;
  mask.causal = true;
  const double softmax_scale = 1.0 / std::sqrt(static_cast<double>(hd));

  Tensor x = Tensor::empty({m, d}, dt);
  embedding_forward(ids, model.params_.front().value, x);
  Tensor rstd = Tensor::empty({m}, dt), xn = Tensor::empty({m, d}, dt);
  Tensor q = Tensor::empty({1, m, hq, hd}, dt), kn = Tensor::empty({1, m, hkv, hd}, dt);
  Tensor attn = Tensor::empty({1, m, hq, hd}, dt), lse = Tensor::empty({1, hq, m}, dt);
  Tensor entropy = Tensor::empty({1, hq, m}, dt);
  Tensor h = Tensor::empty({m, d}, dt), gate = Tensor::empty({m, f}, dt),
         up = Tensor::empty({m, f}, dt), act = Tensor::empty({m, f}, dt);
  double entropy_sum = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const BlockWeights w = model.block_weights(l, false);
    rmsnorm_forward(x, w.input_layernorm, c.rms_norm_eps, xn, rstd);
    matmul(xn, w.q_proj, q.view({m, hq * hd}), false, true);
    matmul(xn, w.k_proj, kn.view({m, hkv * hd}), false, true);
    const Tensor v_rows = v_[l].narrow(start, m);
    matmul(xn, w.v_proj, v_rows.view({m, hkv * hd}), false, true);
    Tensor q_scale;
    if (!logit_scale_is_identity(o.logit_scale, l)) {
      std::vector<double> s(static_cast<size_t>(m));
      for (int64_t i = 0; i < m; ++i) s[i] = logit_scale_at(o.logit_scale, l, start + i);
      q_scale = Tensor::from_vector(s, {1, m}, dt);
    }
    rope_forward(q, q_pos, inv_freq, attention_factor_, q_scale, q);
    rope_forward(kn, q_pos, inv_freq, attention_factor_, Tensor(), kn);
    k_[l].narrow(start, m).copy_from(kn.view({m, hkv, hd}));
    attention_forward(q, k_[l].narrow(0, n).view({1, n, hkv, hd}),
                      v_[l].narrow(0, n).view({1, n, hkv, hd}), mask, softmax_scale, attn, lse,
                      entropy);
    for (int64_t head = 0; head < hq; ++head) entropy_sum += entropy.item(head * m + m - 1);
    matmul(attn.view({m, hq * hd}), w.o_proj, h, false, true);
    add(h, x, h);
    rmsnorm_forward(h, w.post_attention_layernorm, c.rms_norm_eps, xn, rstd);
    matmul(xn, w.gate_proj, gate, false, true);
    matmul(xn, w.up_proj, up, false, true);
    swiglu_forward(gate, up, act);
    Tensor y = Tensor::empty({m, d}, dt);
    matmul(act, w.down_proj, y, false, true);
    add(y, h, y);
    x = y;
  }
  last_entropy_ = entropy_sum / static_cast<double>(c.num_hidden_layers * hq);

  // Final norm and the head, last row only.
  const Tensor& norm = model.params_[model.params_.size() - (c.tie_word_embeddings ? 1 : 2)].value;
  const Tensor last = x.narrow(m - 1, 1);
  Tensor last_n = Tensor::empty({1, d}, dt), last_rstd = Tensor::empty({1}, dt);
  rmsnorm_forward(last, norm, c.rms_norm_eps, last_n, last_rstd);
  Tensor logits = Tensor::empty({1, c.vocab_size}, dt);
  matmul(last_n, model.head_weight(false), logits, false, true);
  const std::vector<double> row = logits.to_vector();
  return log_softmax(row);
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
