// ZeRO-1: AdamW with its moments sharded over the data-parallel group
// (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", 2020, stage 1 "P_os").
//
// Same update as trainer/optimizer.h's AdamWOptimizer (torch.optim.AdamW
// formulation through kernels/adamw.h, no weight decay on 1-D parameters,
// global-norm clipping, a 1-based step count for bias correction), but each
// of the dp ranks keeps the first and second moments of only 1/dp of the
// parameters:
//
//   The parameters, in list order, are one logical flat vector of P elements,
//   padded to dp * S (S = ceil(P / dp)); dp rank r owns [r * S, (r+1) * S) ∩ [0, P).
//   Ranges cut through parameters freely.
//
// step(): the gradients are already summed over dp_cp by the trainer
// (GradientReducer), so every rank holds the full, identical gradients. Each
// rank computes the global norm from them (as AdamWOptimizer does; no
// communication), updates only its own range of the parameters with its own
// moments (adamw_step on each piece of a parameter that falls in the range,
// with that parameter's weight-decay rule), then all_gathers the updated
// ranges over dp so that every rank holds all parameters again. Traffic per
// step per rank: (dp - 1) * S elements (CommStats::all_gather_bytes counts
// (n-1)/n of the gathered buffer, i.e. exactly that).
//
// Because adamw_step is elementwise and every element sees the same inputs
// (same gradient, same norm, same step) as in AdamWOptimizer, the result is
// the same bit for bit; the tests allow 1e-6 relative.
//
// Checkpoints stay layout-independent: gather_moments() (collective over dp)
// returns the full moments per parameter, in AdamWOptimizer's layout
// (first_moment(i) / second_moment(i)); load_moments() takes full
// per-parameter moments (the same on every rank) and keeps this rank's range.
//
// Layering: parallel/ does not depend on model/ (model -> parallel), so the
// core API takes the parameter values and gradients as Tensors; the template
// overloads accept any parameter type with `.value` and `.grad` Tensors
// (model/llama.h's Parameter), so the trainer calls
//   ShardedAdamW opt(model->parameters(), hyper, par.dp);
//   ZeroStepInfo s = opt.step(model->parameters(), lr, grad_clip,
//                             global_grad_norm(model->parameters(), par.tp));
// ZeroStepInfo has OptimizerStepInfo's fields (grad_norm, clip_scale).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

struct ZeroStepInfo {
  double grad_norm = 0;   // global L2 norm before clipping
  double clip_scale = 1;  // factor applied to the gradients
};

// Full per-parameter moments (AdamWOptimizer's layout), for checkpoints.
struct FullMoments {
  std::vector<Tensor> first, second;
};

class ShardedAdamW {
 public:
  // `values`: the parameters in order (f32, or f64 for tests; all one dtype,
  // CPU). dp == nullptr or one rank: plain AdamW, nothing sent. Only shapes
  // and dtype are read here.
  ShardedAdamW(const std::vector<Tensor>& values, const AdamWHyper& hyper, Communicator* dp);
  template <class P>
  ShardedAdamW(const std::vector<P>& params, const AdamWHyper& hyper, Communicator* dp)
      : ShardedAdamW(values_of(params), hyper, dp) {}

  // One step with learning rate `lr`. Collective over dp (one all_gather).
  // Gradients are scaled by min(1, grad_clip / norm) when grad_clip > 0.
  // `grad_norm`: the global gradient norm when the caller has it; without it,
  // the norm of `grads` (what AdamWOptimizer::step computes without tp). With
  // tensor parallelism pass trainer/optimizer.h's global_grad_norm(params, tp)
  // (the squares of the sharded parameters summed over tp): parallel/ cannot
  // see Parameter::shard_dim.
  ZeroStepInfo step(const std::vector<Tensor>& values, const std::vector<Tensor>& grads, double lr,
                    double grad_clip, std::optional<double> grad_norm = std::nullopt);
  template <class P>
  ZeroStepInfo step(std::vector<P>& params, double lr, double grad_clip,
                    std::optional<double> grad_norm = std::nullopt) {
    return step(values_of(params), grads_of(params), lr, grad_clip, grad_norm);
  }

  int64_t steps_taken() const { return step_; }
  void restore_steps_taken(int64_t steps) { step_ = steps; }
  const AdamWHyper& hyper() const { return hyper_; }

  // Collective over dp: every rank gets the full moments of every parameter
  // (same shapes and order as the parameters), as AdamWOptimizer holds them.
  FullMoments gather_moments() const;
  // Local: keeps this rank's range of full per-parameter moments (shapes as
  // the parameters). Every rank passes the same full moments.
  void load_moments(const std::vector<Tensor>& first, const std::vector<Tensor>& second);

  // The layout: P, S (shard elements, P padded to dp * S, divided by dp), and
  // this rank's range [shard_begin, shard_end) of the flat vector (clipped to P).
  int64_t total_elements() const { return total_; }
  int64_t shard_elements() const { return shard_; }
  int64_t shard_begin() const { return begin_; }
  int64_t shard_end() const { return end_; }
  // This rank's moments, flat [S] (padding zero).
  const Tensor& local_first_moment() const { return m_; }
  const Tensor& local_second_moment() const { return v_; }

 private:
  template <class P>
  static std::vector<Tensor> values_of(const std::vector<P>& params) {
    std::vector<Tensor> out;
    out.reserve(params.size());
    for (const P& p : params) out.push_back(p.value);
    return out;
  }
  template <class P>
  static std::vector<Tensor> grads_of(const std::vector<P>& params) {
    std::vector<Tensor> out;
    out.reserve(params.size());
    for (const P& p : params) out.push_back(p.grad);
    return out;
  }
  // One all_gather over dp of `local` ([S]) into per-parameter tensors `full`
  // (flat order), or a plain copy with one rank.
  void gather_flat(const Tensor& local, const std::vector<Tensor>& full, bool skip_own) const;
  void check_params(const std::vector<Tensor>& values, const char* what) const;

  AdamWHyper hyper_;
  Communicator* dp_;
  int dp_size_ = 1, dp_rank_ = 0;
  int64_t step_ = 0;
  std::vector<Shape> shapes_;
  std::vector<int64_t> offsets_;  // flat offset of each parameter; offsets_.back() = P
  DType dtype_ = DType::kF32;
  Device device_;  // the parameters'; moments and gather buffers live there too
  int64_t total_ = 0, shard_ = 0, begin_ = 0, end_ = 0;
  Tensor m_, v_;  // [S]
};

}  // namespace rotor
