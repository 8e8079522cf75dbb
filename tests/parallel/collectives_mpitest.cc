// MpiCommunicator's collectives and send/receive, under mpirun with any number
// of ranks: every result is checked against values computed by hand from the
// rank numbers.
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/tensor.h"
#include "parallel/communicator.h"
#include "tests/parallel/mpi_env.h"

namespace rotor {
namespace {

using testing_mpi::world;

const DType kReducible[] = {DType::kF32, DType::kF64, DType::kI32, DType::kI64};
const DType kAll[] = {DType::kF32, DType::kF64, DType::kI32, DType::kI64, DType::kBF16};

TEST(MpiCollectives, WorldBasics) {
  Communicator& w = world();
  EXPECT_EQ(w.name(), "world");
  EXPECT_GE(w.size(), 1);
  EXPECT_EQ(w.world_rank(), w.rank());
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(w.world_rank_of(r), r);
}

TEST(MpiCollectives, AllReduceSum) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  for (DType d : kReducible) {
    SCOPED_TRACE(dtype_name(d));
    // Rank r contributes r + 1 + k at element k: the sum is n(n+1)/2 + n k.
    std::vector<double> v(7);
    for (int k = 0; k < 7; ++k) v[k] = r + 1 + k;
    Tensor t = Tensor::from_vector(v, {7}, d);
    w.all_reduce(t);
    for (int k = 0; k < 7; ++k) EXPECT_EQ(t.item(k), n * (n + 1) / 2 + n * k) << "element " << k;
  }
}

TEST(MpiCollectives, AllReduceMax) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  auto f = [](int rank, int k) { return static_cast<double>((rank * 7 + k * 3) % 11 - 5); };
  for (DType d : kReducible) {
    SCOPED_TRACE(dtype_name(d));
    std::vector<double> v(6);
    for (int k = 0; k < 6; ++k) v[k] = f(r, k);
    Tensor t = Tensor::from_vector(v, {2, 3}, d);
    w.all_reduce(t, ReduceOp::kMax);
    for (int k = 0; k < 6; ++k) {
      double want = f(0, k);
      for (int q = 1; q < n; ++q) want = std::max(want, f(q, k));
      EXPECT_EQ(t.item(k), want) << "element " << k;
    }
  }
}

TEST(MpiCollectives, AllReduceLargeF32) {
  // Large enough for the ring/segmented algorithms.
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t len = 1 << 18;
  Tensor t = Tensor::empty({len}, DType::kF32);
  float* p = t.data<float>();
  for (int64_t k = 0; k < len; ++k) p[k] = static_cast<float>((r + 1) * (k % 97));
  w.all_reduce(t);
  for (int64_t k = 0; k < len; ++k) {
    if (p[k] != static_cast<float>(n * (n + 1) / 2 * (k % 97))) {
      ADD_FAILURE() << "element " << k << ": " << p[k];
      break;
    }
  }
}

TEST(MpiCollectives, AllGather2D) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int m = 2;
  // Small integers, exact in bf16 too.
  auto v = [](int rank, int i, int j) { return static_cast<double>(rank * 16 + i * 4 + j); };
  for (DType d : kAll) {
    SCOPED_TRACE(dtype_name(d));
    std::vector<double> in_v;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < 3; ++j) in_v.push_back(v(r, i, j));
    Tensor in = Tensor::from_vector(in_v, {m, 3}, d);
    Tensor out = Tensor::zeros({n * m, 3}, d);
    w.all_gather(in, out);
    for (int q = 0; q < n; ++q)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < 3; ++j)
          EXPECT_EQ(out.item((q * m + i) * 3 + j), v(q, i, j)) << "rank " << q << " row " << i;
  }
}

// all_to_all: block q of rank r's input arrives as block r of rank q's output,
// through MPI_Alltoall and through the generic point-to-point version every
// other communicator (NCCL) uses; every dtype (bf16 moves bytes).
TEST(MpiCollectives, AllToAll2D) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int m = 2;
  // Below 256 for 8 ranks: exact in bf16.
  auto v = [](int from, int to, int i, int j) { return static_cast<double>(from * 32 + to * 4 + i * 2 + j); };
  for (bool generic : {false, true}) {
    for (DType d : kAll) {
      SCOPED_TRACE(std::string(dtype_name(d)) + (generic ? " generic" : " MPI_Alltoall"));
      std::vector<double> in_v;
      for (int q = 0; q < n; ++q)
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < 2; ++j) in_v.push_back(v(r, q, i, j));
      Tensor in = Tensor::from_vector(in_v, {n * m, 2}, d);
      Tensor out = Tensor::zeros({n * m, 2}, d);
      if (generic) w.Communicator::all_to_all(in, out);
      else w.all_to_all(in, out);
      for (int q = 0; q < n; ++q)
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < 2; ++j)
            EXPECT_EQ(out.item((q * m + i) * 2 + j), v(q, r, i, j)) << "from rank " << q << " row " << i;
    }
  }
}

TEST(MpiCollectives, ReduceScatter2D) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int m = 3;
  for (DType d : kReducible) {
    SCOPED_TRACE(dtype_name(d));
    // Rank r holds (r + 1) * (row * 3 + j + 1); the sum is n(n+1)/2 * (row * 3 + j + 1).
    std::vector<double> in_v;
    for (int row = 0; row < n * m; ++row)
      for (int j = 0; j < 3; ++j) in_v.push_back((r + 1) * (row * 3 + j + 1));
    Tensor in = Tensor::from_vector(in_v, {n * m, 3}, d);
    Tensor out = Tensor::zeros({m, 3}, d);
    w.reduce_scatter(in, out);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < 3; ++j)
        EXPECT_EQ(out.item(i * 3 + j), n * (n + 1) / 2 * ((r * m + i) * 3 + j + 1))
            << "row " << i << " col " << j;
  }
}

TEST(MpiCollectives, BroadcastFromLastRank) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int root = n - 1;  // non-zero whenever n > 1
  for (DType d : kAll) {
    SCOPED_TRACE(dtype_name(d));
    std::vector<double> v(5);
    for (int k = 0; k < 5; ++k) v[k] = r == root ? 100 + k : -1;
    Tensor t = Tensor::from_vector(v, {5}, d);
    w.broadcast(t, root);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(t.item(k), 100 + k);
  }
}

// Rank r sends kMessages tensors to r + 1 and receives as many from r - 1, all
// in flight at once, with distinct tags; receives posted in reverse tag order
// so that only the tags can match them.
void ring(bool receives_first) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  constexpr int kMessages = 4;
  std::vector<Tensor> send(kMessages), recv(kMessages);
  for (int tag = 0; tag < kMessages; ++tag) {
    std::vector<double> v(5 + tag);
    for (size_t k = 0; k < v.size(); ++k) v[k] = 1000 * r + 10 * tag + static_cast<double>(k);
    send[tag] = Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, DType::kF32);
    recv[tag] = Tensor::zeros({static_cast<int64_t>(v.size())}, DType::kF32);
  }
  std::vector<std::unique_ptr<CommRequest>> reqs;
  auto post_recvs = [&] {
    for (int tag = kMessages - 1; tag >= 0; --tag) reqs.push_back(w.irecv(recv[tag], prev, tag));
  };
  auto post_sends = [&] {
    for (int tag = 0; tag < kMessages; ++tag) reqs.push_back(w.isend(send[tag], next, tag));
  };
  if (receives_first) {
    post_recvs();
    post_sends();
  } else {
    post_sends();
    post_recvs();
  }
  for (auto& q : reqs) q->wait();
  for (int tag = 0; tag < kMessages; ++tag)
    for (int k = 0; k < 5 + tag; ++k)
      EXPECT_EQ(recv[tag].item(k), 1000 * prev + 10 * tag + k) << "tag " << tag << " element " << k;
}

TEST(MpiSendRecv, RingReceivesFirst) { ring(true); }
TEST(MpiSendRecv, RingSendsFirst) { ring(false); }

TEST(MpiSendRecv, Bf16AndDestructorWaits) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  Tensor s = Tensor::from_vector({1.0 * r, 2.0, 3.0}, {3}, DType::kBF16);
  Tensor t = Tensor::zeros({3}, DType::kBF16);
  {
    auto rq = w.irecv(t, (r + n - 1) % n, 7);
    auto sq = w.isend(s, (r + 1) % n, 7);
    // Destroyed without wait(): the destructors wait.
  }
  EXPECT_EQ(t.item(0), (r + n - 1) % n);
  EXPECT_EQ(t.item(2), 3.0);
}

TEST(MpiSplit, ParityReversed) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  // Color by parity, key -r: the group's ranks in descending world order.
  std::unique_ptr<Communicator> sub = w.split(r % 2, -r, "parity");
  EXPECT_EQ(sub->name(), "parity");
  std::vector<int> members;
  for (int q = n - 1; q >= 0; --q)
    if (q % 2 == r % 2) members.push_back(q);
  ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(sub->world_rank(), r);
  int64_t sum = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(sub->world_rank_of(static_cast<int>(i)), members[i]);
    if (members[i] == r) {
      EXPECT_EQ(sub->rank(), static_cast<int>(i));
    }
    sum += members[i];
  }
  Tensor t = Tensor::from_vector({static_cast<double>(r)}, {1}, DType::kI64);
  sub->all_reduce(t);
  EXPECT_EQ(t.item(0), sum);
  sub->barrier();
}

TEST(MpiStats, KnownVolumes) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  w.reset_stats();
  EXPECT_EQ(w.stats().total(), 0);
  Tensor a = Tensor::zeros({100}, DType::kF32);  // 400 bytes
  w.all_reduce(a);
  EXPECT_EQ(w.stats().all_reduce_bytes, 2 * (n - 1) * 400 / n);
  EXPECT_EQ(w.stats().calls, 1);
  Tensor in = Tensor::zeros({2, 3}, DType::kF64);  // 48 bytes per rank
  Tensor out = Tensor::zeros({2 * n, 3}, DType::kF64);
  w.all_gather(in, out);
  EXPECT_EQ(w.stats().all_gather_bytes, (n - 1) * 48);
  w.reduce_scatter(out, in);
  EXPECT_EQ(w.stats().reduce_scatter_bytes, (n - 1) * 48);
  Tensor b = Tensor::zeros({10}, DType::kI32);
  w.broadcast(b, 0);
  EXPECT_EQ(w.stats().broadcast_bytes, r == 0 && n > 1 ? 40 : 0);
  Tensor s = Tensor::zeros({4}, DType::kI64), t = Tensor::zeros({4}, DType::kI64);
  auto rq = w.irecv(t, (r + n - 1) % n, 1);
  auto sq = w.isend(s, (r + 1) % n, 1);
  rq->wait();
  sq->wait();
  EXPECT_EQ(w.stats().send_bytes, 32);
  EXPECT_EQ(w.stats().calls, 6);
  EXPECT_EQ(w.stats().total(), 2 * (n - 1) * 400 / n + 2 * (n - 1) * 48 +
                                   (r == 0 && n > 1 ? 40 : 0) + 32);
  w.reset_stats();
  EXPECT_EQ(w.stats().calls, 0);
}

}  // namespace
}  // namespace rotor
