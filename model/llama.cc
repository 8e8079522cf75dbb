#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/memory.h"
#include "kernels/position_scale.h"
#include "kernels/random.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/vocab_slice.h"
#include "parallel/ring_attention.h"
#include "parallel/tensor_parallel.h"
#include "kernels/status.h"

namespace rotor {

namespace {
// The parameters of one block, in checkpoint order (the order of
// parameters()): the Hugging Face name after "model.layers.<l>.", the
// BlockWeights field it fills, its global shape, the dimension split over tp
// (0 rows, 1 columns, -1 whole on every rank) and whether it is a k/v
// projection (replicated over tp / Hkv ranks when tp exceeds the kv heads).
struct BlockDims {
  int64_t d, f, hq, hkv, hd;
};
struct BlockParamSpec {
  const char* name;
  Tensor BlockWeights::*field;
  Shape (*shape)(const BlockDims&);
  int shard_dim;
  bool kv;
};
const BlockParamSpec kBlockParams[] = {
    {"input_layernorm.weight", &BlockWeights::input_layernorm,
     [](const BlockDims& b) { return Shape{b.d}; }, -1, false},
    {"self_attn.q_proj.weight", &BlockWeights::q_proj,
     [](const BlockDims& b) { return Shape{b.hq * b.hd, b.d}; }, 0, false},
    {"self_attn.k_proj.weight", &BlockWeights::k_proj,
     [](const BlockDims& b) { return Shape{b.hkv * b.hd, b.d}; }, 0, true},
    {"self_attn.v_proj.weight", &BlockWeights::v_proj,
     [](const BlockDims& b) { return Shape{b.hkv * b.hd, b.d}; }, 0, true},
    {"self_attn.o_proj.weight", &BlockWeights::o_proj,
     [](const BlockDims& b) { return Shape{b.d, b.hq * b.hd}; }, 1, false},
    {"post_attention_layernorm.weight", &BlockWeights::post_attention_layernorm,
     [](const BlockDims& b) { return Shape{b.d}; }, -1, false},
    {"mlp.gate_proj.weight", &BlockWeights::gate_proj,
     [](const BlockDims& b) { return Shape{b.f, b.d}; }, 0, false},
    {"mlp.up_proj.weight", &BlockWeights::up_proj,
     [](const BlockDims& b) { return Shape{b.f, b.d}; }, 0, false},
    {"mlp.down_proj.weight", &BlockWeights::down_proj,
     [](const BlockDims& b) { return Shape{b.d, b.f}; }, 1, false},
};

// The f64 sum of a device scalar, read to the host.
double read_scalar(const Tensor& t) { return t.to(Device::cpu()).item(); }

void check_targets(const Batch& batch) {
  ROTOR_CHECK(batch.targets.defined() && batch.targets.shape() == batch.input_ids.shape() &&
              batch.targets.dtype() == DType::kI32)
      << "targets must be [B, T] i32 like input_ids, got " << batch.targets.str();
}

}  // namespace

Batch to_device(const Batch& b, Device device) {
  auto move = [&](const Tensor& t) { return t.defined() ? t.to(device) : t; };
  return {move(b.input_ids), move(b.targets), move(b.positions), move(b.segments)};
}

int64_t counted_targets(const Batch& batch) {
  const Tensor t = batch.targets.to(Device::cpu());
  int64_t count = 0;
  for (int64_t i = 0; i < t.numel(); ++i) count += t.data<int32_t>()[i] >= 0;
  return count;
}

LossSum sum_over(Communicator* comm, LossSum l) {
  if (comm->size() == 1) return l;
  Tensor t = Tensor::from_vector({l.sum, static_cast<double>(l.count)}, {2}, DType::kF64);
  comm->all_reduce(t);
  return {t.item(0), static_cast<int64_t>(std::llround(t.item(1)))};
}

Batch shard_for_context(const Batch& b, const ParallelContext& par) {
  if (par.cp_size() == 1) return b;
  const int cp = par.cp_size(), r = par.cp_rank();
  Batch s;
  s.input_ids = context_shard(b.input_ids, cp, r);
  s.targets = context_shard(b.targets, cp, r);
  s.positions = context_shard(b.positions, cp, r);
  if (b.segments.defined()) s.segments = context_shard(b.segments, cp, r);
  return s;
}

LlamaModel::LlamaModel(const LlamaConfig& config, const LlamaOptions& options)
    : config_(config), options_(options) {
  const int64_t v = config.vocab_size, d = config.hidden_size, f = config.intermediate_size;
  const int64_t hd = config.resolved_head_dim();
  const int64_t hq = config.num_attention_heads, hkv = config.num_key_value_heads;
  const int tp = options.parallel.tp_size();
  tp_ = options.parallel.tp;
  if (tp > 1) {
    sp_ = options.parallel.sequence_parallel;
    vocab_start_ = v / tp * options.parallel.tp_rank();
  }
  if (tp > 1 && hkv % tp != 0) {
    // Collective over tp: the ranks whose query heads read the same kv head.
    const int replicas = tp / static_cast<int>(hkv);
    kv_group_ = tp_->split(options.parallel.tp_rank() / replicas, options.parallel.tp_rank(), "tp_kv");
  } else {
    kv_group_ = make_local_communicator("tp_kv");  // no replicas: the k/v gradients are this rank's
  }
  // shard_dim: 0 rows / 1 columns split over tp, -1 whole on every rank.
  // kv heads: split over tp, or (tp > kv heads) each replicated on tp / hkv ranks.
  const int kv_replicas = tp > 1 && hkv % tp != 0 ? tp / static_cast<int>(hkv) : 1;
  auto add = [&](std::string name, const Shape& shape, int shard_dim, int replicas = 1) {
    std::vector<int64_t> local = shape.vec();
    if (shard_dim >= 0) local[static_cast<size_t>(shard_dim)] /= tp / replicas;
    // Mixed precision: f32 masters and gradients, a bf16 working copy.
    const DType master = compute_dtype(options.dtype);
    Tensor value, grad, working;
    {
      MemoryTagScope tag(MemoryTag::kParameters);
      value = Tensor::zeros(Shape(local), master, options.device);
      if (master != options.dtype) working = Tensor::zeros(Shape(local), options.dtype, options.device);
    }
    {
      MemoryTagScope tag(MemoryTag::kGradients);
      grad = Tensor::zeros(Shape(local), master, options.device);
    }
    params_.push_back({std::move(name), value, grad, tp > 1 ? shard_dim : -1, replicas, shape, working});
  };
  embed_index_ = params_.size();
  add("model.embed_tokens.weight", {v, d}, 0);
  // A block computes with its rank's share of the heads and FFN columns.
  LlamaConfig local = config;
  local.head_dim = hd;
  local.num_attention_heads = hq / tp;
  local.num_key_value_heads = hkv * kv_replicas / tp;
  local.intermediate_size = f / tp;
  const BlockDims dims{d, f, hq, hkv, hd};
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    block_params_.emplace_back();
    for (const BlockParamSpec& spec : kBlockParams) {
      block_params_.back().push_back(params_.size());
      add(p + spec.name, spec.shape(dims), spec.shard_dim, spec.kv ? kv_replicas : 1);
    }
    blocks_.emplace_back(local, l);
  }
  final_norm_index_ = params_.size();
  add("model.norm.weight", {d}, -1);
  head_index_ = embed_index_;  // tied: the embedding is the head
  if (!config.tie_word_embeddings) {
    head_index_ = params_.size();
    add("lm_head.weight", {v, d}, 0);
  }
}

absl::StatusOr<LlamaModel> LlamaModel::create(const LlamaConfig& config,
                                              const LlamaOptions& options) {
  ROTOR_RETURN_IF_ERROR(config.validate());
  ROTOR_RETURN_IF_ERROR(validate_rope(options.rope, config.resolved_head_dim()));
  ROTOR_RETURN_IF_ERROR(validate_logit_scale(options.logit_scale));
  if (options.dtype != DType::kF32 && options.dtype != DType::kF64 && options.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model computes in f32, bf16 (mixed precision) or f64 (tests), not ",
                     dtype_name(options.dtype)));
  }
  if (const int tp = options.parallel.tp_size(); tp > 1) {
    // Heads, kv heads, FFN columns and the vocabulary are split evenly.
    // kv heads: divided by tp, or (tp a multiple of them) replicated.
    if (config.num_key_value_heads % tp != 0 && tp % config.num_key_value_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor parallelism: parallel.tp (", tp, ") must divide model.num_key_value_heads (",
          config.num_key_value_heads, ") or be a multiple of it (kv heads replicated)"));
    }
    for (auto [value, key] : {std::pair{config.num_attention_heads, "num_attention_heads"},
                              std::pair{config.intermediate_size, "intermediate_size"},
                              std::pair{config.vocab_size, "vocab_size"}}) {
      if (value % tp != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor parallelism: parallel.tp (", tp, ") must divide model.", key, " (", value, ")"));
      }
    }
  }
  LlamaConfig resolved = config;
  resolved.rope_theta = options.rope.theta;  // one source of truth: the rope section
  return LlamaModel(resolved, options);
}

void LlamaModel::init_weights(uint64_t seed) {
  const int tp_rank = options_.parallel.tp_rank();
  for (Parameter& p : params_) {
    const bool is_norm = p.value.ndim() == 1;
    if (is_norm) {
      p.value.fill(1.0);
      continue;
    }
    const uint64_t stream = seed ^ hash_name(p.name.c_str());
    if (p.shard_dim < 0) {
      fill_normal(p.value, stream, 0.0, config_.initializer_range);
      continue;
    }
    // Element (r, c) of this shard is element (r0 + r, c0 + c) of the whole
    // [R, C] tensor, drawn at its index there.
    const int64_t rows = p.value.dim(0), cols = p.value.dim(1), whole_cols = p.global_shape[1];
    const int shard = tp_rank / p.tp_replicas;  // replicas hold the same shard
    const int64_t r0 = p.shard_dim == 0 ? rows * shard : 0;
    const int64_t c0 = p.shard_dim == 1 ? cols * shard : 0;
    for (int64_t r = 0; r < rows; ++r)
      fill_normal(p.value.narrow(r, 1), stream, 0.0, config_.initializer_range,
                  static_cast<uint64_t>((r0 + r) * whole_cols + c0));
  }
  refresh_working();
}

Parameter* LlamaModel::find(const std::string& name) {
  for (Parameter& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

void LlamaModel::zero_grad() {
  for (Parameter& p : params_) p.grad.zero();
}

void LlamaModel::refresh_working() {
  for (Parameter& p : params_)
    if (p.working.defined()) p.working.copy_from(p.value);  // rounds to bf16 on the device
}

BlockWeights LlamaModel::block_weights(int64_t layer, bool grads) const {
  BlockWeights w;
  const std::vector<size_t>& index = block_params_.at(static_cast<size_t>(layer));
  for (size_t k = 0; k < index.size(); ++k) {
    const Parameter& p = params_[index[k]];
    w.*kBlockParams[k].field = grads ? p.grad : p.compute();
  }
  return w;
}

const Tensor& LlamaModel::head_weight(bool grad) const {
  const Parameter& p = params_[head_index_];
  return grad ? p.grad : p.compute();
}

void LlamaModel::prepare_context(const Batch& batch) {
  ROTOR_CHECK(batch.input_ids.defined() && batch.input_ids.ndim() == 2 &&
              batch.input_ids.dtype() == DType::kI32)
      << "input_ids must be [B, T] i32, got " << batch.input_ids.str();
  const int64_t b = batch.input_ids.dim(0), t = batch.input_ids.dim(1);
  Communicator* cp = options_.parallel.cp;
  const bool ring = cp->size() > 1;
  ROTOR_CHECK(!ring || batch.positions.defined())
      << "with context parallelism the batch must carry the shard's global positions";
  // Positions are made and read on the host (a host batch is the usual
  // input); the batch then goes to the device once.
  Tensor positions = batch.positions.defined() ? batch.positions.to(Device::cpu()) : Tensor();
  if (!positions.defined()) {
    positions = Tensor::empty({b, t}, DType::kI32);
    for (int64_t i = 0; i < b * t; ++i) positions.data<int32_t>()[i] = static_cast<int32_t>(i % t);
  }
  ROTOR_CHECK(positions.shape() == batch.input_ids.shape() && positions.dtype() == DType::kI32)
      << "positions must be [B, T] i32 like input_ids, got " << positions.str();
  const int32_t* pos = positions.data<int32_t>();
  int64_t max_pos = b * t > 0 ? *std::max_element(pos, pos + b * t) : 0;
  Batch with_positions = batch;
  with_positions.positions = batch.positions.defined() ? batch.positions : positions;
  batch_ = to_device(with_positions, options_.device);
  ctx_ = BlockContext();
  ctx_.batch = b;
  ctx_.seq = t;
  ctx_.positions = batch_.positions;
  ctx_.mask.q_pos = ctx_.mask.k_pos = batch_.positions;
  if (batch_.segments.defined()) {
    ROTOR_CHECK(batch_.segments.shape() == batch.input_ids.shape() &&
                batch_.segments.dtype() == DType::kI32)
        << "segments must be [B, T] i32 like input_ids, got " << batch_.segments.str();
    ctx_.mask.q_seg = ctx_.mask.k_seg = batch_.segments;
  }
  ctx_.mask.causal = true;
  ctx_.cp = cp;
  ctx_.ulysses = options_.parallel.ulysses;
  ctx_.ring = options_.parallel.ring;
  ctx_.tp = tp_;
  ctx_.sp = sp_;
  ctx_.kv_replicas = kv_group_.get();
  ctx_.attention_entropy = want_entropy_;
  ctx_.tile_tokens = options_.tile_tokens;
  rows_ = b * t;
  if (sp_) {
    ROTOR_CHECK(rows_ % tp_->size() == 0)
        << "sequence parallelism: the batch's " << rows_ << " tokens do not split evenly over tp "
        << tp_->size();
    rows_ /= tp_->size();
  }
  if (ring) {  // dynamic NTK and LongRoPE depend on the whole sequence's length
    Tensor m = Tensor::from_vector({static_cast<double>(max_pos)}, {1}, DType::kI64);
    cp->all_reduce(m, ReduceOp::kMax);
    max_pos = static_cast<int64_t>(m.item());
  }
  update_rope_tables(max_pos);

  // Query multipliers per layer (undefined where they are all 1). Every
  // layer that scales uses the same function of the position: one table.
  q_scales_.assign(static_cast<size_t>(config_.num_hidden_layers), Tensor());
  Tensor scale;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (logit_scale_is_identity(options_.logit_scale, l)) continue;
    if (!scale.defined()) {
      scale = act({b, t});
      const LogitScaleConfig& ls = options_.logit_scale;
      if (ls.kind == LogitScaleKind::kConstant) scale.fill(ls.value);
      else log_position_scale(batch_.positions, ls.base_length, ls.min, scale);
    }
    q_scales_[l] = scale;
  }
}

void LlamaModel::update_rope_tables(int64_t max_position) {
  RopeConfig rope = options_.rope;
  rope.sequence_length = max_position + 1;
  absl::StatusOr<RopeTables> tables = compute_rope(rope, config_.resolved_head_dim());
  ROTOR_CHECK(tables.ok()) << tables.status();  // validated in create()
  ctx_.attention_factor = tables->attention_factor;
  if (!inv_freq_.defined() || tables->inv_freq != inv_freq_host_) {
    inv_freq_host_ = tables->inv_freq;
    Tensor host = Tensor::empty({static_cast<int64_t>(inv_freq_host_.size())}, DType::kF32);
    std::copy(inv_freq_host_.begin(), inv_freq_host_.end(), host.data<float>());
    inv_freq_ = host.to(options_.device);
  }
  ctx_.inv_freq = inv_freq_;
}

const Parameter& LlamaModel::final_norm() const { return params_[final_norm_index_]; }

Tensor LlamaModel::forward_hidden(const Batch& batch) {
  prepare_context(batch);
  const int64_t n = ctx_.batch * ctx_.seq, d = config_.hidden_size;
  Tensor x;
  if (tp_->size() == 1) {
    x = act({n, d});
    embedding_forward(batch_.input_ids.view({n}), params_[embed_index_].compute(), x);
  } else {
    // Vocabulary-parallel: each rank fills the rows of its ids; summed over tp.
    Tensor partial = act({n, d});
    embedding_slice_forward(batch_.input_ids.view({n}), params_[embed_index_].compute(), vocab_start_, partial);
    x = sp_ ? act({rows_, d}) : partial;
    tp_sum_to_rows(tp_, sp_, partial, x);
  }
  acts_.assign(blocks_.size(), BlockActivations());
  for (size_t l = 0; l < blocks_.size(); ++l) {
    Tensor y = act({rows_, d});
    blocks_[l].forward(block_weights(static_cast<int64_t>(l), false), ctx_, q_scales_[l], x, y,
                       acts_[l], options_.recompute);
    keep_for_backward(acts_[l]);
    x = y;
  }
  const Tensor& norm = final_norm().compute();
  final_in_ = x;
  final_rstd_ = stat({rows_});
  final_out_ = act({rows_, d});
  rmsnorm_forward(x, norm, config_.rms_norm_eps, final_out_, final_rstd_);
  // The vocabulary-parallel head needs every row on every tp rank.
  final_full_ = tp_rows_to_full(tp_, sp_, final_out_);
  for (const Tensor* t : {&final_in_, &final_rstd_, &final_out_, &final_full_}) set_memory_tag(*t, MemoryTag::kActivations);
  return final_full_;
}

void LlamaModel::keep_for_backward(BlockActivations& a) const {
  for_each_saved(a, [&](Tensor& t) {
    if (!t.defined()) return;
    if (!options_.offload_activations) {
      set_memory_tag(t, MemoryTag::kActivations);
      return;
    }
    Tensor host;
    {
      MemoryTagScope tag(MemoryTag::kOffloaded);
      host = Tensor::empty(t.shape(), t.dtype(), Device::cpu());
    }
    host.copy_from(t);
    t = host;
  });
}

void LlamaModel::bring_back(BlockActivations& a) const {
  for_each_saved(a, [&](Tensor& t) {
    if (!t.defined() || memory_tag(t) != MemoryTag::kOffloaded) return;
    Tensor here = Tensor::empty(t.shape(), t.dtype(), options_.device);  // transient: this block's backward
    here.copy_from(t);
    t = here;
  });
}

int64_t LlamaModel::first_nonfinite_residual() const {
  const int64_t layers = static_cast<int64_t>(acts_.size());
  for (int64_t i = 0; i <= layers; ++i) {
    const Tensor& h = i < layers ? acts_[i].x : final_in_;  // input of block i; the last block's output
    if (h.defined() && !std::isfinite(squared_norm(h))) return i;
  }
  return -1;
}

LossSum LlamaModel::forward(const Batch& batch) {
  check_targets(batch);
  Tensor h = forward_hidden(batch);
  const int64_t n = h.dim(0);
  Tensor loss = stat({n});
  ce_lse_ = stat({n});
  vocab_parallel_cross_entropy(tp_, h, head_weight(false), vocab_start_, config_.vocab_size,
                               batch_.targets.view({n}), loss, ce_lse_, Tensor(), Tensor(), Tensor(),
                               options_.ce_chunks);
  // The kernel writes 0 for ignored targets, so the sum of all is the sum of the counted.
  Tensor sum = Tensor::zeros({1}, DType::kF64, options_.device);
  sum_into(loss, sum);
  const LossSum out{read_scalar(sum), counted_targets(batch)};
  token_loss_ = loss;
  have_forward_ = true;
  return out;
}

LossSum LlamaModel::evaluate(const Batch& batch, ForwardStats& stats) {
  want_entropy_ = stats.want_attention_entropy;
  const LossSum out = forward(batch);
  want_entropy_ = false;
  ctx_.attention_entropy = false;
  // The kernel writes 0 for ignored targets (cross_entropy.h), so no masking here.
  stats.token_loss = token_loss_.view({ctx_.batch, ctx_.seq});
  stats.attention_entropy.clear();
  if (stats.want_attention_entropy)
    for (const BlockActivations& a : acts_) stats.attention_entropy.push_back(a.entropy);
  return out;
}

const BlockActivations& LlamaModel::activations(int64_t layer) const {
  ROTOR_CHECK(layer >= 0 && layer < static_cast<int64_t>(acts_.size()))
      << "activations(" << layer << "): no forward pass kept " << acts_.size() << " layers";
  ROTOR_CHECK(acts_[static_cast<size_t>(layer)].q.defined())
      << "activations(" << layer << "): recompute is on, the block's q and k were not kept";
  return acts_[static_cast<size_t>(layer)];
}

void LlamaModel::backward(double grad_scale) {
  ROTOR_CHECK(have_forward_) << "backward() needs a forward() first";
  const int64_t n = ctx_.batch * ctx_.seq, d = config_.hidden_size;
  Tensor dloss = stat({n});
  dloss.fill(grad_scale);  // ignored tokens get no gradient inside the kernel
  Tensor dh = act({n, d});
  cross_entropy_backward(final_full_, head_weight(false), batch_.targets.view({n}), ce_lse_, dloss,
                         dh, head_weight(true), options_.ce_chunks, vocab_start_,
                         tp_->size() > 1 ? config_.vocab_size : 0);
  backward_from_hidden(head_input_gradient(dh));
}

Tensor LlamaModel::head_input_gradient(const Tensor& dh_partial) const {
  if (tp_->size() == 1) return dh_partial;
  Tensor local = sp_ ? act({rows_, config_.hidden_size}) : dh_partial;
  tp_sum_to_rows(tp_, sp_, dh_partial, local);
  return local;
}

void LlamaModel::backward_from_hidden(const Tensor& dh) {
  const int64_t n = ctx_.batch * ctx_.seq, d = config_.hidden_size;
  const size_t norm_index = final_norm_index_;
  // Gradients final from here on go to the set_gradient_ready hook. The loss
  // head ran before this call, so an untied head's gradient is final already.
  const auto report = [this](size_t i) {
    if (gradient_ready_) gradient_ready_(i);
  };
  if (head_index_ != embed_index_) report(head_index_);
  Tensor dx = act({rows_, d});
  norm_backward(ctx_, dh, final_in_, params_[norm_index].compute(), final_rstd_, dx,
                params_[norm_index].grad);
  report(norm_index);
  for (size_t l = blocks_.size(); l-- > 0;) {
    Tensor dprev = act({rows_, d});
    bring_back(acts_[l]);
    blocks_[l].backward(block_weights(static_cast<int64_t>(l), false),
                        block_weights(static_cast<int64_t>(l), true), ctx_, q_scales_[l], acts_[l],
                        dx, dprev);
    acts_[l] = BlockActivations();  // free as we go
    for (size_t i : block_params_[l]) report(i);
    dx = dprev;
  }
  if (tp_->size() == 1) {
    embedding_backward(batch_.input_ids.view({n}), dx, params_[embed_index_].grad);
  } else {
    embedding_slice_backward(batch_.input_ids.view({n}), tp_rows_to_full(tp_, sp_, dx), vocab_start_,
                             params_[embed_index_].grad);
  }
  report(embed_index_);  // tied: the head's gradient too, complete only now
  have_forward_ = false;
  final_in_ = final_out_ = final_full_ = final_rstd_ = ce_lse_ = Tensor();
}

void LlamaModel::forward_backward(const Batch& batch, double grad_scale, const Tensor& loss_sum) {
  check_targets(batch);
  Tensor h = forward_hidden(batch);
  const int64_t n = h.dim(0);
  Tensor loss = stat({n}), lse = stat({n});
  Tensor dloss = stat({n});
  dloss.fill(grad_scale);
  Tensor dh = act(h.shape());
  const Tensor targets = batch_.targets.view({n});
  if (tp_->size() == 1) {
    cross_entropy_forward_backward(h, head_weight(false), targets, dloss, loss, lse, dh, head_weight(true),
                                   options_.ce_chunks);
  } else {
    vocab_parallel_cross_entropy(tp_, h, head_weight(false), vocab_start_, config_.vocab_size, targets, loss,
                                 lse, dloss, dh, head_weight(true), options_.ce_chunks);
  }
  sum_into(loss, loss_sum);  // ignored targets have loss 0
  backward_from_hidden(head_input_gradient(dh));
}

LossSum LlamaModel::forward_backward(const Batch& batch, double grad_scale) {
  Tensor sum = Tensor::zeros({1}, DType::kF64, options_.device);
  forward_backward(batch, grad_scale, sum);
  return {read_scalar(sum), counted_targets(batch)};
}

double LlamaModel::forward_backward(const Batch& batch) {
  ROTOR_CHECK(batch.targets.defined()) << "forward_backward needs targets";
  const int64_t count = counted_targets(batch);
  ROTOR_CHECK_GT(count, 0) << "batch has no counted target";
  return forward_backward(batch, 1.0 / static_cast<double>(count)).mean();
}

Tensor LlamaModel::logits(const Batch& batch) {
  ROTOR_CHECK(tp_->size() == 1) << "logits() materialises the whole vocabulary: not with tensor parallelism";
  Tensor h = forward_hidden(batch);
  Tensor out = act({h.dim(0), config_.vocab_size});
  matmul(h, head_weight(false), out, false, true);
  acts_.clear();
  have_forward_ = false;
  return out;
}

std::vector<double> LlamaModel::next_token_logprobs(int64_t row) const {
  ROTOR_CHECK(have_forward_ && final_full_.defined()) << "next_token_logprobs() needs a forward() first";
  ROTOR_CHECK(row >= 0 && row < final_full_.dim(0))
      << "next_token_logprobs(" << row << "): the batch has " << final_full_.dim(0) << " rows";
  const Tensor& w = head_weight(false);  // [V / tp, D]: this rank's vocabulary rows
  Tensor local = act({1, w.dim(0)});
  matmul(final_full_.narrow(row, 1), w, local, false, true);
  if (tp_->size() == 1) return log_softmax(local.to(Device::cpu()).to_vector());
  // Rank r holds ids [r * V / tp, (r + 1) * V / tp): gathered in rank order.
  Tensor all = act({tp_->size(), w.dim(0)});
  tp_->all_gather(local, all);
  return log_softmax(all.to(Device::cpu()).to_vector());
}

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

}  // namespace rotor
