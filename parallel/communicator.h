// Communicator: the collective and point-to-point operations the parallel
// layer needs, over one group of ranks. Implementations: LocalCommunicator
// (one rank, every operation a copy or a no-op; parallel/communicator.cc) and
// MpiCommunicator (OpenMPI, CPU tensors; parallel/mpi_communicator.h). The
// NCCL one comes with the CUDA backend.
//
// Errors are fatal, by design: a collective that fails or does not complete
// within the timeout cannot be retried by one rank alone (the others are inside
// it too), so the implementation prints one line naming this rank, the
// communicator, the operation and (for send/receive) the peer, then ends the
// whole job (MPI_Abort), so that no rank is left waiting. Call sites therefore
// get no Status to check, and the layers stay free of error plumbing.
//
// Tensors are contiguous CPU tensors of f32, f64, i32 or i64 (bf16 too for
// gather/broadcast/send/receive, which move bytes). Shapes are checked
// (ROTOR_CHECK) on the calling rank; every rank of the group must call each
// collective in the same order with matching shapes, as with MPI.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/tensor.h"

namespace rotor {

enum class ReduceOp { kSum, kMax };

// Bytes this rank sent through a communicator, per kind of operation, counted
// as the algorithm-independent payload each op must move (see
// tests/bench/comm_volume_bench.cc): all_reduce 2(n-1)/n * bytes (ring),
// all_gather and reduce_scatter (n-1)/n * full bytes, broadcast the tensor's
// bytes on the root, send the message's bytes.
struct CommStats {
  int64_t all_reduce_bytes = 0;
  int64_t all_gather_bytes = 0;
  int64_t reduce_scatter_bytes = 0;
  int64_t broadcast_bytes = 0;
  int64_t send_bytes = 0;
  int64_t all_to_all_bytes = 0;  // (n-1)/n * bytes: the blocks that leave the rank
  int64_t calls = 0;
  int64_t total() const {
    return all_reduce_bytes + all_gather_bytes + reduce_scatter_bytes + broadcast_bytes + send_bytes +
           all_to_all_bytes;
  }
};

// The completion handle of an isend/irecv/iall_reduce. wait() returns once the
// operation is complete (the tensor may then be reused or read); destroying a
// request that was not waited on waits. A wait keeps the communicator's timeout:
// an operation that does not complete in time ends the job as a blocking one does.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // For messages: "world", "tp", "cp", "dp", "dp_cp".
  virtual const std::string& name() const = 0;
  // This rank's rank in the world communicator (for messages naming ranks).
  virtual int world_rank() const = 0;
  // The world rank of group rank `r`.
  virtual int world_rank_of(int r) const = 0;

  // In place: every rank ends with the elementwise reduction over the group.
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // all_reduce, started now and complete when the request's wait() returns
  // (same result, same stats). `t` must stay alive and untouched until then.
  // Like every collective, the ranks of the group must start their
  // iall_reduce calls in the same order (relative to the group's other
  // collectives too); waits may come in any order. Local: complete at once;
  // MPI: MPI_Iallreduce; NCCL: queued on the comm stream after the compute
  // work queued before the call, and wait() makes compute wait for it.
  virtual std::unique_ptr<CommRequest> iall_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // out[r * m : (r + 1) * m] = `in` of rank r along dim 0 (in: [m, ...],
  // out: [size * m, ...], same trailing shape and dtype).
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // in: [size * m, ...]; out: [m, ...] = the sum over ranks of their in[rank * m : (rank + 1) * m].
  virtual void reduce_scatter(const Tensor& in, Tensor& out) = 0;
  // in, out: [size * m, ...], the same shape and dtype, on the same device:
  // block r of `in` (rows [r m, (r + 1) m)) goes to rank r, and block r of
  // `out` is what rank r sent to this one (Ulysses' re-partition,
  // parallel/ulysses_attention.h). The default runs it as point-to-point
  // transfers with every peer (tag kAllToAllTag, counted as send bytes): what
  // NCCL does (grouped send/receive); MPI overrides it with MPI_Alltoall.
  virtual void all_to_all(const Tensor& in, Tensor& out);
  static constexpr int kAllToAllTag = 1 << 20;
  // t on every rank becomes t of `root`.
  virtual void broadcast(Tensor& t, int root) = 0;
  // Point to point within the group (peer is a group rank). The tensor must
  // stay alive and untouched until the request's wait() returns.
  virtual std::unique_ptr<CommRequest> isend(const Tensor& t, int peer, int tag) = 0;
  virtual std::unique_ptr<CommRequest> irecv(Tensor& t, int peer, int tag) = 0;
  // Starts the isend/irecv posted so far now, where an implementation defers
  // them: NCCL gathers them into one group issued at the first wait
  // (nccl_communicator.h), so a caller that posts, computes, then waits calls
  // flush() before computing to have the transfer run during the compute.
  // MPI and local ones start each transfer as it is posted: nothing to do.
  virtual void flush() {}
  virtual void barrier() = 0;
  // A barrier that waits up to `timeout_s` instead of the communicator's
  // timeout: for ranks that knowingly wait on one busy rank (rank 0 writing a
  // checkpoint). The local communicator returns at once.
  virtual void barrier(double timeout_s) = 0;

  // Sub-communicator of the ranks with the same `color`, ordered by `key`
  // (then by rank); a collective over this communicator, as MPI_Comm_split.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

  // Ends the whole job after printing "rotor: rank R: MESSAGE" (for errors found
  // by the caller on one rank: a bad data file, a non-finite loss).
  [[noreturn]] virtual void abort(const std::string& message) = 0;

  virtual const CommStats& stats() const = 0;
  virtual void reset_stats() = 0;
};

// One rank: all_reduce/broadcast/barrier do nothing, all_gather and
// reduce_scatter copy, send/receive to self are matched by tag. What the
// layers get when running on one process, with or without MPI.
std::unique_ptr<Communicator> make_local_communicator(const std::string& name = "world");

}  // namespace rotor
