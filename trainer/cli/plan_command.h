// `rotor plan`: the memory a recipe's training step will take on each rank,
// predicted before anything is allocated (trainer/memory_plan.h), and the
// longest sequence that fits a device:
//
//   rotor plan RECIPE.yaml [--set KEY=VALUE ...] [--world N] [--memory SIZE]
//
// --world: the number of ranks the run will have (default tp x cp: dp 1).
// --memory: the device memory of one rank ("80GB", "141GB", "24GiB"): says
// whether the step fits, the longest sequence that fits at the recipe's
// layout and micro-batch, and (for comparison with ALST-style setups) the
// longest whose activations alone fit, with parameters, gradients and
// optimizer state off the device. Status 0 when it fits (or without
// --memory), 1 when it does not, 2 for usage and recipe errors.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rotor {

int run_plan_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace rotor
