// NcclCommunicator: the Communicator for GPU tensors, over NCCL, bootstrapped
// and shadowed by an MpiCommunicator of the same group.
//
//   auto mpi = rotor::mpi_world(&argc, &argv);
//   const int device = rotor::select_cuda_device(*mpi);   // local rank -> GPU, uniqueness
//   auto grid = rotor::ProcessGrid::create(rotor::nccl_world(std::move(mpi), device), tp, cp);
//   // grid->tp(), cp(), dp(), dp_cp() are NcclCommunicators (split from the world)
//
// Creation. Rank 0 of the group calls ncclGetUniqueId, the MPI communicator
// broadcasts the id (with the MPI watchdog), every rank calls
// ncclCommInitRankConfig on its device. split() splits the MPI communicator
// (MPI_Comm_split, same color/key) and the NCCL one: ncclCommSplit when the
// header is NCCL >= 2.18 (shares the parent's bootstrap, no new id), else a new
// id from the sub-group's rank 0 broadcast over the MPI sub-communicator. So a
// ProcessGrid over an NcclCommunicator world has one NCCL communicator per axis.
//
// Communicators are non-blocking (ncclConfig_t.blocking = 0): every NCCL call
// may return ncclInProgress, and the host then polls ncclCommGetAsyncError
// with the timeout. This is what lets initialisation, splits and enqueueing be
// abandoned (ncclCommAbort) when a peer never arrives, instead of hanging in a
// blocking ncclCommInitRank. ROTOR_NCCL_BLOCKING=1 makes them blocking (a
// fallback; the code handles both).
//
// Which tensors. CUDA tensors on this communicator's device go through NCCL;
// CPU tensors go through the MPI communicator of the same group (blocking, as
// MpiCommunicator documents): the f64 loss reductions and counters of the
// trainer work unchanged. bf16 may also be reduced here (ncclBfloat16; sums in
// bf16 by NCCL's ring, so gradients should be reduced in f32).
//
// Parallel math (unchanged from MPI; comm_volume_bench counts the bytes):
//   all_reduce      x <- sum_r x_r                 ring: 2 (n-1)/n * bytes per rank
//   all_gather      out[r m:(r+1) m] = in_r       (n-1)/n * out bytes
//   reduce_scatter  out_r = sum_q in_q[r m:(r+1) m] (n-1)/n * in bytes
//   Sequence parallel (Megatron, Korthikanti et al. 2022): all_gather of the
//   [T/tp, D] residual shards before the column-parallel GEMMs, reduce_scatter
//   of the [T, D] partial sums after the row-parallel ones; the backward swaps
//   the two. Ring attention (parallel/ring_attention.h): at each of cp-1 hops
//   every rank sends its K/V block to rank+1 and receives from rank-1, a
//   grouped send/recv (below).
//
// Streams and events. Every op on a device otherwise runs on the device's one
// compute stream (kernels/cuda/context.h). This communicator owns a comm
// stream (non-blocking, highest priority, so that NCCL's few CTAs are
// scheduled ahead of compute blocks as SMs free up). For each op:
//
//   compute: ... producer kernels ... [record ready] ........ [wait done] consumer kernels
//                                          |                      ^
//   comm:                          [wait ready] NCCL kernel [record done]
//
// so the NCCL kernel starts once everything queued on compute before the call
// has run, and compute waits for the result only at the point where work
// queued after the call might read it. The blocking-API collectives
// (all_reduce, all_gather, reduce_scatter, broadcast) insert the compute-side
// wait before returning: they return immediately on the host and are
// "complete" in stream order, which is what every reader (kernels, copies to
// the host, Tensor::item) goes through. iall_reduce() and isend/irecv
// leave that wait to CommRequest::wait(), so compute queued between the call
// and wait() overlaps with the transfer (GradientReducer, data_parallel.h:
// gradient buckets reduced while the rest of backward runs).
//
// Memory. Tensors used on the comm stream come from the compute stream's
// caching allocator (kernels/cuda/memory.h), which reuses a freed block for
// later compute work without an event. That is safe here because the
// communicator (for collectives) or the request (for isend/irecv/iall_reduce,
// until wait()) keeps each tensor alive until compute has been made to wait for
// the comm op that uses it; after that, stream order covers reuse.
//
// Send/receive. NCCL has no tags and a lone ncclRecv followed by a lone ncclSend
// on one stream deadlocks a ring (every rank's recv kernel waits for a send
// queued behind its neighbour's recv). So isend/irecv are deferred: each call
// records the ready event (so the data produced before *that* call is covered)
// and appends to a pending group; the group is issued as one
// ncclGroupStart / ncclSend... ncclRecv... / ncclGroupEnd when the first of its
// requests is waited on, when any other op of this communicator is called, on
// flush(), or on destruction. Messages between a pair of ranks match in posting
// order (the tag is not used by NCCL; posting K, V, positions in the same order
// on both sides, as ring_attention does, is the contract). The ring code posts
// a hop's sends and receives and calls flush() before it queues the attention
// of the block it holds, then waits: the group's ready event precedes the
// attention kernels, so it runs concurrently with them on the GPU. (Without the
// flush, the backward's K/V posts and its dK/dV posts, which follow the block's
// gradient kernels, would form one group, and the ready event re-recorded by
// the later posts would hold the K/V transfer until the compute had finished.)
//
// Failures. Every host-side wait (barrier, requests when asked to synchronise,
// init/split, ncclInProgress polling) polls cudaEventQuery and
// ncclCommGetAsyncError and ends the job after the timeout (ROTOR_COMM_TIMEOUT_S,
// as for MPI, inherited from the MpiCommunicator; the first op of each kind,
// size class and send/recv peer gets ROTOR_NCCL_FIRST_USE_TIMEOUT_S, default 5x
// that, because NCCL sets up its connections lazily inside it, which can take
// tens of seconds on a cold node). Since most waits happen on
// the GPU (compute waiting for an event), a watchdog thread per communicator
// follows every op in flight: an op whose ready event has completed (so it
// could have started) and whose done event has not after the timeout, or an
// asynchronous NCCL error, ends the job with
//
//   rotor: rank 3: all_reduce of f32[4096] on communicator 'dp_cp' did not complete
//   within 60 s on cuda:3 (waiting for the other ranks of the group: world ranks [1, 5, 7])
//
// Ending the job: print "rotor: rank R: message", ncclCommAbort (in a helper
// thread, given 10 s, so that an abort stuck in the driver cannot keep the job
// alive), then MPI_Abort(MPI_COMM_WORLD, 1). The watchdog thread calls
// MPI_Abort although MPI runs MPI_THREAD_FUNNELED; OpenMPI's abort path does
// not depend on the calling thread, and the job is ending anyway.
//
// Stats: counted as MpiCommunicator counts them (CommStats), NCCL and MPI
// traffic of this group together.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace rotor {

class NcclCommunicatorImpl;

// Chooses and sets (cudaSetDevice) this rank's GPU: the node-local rank from
// the launcher's environment (parallel/device_select.h: OpenMPI, Slurm, MPICH,
// LOCAL_RANK), else from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED); then
// choose_device; then an all-gather of (hostname, GPU UUID) over `world` and
// check_unique_devices. Any failure ends the job with the message, on the rank
// that found it (the all-gather's outcome is the same on every rank). A
// collective over `world`.
int select_cuda_device(Communicator& world);

// The NCCL world over an MPI world (an MpiCommunicator, as mpi_world returns),
// on `device` (cudaSetDevice'd). A collective over the world.
std::unique_ptr<Communicator> nccl_world(std::unique_ptr<Communicator> mpi_world, int device);

class NcclCommunicator : public Communicator {
 public:
  // A collective over `mpi`: rank 0 makes the NCCL id, MPI broadcasts it.
  NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  int world_rank() const override;
  int world_rank_of(int r) const override;

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void reduce_scatter(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& t, int root) override;
  std::unique_ptr<CommRequest> isend(const Tensor& t, int peer, int tag) override;
  std::unique_ptr<CommRequest> irecv(Tensor& t, int peer, int tag) override;
  // A one-element all_reduce on the comm stream, then the host waits for it
  // (and so for everything queued on compute before, on every rank) with the
  // timeout.
  void barrier() override;
  void barrier(double timeout_s) override;
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  [[noreturn]] void abort(const std::string& message) override;

  const CommStats& stats() const override;
  void reset_stats() override;

  // all_reduce queued on the comm stream after the compute work queued
  // before the call (the ready event); the returned request's wait() makes
  // the compute stream wait for it (the done event; nothing on the host, the
  // watchdog keeps the timeout). `t` is kept alive by the request. A CPU
  // tensor goes to the MPI communicator's iall_reduce (MPI_Iallreduce).
  std::unique_ptr<CommRequest> iall_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) override;

  // Issues the pending isend/irecv group now (see the header comment).
  void flush() override;

  int device() const;
  // The comm stream, as a void* to keep CUDA types out of this header.
  void* stream() const;
  MpiCommunicator& mpi() const;

 private:
  NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int device, void* parent_impl, int color,
                   int key);
  std::shared_ptr<NcclCommunicatorImpl> impl_;
};

}  // namespace rotor
