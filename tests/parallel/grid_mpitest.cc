// ProcessGrid over MPI: every (tp, cp) layout the world size allows, checked
// against the rank formula w = (dp_rank * cp + cp_rank) * tp + tp_rank.
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/tensor.h"
#include "parallel/process_grid.h"
#include "tests/parallel/mpi_env.h"

namespace rotor {
namespace {

using testing_mpi::world;

// Each group's members (world ranks, in group-rank order), its name, and this
// rank's expected rank in it.
void check_group(Communicator& c, const std::string& name, const std::vector<int>& members,
                 int expected_rank) {
  SCOPED_TRACE("group " + name);
  EXPECT_EQ(c.name(), name);
  ASSERT_EQ(c.size(), static_cast<int>(members.size()));
  EXPECT_EQ(c.rank(), expected_rank);
  EXPECT_EQ(c.world_rank(), world().rank());
  int64_t sum = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(c.world_rank_of(static_cast<int>(i)), members[i]) << "group rank " << i;
    sum += members[i];
  }
  // An all_reduce over the axis sums exactly these world ranks.
  Tensor t = Tensor::from_vector({static_cast<double>(world().rank())}, {1}, DType::kI64);
  c.all_reduce(t);
  EXPECT_EQ(t.item(0), sum);
  // And an all_gather lists them in group-rank order.
  Tensor in = Tensor::from_vector({static_cast<double>(world().rank())}, {1}, DType::kI32);
  Tensor out = Tensor::zeros({c.size()}, DType::kI32);
  c.all_gather(in, out);
  for (size_t i = 0; i < members.size(); ++i) EXPECT_EQ(out.item(static_cast<int64_t>(i)), members[i]);
}

TEST(MpiProcessGrid, EveryLayout) {
  const int n = world().size(), w = world().rank();
  const std::pair<int, int> layouts[] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}, {1, 4}, {4, 1},
                                         {2, 4}, {4, 2}, {8, 1}, {1, 8}};
  int tried = 0;
  for (auto [tp, cp] : layouts) {
    if (n % (tp * cp) != 0) continue;
    ++tried;
    SCOPED_TRACE("tp " + std::to_string(tp) + " cp " + std::to_string(cp));
    // A fresh copy of the world for the grid to own.
    auto grid_or = ProcessGrid::create(world().split(0, w, "world"), tp, cp);
    ASSERT_TRUE(grid_or.ok()) << grid_or.status();
    ProcessGrid& g = **grid_or;
    const int dp = n / (tp * cp);
    EXPECT_EQ(g.shape().tp, tp);
    EXPECT_EQ(g.shape().cp, cp);
    EXPECT_EQ(g.shape().dp, dp);
    const int tp_r = w % tp, cp_r = (w / tp) % cp, dp_r = w / (tp * cp);
    EXPECT_EQ(g.tp_rank(), tp_r);
    EXPECT_EQ(g.cp_rank(), cp_r);
    EXPECT_EQ(g.dp_rank(), dp_r);
    EXPECT_EQ(w, (g.dp_rank() * cp + g.cp_rank()) * tp + g.tp_rank());
    EXPECT_EQ(g.world().rank(), w);
    EXPECT_EQ(g.describe(), "rank " + std::to_string(w) + " (dp " + std::to_string(dp_r) +
                                ", cp " + std::to_string(cp_r) + ", tp " + std::to_string(tp_r) +
                                ")");
    std::vector<int> tp_m, cp_m, dp_m, dpcp_m;
    for (int i = 0; i < tp; ++i) tp_m.push_back((dp_r * cp + cp_r) * tp + i);
    for (int i = 0; i < cp; ++i) cp_m.push_back((dp_r * cp + i) * tp + tp_r);
    for (int i = 0; i < dp; ++i) dp_m.push_back((i * cp + cp_r) * tp + tp_r);
    for (int i = 0; i < dp * cp; ++i) dpcp_m.push_back(i * tp + tp_r);
    check_group(g.tp(), "tp", tp_m, tp_r);
    check_group(g.cp(), "cp", cp_m, cp_r);
    check_group(g.dp(), "dp", dp_m, dp_r);
    check_group(g.dp_cp(), "dp_cp", dpcp_m, dp_r * cp + cp_r);
  }
  EXPECT_GE(tried, 1);
}

// The Ulysses x ring sub-axes of cp: cp rank = ring rank * U + ulysses rank.
TEST(MpiProcessGrid, UlyssesAndRingInsideCp) {
  const int n = world().size(), w = world().rank();
  const int layouts[][3] = {{1, 2, 2}, {1, 4, 2}, {1, 4, 4}, {2, 2, 2}, {1, 8, 2}, {1, 8, 4}, {2, 4, 2}};
  int tried = 0;
  for (auto [tp, cp, u] : layouts) {
    if (n % (tp * cp) != 0) continue;
    ++tried;
    SCOPED_TRACE("tp " + std::to_string(tp) + " cp " + std::to_string(cp) + " ulysses " + std::to_string(u));
    auto grid_or = ProcessGrid::create(world().split(0, w, "world"), tp, cp, u);
    ASSERT_TRUE(grid_or.ok()) << grid_or.status();
    ProcessGrid& g = **grid_or;
    EXPECT_EQ(g.shape().ulysses, u);
    const int tp_r = w % tp, cp_r = (w / tp) % cp, dp_r = w / (tp * cp);
    const int ring_r = cp_r / u, ul_r = cp_r % u;
    std::vector<int> ul_m, ring_m;
    for (int i = 0; i < u; ++i) ul_m.push_back((dp_r * cp + ring_r * u + i) * tp + tp_r);
    for (int i = 0; i < cp / u; ++i) ring_m.push_back((dp_r * cp + i * u + ul_r) * tp + tp_r);
    check_group(g.ulysses(), "ulysses", ul_m, ul_r);
    check_group(g.ring(), "ring", ring_m, ring_r);
  }
  // Without Ulysses the ring is cp and the ulysses group one rank.
  auto plain = ProcessGrid::create(world().split(0, w, "world"), 1, n);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(&(*plain)->ring(), &(*plain)->cp());
  EXPECT_EQ((*plain)->ulysses().size(), 1);
  auto bad = ProcessGrid::create(world().split(0, w, "world"), 1, n, n + 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("must be >= 1 and divide parallel.cp"), std::string::npos) << bad.status();
  if (n >= 2) {
    EXPECT_GE(tried, 1);
  }
}

TEST(MpiProcessGrid, Example8) {
  // The header's example: world 8, tp 2, cp 2: rank 5 = (dp 1, cp 0, tp 1).
  if (world().size() != 8) GTEST_SKIP() << "needs 8 ranks";
  auto g = ProcessGrid::create(world().split(0, world().rank(), "world"), 2, 2);
  ASSERT_TRUE(g.ok()) << g.status();
  if (world().rank() == 5) {
    EXPECT_EQ((*g)->describe(), "rank 5 (dp 1, cp 0, tp 1)");
    EXPECT_EQ((*g)->tp().world_rank_of(0), 4);
    EXPECT_EQ((*g)->cp().world_rank_of(1), 7);
    EXPECT_EQ((*g)->dp().world_rank_of(0), 1);
    EXPECT_EQ((*g)->dp_cp().world_rank_of(3), 7);
  }
}

TEST(MpiProcessGrid, InvalidLayouts) {
  const int n = world().size(), w = world().rank();
  // tp * cp = n + 1 never divides n.
  auto bad = ProcessGrid::create(world().split(0, w, "world"), n + 1, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "world size " + std::to_string(n) +
                                        " is not a multiple of tp * cp = " + std::to_string(n + 1) +
                                        " (tp " + std::to_string(n + 1) + ", cp 1)");
  auto zero = ProcessGrid::create(world().split(0, w, "world"), 1, 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("cp 0"), std::string::npos) << zero.status();
  if (n == 8) {
    // A world of 6 (ranks 0..5; ranks 6 and 7 get a world of 2), tp 2, cp 2.
    auto six = world().split(w < 6 ? 0 : 1, w, "world");
    auto g = ProcessGrid::create(std::move(six), 2, 2);
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().message(), w < 6 ? "world size 6 is not a multiple of tp * cp = 4 (tp 2, cp 2)"
                                          : "world size 2 is not a multiple of tp * cp = 4 (tp 2, cp 2)");
  }
}

}  // namespace
}  // namespace rotor
