#include "trainer/recipe/layout.h"

#include <algorithm>

namespace rotor {

absl::StatusOr<RecipeLayout> recipe_layout(const recipe::Recipe& r, Communicator& world) {
  absl::StatusOr<std::unique_ptr<ProcessGrid>> grid = ProcessGrid::create(
      world.split(0, world.rank(), "world"), static_cast<int>(r.parallel().tp()), static_cast<int>(r.parallel().cp()),
      static_cast<int>(std::max<int64_t>(1, r.parallel().ulysses())));
  if (!grid.ok()) return absl::InvalidArgumentError(grid.status().message());
  RecipeLayout layout;
  layout.grid = *std::move(grid);
  layout.par = ParallelContext::of(*layout.grid, r.parallel().sequence_parallel());
  return layout;
}

}  // namespace rotor
