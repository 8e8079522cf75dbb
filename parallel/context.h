// ParallelContext: the communicators a layer, the optimizer and the data
// loader use, passed down explicitly (no global parallel state). Every axis
// always has a communicator: a default-constructed context holds one-rank
// communicators of its own (parallel/communicator.h: every collective a copy
// or a no-op), so a one-process run needs no grid and no code asks whether an
// axis exists, only how many ranks it has. The communicators of a context
// made by `of(grid)` are the grid's and do not outlive it.
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/process_grid.h"

namespace rotor {

struct ParallelContext {
  // One rank on every axis.
  ParallelContext();

  Communicator* tp;               // tensor (and sequence) parallel group
  Communicator* cp;               // context-parallel ring
  Communicator* dp;               // data-parallel group (ZeRO-1 shards)
  Communicator* dp_cp;            // gradient reduction: every rank with the same tp rank
  // Attention inside cp (parallel/ulysses_attention.h): the all-to-all group
  // and the ring; one rank and cp itself without Ulysses.
  Communicator* ulysses;
  Communicator* ring;
  bool sequence_parallel = false; // Megatron SP over tp (on by default when tp > 1)

  int tp_size() const { return tp->size(); }
  int cp_size() const { return cp->size(); }
  int dp_size() const { return dp->size(); }
  int tp_rank() const { return tp->rank(); }
  int cp_rank() const { return cp->rank(); }
  int dp_rank() const { return dp->rank(); }

  static ParallelContext of(const ProcessGrid& grid, bool sequence_parallel);

 private:
  // The one-rank communicators of a default context (shared by its copies).
  std::shared_ptr<std::vector<std::unique_ptr<Communicator>>> own_;
};

}  // namespace rotor
