#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>

#include "kernels/check.h"
#include "parallel/comm_internal.h"

namespace rotor {
namespace {

using Clock = std::chrono::steady_clock;

int world_rank_or_minus_one() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int r = -1;
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Prints "rotor: rank R: MESSAGE" and ends the whole job.
[[noreturn]] void abort_job(int world_rank, const std::string& message) {
  std::cout.flush();
  std::fprintf(stderr, "rotor: rank %d: %s\n", world_rank, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; in case it does.
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  return std::string(buf, static_cast<size_t>(len));
}

std::string format_seconds(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// What a wait needs to know to poll and to report; copied into requests, which
// may outlive their communicator.
struct WaitInfo {
  int world_rank = 0;
  std::string comm_name;
  double timeout_s = 60;
  std::string op;
  std::string waiting_for;  // "(peer rank 1 = world rank 3)" / "(waiting for ...)"
};

void check_rc(int rc, const WaitInfo& w) {
  if (rc == MPI_SUCCESS) return;
  abort_job(w.world_rank, "MPI error in " + w.op + " on communicator '" + w.comm_name + "' " +
                              w.waiting_for + ": " + mpi_error_string(rc));
}

void poll(MPI_Request* req, const WaitInfo& w) {
  const Clock::time_point start = Clock::now();
  const auto spin = std::chrono::milliseconds(1);
  const auto max_sleep = std::chrono::microseconds(500);
  auto sleep = std::chrono::microseconds(10);
  for (;;) {
    int done = 0;
    check_rc(MPI_Test(req, &done, MPI_STATUS_IGNORE), w);
    if (done) return;
    const auto elapsed = Clock::now() - start;
    if (std::chrono::duration<double>(elapsed).count() > w.timeout_s) {
      abort_job(w.world_rank, w.op + " on communicator '" + w.comm_name +
                                  "' did not complete within " + format_seconds(w.timeout_s) +
                                  " s " + w.waiting_for);
    }
    if (elapsed < spin) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, max_sleep);
    }
  }
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF64: return MPI_DOUBLE;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    case DType::kBF16: return MPI_BYTE;  // moved as bytes, never reduced
  }
  return MPI_DATATYPE_NULL;
}

// The element count to pass with mpi_type(d) for `numel` elements.
int mpi_count(int64_t numel, DType d, const char* op, const std::string& comm_name) {
  const int64_t n = d == DType::kBF16 ? numel * 2 : numel;
  ROTOR_CHECK(n <= INT_MAX) << comm_internal::op_where(op, comm_name) << ": " << n
                            << " elements exceed MPI's int count";
  return static_cast<int>(n);
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

class MpiRequest : public CommRequest {
 public:
  // `keep_alive`: the buffer MPI reads or writes; `device_dst`: for a receive
  // into a GPU tensor through a host buffer, where the bytes go once received.
  MpiRequest(MPI_Request req, Tensor keep_alive, WaitInfo info, Tensor device_dst = Tensor())
      : req_(req), keep_alive_(std::move(keep_alive)), device_dst_(std::move(device_dst)),
        info_(std::move(info)) {}
  ~MpiRequest() override { wait(); }
  void wait() override {
    if (req_ == MPI_REQUEST_NULL) return;
    poll(&req_, info_);  // sets req_ to MPI_REQUEST_NULL
    req_ = MPI_REQUEST_NULL;
    if (device_dst_.defined()) device_dst_.copy_from(keep_alive_);
    keep_alive_ = Tensor();
    device_dst_ = Tensor();
  }

 private:
  MPI_Request req_;
  Tensor keep_alive_, device_dst_;
  WaitInfo info_;
};

// GPU tensors go through host copies: Open MPI here is not CUDA-aware. This is
// the path of tests where several ranks share one GPU; NcclCommunicator
// (parallel/nccl_communicator.h) is the fast one. CPU tensors pass unchanged,
// and so do sim tensors (kernels/sim.h): MPI gets their device_ptr(), as a
// CUDA-aware MPI or NCCL gets a GPU pointer, so that the sim device's copy
// counters see only what a GPU run would copy.
bool on_gpu(const Tensor& t) { return t.defined() && t.device().is_cuda(); }
// An input: `t`, or a host copy of it.
Tensor on_host(const Tensor& t) { return on_gpu(t) ? t.to(Device::cpu()) : t; }
// An output buffer: `t`, or an uninitialised host tensor like it (from_host
// then copies it back).
Tensor host_buffer(const Tensor& t) { return on_gpu(t) ? Tensor::empty(t.shape(), t.dtype()) : t; }
void from_host(const Tensor& t, const Tensor& host) {
  if (on_gpu(t)) t.copy_from(host);
}

}  // namespace

double comm_timeout_from_env(double default_s) {
  const char* v = std::getenv("ROTOR_COMM_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return default_s;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(s > 0)) {
    abort_job(world_rank_or_minus_one(), std::string("ROTOR_COMM_TIMEOUT_S='") + v +
                                             "' is not a positive number of seconds");
  }
  return s;
}

std::unique_ptr<Communicator> mpi_world(int* argc, char*** argv, double timeout_s) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      std::fprintf(stderr, "rotor: MPI_Init_thread failed\n");
      std::exit(1);
    }
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  const double timeout = comm_timeout_from_env(timeout_s);
  // A duplicate, so rotor's messages never match another library's on MPI_COMM_WORLD.
  MPI_Comm dup = MPI_COMM_NULL;
  MPI_Request req = MPI_REQUEST_NULL;
  WaitInfo info{world_rank, "world", timeout, "MPI_Comm_idup",
                "(waiting for the other ranks of MPI_COMM_WORLD)"};
  check_rc(MPI_Comm_idup(MPI_COMM_WORLD, &dup, &req), info);
  poll(&req, info);
  return std::make_unique<MpiCommunicator>(dup, "world", timeout);
}

void mpi_finalize() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s)
    : comm_(comm), name_(std::move(name)), timeout_s_(timeout_s) {
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  check_mpi(MPI_Comm_group(comm_, &group), "MPI_Comm_group");
  check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world_group), "MPI_Comm_group");
  std::vector<int> ranks(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) ranks[static_cast<size_t>(r)] = r;
  world_ranks_.resize(static_cast<size_t>(size_));
  check_mpi(MPI_Group_translate_ranks(group, size_, ranks.data(), world_group, world_ranks_.data()),
            "MPI_Group_translate_ranks");
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
}

int MpiCommunicator::world_rank_of(int r) const {
  ROTOR_CHECK(r >= 0 && r < size_) << "world_rank_of(" << r << ") on communicator '" << name_
                                   << "' of size " << size_;
  return world_ranks_[static_cast<size_t>(r)];
}

void MpiCommunicator::check_mpi(int rc, const char* op) const {
  if (rc == MPI_SUCCESS) return;
  abort_job(world_rank_, std::string("MPI error in ") + op + " on communicator '" + name_ +
                             "': " + mpi_error_string(rc));
}

std::string MpiCommunicator::waiting_for(int peer) const {
  if (peer >= 0) {
    return "(peer rank " + std::to_string(peer) + " = world rank " +
           std::to_string(world_ranks_[static_cast<size_t>(peer)]) + ")";
  }
  std::string others;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    if (!others.empty()) others += ", ";
    others += std::to_string(world_ranks_[static_cast<size_t>(r)]);
  }
  return "(waiting for the other ranks of the group: world ranks [" + others + "])";
}

void MpiCommunicator::wait(MPI_Request* req, const char* op, int peer) const {
  poll(req, WaitInfo{world_rank_, name_, timeout_s_, op, waiting_for(peer)});
}

std::unique_ptr<CommRequest> MpiCommunicator::start_all_reduce(Tensor& dev, ReduceOp op,
                                                               const char* op_name) {
  Tensor t = on_host(dev);
  comm_internal::check_tensor(t, op_name, name_, "t");
  comm_internal::check_reducible(t, op_name, name_);
  const int count = mpi_count(t.numel(), t.dtype(), op_name, name_);
  ++stats_.calls;
  stats_.all_reduce_bytes += comm_internal::all_reduce_bytes(static_cast<int64_t>(t.nbytes()), size_);
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.device_ptr(), count, mpi_type(t.dtype()), mpi_op(op), comm_, &req),
            op_name);
  // The request polls with this communicator's timeout and messages, and
  // copies a GPU tensor's reduced host copy back.
  return std::make_unique<MpiRequest>(req, t,
                                      WaitInfo{world_rank_, name_, timeout_s_, op_name, waiting_for(-1)},
                                      on_gpu(dev) ? dev : Tensor());
}

void MpiCommunicator::all_reduce(Tensor& dev, ReduceOp op) {
  start_all_reduce(dev, op, "all_reduce")->wait();
}

std::unique_ptr<CommRequest> MpiCommunicator::iall_reduce(Tensor& dev, ReduceOp op) {
  return start_all_reduce(dev, op, "iall_reduce");
}

void MpiCommunicator::all_gather(const Tensor& in_dev, Tensor& out_dev) {
  const Tensor in = on_host(in_dev);
  Tensor out = host_buffer(out_dev);
  comm_internal::check_all_gather(in, out, size_, name_);
  const int count = mpi_count(in.numel(), in.dtype(), "all_gather", name_);
  mpi_count(out.numel(), out.dtype(), "all_gather", name_);
  ++stats_.calls;
  stats_.all_gather_bytes += comm_internal::gather_scatter_bytes(static_cast<int64_t>(out.nbytes()), size_);
  const MPI_Datatype type = mpi_type(in.dtype());
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallgather(in.device_ptr(), count, type, out.device_ptr(), count, type, comm_, &req),
            "all_gather");
  wait(&req, "all_gather", -1);
  from_host(out_dev, out);
}

void MpiCommunicator::all_to_all(const Tensor& in_dev, Tensor& out_dev) {
  comm_internal::check_all_to_all(in_dev, out_dev, size_, name_);
  const Tensor in = on_host(in_dev);
  Tensor out = host_buffer(out_dev);
  const int count = mpi_count(in.numel() / size_, in.dtype(), "all_to_all", name_);
  ++stats_.calls;
  stats_.all_to_all_bytes += comm_internal::gather_scatter_bytes(static_cast<int64_t>(in.nbytes()), size_);
  const MPI_Datatype type = mpi_type(in.dtype());
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Ialltoall(in.device_ptr(), count, type, out.device_ptr(), count, type, comm_, &req), "all_to_all");
  wait(&req, "all_to_all", -1);
  from_host(out_dev, out);
}

void MpiCommunicator::reduce_scatter(const Tensor& in_dev, Tensor& out_dev) {
  const Tensor in = on_host(in_dev);
  Tensor out = host_buffer(out_dev);
  comm_internal::check_reduce_scatter(in, out, size_, name_);
  const int count = mpi_count(out.numel(), out.dtype(), "reduce_scatter", name_);
  mpi_count(in.numel(), in.dtype(), "reduce_scatter", name_);
  ++stats_.calls;
  stats_.reduce_scatter_bytes +=
      comm_internal::gather_scatter_bytes(static_cast<int64_t>(in.nbytes()), size_);
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Ireduce_scatter_block(in.device_ptr(), out.device_ptr(), count, mpi_type(in.dtype()), MPI_SUM,
                                      comm_, &req),
            "reduce_scatter");
  wait(&req, "reduce_scatter", -1);
  from_host(out_dev, out);
}

void MpiCommunicator::broadcast(Tensor& dev, int root) {
  Tensor t = on_host(dev);
  comm_internal::check_tensor(t, "broadcast", name_, "t");
  ROTOR_CHECK(root >= 0 && root < size_)
      << "broadcast on communicator '" << name_ << "': root " << root << " not in [0, " << size_ << ")";
  const int count = mpi_count(t.numel(), t.dtype(), "broadcast", name_);
  ++stats_.calls;
  if (rank_ == root && size_ > 1) stats_.broadcast_bytes += static_cast<int64_t>(t.nbytes());
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Ibcast(t.device_ptr(), count, mpi_type(t.dtype()), root, comm_, &req), "broadcast");
  wait(&req, "broadcast", -1);
  from_host(dev, t);
}

std::unique_ptr<CommRequest> MpiCommunicator::isend(const Tensor& dev, int peer, int tag) {
  const Tensor t = on_host(dev);  // a GPU tensor: sent from a host copy made now
  comm_internal::check_tensor(t, "isend", name_, "t");
  ROTOR_CHECK(peer >= 0 && peer < size_)
      << "isend on communicator '" << name_ << "': peer " << peer << " not in [0, " << size_ << ")";
  ROTOR_CHECK(tag >= 0) << "isend on communicator '" << name_ << "': negative tag " << tag;
  const int count = mpi_count(t.numel(), t.dtype(), "isend", name_);
  ++stats_.calls;
  stats_.send_bytes += static_cast<int64_t>(t.nbytes());
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Isend(t.device_ptr(), count, mpi_type(t.dtype()), peer, tag, comm_, &req), "isend");
  const std::string what = "(peer rank " + std::to_string(peer) + " = world rank " +
                           std::to_string(world_ranks_[static_cast<size_t>(peer)]) + ", tag " +
                           std::to_string(tag) + ")";
  return std::make_unique<MpiRequest>(req, t, WaitInfo{world_rank_, name_, timeout_s_, "isend", what});
}

std::unique_ptr<CommRequest> MpiCommunicator::irecv(Tensor& dev, int peer, int tag) {
  // A GPU tensor: received into a host buffer, copied to it by wait().
  Tensor t = host_buffer(dev);
  comm_internal::check_tensor(t, "irecv", name_, "t");
  ROTOR_CHECK(peer >= 0 && peer < size_)
      << "irecv on communicator '" << name_ << "': peer " << peer << " not in [0, " << size_ << ")";
  ROTOR_CHECK(tag >= 0) << "irecv on communicator '" << name_ << "': negative tag " << tag;
  const int count = mpi_count(t.numel(), t.dtype(), "irecv", name_);
  ++stats_.calls;
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Irecv(t.device_ptr(), count, mpi_type(t.dtype()), peer, tag, comm_, &req), "irecv");
  const std::string what = "(peer rank " + std::to_string(peer) + " = world rank " +
                           std::to_string(world_ranks_[static_cast<size_t>(peer)]) + ", tag " +
                           std::to_string(tag) + ")";
  return std::make_unique<MpiRequest>(req, t, WaitInfo{world_rank_, name_, timeout_s_, "irecv", what},
                                      on_gpu(dev) ? dev : Tensor());
}

void MpiCommunicator::barrier() {
  ++stats_.calls;
  MPI_Request req = MPI_REQUEST_NULL;
  check_mpi(MPI_Ibarrier(comm_, &req), "barrier");
  wait(&req, "barrier", -1);
}

void MpiCommunicator::barrier(double timeout_s) {
  const double saved = timeout_s_;
  timeout_s_ = timeout_s;
  barrier();
  timeout_s_ = saved;
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  ROTOR_CHECK(color >= 0) << "split of communicator '" << name_ << "' into '" << name
                          << "': color must be >= 0, got " << color;
  // MPI_Comm_split blocks with no timeout: first meet the whole group in a
  // barrier that has one.
  MPI_Request req = MPI_REQUEST_NULL;
  const std::string op = "split into '" + name + "'";
  check_mpi(MPI_Ibarrier(comm_, &req), op.c_str());
  wait(&req, op.c_str(), -1);
  MPI_Comm sub = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color, key, &sub), op.c_str());
  return std::make_unique<MpiCommunicator>(sub, name, timeout_s_);
}

void MpiCommunicator::abort(const std::string& message) { abort_job(world_rank_, message); }

}  // namespace rotor
