#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/memory.h"
#include "kernels/reduce.h"
#include "trainer/checkpoint.h"

namespace rotor {

AdamWOptimizer::AdamWOptimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper)
    : hyper_(hyper) {
  MemoryTagScope tag(MemoryTag::kOptimizer);
  for (const Parameter& p : params) {
    m_.push_back(Tensor::zeros_like(p.value));
    v_.push_back(Tensor::zeros_like(p.value));
  }
}

void add_grad_squares(const std::vector<Parameter>& params, const Tensor& acc, Communicator* tp) {
  Tensor sharded = acc.narrow(0, 1);
  const Tensor whole = acc.narrow(1, 1);
  for (const Parameter& p : params) squared_norm_into(p.grad, p.shard_dim >= 0 ? sharded : whole, p.tp_replicas);
  if (tp != nullptr && tp->size() > 1) tp->all_reduce(sharded);
}

double global_grad_norm(const std::vector<Parameter>& params, Communicator* tp) {
  if (params.empty()) return 0;
  Tensor acc = Tensor::zeros({2}, DType::kF64, params[0].grad.device());
  add_grad_squares(params, acc, tp);
  const Tensor host = acc.to(Device::cpu());
  return std::sqrt(host.item(0) + host.item(1));
}

OptimizerStepInfo AdamWOptimizer::step(std::vector<Parameter>& params, double lr,
                                       double grad_clip, Communicator* tp) {
  return step_with_norm(params, lr, grad_clip, global_grad_norm(params, tp));
}

OptimizerStepInfo AdamWOptimizer::step_with_norm(std::vector<Parameter>& params, double lr,
                                                 double grad_clip, double grad_norm) {
  ROTOR_CHECK_EQ(params.size(), m_.size()) << "optimizer built for another parameter list";
  OptimizerStepInfo info;
  info.grad_norm = grad_norm;
  if (grad_clip > 0 && info.grad_norm > grad_clip) info.clip_scale = grad_clip / info.grad_norm;
  ++step_;
  for (size_t i = 0; i < params.size(); ++i) {
    AdamWHyper hp = hyper_;
    hp.lr = lr;
    if (params[i].value.ndim() == 1) hp.weight_decay = 0;
    // Mixed precision: the kernel also writes the bf16 working copy.
    adamw_step(params[i].value, params[i].grad, m_[i], v_[i], step_, hp, info.clip_scale, params[i].working);
  }
  return info;
}

Optimizer::Optimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper, Communicator* zero_dp)
    : hyper_(hyper) {
  if (zero_dp != nullptr && zero_dp->size() > 1) zero_.emplace(params, hyper, zero_dp);
  else adam_.emplace(params, hyper);
}

OptimizerStepInfo Optimizer::step(std::vector<Parameter>& params, double lr, double clip, double grad_norm) {
  if (adam_) return adam_->step_with_norm(params, lr, clip, grad_norm);
  const ZeroStepInfo z = zero_->step(params, lr, clip, grad_norm);
  for (Parameter& p : params)  // the masters are whole again after the gather: round them once
    if (p.working.defined()) p.working.copy_from(p.value);
  return {z.grad_norm, z.clip_scale};
}

CheckpointTensors Optimizer::checkpoint_tensors(const std::vector<Parameter>& params, Communicator* tp) const {
  if (adam_) return rotor::checkpoint_tensors(params, *adam_, tp);
  AdamWOptimizer whole(params, hyper_);  // only while saving
  const FullMoments m = zero_->gather_moments();
  for (size_t i = 0; i < params.size(); ++i) {
    whole.first_moment(i).copy_from(m.first[i]);
    whole.second_moment(i).copy_from(m.second[i]);
  }
  whole.restore_steps_taken(zero_->steps_taken());
  return rotor::checkpoint_tensors(params, whole, tp);
}

absl::StatusOr<CheckpointInfo> Optimizer::load(const std::string& dir, std::vector<Parameter>& params,
                                               int tp_rank) {
  if (adam_) return load_checkpoint(dir, params, &*adam_, tp_rank);
  AdamWOptimizer whole(params, hyper_);
  absl::StatusOr<CheckpointInfo> info = load_checkpoint(dir, params, &whole, tp_rank);
  if (!info.ok()) return info;
  std::vector<Tensor> first, second;
  for (size_t i = 0; i < params.size(); ++i) {
    first.push_back(whole.first_moment(i));
    second.push_back(whole.second_moment(i));
  }
  zero_->load_moments(first, second);
  zero_->restore_steps_taken(whole.steps_taken());
  return info;
}

}  // namespace rotor
