#include "parallel/process_grid.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rotor {

absl::StatusOr<std::unique_ptr<ProcessGrid>> ProcessGrid::create(
    std::unique_ptr<Communicator> world, int tp, int cp, int ulysses) {
  if (world == nullptr) return absl::InvalidArgumentError("process grid: no world communicator");
  const int n = world->size();
  if (tp < 1 || cp < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("process grid: tp and cp must be >= 1, got tp ", tp, ", cp ", cp));
  }
  if (ulysses < 1 || cp % ulysses != 0) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.ulysses (", ulysses,
                                                   ") must be >= 1 and divide parallel.cp (", cp, ")"));
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
  g->shape_ = GridShape{tp, cp, n / (tp * cp), ulysses};
  // Every split is collective over the world, in the same order on every rank.
  g->tp_ = world->split(/*color=*/w / tp, /*key=*/tp_rank, "tp");
  g->cp_ = world->split(/*color=*/dp_rank * tp + tp_rank, /*key=*/cp_rank, "cp");
  g->dp_ = world->split(/*color=*/w % (tp * cp), /*key=*/dp_rank, "dp");
  g->dp_cp_ = world->split(/*color=*/tp_rank, /*key=*/w / tp, "dp_cp");
  // Inside cp (collective over cp): cp rank = ring rank * U + ulysses rank.
  if (ulysses > 1) {
    g->ulysses_ = g->cp_->split(/*color=*/cp_rank / ulysses, /*key=*/cp_rank % ulysses, "ulysses");
    g->ring_ = g->cp_->split(/*color=*/cp_rank % ulysses, /*key=*/cp_rank / ulysses, "ring");
  } else {
    g->ulysses_ = make_local_communicator("ulysses");
  }
  g->world_ = std::move(world);
  return g;
}

std::string ProcessGrid::describe() const {
  if (shape_.ulysses > 1)
    return absl::StrCat("rank ", world_->rank(), " (dp ", dp_rank(), ", cp ", cp_rank(), " = ring ", ring().rank(),
                        " x ulysses ", ulysses().rank(), ", tp ", tp_rank(), ")");
  return absl::StrCat("rank ", world_->rank(), " (dp ", dp_rank(), ", cp ", cp_rank(), ", tp ",
                      tp_rank(), ")");
}

}  // namespace rotor
