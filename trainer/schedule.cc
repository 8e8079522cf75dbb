#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace rotor {

LrSchedule LrSchedule::of(const recipe::TrainSection& t) {
  LrSchedule s{.lr = t.lr(), .min_lr = t.min_lr(), .warmup_steps = t.warmup_steps(), .steps = t.steps()};
  if (t.schedule() == recipe::TrainSection::constant) s.shape = Shape::kConstant;
  if (t.schedule() == recipe::TrainSection::linear) s.shape = Shape::kLinear;
  return s;
}

double LrSchedule::at(int64_t run_step) const {
  const int64_t step = run_step - first_step + 1;
  const int64_t warmup = warmup_steps, total = steps;
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (shape == Shape::kConstant || total <= warmup) return lr;
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  const double factor = shape == Shape::kLinear ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return min_lr + (lr - min_lr) * factor;
}

double schedule_lr(const recipe::TrainSection& train, int64_t step) { return LrSchedule::of(train).at(step); }

}  // namespace rotor
