// The parallel layout a recipe asks for over a world of processes:
// parallel.tp x parallel.cp, dp the rest (parallel/process_grid.h), sequence
// parallelism as parallel.sequence_parallel says. Training and
// every evaluation build their grid here.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/context.h"
#include "parallel/process_grid.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

struct RecipeLayout {
  std::unique_ptr<ProcessGrid> grid;
  ParallelContext par;
};

// `recipe`: resolved (LoadedRecipe::proto), so parallel.tp, parallel.cp and
// parallel.sequence_parallel hold their values, defaults included. The grid
// is built over a duplicate of `world` (so that sweeps can make one per run).
// InvalidArgument when the world size does not fit tp x cp.
absl::StatusOr<RecipeLayout> recipe_layout(const recipe::Recipe& recipe, Communicator& world);

}  // namespace rotor
