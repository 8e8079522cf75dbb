// Ring attention over the world as the cp ring equals full causal attention on
// one rank: outputs, LSEs and the gradients of q, k and v of every shard, with
// GQA, and with document segments whose boundaries fall inside and across
// chunks. f64 (the shipped kernels run in double) so that the only difference
// is the order of the LSE merges: tolerance 1e-12 of the largest value; f32 at
// 2e-6 (a few ulps of the merge arithmetic over up to 8 blocks).
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "parallel/ring_attention.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"

namespace rotor {
namespace {

using testing_mpi::world;

// [B, H, T] -> this rank's [B, H, Tl] (the LSE layout has T last).
Tensor shard_lse(const Tensor& full, int cp, int rank) {
  const int64_t b = full.dim(0), h = full.dim(1), t = full.dim(2);
  const std::vector<int64_t> idx = context_shard_indices(t, cp, rank);
  const int64_t tl = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty({b, h, tl}, full.dtype());
  for (int64_t i = 0; i < b * h; ++i)
    for (int64_t j = 0; j < tl; ++j) {
      if (full.dtype() == DType::kF64) out.data<double>()[i * tl + j] = full.data<double>()[i * t + idx[j]];
      else out.data<float>()[i * tl + j] = full.data<float>()[i * t + idx[j]];
    }
  return out;
}

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
  testing::expect_close(llse, shard_lse(lse, cp, r), tol * testing::max_abs(lse), 0, "lse, " + where);
  testing::expect_close(ldq, sh(dq), tol * testing::max_abs(dq), 0, "dq, " + where);
  testing::expect_close(ldk, sh(dk), tol * testing::max_abs(dk), 0, "dk, " + where);
  testing::expect_close(ldv, sh(dv), tol * testing::max_abs(dv), 0, "dv, " + where);
}

TEST(MpiRingAttention, MatchesFullAttentionF64) { check_ring(DType::kF64, false, 1e-12); }
TEST(MpiRingAttention, DocumentSegmentsF64) { check_ring(DType::kF64, true, 1e-12); }
TEST(MpiRingAttention, MatchesFullAttentionF32) { check_ring(DType::kF32, true, 2e-6); }

TEST(MpiRingAttention, ZigzagShardIndices) {
  // cp 2, T 8: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  EXPECT_EQ(context_shard_indices(8, 2, 0), (std::vector<int64_t>{0, 1, 6, 7}));
  EXPECT_EQ(context_shard_indices(8, 2, 1), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(context_shard_indices(4, 1, 0), (std::vector<int64_t>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace rotor
