// LocalCommunicator and ProcessGrid on one process (no MPI).
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/process_grid.h"

namespace rotor {
namespace {

TEST(LocalCommunicator, Basics) {
  auto c = make_local_communicator();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->name(), "world");
  EXPECT_EQ(c->world_rank(), 0);
  EXPECT_EQ(c->world_rank_of(0), 0);
  EXPECT_EQ(make_local_communicator("tp")->name(), "tp");
}

TEST(LocalCommunicator, CollectivesAreIdentity) {
  auto c = make_local_communicator();
  for (DType d : {DType::kF32, DType::kF64, DType::kI32, DType::kI64}) {
    Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, d);
    c->all_reduce(t);
    c->all_reduce(t, ReduceOp::kMax);
    c->broadcast(t, 0);
    c->barrier();
    EXPECT_EQ(t.to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
    Tensor out = Tensor::zeros({2, 3}, d);
    c->all_gather(t, out);
    EXPECT_EQ(out.to_vector(), t.to_vector());
    Tensor rs = Tensor::zeros({2, 3}, d);
    c->reduce_scatter(t, rs);
    EXPECT_EQ(rs.to_vector(), t.to_vector());
    const int64_t calls = c->stats().calls;
    auto req = c->iall_reduce(t);  // complete at once, counted like all_reduce
    EXPECT_EQ(c->stats().calls, calls + 1);
    req->wait();
    req->wait();
    EXPECT_EQ(t.to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  }
}

// One rank: no buckets; ready/finish/reduce leave the gradients alone, and a
// gradient reported twice in a step is still caught.
TEST(GradientReducer, OneRankDoesNothing) {
  auto c = make_local_communicator("dp_cp");
  Tensor g = Tensor::from_vector({1, 2, 3}, {3}, DType::kF32);
  GradientReducer r({g, g.clone()}, c.get(), 4);
  EXPECT_EQ(r.buckets(), 0);
  r.ready(1);
  r.ready(0);
  r.finish();
  r.reduce();
  r.ready(0);  // a new step after finish()
  EXPECT_EQ(g.to_vector(), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(c->stats().calls, 0);
}

TEST(GradientReducerDeathTest, ReadyTwiceInOneStep) {
  auto c = make_local_communicator("dp_cp");
  GradientReducer r({Tensor::zeros({3}, DType::kF32)}, c.get());
  r.ready(0);
  EXPECT_DEATH(r.ready(0), "gradient 0 reported ready twice in one step");
  EXPECT_DEATH(r.ready(1), "ready\\(1\\) of 1 gradients");
}

TEST(LocalCommunicator, SendReceiveToSelfByTag) {
  auto c = make_local_communicator();
  Tensor a = Tensor::from_vector({1, 2}, {2}, DType::kF32);
  Tensor b = Tensor::from_vector({3, 4}, {2}, DType::kF32);
  Tensor ra = Tensor::zeros({2}, DType::kF32), rb = Tensor::zeros({2}, DType::kF32);
  // Receive first for tag 1, send first for tag 2; matched by tag, not order.
  auto r1 = c->irecv(ra, 0, 1);
  auto s2 = c->isend(b, 0, 2);
  auto s1 = c->isend(a, 0, 1);
  auto r2 = c->irecv(rb, 0, 2);
  r1->wait();
  r2->wait();
  s1->wait();
  s2->wait();
  EXPECT_EQ(ra.to_vector(), (std::vector<double>{1, 2}));
  EXPECT_EQ(rb.to_vector(), (std::vector<double>{3, 4}));
  EXPECT_EQ(c->stats().send_bytes, 16);
}

TEST(LocalCommunicator, StatsAndSplit) {
  auto c = make_local_communicator();
  Tensor t = Tensor::zeros({10}, DType::kF32);
  c->all_reduce(t);
  Tensor out = Tensor::zeros({10}, DType::kF32);
  c->all_gather(t, out);
  EXPECT_EQ(c->stats().calls, 2);
  EXPECT_EQ(c->stats().total(), 0);  // nothing moves on one rank
  c->reset_stats();
  EXPECT_EQ(c->stats().calls, 0);
  auto sub = c->split(3, 0, "dp");
  EXPECT_EQ(sub->name(), "dp");
  EXPECT_EQ(sub->size(), 1);
}

TEST(LocalCommunicatorDeathTest, ShapeMismatch) {
  auto c = make_local_communicator("tp");
  Tensor in = Tensor::zeros({2, 3}, DType::kF32);
  Tensor out = Tensor::zeros({2, 4}, DType::kF32);
  EXPECT_DEATH(c->all_gather(in, out), "all_gather on communicator 'tp'");
  Tensor bf = Tensor::zeros({2}, DType::kBF16);
  EXPECT_DEATH(c->all_reduce(bf), "bf16 cannot be reduced");
}

TEST(LocalCommunicatorDeathTest, Abort) {
  auto c = make_local_communicator();
  EXPECT_EXIT(c->abort("bad data file x"), ::testing::ExitedWithCode(1),
              "rotor: rank 0: bad data file x");
}

TEST(ProcessGrid, OneRank) {
  auto g = ProcessGrid::create(make_local_communicator(), 1, 1);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->shape().tp, 1);
  EXPECT_EQ((*g)->shape().cp, 1);
  EXPECT_EQ((*g)->shape().dp, 1);
  EXPECT_EQ((*g)->describe(), "rank 0 (dp 0, cp 0, tp 0)");
  EXPECT_EQ((*g)->tp().name(), "tp");
  EXPECT_EQ((*g)->cp().name(), "cp");
  EXPECT_EQ((*g)->dp().name(), "dp");
  EXPECT_EQ((*g)->dp_cp().name(), "dp_cp");
  EXPECT_EQ((*g)->world().name(), "world");
}

TEST(ProcessGrid, InvalidLayouts) {
  auto g = ProcessGrid::create(make_local_communicator(), 2, 2);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(), "world size 1 is not a multiple of tp * cp = 4 (tp 2, cp 2)");
  auto z = ProcessGrid::create(make_local_communicator(), 0, 1);
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.status().message(), "process grid: tp and cp must be >= 1, got tp 0, cp 1");
}

}  // namespace
}  // namespace rotor
