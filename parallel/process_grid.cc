#include "parallel/process_grid.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rotor {

absl::StatusOr<std::unique_ptr<ProcessGrid>> ProcessGrid::create(
    std::unique_ptr<Communicator> world, int tp, int cp) {
  if (world == nullptr) return absl::InvalidArgumentError("process grid: no world communicator");
  const int n = world->size();
  if (tp < 1 || cp < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("process grid: tp and cp must be >= 1, got tp ", tp, ", cp ", cp));
  }
  if (n % (tp * cp) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", n,
                                                   " is not a multiple of tp * cp = ", tp * cp,
                                                   " (tp ", tp, ", cp ", cp, ")"));
  }
  // w = (dp_rank * cp + cp_rank) * tp + tp_rank
  const int w = world->rank();
  const int tp_rank = w % tp;
  const int cp_rank = (w / tp) % cp;
  const int dp_rank = w / (tp * cp);

  std::unique_ptr<ProcessGrid> g(new ProcessGrid());
  g->shape_ = GridShape{tp, cp, n / (tp * cp)};
  // Every split is collective over the world, in the same order on every rank.
  g->tp_ = world->split(/*color=*/w / tp, /*key=*/tp_rank, "tp");
  g->cp_ = world->split(/*color=*/dp_rank * tp + tp_rank, /*key=*/cp_rank, "cp");
  g->dp_ = world->split(/*color=*/w % (tp * cp), /*key=*/dp_rank, "dp");
  g->dp_cp_ = world->split(/*color=*/tp_rank, /*key=*/w / tp, "dp_cp");
  g->world_ = std::move(world);
  return g;
}

std::string ProcessGrid::describe() const {
  return absl::StrCat("rank ", world_->rank(), " (dp ", dp_rank(), ", cp ", cp_rank(), ", tp ",
                      tp_rank(), ")");
}

}  // namespace rotor
