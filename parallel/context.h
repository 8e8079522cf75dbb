// ParallelContext: the communicators a layer, the optimizer and the data
// loader use, passed down explicitly (no global parallel state). Pointers do
// not own: the ProcessGrid that made them outlives the context. A null
// communicator means that axis has one rank, so a one-process run needs no
// grid at all (ParallelContext{}).
#pragma once

#include "parallel/communicator.h"
#include "parallel/process_grid.h"

namespace rotor {

struct ParallelContext {
  Communicator* tp = nullptr;     // tensor (and sequence) parallel group
  Communicator* cp = nullptr;     // context-parallel ring
  Communicator* dp = nullptr;     // data-parallel group (ZeRO-1 shards)
  Communicator* dp_cp = nullptr;  // gradient reduction: every rank with the same tp rank
  bool sequence_parallel = false; // Megatron SP over tp (on by default when tp > 1)

  int tp_size() const { return tp ? tp->size() : 1; }
  int cp_size() const { return cp ? cp->size() : 1; }
  int dp_size() const { return dp ? dp->size() : 1; }
  int tp_rank() const { return tp ? tp->rank() : 0; }
  int cp_rank() const { return cp ? cp->rank() : 0; }
  int dp_rank() const { return dp ? dp->rank() : 0; }

  static ParallelContext of(const ProcessGrid& grid, bool sequence_parallel) {
    return {&grid.tp(), &grid.cp(), &grid.dp(), &grid.dp_cp(),
            sequence_parallel && grid.shape().tp > 1};
  }
};

}  // namespace rotor
