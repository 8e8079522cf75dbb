// MpiCommunicator: the Communicator over OpenMPI, for contiguous CPU tensors.
// GPU tensors are staged through host copies (Open MPI here is not CUDA-aware):
// correct, not fast; it lets several ranks share one GPU in tests. GPU runs
// use NcclCommunicator (parallel/nccl_communicator.h).
//
//   auto world = rotor::mpi_world(&argc, &argv);   // MPI_Init_thread + world
//   ... ProcessGrid::create(std::move(world), tp, cp) ...
//   rotor::mpi_finalize();                          // after every communicator is gone
//
// iall_reduce is MPI_Iallreduce, waited on by the request's wait() exactly as
// the blocking operations wait (below; the timeout runs from the wait() call).
// Open MPI (no progress thread here) advances a nonblocking collective only
// inside MPI calls, the polling of wait() included, so on CPU ranks much of
// the reduction still happens in wait(); the GPU path (NcclCommunicator) is
// the one whose reductions run alongside compute.
// A GPU tensor is reduced in a host copy made at the call and copied back by
// wait().
//
// Every blocking operation is run as its nonblocking MPI variant (MPI_Iallreduce,
// MPI_Iallgather, MPI_Ireduce_scatter_block, MPI_Ibcast, MPI_Ibarrier,
// MPI_Isend/MPI_Irecv) and polled with MPI_Test (spinning for about 1 ms, then
// sleeping with a backoff up to 0.5 ms, so a waiting rank does not burn a core).
// An operation that does not complete within the timeout ends the job:
//
//   rotor: rank 2: all_reduce on communicator 'tp' did not complete within 60 s
//   (waiting for the other ranks of the group: world ranks [3])
//
// then MPI_Abort(MPI_COMM_WORLD, 1). The timeout is set when the world is made
// (mpi_world's timeout_s, overridden by the environment variable
// ROTOR_COMM_TIMEOUT_S, in seconds, when set) and inherited by every
// communicator split from it. MPI errors (every communicator uses
// MPI_ERRORS_RETURN) end the job the same way, naming this world rank, the
// communicator, the operation and MPI_Error_string's text.
//
// split() is MPI_Comm_split, which has no nonblocking variant: it first waits
// for the whole communicator in an MPI_Ibarrier (with the timeout), so a rank
// missing from the split is reported rather than waited on forever.
//
// Message counts are MPI ints: a tensor of more than 2^31 - 1 elements (bytes,
// for bf16) is refused with a CHECK.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace rotor {

// Initialises MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: only the main thread
// calls MPI) unless it is initialised already, and returns the world
// communicator (a duplicate of MPI_COMM_WORLD named "world"). `timeout_s` is the
// per-operation timeout, overridden by ROTOR_COMM_TIMEOUT_S when that is set.
std::unique_ptr<Communicator> mpi_world(int* argc, char*** argv, double timeout_s = 60);

// MPI_Finalize, if MPI was initialised and is not finalised yet. Destroy every
// MpiCommunicator first.
void mpi_finalize();

// The timeout to use: ROTOR_COMM_TIMEOUT_S when set (a positive number of
// seconds; anything else ends the job with a message), else `default_s`.
double comm_timeout_from_env(double default_s);

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction, unless MPI is finalised by
  // then) and sets MPI_ERRORS_RETURN on it.
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  int world_rank() const override { return world_rank_; }
  int world_rank_of(int r) const override;

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<CommRequest> iall_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  void all_to_all(const Tensor& in, Tensor& out) override;  // MPI_Alltoall
  void all_gather(const Tensor& in, Tensor& out) override;
  void reduce_scatter(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& t, int root) override;
  std::unique_ptr<CommRequest> isend(const Tensor& t, int peer, int tag) override;
  std::unique_ptr<CommRequest> irecv(Tensor& t, int peer, int tag) override;
  void barrier() override;
  void barrier(double timeout_s) override;
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  [[noreturn]] void abort(const std::string& message) override;

  const CommStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = CommStats(); }

  MPI_Comm comm() const { return comm_; }
  double timeout_s() const { return timeout_s_; }

 private:
  // Polls `req` until it completes; ends the job on an MPI error or the timeout.
  // `peer` is the group rank of a send/receive's peer, -1 for a collective.
  void wait(MPI_Request* req, const char* op, int peer) const;
  // For messages: "(peer rank 1 = world rank 3)", or for a collective (peer
  // -1) "(waiting for the other ranks of the group: world ranks [...])".
  std::string waiting_for(int peer) const;
  // MPI_Iallreduce of `dev` (a host copy if it is a GPU tensor); `op_name`
  // names it in messages. The request's wait() completes it.
  std::unique_ptr<CommRequest> start_all_reduce(Tensor& dev, ReduceOp op, const char* op_name);
  // Ends the job when rc is not MPI_SUCCESS.
  void check_mpi(int rc, const char* op) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string name_;
  double timeout_s_ = 60;
  int rank_ = 0;
  int size_ = 1;
  int world_rank_ = 0;
  std::vector<int> world_ranks_;  // world rank of each group rank
  CommStats stats_;
};

}  // namespace rotor
