#include "trainer/train_step.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"
#include "trainer/nonfinite.h"

namespace rotor {
namespace {

std::vector<Tensor> gradients_of(const std::vector<Parameter>& params) {
  std::vector<Tensor> g;
  for (const Parameter& p : params) g.push_back(p.grad);
  return g;
}

}  // namespace

TrainStepSettings TrainStepSettings::of(const recipe::Recipe& r) {
  const recipe::TrainSection& t = r.train();
  return {.hyper = {.lr = t.lr(), .beta1 = t.beta1(), .beta2 = t.beta2(), .eps = 1e-8,
                    .weight_decay = t.weight_decay()},
          .grad_clip = t.grad_clip(),
          .schedule = LrSchedule::of(t),
          .zero1 = r.parallel().zero1()};
}

TrainStep::TrainStep(LlamaModel& model, const TrainStepSettings& settings, const ParallelContext& par,
                     Communicator* world, TrainObserver* observer)
    : model_(model),
      settings_(settings),
      par_(par),
      world_(world),
      observer_(observer != nullptr ? observer : &no_observer_),
      optimizer_(model.parameters(), settings.hyper, settings.zero1 ? par.dp : nullptr),
      reducer_(gradients_of(model.parameters()), par.dp_cp),
      scalars_(Tensor::zeros({3}, DType::kF64, model.options().device)) {}

absl::StatusOr<int64_t> TrainStep::accumulate(int64_t step, const std::vector<Batch>& micro_batches) {
  // The loss is the sum of token losses over every rank / the tokens counted
  // over every rank; a rank with no counted token adds zero. Counted on the
  // host batches, before they go to the device.
  int64_t counted = 0;
  for (const Batch& b : micro_batches) counted += counted_targets(b);
  counted = sum_over(par_.dp_cp, LossSum{0, counted}).count;
  if (counted == 0) return absl::DataLossError(absl::StrCat("step ", step, ": no counted target tokens"));
  model_.zero_grad();
  observer_->before_forward(step, model_);
  scalars_.zero();
  Tensor loss_sum = scalars_.narrow(0, 1);
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    // Gradients are final only in the last micro-batch's backward (the
    // earlier ones accumulate into them): there each gradient bucket starts
    // its reduction as soon as the backward has filled it.
    if (m + 1 == micro_batches.size()) model_.set_gradient_ready([this](size_t i) { reducer_.ready(i); });
    model_.forward_backward(micro_batches[m], 1.0 / static_cast<double>(counted), loss_sum);
  }
  model_.set_gradient_ready(nullptr);
  reducer_.finish();
  par_.dp_cp->all_reduce(loss_sum);
  observer_->after_backward(step, model_);
  return counted;
}

absl::StatusOr<LossSum> TrainStep::forward_backward(int64_t step, const std::vector<Batch>& micro_batches) {
  ROTOR_ASSIGN_OR_RETURN(const int64_t counted, accumulate(step, micro_batches));
  return LossSum{scalars_.narrow(0, 1).to(Device::cpu()).item(), counted};
}

absl::StatusOr<TrainStepResult> TrainStep::step(int64_t step, const std::vector<Batch>& micro_batches) {
  ROTOR_ASSIGN_OR_RETURN(const int64_t counted, accumulate(step, micro_batches));
  // The squared gradient norms join the loss on the device, and the three
  // values come back in the step's one read.
  add_grad_squares(model_.parameters(), scalars_.narrow(1, 2), par_.tp);
  const Tensor host = scalars_.to(Device::cpu());
  TrainStepResult result{.step = step, .lr = settings_.schedule.at(step), .loss = {host.item(0), counted}};
  // The loss and the norm are the same on every rank after the reductions,
  // so every rank applies the step or none does.
  result.grad_norm = std::sqrt(host.item(1) + host.item(2));
  result.nonfinite =
      nonfinite_event(step, result.loss.mean(), result.grad_norm, model_, micro_batches, world_);
  observer_->before_update(step, model_);
  if (result.applied()) {
    result.grad_norm =
        optimizer_.step(model_.parameters(), result.lr, settings_.grad_clip, result.grad_norm).grad_norm;
  }
  return result;
}

}  // namespace rotor
