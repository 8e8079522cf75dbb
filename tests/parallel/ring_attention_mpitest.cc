// Ring attention over the world as the cp ring equals full causal attention on
// one rank: outputs, LSEs and the gradients of q, k and v of every shard, with
// GQA, and with document segments whose boundaries fall inside and across
// chunks. f64 (the shipped kernels run in double) so that the only difference
// is the order of the LSE merges: tolerance 1e-12 of the largest value; f32 at
// 2e-6 (a few ulps of the merge arithmetic over up to 8 blocks). And the
// order of the backward's traffic: each hop's K/V is posted and started
// (flush) before the block's gradients are computed, in a group of its own.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "parallel/ring_attention.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"
#include "tests/parallel/shard_stat.h"

namespace rotor {
namespace {

using testing_mpi::world;

void check_ring(DType dtype, bool segments, double tol) {
  const int cp = world().size(), r = world().rank();
  std::unique_ptr<Communicator> ring = world().split(0, r, "cp");
  const int64_t b = 2, t = 2 * cp * 24, hq = 4, hkv = 2, hd = 8;
  // Same seeds on every rank: every rank knows the full problem.
  Tensor q = testing::random_tensor({b, t, hq, hd}, dtype, 11);
  Tensor k = testing::random_tensor({b, t, hkv, hd}, dtype, 12);
  Tensor v = testing::random_tensor({b, t, hkv, hd}, dtype, 13);
  Tensor dout = testing::random_tensor({b, t, hq, hd}, dtype, 14);
  Tensor pos = Tensor::empty({b, t}, DType::kI32), seg = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) {
      pos.data<int32_t>()[i * t + j] = static_cast<int32_t>(100 * i + j);  // global positions
      // Documents of 37 tokens (row 0) and 29 (row 1): boundaries inside chunks.
      seg.data<int32_t>()[i * t + j] = static_cast<int32_t>(j / (i == 0 ? 37 : 29));
    }
  AttentionMask full_mask{pos, pos, segments ? seg : Tensor(), segments ? seg : Tensor(), true};
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));

  Tensor out = Tensor::empty({b, t, hq, hd}, dtype), lse = Tensor::empty({b, hq, t}, dtype);
  attention_forward(q, k, v, full_mask, scale, out, lse);
  Tensor dq = Tensor::zeros(q.shape(), dtype), dk = Tensor::zeros(k.shape(), dtype),
         dv = Tensor::zeros(v.shape(), dtype);
  attention_backward(q, k, v, full_mask, scale, out, lse, dout, dq, dk, dv);
  testing::expect_finite_nonzero(out, "reference out");
  testing::expect_finite_nonzero(dk, "reference dk");

  const auto sh = [&](const Tensor& x) { return context_shard(x, cp, r); };
  AttentionMask mask{sh(pos), sh(pos), segments ? sh(seg) : Tensor(), segments ? sh(seg) : Tensor(), true};
  const Tensor lq = sh(q), lk = sh(k), lv = sh(v), ldout = sh(dout);
  Tensor lout = Tensor::empty(lq.shape(), dtype), llse = Tensor::empty({b, hq, lq.dim(1)}, dtype);
  ring_attention_forward(*ring, lq, lk, lv, mask, scale, lout, llse);
  Tensor ldq = Tensor::empty(lq.shape(), dtype), ldk = Tensor::empty(lk.shape(), dtype),
         ldv = Tensor::empty(lv.shape(), dtype);
  ring_attention_backward(*ring, lq, lk, lv, mask, scale, lout, llse, ldout, ldq, ldk, ldv);

  const std::string where = "rank " + std::to_string(r) + " of cp " + std::to_string(cp);
  testing::expect_close(lout, sh(out), tol * testing::max_abs(out), 0, "out, " + where);
  testing::expect_close(llse, testing_mpi::shard_stat(lse, cp, r), tol * testing::max_abs(lse), 0, "lse, " + where);
  testing::expect_close(ldq, sh(dq), tol * testing::max_abs(dq), 0, "dq, " + where);
  testing::expect_close(ldk, sh(dk), tol * testing::max_abs(dk), 0, "dk, " + where);
  testing::expect_close(ldv, sh(dv), tol * testing::max_abs(dv), 0, "dv, " + where);
}

TEST(MpiRingAttention, MatchesFullAttentionF64) { check_ring(DType::kF64, false, 1e-12); }
TEST(MpiRingAttention, DocumentSegmentsF64) { check_ring(DType::kF64, true, 1e-12); }
TEST(MpiRingAttention, MatchesFullAttentionF32) { check_ring(DType::kF32, true, 2e-6); }

// Forwards to a communicator and logs the ring's traffic: "post <tag>" for
// isend/irecv, "flush", "wait <tag>".
class RecordingCommunicator : public Communicator {
 public:
  explicit RecordingCommunicator(Communicator& inner) : inner_(inner) {}
  std::vector<std::string> log;

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  int world_rank() const override { return inner_.world_rank(); }
  int world_rank_of(int r) const override { return inner_.world_rank_of(r); }
  void all_reduce(Tensor& t, ReduceOp op) override { inner_.all_reduce(t, op); }
  std::unique_ptr<CommRequest> iall_reduce(Tensor& t, ReduceOp op) override { return inner_.iall_reduce(t, op); }
  void all_gather(const Tensor& in, Tensor& out) override { inner_.all_gather(in, out); }
  void reduce_scatter(const Tensor& in, Tensor& out) override { inner_.reduce_scatter(in, out); }
  void broadcast(Tensor& t, int root) override { inner_.broadcast(t, root); }
  std::unique_ptr<CommRequest> isend(const Tensor& t, int peer, int tag) override {
    return record(inner_.isend(t, peer, tag), tag);
  }
  std::unique_ptr<CommRequest> irecv(Tensor& t, int peer, int tag) override {
    return record(inner_.irecv(t, peer, tag), tag);
  }
  void flush() override {
    log.push_back("flush");
    inner_.flush();
  }
  void barrier() override { inner_.barrier(); }
  void barrier(double timeout_s) override { inner_.barrier(timeout_s); }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    return inner_.split(color, key, name);
  }
  [[noreturn]] void abort(const std::string& message) override {
    inner_.abort(message);
    std::abort();  // not reached (gcc does not see through the virtual call)
  }
  const CommStats& stats() const override { return inner_.stats(); }
  void reset_stats() override { inner_.reset_stats(); }

 private:
  class Request : public CommRequest {
   public:
    Request(std::unique_ptr<CommRequest> inner, std::vector<std::string>& log, int tag)
        : inner_(std::move(inner)), log_(log), tag_(tag) {}
    ~Request() override { wait(); }
    void wait() override {
      if (!inner_) return;
      log_.push_back("wait " + std::to_string(tag_));
      inner_->wait();
      inner_.reset();
    }

   private:
    std::unique_ptr<CommRequest> inner_;
    std::vector<std::string>& log_;
    int tag_;
  };
  std::unique_ptr<CommRequest> record(std::unique_ptr<CommRequest> r, int tag) {
    log.push_back("post " + std::to_string(tag));
    return std::make_unique<Request>(std::move(r), log, tag);
  }
  Communicator& inner_;
};

// The backward's log, hop by hop: K, V, positions (and segments) posted, then
// flushed with no wait and no dK/dV post in between (so a communicator that
// defers transfers, NCCL, issues them before the block's compute is queued, as
// a group of their own); dK/dV posted after, in their own flushed group. Same
// results as the plain communicator, bit for bit.
TEST(MpiRingAttention, BackwardStartsKvBeforeCompute) {
  const int cp = world().size(), r = world().rank();
  std::unique_ptr<Communicator> ring = world().split(0, r, "cp");
  RecordingCommunicator rec(*ring);
  const int64_t b = 1, t = 2 * cp * 8, hq = 4, hkv = 2, hd = 8;
  const auto sh = [&](const Tensor& x) { return context_shard(x, cp, r); };
  Tensor pos = Tensor::empty({b, t}, DType::kI32), seg = Tensor::empty({b, t}, DType::kI32);
  for (int64_t j = 0; j < t; ++j) {
    pos.data<int32_t>()[j] = static_cast<int32_t>(j);
    seg.data<int32_t>()[j] = static_cast<int32_t>(j / 13);
  }
  AttentionMask mask{sh(pos), sh(pos), sh(seg), sh(seg), true};
  const Tensor q = sh(testing::random_tensor({b, t, hq, hd}, DType::kF32, 21));
  const Tensor k = sh(testing::random_tensor({b, t, hkv, hd}, DType::kF32, 22));
  const Tensor v = sh(testing::random_tensor({b, t, hkv, hd}, DType::kF32, 23));
  const Tensor dout = sh(testing::random_tensor({b, t, hq, hd}, DType::kF32, 24));
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  Tensor out = Tensor::empty(q.shape(), DType::kF32), lse = Tensor::empty({b, hq, q.dim(1)}, DType::kF32);
  ring_attention_forward(*ring, q, k, v, mask, scale, out, lse);
  std::vector<Tensor> got, want;
  for (Communicator* c : {static_cast<Communicator*>(&rec), ring.get()}) {
    std::vector<Tensor>& g = c == ring.get() ? want : got;
    for (int i = 0; i < 3; ++i) g.push_back(Tensor::empty(i == 0 ? q.shape() : k.shape(), DType::kF32));
    ring_attention_backward(*c, q, k, v, mask, scale, out, lse, dout, g[0], g[1], g[2]);
  }
  for (int i = 0; i < 3; ++i) {
    testing::expect_finite_nonzero(want[i], "ring gradient " + std::to_string(i));
    testing::expect_close(got[i], want[i], 0, 0, "recorded ring gradient " + std::to_string(i));
  }

  // Cut the log at each flush: every group is one hop's posts, K/V or dK/dV.
  std::vector<std::vector<std::string>> groups(1);
  for (const std::string& e : rec.log) {
    if (e == "flush") groups.emplace_back();
    else if (e.rfind("post ", 0) == 0) groups.back().push_back(e);
  }
  const std::vector<std::string> kv = {"post 1", "post 1", "post 2", "post 2", "post 3", "post 3",
                                       "post 4", "post 4"},
                                 grads = {"post 5", "post 5", "post 6", "post 6"};
  ASSERT_EQ(ring_tag::kK, 1);
  ASSERT_EQ(ring_tag::kDv, 6);
  std::vector<std::vector<std::string>> expected;
  for (int s = 0; s < cp; ++s) {
    if (s + 1 < cp) expected.push_back(kv);
    expected.push_back(grads);
  }
  expected.emplace_back();  // nothing posted after the last flush
  if (cp == 1) expected = {{}};
  EXPECT_EQ(groups, expected);
  // Nothing waited on between a hop's posts and their flush (a wait would
  // make NCCL issue the group there): between two flushes, waits come first.
  bool posted = false;
  for (const std::string& e : rec.log) {
    if (e == "flush") posted = false;
    else if (e.rfind("post ", 0) == 0) posted = true;
    else EXPECT_FALSE(posted) << e << " between a post and its flush";
  }
}

TEST(MpiRingAttention, ZigzagShardIndices) {
  // cp 2, T 8: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  EXPECT_EQ(context_shard_indices(8, 2, 0), (std::vector<int64_t>{0, 1, 6, 7}));
  EXPECT_EQ(context_shard_indices(8, 2, 1), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(context_shard_indices(4, 1, 0), (std::vector<int64_t>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace rotor
