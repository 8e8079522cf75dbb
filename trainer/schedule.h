// The learning-rate schedule: linear warmup from 0 over warmup_steps, then
// cosine, linear or constant from lr down to min_lr at `steps` (min_lr after
// that), counted from the run's step `first_step` (a stage's first step: each
// stage of a staged recipe runs its own schedule over its own steps).
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
  int64_t first_step = 1;  // the run's step that is the schedule's step 1

  // train.lr, train.min_lr, train.warmup_steps, train.steps, train.schedule.
  static LrSchedule of(const recipe::TrainSection& train);

  // The learning rate at the run's 1-based `step` (>= first_step).
  double at(int64_t step) const;
};

// LrSchedule::of(train).at(step).
double schedule_lr(const recipe::TrainSection& train, int64_t step);

}  // namespace rotor
