// ProcessGrid: the world's ranks arranged as dp x cp x tp, tp fastest-varying
// (so the tp ranks of a group are neighbours, inside one node), with one
// communicator per axis:
//
//   world rank w = (dp_rank * cp + cp_rank) * tp + tp_rank
//   tp     the tp ranks sharing (dp_rank, cp_rank)   tensor/sequence parallel
//   cp     the cp ranks sharing (dp_rank, tp_rank)   the ring of ring attention
//   dp     the dp ranks sharing (cp_rank, tp_rank)   data parallel (ZeRO-1 shards)
//   dp_cp  the dp*cp ranks sharing tp_rank           gradient reduction: every
//          rank of it holds the same parameter shard and different tokens
//
// Inside cp, a 2-D layout for Ulysses x ring attention (parallel/
// ulysses_attention.h) with `ulysses` = U dividing cp, ulysses fastest:
//   cp rank = ring_rank * U + ulysses_rank
//   ulysses  the U cp ranks sharing ring_rank        all-to-all group (neighbours,
//                                                    so inside a node)
//   ring     the cp / U cp ranks sharing ulysses_rank  the ring of ring attention
// With U = 1, ulysses is a one-rank communicator and ring is cp itself.
//
// Example, world 8 with tp 2, cp 2 (dp 2): rank 5 = (dp 1, cp 0, tp 1); its tp
// group {4, 5}, cp group {5, 7}, dp group {1, 5}, dp_cp group {1, 3, 5, 7}.
//
// Explicit objects, passed down (ParallelContext); no global parallel state.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace rotor {

struct GridShape {
  int tp = 1;
  int cp = 1;
  int dp = 1;
  int ulysses = 1;  // divides cp
};

class ProcessGrid {
 public:
  // Splits `world` (collective over it). Errors (the same on every rank, before
  // any split): tp, cp or ulysses < 1, the world size not a multiple of
  // tp * cp, or ulysses not dividing cp.
  static absl::StatusOr<std::unique_ptr<ProcessGrid>> create(std::unique_ptr<Communicator> world,
                                                             int tp, int cp, int ulysses = 1);

  const GridShape& shape() const { return shape_; }
  int tp_rank() const { return tp_->rank(); }
  int cp_rank() const { return cp_->rank(); }
  int dp_rank() const { return dp_->rank(); }

  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& cp() const { return *cp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& dp_cp() const { return *dp_cp_; }
  Communicator& ulysses() const { return *ulysses_; }
  Communicator& ring() const { return ring_ ? *ring_ : *cp_; }

  // "rank 5 (dp 1, cp 0, tp 1)"
  std::string describe() const;

 private:
  ProcessGrid() = default;
  GridShape shape_;
  std::unique_ptr<Communicator> world_, tp_, cp_, dp_, dp_cp_;
  std::unique_ptr<Communicator> ulysses_, ring_;  // ring_ null: the ring is cp
};

}  // namespace rotor
