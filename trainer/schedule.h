// The learning-rate schedule: linear warmup from 0 over warmup_steps, then
// cosine, linear or constant from lr down to min_lr at `steps` (min_lr after
// that).
#pragma once

#include <cstdint>

#include "trainer/recipe/recipe.pb.h"

namespace rotor {

struct LrSchedule {
  enum class Shape { kCosine, kLinear, kConstant };
  double lr = 0;      // peak, reached at the end of the warmup
  double min_lr = 0;  // the end of the decay
  int64_t warmup_steps = 0;
  int64_t steps = 0;  // the decay ends here
  Shape shape = Shape::kCosine;

  // train.lr, train.min_lr, train.warmup_steps, train.steps, train.schedule.
  static LrSchedule of(const recipe::TrainSection& train);

  // The learning rate at 1-based `step`.
  double at(int64_t step) const;
};

// LrSchedule::of(train).at(step).
double schedule_lr(const recipe::TrainSection& train, int64_t step);

}  // namespace rotor
