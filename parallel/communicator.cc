#include "parallel/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "kernels/check.h"
#include "parallel/comm_internal.h"

namespace rotor {
namespace comm_internal {

std::string op_where(const char* op, const std::string& comm_name) {
  return std::string(op) + " on communicator '" + comm_name + "'";
}

void check_tensor(const Tensor& t, const char* op, const std::string& comm_name, const char* what) {
  ROTOR_CHECK(t.defined()) << op_where(op, comm_name) << ": " << what << " is undefined";
}

void check_reducible(const Tensor& t, const char* op, const std::string& comm_name) {
  ROTOR_CHECK(t.dtype() != DType::kBF16)
      << op_where(op, comm_name) << ": bf16 cannot be reduced (f32, f64, i32 or i64), got "
      << t.str();
}

namespace {

// Same dims except dim 0, which is `factor` times larger in `big`.
void check_rows(const Tensor& small, const Tensor& big, int factor, const char* op,
                const std::string& comm_name, const char* small_name, const char* big_name) {
  const std::string where = op_where(op, comm_name);
  ROTOR_CHECK(small.dtype() == big.dtype())
      << where << ": " << small_name << " " << small.str() << " and " << big_name << " "
      << big.str() << " differ in dtype";
  ROTOR_CHECK(small.ndim() >= 1 && small.ndim() == big.ndim())
      << where << ": " << small_name << " " << small.str() << " and " << big_name << " "
      << big.str() << " must have the same number of dims (at least 1)";
  bool ok = big.dim(0) == small.dim(0) * factor;
  for (int i = 1; i < small.ndim(); ++i) ok = ok && small.dim(i) == big.dim(i);
  ROTOR_CHECK(ok) << where << ": " << big_name << " must be [" << factor << " * "
                  << small.dim(0) << ", ...] with the trailing shape of " << small_name
                  << "; got " << small_name << " " << small.shape().str() << ", " << big_name
                  << " " << big.shape().str() << " (group size " << factor << ")";
}

}  // namespace

void check_all_to_all(const Tensor& in, const Tensor& out, int size, const std::string& comm_name) {
  check_tensor(in, "all_to_all", comm_name, "in");
  check_tensor(out, "all_to_all", comm_name, "out");
  ROTOR_CHECK(in.shape() == out.shape() && in.dtype() == out.dtype() && in.device() == out.device())
      << op_where("all_to_all", comm_name) << ": in " << in.str() << " and out " << out.str()
      << " must have the same shape, dtype and device";
  ROTOR_CHECK(in.ndim() >= 1 && in.dim(0) % size == 0)
      << op_where("all_to_all", comm_name) << ": dim 0 of " << in.str() << " must split into " << size
      << " equal blocks (group size)";
  ROTOR_CHECK(!in.same_data(out)) << op_where("all_to_all", comm_name) << ": in and out must not overlap";
}

void check_all_gather(const Tensor& in, const Tensor& out, int size, const std::string& comm_name) {
  check_tensor(in, "all_gather", comm_name, "in");
  check_tensor(out, "all_gather", comm_name, "out");
  check_rows(in, out, size, "all_gather", comm_name, "in", "out");
}

void check_reduce_scatter(const Tensor& in, const Tensor& out, int size,
                          const std::string& comm_name) {
  check_tensor(in, "reduce_scatter", comm_name, "in");
  check_tensor(out, "reduce_scatter", comm_name, "out");
  check_reducible(in, "reduce_scatter", comm_name);
  check_rows(out, in, size, "reduce_scatter", comm_name, "out", "in");
}

}  // namespace comm_internal

namespace {

using comm_internal::check_tensor;

// A send or receive to self. Done once matched (the copy happens when the
// second of the pair is posted).
struct LocalTransfer {
  Tensor tensor;
  bool done = false;
  bool is_send = false;
  int tag = 0;
  std::string comm_name;
};

class LocalRequest : public CommRequest {
 public:
  explicit LocalRequest(std::shared_ptr<LocalTransfer> t) : t_(std::move(t)) {}
  ~LocalRequest() override { wait(); }
  void wait() override {
    if (t_->done) return;
    // One process: nobody else can post the matching half any more.
    std::fprintf(stderr,
                 "rotor: rank 0: %s to self with tag %d on communicator '%s' waited on before "
                 "the matching %s was posted (it would never complete)\n",
                 t_->is_send ? "isend" : "irecv", t_->tag, t_->comm_name.c_str(),
                 t_->is_send ? "irecv" : "isend");
    std::fflush(stderr);
    std::_Exit(1);
  }

 private:
  std::shared_ptr<LocalTransfer> t_;
};

// An operation that completed when it was started (one rank).
class CompleteRequest : public CommRequest {
 public:
  void wait() override {}
};

}  // namespace

void Communicator::all_to_all(const Tensor& in, Tensor& out) {
  const int n = size(), me = rank();
  comm_internal::check_all_to_all(in, out, n, name());
  const int64_t m = in.dim(0) / n;
  // Receives first, then sends, then the own block: every transfer posted
  // before any wait, so no order of the peers' calls can deadlock.
  std::vector<std::unique_ptr<CommRequest>> reqs;
  std::vector<Tensor> blocks;
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    blocks.push_back(out.narrow(r * m, m));
    reqs.push_back(irecv(blocks.back(), r, kAllToAllTag));
  }
  for (int r = 0; r < n; ++r)
    if (r != me) reqs.push_back(isend(in.narrow(r * m, m), r, kAllToAllTag));
  flush();
  out.narrow(me * m, m).copy_from(in.narrow(me * m, m));
  for (auto& q : reqs) q->wait();
}

namespace {

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(std::string name) : name_(std::move(name)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  int world_rank() const override { return 0; }
  int world_rank_of(int r) const override {
    ROTOR_CHECK_EQ(r, 0) << "world_rank_of on communicator '" << name_ << "' of size 1";
    return 0;
  }

  void all_reduce(Tensor& t, ReduceOp) override {
    check_tensor(t, "all_reduce", name_, "t");
    comm_internal::check_reducible(t, "all_reduce", name_);
    ++stats_.calls;
  }

  std::unique_ptr<CommRequest> iall_reduce(Tensor& t, ReduceOp op) override {
    all_reduce(t, op);
    return std::make_unique<CompleteRequest>();
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    comm_internal::check_all_gather(in, out, 1, name_);
    ++stats_.calls;
    if (!in.same_data(out)) out.copy_from(in);  // on their device
  }

  void reduce_scatter(const Tensor& in, Tensor& out) override {
    comm_internal::check_reduce_scatter(in, out, 1, name_);
    ++stats_.calls;
    if (!in.same_data(out)) out.copy_from(in);
  }

  void all_to_all(const Tensor& in, Tensor& out) override {
    comm_internal::check_all_to_all(in, out, 1, name_);
    ++stats_.calls;
    out.copy_from(in);
  }

  void broadcast(Tensor& t, int root) override {
    check_tensor(t, "broadcast", name_, "t");
    ROTOR_CHECK_EQ(root, 0) << "broadcast on communicator '" << name_ << "' of size 1";
    ++stats_.calls;
  }

  std::unique_ptr<CommRequest> isend(const Tensor& t, int peer, int tag) override {
    return post(t, peer, tag, /*is_send=*/true);
  }
  std::unique_ptr<CommRequest> irecv(Tensor& t, int peer, int tag) override {
    return post(t, peer, tag, /*is_send=*/false);
  }

  void barrier() override { ++stats_.calls; }
  void barrier(double) override { ++stats_.calls; }

  std::unique_ptr<Communicator> split(int, int, const std::string& name) override {
    return std::make_unique<LocalCommunicator>(name);
  }

  [[noreturn]] void abort(const std::string& message) override {
    std::cout.flush();
    std::fprintf(stderr, "rotor: rank 0: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }

  const CommStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = CommStats(); }

 private:
  std::unique_ptr<CommRequest> post(const Tensor& t, int peer, int tag, bool is_send) {
    const char* op = is_send ? "isend" : "irecv";
    check_tensor(t, op, name_, "t");
    ROTOR_CHECK_EQ(peer, 0) << op << " on communicator '" << name_
                            << "' of size 1: the only peer is 0";
    ++stats_.calls;
    if (is_send) stats_.send_bytes += static_cast<int64_t>(t.nbytes());
    auto me = std::make_shared<LocalTransfer>();
    me->tensor = t;
    me->is_send = is_send;
    me->tag = tag;
    me->comm_name = name_;
    // Match the oldest pending transfer of the other kind with this tag (MPI's
    // non-overtaking order).
    auto& other = is_send ? pending_recvs_[tag] : pending_sends_[tag];
    if (!other.empty()) {
      std::shared_ptr<LocalTransfer> peer_t = other.front();
      other.pop_front();
      const Tensor& src = is_send ? t : peer_t->tensor;
      const Tensor& dst = is_send ? peer_t->tensor : t;
      ROTOR_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel())
          << "send/receive to self with tag " << tag << " on communicator '" << name_
          << "': sent " << src.str() << ", receive buffer " << dst.str();
      dst.view({dst.numel()}).copy_from(src.view({src.numel()}));
      me->done = peer_t->done = true;
      me->tensor = Tensor();
      peer_t->tensor = Tensor();
    } else {
      (is_send ? pending_sends_[tag] : pending_recvs_[tag]).push_back(me);
    }
    return std::make_unique<LocalRequest>(std::move(me));
  }

  std::string name_;
  CommStats stats_;
  std::map<int, std::deque<std::shared_ptr<LocalTransfer>>> pending_sends_, pending_recvs_;
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(const std::string& name) {
  return std::make_unique<LocalCommunicator>(name);
}

}  // namespace rotor
