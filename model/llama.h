// The Llama causal language model on one device, with explicit forward and
// backward passes:
//
//   x_0   = embed_tokens[input_ids]                         [N, D], N = B * T
//   x_l+1 = LlamaBlock_l(x_l)                               (model/llama_block.h)
//   loss  = cross_entropy(RMSNorm(x_L) * norm, W_head)      fused, vocab-chunked
//
// W_head is lm_head.weight, or embed_tokens.weight when tie_word_embeddings.
//
// Tensor parallelism (options.parallel.tp of more than one rank): each rank
// holds its shard of every weight (Parameter::shard_dim; q/k/v/gate/up and the
// vocabulary rows of embed_tokens/lm_head split along dim 0, o/down along
// dim 1, norms whole) and the layers combine partial results as
// parallel/tensor_parallel.h describes; with parallel.sequence_parallel the
// residual stream holds this rank's N/tp rows. Every tp rank of a group gets
// the same batch and returns the same loss. Parameter i of every rank has the
// same name; init draws each element from its index in the whole tensor, so
// the shards of a tp run are slices of the one-rank weights.
// RoPE frequencies and the per-(layer, position) query multiplier come from
// model/rope from the positions of the batch, which are global positions (a
// shard of a longer sequence passes its own). Parameters carry Hugging Face
// names and shapes, so import/export is a rename-free copy:
//   model.embed_tokens.weight                        [V, D]
//   model.layers.{i}.input_layernorm.weight          [D]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight [Hq*hd, D] [Hkv*hd, D] x2 [D, Hq*hd]
//   model.layers.{i}.post_attention_layernorm.weight [D]
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight  [F, D] [F, D] [D, F]
//   model.norm.weight                                [D]
//   lm_head.weight                                   [V, D]   (untied only)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cross_entropy.h"
#include "kernels/tensor.h"
#include "model/config.h"
#include "model/llama_block.h"
#include "model/rope.h"
#include "parallel/context.h"

namespace rotor {

struct LlamaOptions {
  RopeConfig rope;                 // rope.theta is taken from here, not config.rope_theta
  LogitScaleConfig logit_scale;
  // What each block keeps for backward (model/llama_block.h: Recompute).
  Recompute recompute = Recompute::kNone;
  // Rows per tile of the sequence-tiled MLP (model/llama_block.h); 0: the
  // MLP over the whole micro-batch at once. default_tile_tokens (model/config.h)
  // picks one.
  int64_t tile_tokens = 0;
  // Training forward passes move what each block keeps (the checkpoint the
  // Recompute mode says) to host memory once the block is done, and backward
  // brings it back before that block's backward, so the device holds one
  // layer's checkpoint instead of every layer's (kernels/memory.h: the host
  // copies are tagged offloaded, never part of the device's total, also when
  // the device is the CPU). The copies are synchronous for now.
  bool offload_activations = false;
  // f32, f64 (gradient checks) or bf16: mixed precision, where parameters
  // hold f32 master weights (Parameter::value) and gradients, forward and
  // backward read a bf16 copy of them (Parameter::working) and compute bf16
  // activations, while every statistic (RMSNorm rstd, attention and
  // cross-entropy log-sum-exp, attention entropy, token losses) is f32
  // (kernels/tensor.h: compute_dtype; the op headers give each op's dtypes).
  DType dtype = DType::kF32;
  // Where parameters, gradients and activations live: cpu, sim (the checked
  // stand-in, kernels/sim.h) or cuda:N. Batches may come from the host: the
  // model uploads each once (to_device).
  Device device = Device::cpu();
  CrossEntropyChunks ce_chunks;
  // Communicators (not owned). With parallel.cp of more than one rank, a
  // batch holds this rank's zigzag shard of each sequence
  // (parallel/ring_attention.h: context_shard) with global positions, and
  // attention runs as ring attention over cp; the loss and gradients are this
  // rank's share (the trainer sums them over dp_cp).
  ParallelContext parallel;
};

// One micro-batch. Tokens are [B, T] i32.
struct Batch {
  Tensor input_ids;  // [B, T]
  Tensor targets;    // [B, T]; < 0: not counted in the loss
  Tensor positions;  // [B, T] global positions; undefined: 0..T-1 in every row
  Tensor segments;   // [B, T] document ids (attention stays inside a document); optional
};

// The batch's tensors on `device` (copies; the tensors themselves when they
// are there already).
Batch to_device(const Batch& batch, Device device);

// Targets counted in the loss (>= 0), read on the host (a device batch is
// copied for it: count before uploading).
int64_t counted_targets(const Batch& batch);

// This cp rank's zigzag share of every sequence of `batch` (ring attention,
// parallel/ring_attention.h: context_shard); the batch itself with one cp rank.
Batch shard_for_context(const Batch& batch, const ParallelContext& parallel);

struct LossSum {
  double sum = 0;     // sum of token losses (natural log)
  int64_t count = 0;  // tokens counted (targets >= 0)
  double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
};

// (sum, count) added over the ranks of `comm` (one rank: unchanged).
LossSum sum_over(Communicator* comm, LossSum l);

struct Parameter {
  std::string name;  // HF name
  Tensor value;      // this rank's shard (the whole tensor without tensor parallelism)
  Tensor grad;       // same shape and dtype; accumulated by backward
  // Tensor parallelism: the dim split over the tp ranks (rank i holds the i-th
  // of tp equal parts), or -1 for a tensor every tp rank holds whole (norms).
  int shard_dim = -1;
  // tp ranks holding the same shard: k/v projections when tp exceeds the kv
  // heads (each kv head replicated on tp / num_key_value_heads ranks).
  int tp_replicas = 1;
  Shape global_shape = {};  // the whole tensor's (HF) shape
  // Mixed precision: the bf16 copy of value that forward and backward read,
  // refreshed from value by whoever writes value (the optimizer,
  // checkpoint loading, init_weights: LlamaModel::refresh_working). Undefined
  // otherwise: they read value itself.
  Tensor working;
  const Tensor& compute() const { return working.defined() ? working : value; }
};

// What an evaluation forward pass (LlamaModel::evaluate) returns besides the
// loss. Tokens are this rank's: the cp shard's positions, all tp ranks alike.
struct ForwardStats {
  bool want_attention_entropy = false;    // request: entropy of every attention row
  Tensor token_loss;                      // [B, T] -log p(target), 0 where target < 0
  std::vector<Tensor> attention_entropy;  // per layer [B, Hq / tp, T] (this rank's heads),
                                          // over the whole sequence's keys (ring-merged)
};

class LlamaModel {
 public:
  // Validates the config and options (errors name the field or recipe key)
  // and allocates parameters (zero) and gradients (zero).
  static absl::StatusOr<LlamaModel> create(const LlamaConfig& config,
                                           const LlamaOptions& options);

  // Deterministic init from a seed, per parameter from its name (so any
  // shard of a parameter can draw its own elements): normal(0,
  // initializer_range) for matrices and embeddings, 1 for norm weights.
  void init_weights(uint64_t seed);

  // Runs the forward pass, keeps activations for backward, returns the loss.
  LossSum forward(const Batch& batch);
  // Backward of sum_tokens(loss) * grad_scale (grad_scale = 1 / count gives
  // the gradient of the mean). Accumulates into every parameter's grad.
  void backward(double grad_scale);
  // Training step body: forward and backward of sum_tokens(loss) * grad_scale
  // in one call, with the loss head fused (cross_entropy_forward_backward:
  // one logits tile pass instead of a forward and a recomputing backward).
  // Same gradients as forward() + backward(grad_scale). Adds this rank's sum
  // of token losses to `loss_sum` ([1] f64 on the model's device), so that
  // nothing is read back to the host.
  void forward_backward(const Batch& batch, double grad_scale, const Tensor& loss_sum);
  // The same, returning the sum and count (reads the sum back).
  LossSum forward_backward(const Batch& batch, double grad_scale);
  // Convenience: the gradient of this batch's mean loss. Returns the mean.
  double forward_backward(const Batch& batch);
  void zero_grad();
  // Mixed precision: every Parameter::working = value (rounded to bf16).
  void refresh_working();

  // Called by backward() and forward_backward() with the index (into
  // parameters()) of each parameter as soon as its gradient is final for that
  // backward, i.e. nothing later in it adds to the gradient: the head
  // (lm_head, when untied) and the final norm once the loss head and the norm
  // backward have run, each block's parameters (in parameters() order) after
  // that block's backward, from the last block to the first, the embedding
  // last (with tied embeddings, the head is the embedding: reported once,
  // last). Every parameter exactly once per backward. For starting the
  // gradient reduction during backward (parallel/data_parallel.h); an empty
  // function (the default) reports nothing.
  void set_gradient_ready(std::function<void(size_t)> hook) { gradient_ready_ = std::move(hook); }

  // A forward pass for evaluation: the loss sum plus what `stats` asks for.
  // Keeps the activations like forward() (see activations()).
  LossSum evaluate(const Batch& batch, ForwardStats& stats);
  // Layer l's activations from the last forward()/evaluate() when recompute
  // is off: q [B, T, Hq, hd] after RoPE and the logit scalar, k [B, T, Hkv, hd]
  // after RoPE, exactly as the attention kernel saw them (eval/ rebuilds
  // attention rows from them on small inputs).
  const BlockActivations& activations(int64_t layer) const;

  // Full logits [B*T, V] (materialised: for tests and scoring short texts).
  Tensor logits(const Batch& batch);
  // After forward()/evaluate(): log-softmax, in double, of the logits of this
  // rank's token row `row` (an index into the batch's B*T rows, this cp
  // shard's), over the whole vocabulary: the distribution of the token after
  // it. Under tensor parallelism each rank computes its vocabulary rows and
  // they are gathered over tp, so every tp rank must call it with the same row.
  std::vector<double> next_token_logprobs(int64_t row) const;

  // After a forward pass: the first residual-stream tensor of this rank with a
  // non-finite value (NaN or inf): 0 the embedding output, l + 1 the output of
  // block l; -1 when every one is finite. Locates where a non-finite loss
  // began (trainer/nonfinite.cc); the hidden states are kept even with recompute.
  int64_t first_nonfinite_residual() const;

  std::vector<Parameter>& parameters() { return params_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  Parameter* find(const std::string& name);
  const LlamaConfig& config() const { return config_; }
  const LlamaOptions& options() const { return options_; }

 private:
  friend class Decoder;  // model/decode.h: runs the blocks against a KV cache
  LlamaModel(const LlamaConfig& config, const LlamaOptions& options);
  BlockWeights block_weights(int64_t layer, bool grads) const;
  const Tensor& head_weight(bool grad) const;
  const Parameter& final_norm() const;  // model.norm.weight
  // Embedding + blocks + final norm; fills the saved state. Returns final hidden [N, D].
  Tensor forward_hidden(const Batch& batch);
  void prepare_context(const Batch& batch);
  // After block forward: tags what `a` keeps as activations, or moves it to
  // the host (options.offload_activations); bring_back undoes the move.
  void keep_for_backward(BlockActivations& a) const;
  void bring_back(BlockActivations& a) const;
  // From the gradient of the final hidden state (this rank's rows) down to the embedding.
  void backward_from_hidden(const Tensor& dh);
  // The head's input gradient [N, D] (a partial sum under tp) -> this rank's rows, summed.
  Tensor head_input_gradient(const Tensor& dh_partial) const;
  // An uninitialised activation of the model's dtype on its device.
  Tensor act(const Shape& shape) const { return Tensor::empty(shape, options_.dtype, options_.device); }
  // A statistic (rstd, lse, token loss): f32 with bf16 activations.
  Tensor stat(const Shape& shape) const {
    return Tensor::empty(shape, compute_dtype(options_.dtype), options_.device);
  }
  // The RoPE inverse frequencies for the batch's longest position, on the
  // device; uploaded again only when they change (dynamic NTK, LongRoPE).
  void update_rope_tables(int64_t max_position);

  // Tensor parallelism (parallel/tensor_parallel.h): options.parallel.tp (one rank: none).
  Communicator* tp_ = nullptr;
  // The tp ranks sharing this rank's kv head (only when kv heads are replicated).
  std::shared_ptr<Communicator> kv_group_;
  bool sp_ = false;             // sequence parallel: the residual stream holds N/tp rows
  int64_t vocab_start_ = 0;     // first vocabulary id of this rank's embedding / head rows
  int64_t rows_ = 0;            // residual-stream rows of this rank (N, or N/tp under SP)
  Tensor final_full_;           // final normed hidden, all rows (gathered under SP)

  LlamaConfig config_;
  LlamaOptions options_;
  std::vector<Parameter> params_;
  // Positions in params_, from the constructor's table of parameters: the
  // embedding, each block's parameters (in BlockWeights order), the final
  // norm and the head (the embedding when tied).
  size_t embed_index_ = 0, final_norm_index_ = 0, head_index_ = 0;
  std::vector<std::vector<size_t>> block_params_;
  std::vector<LlamaBlock> blocks_;

  // Saved by forward for backward.
  Batch batch_;
  BlockContext ctx_;
  std::vector<Tensor> q_scales_;            // per layer [B, T] or undefined
  Tensor inv_freq_;                         // [hd / 2] f32 on the device
  std::vector<float> inv_freq_host_;        // its values
  std::vector<BlockActivations> acts_;
  Tensor final_in_, final_rstd_, final_out_, ce_lse_;
  Tensor token_loss_;                       // [N] from the last forward()
  bool want_entropy_ = false;               // evaluate(): attention entropy requested
  bool have_forward_ = false;
  std::function<void(size_t)> gradient_ready_;  // set_gradient_ready
};

// log-softmax of a logits row, in double.
std::vector<double> log_softmax(std::span<const double> logits);

}  // namespace rotor
