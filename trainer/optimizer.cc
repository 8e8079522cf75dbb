#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/elementwise.h"

namespace rotor {

AdamWOptimizer::AdamWOptimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper)
    : hyper_(hyper) {
  for (const Parameter& p : params) {
    m_.push_back(Tensor::zeros(p.value.shape(), p.value.dtype()));
    v_.push_back(Tensor::zeros(p.value.shape(), p.value.dtype()));
  }
}

OptimizerStepInfo AdamWOptimizer::step(std::vector<Parameter>& params, double lr,
                                       double grad_clip) {
  ROTOR_CHECK_EQ(params.size(), m_.size()) << "optimizer built for another parameter list";
  OptimizerStepInfo info;
  double sq = 0;
  for (const Parameter& p : params) sq += squared_norm(p.grad);
  info.grad_norm = std::sqrt(sq);
  if (grad_clip > 0 && info.grad_norm > grad_clip) info.clip_scale = grad_clip / info.grad_norm;
  ++step_;
  for (size_t i = 0; i < params.size(); ++i) {
    AdamWHyper hp = hyper_;
    hp.lr = lr;
    if (params[i].value.ndim() == 1) hp.weight_decay = 0;
    adamw_step(params[i].value, params[i].grad, m_[i], v_[i], step_, hp, info.clip_scale);
  }
  return info;
}

}  // namespace rotor
