#include "parallel/context.h"

namespace rotor {

ParallelContext::ParallelContext()
    : own_(std::make_shared<std::vector<std::unique_ptr<Communicator>>>()) {
  for (const char* axis : {"tp", "cp", "dp", "dp_cp", "ulysses"}) own_->push_back(make_local_communicator(axis));
  tp = (*own_)[0].get();
  cp = (*own_)[1].get();
  dp = (*own_)[2].get();
  dp_cp = (*own_)[3].get();
  ulysses = (*own_)[4].get();
  ring = cp;
}

ParallelContext ParallelContext::of(const ProcessGrid& grid, bool sequence_parallel) {
  ParallelContext c;
  c.own_.reset();
  c.tp = &grid.tp();
  c.cp = &grid.cp();
  c.dp = &grid.dp();
  c.dp_cp = &grid.dp_cp();
  c.ulysses = &grid.ulysses();
  c.ring = &grid.ring();
  c.sequence_parallel = sequence_parallel && grid.shape().tp > 1;
  return c;
}

}  // namespace rotor
