// Ulysses x ring attention (parallel/ulysses_attention.h) over the world as
// cp equals full causal attention on one rank, for every ulysses degree that
// divides the world: outputs, LSEs, entropies and the gradients of q, k and v
// of every rank's zigzag shard, with GQA (kv heads split over the group, and
// replicated when the group is larger than the kv heads), document segments,
// and batch 2. f64, as the ring test: only the merge order of the LSEs and
// the sums of replicated kv gradients differ, 1e-12 of the largest value;
// f32 at 2e-6.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "parallel/process_grid.h"
#include "parallel/ring_attention.h"
#include "parallel/ulysses_attention.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"
#include "tests/parallel/shard_stat.h"

namespace rotor {
namespace {

using testing_mpi::world;

void check_ulysses(DType dtype, int64_t hq, int64_t hkv, bool segments, double tol) {
  const int cp = world().size(), r = world().rank();
  const int64_t b = 2, t = 2 * cp * 12, hd = 8;
  Tensor q = testing::random_tensor({b, t, hq, hd}, dtype, 21);
  Tensor k = testing::random_tensor({b, t, hkv, hd}, dtype, 22);
  Tensor v = testing::random_tensor({b, t, hkv, hd}, dtype, 23);
  Tensor dout = testing::random_tensor({b, t, hq, hd}, dtype, 24);
  Tensor pos = Tensor::empty({b, t}, DType::kI32), seg = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) {
      pos.data<int32_t>()[i * t + j] = static_cast<int32_t>(50 * i + j);
      seg.data<int32_t>()[i * t + j] = static_cast<int32_t>(j / (i == 0 ? 19 : 31));
    }
  AttentionMask full_mask{pos, pos, segments ? seg : Tensor(), segments ? seg : Tensor(), true};
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  Tensor out = Tensor::empty({b, t, hq, hd}, dtype), lse = Tensor::empty({b, hq, t}, dtype);
  Tensor ent = Tensor::empty({b, hq, t}, dtype);
  attention_forward(q, k, v, full_mask, scale, out, lse, ent);
  Tensor dq = Tensor::zeros(q.shape(), dtype), dk = Tensor::zeros(k.shape(), dtype), dv = Tensor::zeros(v.shape(), dtype);
  attention_backward(q, k, v, full_mask, scale, out, lse, dout, dq, dk, dv);
  testing::expect_finite_nonzero(out, "reference out");
  testing::expect_finite_nonzero(dk, "reference dk");
  testing::expect_finite_nonzero(ent, "reference entropy");

  int tried = 0;
  for (int u = 1; u <= cp; u *= 2) {
    if (cp % u != 0 || hq % u != 0 || !(hkv % u == 0 || u % hkv == 0)) continue;
    ++tried;
    auto grid = ProcessGrid::create(world().split(0, r, "world"), 1, cp, u);
    ASSERT_TRUE(grid.ok()) << grid.status();
    Communicator& cpc = (*grid)->cp();
    const int cr = cpc.rank();
    const auto sh = [&](const Tensor& x) { return context_shard(x, cp, cr); };
    AttentionMask mask{sh(pos), sh(pos), segments ? sh(seg) : Tensor(), segments ? sh(seg) : Tensor(), true};
    const Tensor lq = sh(q), lk = sh(k), lv = sh(v), ldout = sh(dout);
    Tensor lout = Tensor::empty(lq.shape(), dtype), llse = Tensor::empty({b, hq, lq.dim(1)}, dtype);
    Tensor lent = Tensor::empty_like(llse);
    ulysses_attention_forward((*grid)->ulysses(), (*grid)->ring(), lq, lk, lv, mask, scale, lout, llse, lent);
    Tensor ldq = Tensor::empty(lq.shape(), dtype), ldk = Tensor::empty(lk.shape(), dtype),
           ldv = Tensor::empty(lv.shape(), dtype);
    ulysses_attention_backward((*grid)->ulysses(), (*grid)->ring(), lq, lk, lv, mask, scale, lout, llse, ldout, ldq,
                               ldk, ldv);
    const std::string where = "cp rank " + std::to_string(cr) + " of " + std::to_string(cp) + ", ulysses " +
                              std::to_string(u) + ", hq " + std::to_string(hq) + ", hkv " + std::to_string(hkv);
    testing::expect_close(lout, sh(out), tol * testing::max_abs(out), 0, "out, " + where);
    testing::expect_close(llse, testing_mpi::shard_stat(lse, cp, cr), tol * testing::max_abs(lse), 0, "lse, " + where);
    testing::expect_close(lent, testing_mpi::shard_stat(ent, cp, cr), tol * testing::max_abs(ent), 0, "entropy, " + where);
    testing::expect_close(ldq, sh(dq), tol * testing::max_abs(dq), 0, "dq, " + where);
    testing::expect_close(ldk, sh(dk), tol * testing::max_abs(dk), 0, "dk, " + where);
    testing::expect_close(ldv, sh(dv), tol * testing::max_abs(dv), 0, "dv, " + where);
  }
  EXPECT_GE(tried, 1);
}

// 8 query heads over 2 kv heads: ulysses 2 splits the kv heads, 4 and 8
// replicate them.
TEST(MpiUlyssesAttention, GqaMatchesFullAttentionF64) { check_ulysses(DType::kF64, 8, 2, false, 1e-12); }
TEST(MpiUlyssesAttention, DocumentSegmentsF64) { check_ulysses(DType::kF64, 8, 8, true, 1e-12); }
TEST(MpiUlyssesAttention, ReplicatedKvF32) { check_ulysses(DType::kF32, 8, 1, true, 2e-6); }

TEST(MpiUlyssesAttention, KvSlabs) {
  // Hkv divisible by U: consecutive slabs; U divisible by Hkv: each member the
  // kv head of its query heads.
  EXPECT_EQ(ulysses_kv_slab(8, 4, 2, 1).first, 2);
  EXPECT_EQ(ulysses_kv_slab(8, 4, 2, 1).count, 2);
  for (int j = 0; j < 8; ++j) {
    EXPECT_EQ(ulysses_kv_slab(8, 2, 8, j).first, j / 4) << j;
    EXPECT_EQ(ulysses_kv_slab(8, 2, 8, j).count, 1);
  }
  EXPECT_EQ(ulysses_kv_slab(32, 8, 4, 3).first, 6);
}

}  // namespace
}  // namespace rotor
