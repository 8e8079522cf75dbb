#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/check.h"
#include "kernels/cuda/context.h"
#include "parallel/comm_internal.h"
#include "parallel/device_select.h"

#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
#define ROTOR_NCCL_HAS_SPLIT 1
#else
#define ROTOR_NCCL_HAS_SPLIT 0
#endif

namespace rotor {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format_seconds(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// Set by the first thread that ends the job; any other thread that tries to
// end it too only waits for MPI_Abort to take the process down.
std::atomic<bool> g_ending{false};

// Prints "rotor: rank R: MESSAGE", aborts `comm` (NCCL kernels waiting for a
// lost peer return; given 10 s in a helper thread), then MPI_Abort.
[[noreturn]] void end_job(int world_rank, const std::string& message, ncclComm_t comm) {
  bool expected = false;
  if (!g_ending.compare_exchange_strong(expected, true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::cout.flush();
  std::fprintf(stderr, "rotor: rank %d: %s\n", world_rank, message.c_str());
  std::fflush(stderr);
  if (comm != nullptr) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread aborter([comm, done] {
      ncclCommAbort(comm);
      done->store(true);
    });
    const Clock::time_point start = Clock::now();
    while (!done->load() && seconds_since(start) < 10) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (done->load()) {
      aborter.join();
    } else {
      aborter.detach();
    }
  }
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; in case it does.
}

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::kF32: return ncclFloat32;
    case DType::kF64: return ncclFloat64;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
    case DType::kBF16: return ncclBfloat16;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::kMax ? ncclMax : ncclSum; }

// The kind of a collective for the first-use timeout (NcclCommunicatorImpl::
// first_use_timeout_s): the op and its size class in factors of 16 bytes
// (NCCL picks algorithm and protocol by size, and each algorithm connects on
// its first use).
std::string first_use_key(const char* op, size_t bytes) {
  int size_class = 0;
  for (size_t b = bytes; b >= 16; b /= 16) ++size_class;
  return std::string(op) + " " + std::to_string(size_class);
}

// ROTOR_NCCL_FIRST_USE_TIMEOUT_S when set (positive seconds), else 5x `steady`.
double first_use_timeout_from_env(double steady) {
  const char* v = std::getenv("ROTOR_NCCL_FIRST_USE_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return 5 * steady;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  ROTOR_CHECK(end != v && *end == '\0' && s > 0)
      << "ROTOR_NCCL_FIRST_USE_TIMEOUT_S='" << v << "' is not a positive number of seconds";
  return s;
}

// One op on the comm stream: `ready` recorded on compute before it, `done` on
// the comm stream after it. Owned jointly by the watchdog and the requests.
struct OpRecord {
  cudaEvent_t ready = nullptr;
  cudaEvent_t done = nullptr;
  std::string what;  // "all_reduce of f32[4096] cuda:0"
  double timeout_s = 60;
  // Watchdog only: when it first saw this op at the head of the queue with its
  // ready event complete (the op could run from then on).
  bool started = false;
  Clock::time_point started_at;

  OpRecord() {
    ROTOR_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming) == cudaSuccess)
        << "cudaEventCreateWithFlags failed";
    ROTOR_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming) == cudaSuccess)
        << "cudaEventCreateWithFlags failed";
  }
  ~OpRecord() {
    if (g_ending.load()) return;
    cudaEventDestroy(ready);
    cudaEventDestroy(done);
  }
  OpRecord(const OpRecord&) = delete;
  OpRecord& operator=(const OpRecord&) = delete;
};

struct P2pOp {
  bool is_send = false;
  Tensor tensor;  // kept alive until the group is done with it
  int peer = 0;
  int tag = 0;
};

// The isend/irecv posted since the last flush, issued as one NCCL group.
struct PendingGroup {
  std::vector<P2pOp> ops;
  std::string desc;  // the first few ops, for messages
  std::shared_ptr<OpRecord> record;
  bool issued = false;
};

}  // namespace

class NcclCommunicatorImpl {
 public:
  std::unique_ptr<MpiCommunicator> mpi;
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;   // the comm stream (owned)
  cudaStream_t compute = nullptr;  // the device's compute stream (kernels/cuda/context.h)
  double timeout_s = 60;
  // NCCL connects lazily (NCCL_RUNTIME_CONNECT, the default since 2.22): the
  // first op that needs an algorithm's channels (ring, tree, NVLS: chosen by
  // op and size) or a send/recv peer sets up its connections inside the op
  // (proxy threads, buffer registration, NVLink/shared-memory/IB handshakes
  // with every peer), which can take tens of seconds on a cold node, more
  // with many ranks per GPU. The steady-state timeout would end a healthy
  // job there, so the first op of each kind (kind, size class, p2p peer:
  // first_use_key) gets first_use_timeout_s: ROTOR_NCCL_FIRST_USE_TIMEOUT_S
  // when set, else 5x the steady timeout (300 s at the default 60 s; it scales
  // with the short timeouts that failure tests set, so they still end soon).
  double first_use_timeout_s = 300;
  std::set<std::string> used;  // first_use_key of every op enqueued so far
  std::string group_ranks;  // "world ranks [1, 5, 7]": the others of the group
  CommStats stats;
  mutable CommStats merged;
  std::shared_ptr<PendingGroup> pending;
  Tensor barrier_scalar;  // f32[1] on the device, zero

  // Watchdog state.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<OpRecord>> inflight;
  bool stop = false;
  std::thread watchdog;

  std::string where(const std::string& op) const {
    return op + " on communicator '" + mpi->name() + "' (cuda:" + std::to_string(device) + ")";
  }

  [[noreturn]] void fail(const std::string& message) const {
    end_job(mpi->world_rank(), message, comm);
  }

  void check_cuda(cudaError_t rc, const std::string& op) const {
    if (rc == cudaSuccess) return;
    fail("CUDA error in " + where(op) + ": " + cudaGetErrorName(rc) + " (" + cudaGetErrorString(rc) +
         ")");
  }

  std::string nccl_error_text(ncclResult_t rc) const {
    std::string s = ncclGetErrorString(rc);
    const char* last = comm != nullptr ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
    if (last != nullptr && *last != '\0') s += std::string(": ") + last;
    return s;
  }

  // Polls `c` (non-blocking) until it leaves ncclInProgress; ends the job on an
  // error or the timeout.
  void wait_nccl_ready(ncclComm_t c, const std::string& op, double timeout) const {
    const Clock::time_point start = Clock::now();
    auto sleep = std::chrono::microseconds(10);
    for (;;) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(c, &state);
      if (rc != ncclSuccess) fail("NCCL error in " + where(op) + ": " + nccl_error_text(rc));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        fail("NCCL error in " + where(op) + " (" + group_ranks + "): " + nccl_error_text(state));
      }
      if (seconds_since(start) > timeout) {
        fail(where(op) + " did not complete within " + format_seconds(timeout) +
             " s (waiting for the other ranks of the group: " + group_ranks + ")");
      }
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds(1000));
    }
  }

  // rc of an NCCL call on `comm`: ncclInProgress is polled to completion.
  void check_nccl(ncclResult_t rc, const std::string& op) const {
    if (rc == ncclSuccess) return;
    if (rc == ncclInProgress) {
      wait_nccl_ready(comm, op, timeout_s);
      return;
    }
    fail("NCCL error in " + where(op) + " (" + group_ranks + "): " + nccl_error_text(rc));
  }

  // The host waits for `rec` (and so for everything queued before it on both
  // streams) with its timeout, checking NCCL's asynchronous errors.
  void host_wait(const OpRecord& rec) const {
    const Clock::time_point start = Clock::now();
    auto sleep = std::chrono::microseconds(10);
    for (;;) {
      const cudaError_t q = cudaEventQuery(rec.done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) check_cuda(q, rec.what);
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        fail("NCCL error in " + where(rec.what) + " (" + group_ranks + "): " + nccl_error_text(state));
      }
      if (seconds_since(start) > rec.timeout_s) {
        fail(where(rec.what) + " did not complete within " + format_seconds(rec.timeout_s) +
             " s (waiting for the other ranks of the group: " + group_ranks +
             "; or for this rank's own compute queued before it)");
      }
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds(500));
    }
  }

  // The timeout of an op of `key` (first_use_key): the first one waits
  // longer (first_use_timeout_s above).
  double timeout_for(const std::string& key, double steady) {
    if (!used.insert(key).second) return steady;
    return std::max(steady, first_use_timeout_s);
  }

  // The longest timeout of the ops still in flight: a host wait for an op
  // queued behind a first-use op must allow for it.
  double longest_inflight_timeout() {
    std::lock_guard<std::mutex> lock(mu);
    double t = 0;
    for (const auto& rec : inflight) t = std::max(t, rec->timeout_s);
    return t;
  }

  std::shared_ptr<OpRecord> new_record(std::string what, double timeout) {
    auto rec = std::make_shared<OpRecord>();
    rec->what = std::move(what);
    rec->timeout_s = timeout;
    return rec;
  }

  void track(std::shared_ptr<OpRecord> rec) {
    std::lock_guard<std::mutex> lock(mu);
    inflight.push_back(std::move(rec));
  }

  // Queues `launch` (NCCL calls on `stream`) between the ready and done events.
  template <class Launch>
  std::shared_ptr<OpRecord> enqueue(const std::string& what, double timeout, Launch&& launch) {
    flush();
    check_cuda(cudaSetDevice(device), what);
    auto rec = new_record(what, timeout);
    check_cuda(cudaEventRecord(rec->ready, compute), what);
    check_cuda(cudaStreamWaitEvent(stream, rec->ready, 0), what);
    check_nccl(launch(), what);
    check_cuda(cudaEventRecord(rec->done, stream), what);
    track(rec);
    return rec;
  }

  // Compute waits (on the GPU) for `rec`.
  void compute_waits(const OpRecord& rec) const {
    check_cuda(cudaStreamWaitEvent(compute, rec.done, 0), rec.what);
  }

  void flush() {
    if (!pending) return;
    std::shared_ptr<PendingGroup> g = std::move(pending);
    pending.reset();
    OpRecord& rec = *g->record;
    rec.what = "send/recv group of " + std::to_string(g->ops.size()) + " [" + g->desc + "]";
    // A group with a peer never used before connects to it (lazily) in here.
    double timeout = timeout_s;
    for (const P2pOp& op : g->ops)
      timeout = std::max(timeout, timeout_for("p2p " + std::to_string(op.peer), timeout_s));
    rec.timeout_s = timeout;  // before track(): the watchdog reads it
    check_cuda(cudaSetDevice(device), rec.what);
    check_cuda(cudaStreamWaitEvent(stream, rec.ready, 0), rec.what);
    check_nccl(ncclGroupStart(), rec.what);
    for (const P2pOp& op : g->ops) {
      // Bytes, so that every dtype moves the same way.
      const ncclResult_t rc =
          op.is_send ? ncclSend(op.tensor.raw(), op.tensor.nbytes(), ncclUint8, op.peer, comm, stream)
                     : ncclRecv(op.tensor.raw(), op.tensor.nbytes(), ncclUint8, op.peer, comm, stream);
      check_nccl(rc, rec.what);
    }
    check_nccl(ncclGroupEnd(), rec.what);
    check_cuda(cudaEventRecord(rec.done, stream), rec.what);
    g->issued = true;
    track(g->record);
  }

  void watchdog_loop() {
    cudaSetDevice(device);
    const auto tick = std::chrono::milliseconds(
        std::clamp(static_cast<int>(timeout_s * 1000 / 20), 10, 200));
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      cv.wait_for(lock, tick);
      if (stop) break;
      std::string error;
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        error = "asynchronous NCCL error on communicator '" + mpi->name() + "' (cuda:" +
                std::to_string(device) + ", " + group_ranks + "): " + nccl_error_text(state);
      }
      while (error.empty() && !inflight.empty()) {
        OpRecord& head = *inflight.front();
        const cudaError_t q = cudaEventQuery(head.done);
        if (q == cudaSuccess) {
          inflight.pop_front();
          continue;
        }
        if (q != cudaErrorNotReady) {
          error = "CUDA error while " + where(head.what) + " was in flight: " +
                  cudaGetErrorName(q) + " (" + cudaGetErrorString(q) + ")";
          break;
        }
        if (!head.started) {
          if (cudaEventQuery(head.ready) == cudaSuccess) {
            head.started = true;
            head.started_at = Clock::now();
          }
        } else if (seconds_since(head.started_at) > head.timeout_s) {
          error = where(head.what) + " did not complete within " + format_seconds(head.timeout_s) +
                  " s (watchdog; waiting for the other ranks of the group: " + group_ranks + ")";
        }
        break;
      }
      if (!error.empty()) {
        lock.unlock();
        fail(error);
      }
    }
  }

  void start_watchdog() { watchdog = std::thread([this] { watchdog_loop(); }); }

  // Waits for everything queued on the comm stream (with the timeout), stops
  // the watchdog, then finalizes and destroys the NCCL communicator. When the
  // job is ending already, only stops the watchdog (joining a watchdog that is
  // itself ending the job blocks until MPI_Abort takes the process down).
  void shutdown() {
    if (comm == nullptr) return;
    if (!g_ending.load()) {
      flush();
      auto last = enqueue_marker();
      host_wait(*last);
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
    if (g_ending.load()) return;
    inflight.clear();
    check_nccl(ncclCommFinalize(comm), "ncclCommFinalize");
    ncclCommDestroy(comm);
    comm = nullptr;
    cudaStreamDestroy(stream);
    stream = nullptr;
  }

  // An empty op: an event on the comm stream after everything queued on it.
  std::shared_ptr<OpRecord> enqueue_marker() {
    auto rec = new_record("shutdown", std::max(timeout_s, longest_inflight_timeout()));
    check_cuda(cudaEventRecord(rec->ready, stream), "shutdown");
    check_cuda(cudaEventRecord(rec->done, stream), "shutdown");
    return rec;
  }
};

namespace {

std::string describe_others(const MpiCommunicator& mpi) {
  std::string s;
  for (int r = 0; r < mpi.size(); ++r) {
    if (r == mpi.rank()) continue;
    if (!s.empty()) s += ", ";
    s += std::to_string(mpi.world_rank_of(r));
  }
  return "world ranks [" + s + "]";
}

// A request whose completion is the done event of an op: wait() makes the
// compute stream wait for it.
class NcclRequest : public CommRequest {
 public:
  NcclRequest(std::shared_ptr<OpRecord> rec, Tensor keep_alive, cudaStream_t compute)
      : rec_(std::move(rec)), keep_alive_(std::move(keep_alive)), compute_(compute) {}
  ~NcclRequest() override { wait(); }
  void wait() override {
    if (!rec_) return;
    if (!g_ending.load()) {
      const cudaError_t rc = cudaStreamWaitEvent(compute_, rec_->done, 0);
      ROTOR_CHECK(rc == cudaSuccess) << "cudaStreamWaitEvent after " << rec_->what << ": "
                                     << cudaGetErrorString(rc);
    }
    rec_.reset();
    keep_alive_ = Tensor();
  }

 private:
  std::shared_ptr<OpRecord> rec_;
  Tensor keep_alive_;
  cudaStream_t compute_;
};

// A request of a deferred isend/irecv: wait() issues the group if it is still
// pending, then makes compute wait for it.
class NcclP2pRequest : public CommRequest {
 public:
  NcclP2pRequest(std::shared_ptr<PendingGroup> group, std::weak_ptr<NcclCommunicatorImpl> impl,
                 cudaStream_t compute)
      : group_(std::move(group)), impl_(std::move(impl)), compute_(compute) {}
  ~NcclP2pRequest() override { wait(); }
  void wait() override {
    if (!group_) return;
    if (!group_->issued) {
      // The communicator flushes on destruction, so an expired one issued it.
      if (auto impl = impl_.lock()) impl->flush();
    }
    if (!g_ending.load()) {
      ROTOR_CHECK(group_->issued) << "isend/irecv request waited on after its communicator was "
                                     "destroyed without issuing it";
      const cudaError_t rc = cudaStreamWaitEvent(compute_, group_->record->done, 0);
      ROTOR_CHECK(rc == cudaSuccess) << "cudaStreamWaitEvent after " << group_->record->what
                                     << ": " << cudaGetErrorString(rc);
    }
    group_.reset();
  }

 private:
  std::shared_ptr<PendingGroup> group_;
  std::weak_ptr<NcclCommunicatorImpl> impl_;
  cudaStream_t compute_;
};

}  // namespace

// ---------------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int device)
    : NcclCommunicator(std::move(mpi), device, nullptr, 0, 0) {}

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int device,
                                   void* parent_impl, int color, int key)
    : impl_(std::make_shared<NcclCommunicatorImpl>()) {
  ROTOR_CHECK(mpi != nullptr) << "NcclCommunicator needs an MPI communicator";
  NcclCommunicatorImpl& im = *impl_;
  im.mpi = std::move(mpi);
  im.device = device;
  im.timeout_s = im.mpi->timeout_s();
  im.first_use_timeout_s = first_use_timeout_from_env(im.timeout_s);
  im.group_ranks = describe_others(*im.mpi);
  const std::string& name = im.mpi->name();
  im.check_cuda(cudaSetDevice(device), "init");
  im.compute = cuda::device_context(device).stream;
  int least = 0, greatest = 0;
  im.check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), "init");
  im.check_cuda(cudaStreamCreateWithPriority(&im.stream, cudaStreamNonBlocking, greatest), "init");

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  // Non-blocking unless ROTOR_NCCL_BLOCKING=1 (a fallback should NCCL's
  // non-blocking mode misbehave; init and split then cannot time out).
  const char* blocking = std::getenv("ROTOR_NCCL_BLOCKING");
  config.blocking = blocking != nullptr && std::strcmp(blocking, "1") == 0 ? 1 : 0;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 19, 0)
  config.commName = name.c_str();
#endif
  (void)color;
  (void)key;
  auto* parent = static_cast<NcclCommunicatorImpl*>(parent_impl);
#if ROTOR_NCCL_HAS_SPLIT
  if (parent != nullptr) {
    // Collective over the parent; same color/key as the MPI split, so the
    // NCCL ranks are the MPI ranks (checked below).
    const std::string op = "ncclCommSplit of '" + parent->mpi->name() + "' into '" + name + "'";
    const ncclResult_t rc = ncclCommSplit(parent->comm, color, key, &im.comm, &config);
    if (rc == ncclInProgress) {
      im.wait_nccl_ready(parent->comm, op, im.timeout_s);
    } else if (rc != ncclSuccess) {
      parent->check_nccl(rc, op);
    }
    if (im.comm == nullptr) im.fail(op + " returned no communicator");
    im.wait_nccl_ready(im.comm, op, im.timeout_s);
  }
#endif
  if (im.comm == nullptr) {
    (void)parent;
    // A fresh id from group rank 0, broadcast over MPI (which has its watchdog).
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (im.mpi->rank() == 0) im.check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0);
    Tensor id_tensor = Tensor::wrap(&id, {static_cast<int64_t>(sizeof(id) / sizeof(int32_t))}, DType::kI32);
    im.mpi->broadcast(id_tensor, 0);
    const ncclResult_t rc =
        ncclCommInitRankConfig(&im.comm, im.mpi->size(), id, im.mpi->rank(), &config);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      im.fail("NCCL error in " + im.where("ncclCommInitRankConfig") + " (" + im.group_ranks +
              "): " + im.nccl_error_text(rc));
    }
    im.wait_nccl_ready(im.comm, "ncclCommInitRankConfig", im.timeout_s);
  }
  int nranks = 0, nrank = 0;
  im.check_nccl(ncclCommCount(im.comm, &nranks), "ncclCommCount");
  im.check_nccl(ncclCommUserRank(im.comm, &nrank), "ncclCommUserRank");
  if (nranks != im.mpi->size() || nrank != im.mpi->rank()) {
    im.fail("communicator '" + name + "': NCCL rank " + std::to_string(nrank) + " of " +
            std::to_string(nranks) + " differs from MPI rank " + std::to_string(im.mpi->rank()) +
            " of " + std::to_string(im.mpi->size()));
  }
  im.barrier_scalar = Tensor::zeros({1}, DType::kF32, Device::cuda(device));
  im.start_watchdog();
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_) impl_->shutdown();
}

int NcclCommunicator::rank() const { return impl_->mpi->rank(); }
int NcclCommunicator::size() const { return impl_->mpi->size(); }
const std::string& NcclCommunicator::name() const { return impl_->mpi->name(); }
int NcclCommunicator::world_rank() const { return impl_->mpi->world_rank(); }
int NcclCommunicator::world_rank_of(int r) const { return impl_->mpi->world_rank_of(r); }
int NcclCommunicator::device() const { return impl_->device; }
void* NcclCommunicator::stream() const { return impl_->stream; }
MpiCommunicator& NcclCommunicator::mpi() const { return *impl_->mpi; }
void NcclCommunicator::flush() { impl_->flush(); }

namespace {

// A defined CUDA tensor on `device`.
void check_device_tensor(const Tensor& t, int device, const char* op, const std::string& comm,
                         const char* what) {
  const std::string where = comm_internal::op_where(op, comm);
  ROTOR_CHECK(t.defined()) << where << ": " << what << " is undefined";
  ROTOR_CHECK(t.device() == Device::cuda(device))
      << where << ": " << what << " must be on cuda:" << device
      << " (this communicator's device) or on the CPU, got " << t.str();
}

// Same dims except dim 0, which is `factor` times larger in `big`.
void check_rows(const Tensor& small, const Tensor& big, int factor, const char* op,
                const std::string& comm, const char* small_name, const char* big_name) {
  const std::string where = comm_internal::op_where(op, comm);
  ROTOR_CHECK(small.dtype() == big.dtype())
      << where << ": " << small_name << " " << small.str() << " and " << big_name << " "
      << big.str() << " differ in dtype";
  bool ok = small.ndim() >= 1 && small.ndim() == big.ndim() && big.dim(0) == small.dim(0) * factor;
  for (int i = 1; ok && i < small.ndim(); ++i) ok = small.dim(i) == big.dim(i);
  ROTOR_CHECK(ok) << where << ": " << big_name << " must be [" << factor << " * m, ...] with the "
                  << "trailing shape of " << small_name << " [m, ...]; got " << small_name << " "
                  << small.shape().str() << ", " << big_name << " " << big.shape().str()
                  << " (group size " << factor << ")";
}

}  // namespace

void NcclCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  if (t.defined() && t.device().is_cpu()) {
    impl_->flush();
    impl_->mpi->all_reduce(t, op);
    return;
  }
  iall_reduce(t, op)->wait();
}

std::unique_ptr<CommRequest> NcclCommunicator::iall_reduce(Tensor& t, ReduceOp op) {
  NcclCommunicatorImpl& im = *impl_;
  if (t.defined() && t.device().is_cpu()) {
    im.flush();
    return im.mpi->iall_reduce(t, op);
  }
  check_device_tensor(t, im.device, "all_reduce", name(), "t");
  ++im.stats.calls;
  im.stats.all_reduce_bytes += comm_internal::all_reduce_bytes(static_cast<int64_t>(t.nbytes()), size());
  const double timeout = im.timeout_for(first_use_key("all_reduce", t.nbytes()), im.timeout_s);
  auto rec = im.enqueue("all_reduce of " + t.str(), timeout, [&] {
    return ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                         nccl_op(op), im.comm, im.stream);
  });
  return std::make_unique<NcclRequest>(std::move(rec), t, im.compute);
}

void NcclCommunicator::all_gather(const Tensor& in, Tensor& out) {
  NcclCommunicatorImpl& im = *impl_;
  if (in.defined() && out.defined() && in.device().is_cpu() && out.device().is_cpu()) {
    im.flush();
    im.mpi->all_gather(in, out);
    return;
  }
  check_device_tensor(in, im.device, "all_gather", name(), "in");
  check_device_tensor(out, im.device, "all_gather", name(), "out");
  check_rows(in, out, size(), "all_gather", name(), "in", "out");
  ++im.stats.calls;
  im.stats.all_gather_bytes +=
      comm_internal::gather_scatter_bytes(static_cast<int64_t>(out.nbytes()), size());
  const double timeout = im.timeout_for(first_use_key("all_gather", out.nbytes()), im.timeout_s);
  auto rec = im.enqueue("all_gather of " + in.str() + " into " + out.shape().str(), timeout, [&] {
    return ncclAllGather(in.raw(), out.raw(), in.nbytes(), ncclUint8, im.comm, im.stream);
  });
  im.compute_waits(*rec);
}

void NcclCommunicator::reduce_scatter(const Tensor& in, Tensor& out) {
  NcclCommunicatorImpl& im = *impl_;
  if (in.defined() && out.defined() && in.device().is_cpu() && out.device().is_cpu()) {
    im.flush();
    im.mpi->reduce_scatter(in, out);
    return;
  }
  check_device_tensor(in, im.device, "reduce_scatter", name(), "in");
  check_device_tensor(out, im.device, "reduce_scatter", name(), "out");
  check_rows(out, in, size(), "reduce_scatter", name(), "out", "in");
  ++im.stats.calls;
  im.stats.reduce_scatter_bytes +=
      comm_internal::gather_scatter_bytes(static_cast<int64_t>(in.nbytes()), size());
  const double timeout = im.timeout_for(first_use_key("reduce_scatter", in.nbytes()), im.timeout_s);
  auto rec = im.enqueue("reduce_scatter of " + in.str() + " into " + out.shape().str(), timeout,
                        [&] {
                          return ncclReduceScatter(in.raw(), out.raw(),
                                                   static_cast<size_t>(out.numel()),
                                                   nccl_type(in.dtype()), ncclSum, im.comm, im.stream);
                        });
  im.compute_waits(*rec);
}

void NcclCommunicator::broadcast(Tensor& t, int root) {
  NcclCommunicatorImpl& im = *impl_;
  if (t.defined() && t.device().is_cpu()) {
    im.flush();
    im.mpi->broadcast(t, root);
    return;
  }
  check_device_tensor(t, im.device, "broadcast", name(), "t");
  ROTOR_CHECK(root >= 0 && root < size())
      << "broadcast on communicator '" << name() << "': root " << root << " not in [0, " << size() << ")";
  ++im.stats.calls;
  if (rank() == root && size() > 1) im.stats.broadcast_bytes += static_cast<int64_t>(t.nbytes());
  auto rec = im.enqueue("broadcast of " + t.str() + " from rank " + std::to_string(root) + " = world rank " +
                            std::to_string(world_rank_of(root)),
                        im.timeout_for(first_use_key("broadcast", t.nbytes()), im.timeout_s), [&] {
                          return ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclUint8, root, im.comm,
                                               im.stream);
                        });
  im.compute_waits(*rec);
}

namespace {

std::unique_ptr<CommRequest> post_p2p(NcclCommunicatorImpl& im,
                                      const std::shared_ptr<NcclCommunicatorImpl>& self, bool is_send,
                                      const Tensor& t, int peer, int tag) {
  const char* op = is_send ? "isend" : "irecv";
  const std::string& name = im.mpi->name();
  check_device_tensor(t, im.device, op, name, "t");
  ROTOR_CHECK(peer >= 0 && peer < im.mpi->size())
      << op << " on communicator '" << name << "': peer " << peer << " not in [0, " << im.mpi->size() << ")";
  ROTOR_CHECK(tag >= 0) << op << " on communicator '" << name << "': negative tag " << tag;
  ++im.stats.calls;
  if (is_send) im.stats.send_bytes += static_cast<int64_t>(t.nbytes());
  im.check_cuda(cudaSetDevice(im.device), op);
  if (!im.pending) {
    im.pending = std::make_shared<PendingGroup>();
    im.pending->record = im.new_record("send/recv group", im.timeout_s);
  }
  PendingGroup& g = *im.pending;
  // Re-recorded at every post: the group waits for compute up to the last one.
  im.check_cuda(cudaEventRecord(g.record->ready, im.compute), op);
  g.ops.push_back(P2pOp{is_send, t, peer, tag});
  if (g.ops.size() <= 6) {
    if (g.ops.size() > 1) g.desc += ", ";
    g.desc += std::string(op) + " " + t.str() + (is_send ? " to" : " from") + " rank " +
              std::to_string(peer) + " = world rank " + std::to_string(im.mpi->world_rank_of(peer)) +
              " tag " + std::to_string(tag);
  } else if (g.ops.size() == 7) {
    g.desc += ", ...";
  }
  return std::make_unique<NcclP2pRequest>(im.pending, self, im.compute);
}

}  // namespace

std::unique_ptr<CommRequest> NcclCommunicator::isend(const Tensor& t, int peer, int tag) {
  if (t.defined() && t.device().is_cpu()) return impl_->mpi->isend(t, peer, tag);
  return post_p2p(*impl_, impl_, true, t, peer, tag);
}

std::unique_ptr<CommRequest> NcclCommunicator::irecv(Tensor& t, int peer, int tag) {
  if (t.defined() && t.device().is_cpu()) return impl_->mpi->irecv(t, peer, tag);
  return post_p2p(*impl_, impl_, false, t, peer, tag);
}

void NcclCommunicator::barrier() { barrier(impl_->timeout_s); }

void NcclCommunicator::barrier(double timeout_s) {
  NcclCommunicatorImpl& im = *impl_;
  ++im.stats.calls;
  Tensor& one = im.barrier_scalar;
  // The barrier is a 4-byte all_reduce: it shares that size class's first
  // use. The host waits for it, so also for any first-use op queued before.
  const double timeout = std::max(im.timeout_for(first_use_key("all_reduce", sizeof(float)), timeout_s),
                                  im.longest_inflight_timeout());
  auto rec = im.enqueue("barrier", timeout, [&] {
    return ncclAllReduce(one.raw(), one.raw(), 1, ncclFloat32, ncclSum, im.comm, im.stream);
  });
  im.compute_waits(*rec);
  im.host_wait(*rec);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, const std::string& name) {
  NcclCommunicatorImpl& im = *impl_;
  im.flush();
  std::unique_ptr<Communicator> sub = im.mpi->split(color, key, name);
  auto* sub_mpi = dynamic_cast<MpiCommunicator*>(sub.get());
  ROTOR_CHECK(sub_mpi != nullptr) << "split of '" << this->name() << "': MPI split is not an MpiCommunicator";
  sub.release();
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(std::unique_ptr<MpiCommunicator>(sub_mpi), im.device, impl_.get(), color, key));
}

void NcclCommunicator::abort(const std::string& message) {
  end_job(impl_->mpi->world_rank(), message, impl_->comm);
}

const CommStats& NcclCommunicator::stats() const {
  const CommStats& a = impl_->stats;
  const CommStats& b = impl_->mpi->stats();
  CommStats& m = impl_->merged;
  m.all_reduce_bytes = a.all_reduce_bytes + b.all_reduce_bytes;
  m.all_gather_bytes = a.all_gather_bytes + b.all_gather_bytes;
  m.reduce_scatter_bytes = a.reduce_scatter_bytes + b.reduce_scatter_bytes;
  m.broadcast_bytes = a.broadcast_bytes + b.broadcast_bytes;
  m.send_bytes = a.send_bytes + b.send_bytes;
  m.calls = a.calls + b.calls;
  return m;
}

void NcclCommunicator::reset_stats() {
  impl_->stats = CommStats();
  impl_->mpi->reset_stats();
}

// ---------------------------------------------------------------------------

std::unique_ptr<Communicator> nccl_world(std::unique_ptr<Communicator> mpi_world, int device) {
  auto* mpi = dynamic_cast<MpiCommunicator*>(mpi_world.get());
  ROTOR_CHECK(mpi != nullptr) << "nccl_world needs the MpiCommunicator that mpi_world returns, got '"
                              << (mpi_world ? mpi_world->name() : std::string("null")) << "'";
  mpi_world.release();
  return std::make_unique<NcclCommunicator>(std::unique_ptr<MpiCommunicator>(mpi), device);
}

namespace {

// One rank's (host, GPU) record for the all-gather: fixed size, as i32 words.
constexpr size_t kHostBytes = 256, kIdBytes = 96, kRecordBytes = kHostBytes + kIdBytes + 16;
static_assert(kRecordBytes % 4 == 0);

std::string uuid_string(const cudaUUID_t& u) {
  // As nvidia-smi prints it: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  static const char* hex = "0123456789abcdef";
  std::string s = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    const auto b = static_cast<unsigned char>(u.bytes[i]);
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

}  // namespace

int select_cuda_device(Communicator& world) {
  MpiCommunicator* mpi = dynamic_cast<MpiCommunicator*>(&world);
  if (mpi == nullptr) {
    if (auto* nccl = dynamic_cast<NcclCommunicator*>(&world)) mpi = &nccl->mpi();
  }
  ROTOR_CHECK(mpi != nullptr) << "select_cuda_device needs an MPI (or NCCL) world communicator";

  auto env = local_rank_from_env();
  if (!env.ok()) world.abort(std::string(env.status().message()));
  // The ranks sharing this node's memory: the local size, and the local rank
  // when no launcher variable says it. Meet first with the timeout, as split does.
  mpi->barrier();
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(mpi->comm(), MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL, &node) !=
      MPI_SUCCESS) {
    world.abort("MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed");
  }
  int node_rank = 0, node_size = 1;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  const int local_rank = env->rank >= 0 ? env->rank : node_rank;

  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) count = 0;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  auto device = choose_device(local_rank, count, visible, node_size);
  if (!device.ok()) {
    std::string why(device.status().message());
    if (rc != cudaSuccess) why += std::string(" [cudaGetDeviceCount: ") + cudaGetErrorString(rc) + "]";
    world.abort(why + " (local rank " + std::to_string(local_rank) + " from " +
                (env->source.empty() ? std::string("MPI_COMM_TYPE_SHARED") : env->source) + ")");
  }
  const int d = *device;
  cudaError_t e = cudaSetDevice(d);
  if (e != cudaSuccess) world.abort(std::string("cudaSetDevice(") + std::to_string(d) + "): " + cudaGetErrorString(e));
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, d);
  if (e != cudaSuccess) world.abort(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e));

  char record[kRecordBytes] = {};
  char host[kHostBytes] = {};
  gethostname(host, sizeof(host) - 1);
  std::memcpy(record, host, kHostBytes - 1);
  const std::string id = uuid_string(prop.uuid);
  std::memcpy(record + kHostBytes, id.data(), std::min(id.size(), kIdBytes - 1));
  const int32_t dev32 = d;
  std::memcpy(record + kHostBytes + kIdBytes, &dev32, sizeof(dev32));

  const int64_t words = static_cast<int64_t>(kRecordBytes / 4);
  Tensor in = Tensor::wrap(record, {1, words}, DType::kI32);
  Tensor out = Tensor::empty({world.size(), words}, DType::kI32);
  mpi->all_gather(in, out);
  std::vector<RankDevice> all;
  const char* base = static_cast<const char*>(out.raw());
  for (int r = 0; r < world.size(); ++r) {
    const char* rec = base + static_cast<size_t>(r) * kRecordBytes;
    RankDevice rd;
    rd.world_rank = mpi->world_rank_of(r);
    rd.host = std::string(rec, strnlen(rec, kHostBytes));
    rd.device_id = std::string(rec + kHostBytes, strnlen(rec + kHostBytes, kIdBytes));
    int32_t di = 0;
    std::memcpy(&di, rec + kHostBytes + kIdBytes, sizeof(di));
    rd.device_index = di;
    all.push_back(std::move(rd));
  }
  const absl::Status unique = check_unique_devices(all);
  if (!unique.ok()) world.abort(std::string(unique.message()));
  return d;
}

}  // namespace rotor
