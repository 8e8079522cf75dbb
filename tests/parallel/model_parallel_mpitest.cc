// The tiny Llama (GQA, YaRN, entropy-aware logit scalar with global positions)
// on every (tp, cp, dp) layout of the world, with and without sequence
// parallelism: the loss and every parameter gradient (each rank's shard of it)
// after one step equal the single-rank run on the whole batch. Run in f64 so
// that the comparison is exact up to summation order: 1e-10 of each
// gradient's largest element. With document masking, and with every target of
// one data-parallel rank masked (that rank must add zero, not NaN).
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "parallel/context.h"
#include "parallel/data_parallel.h"
#include "parallel/process_grid.h"
#include "parallel/ring_attention.h"
#include "parallel/tensor_parallel.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"

namespace rotor {
namespace {

using testing_mpi::world;

LlamaConfig config() {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.initializer_range = 0.2;
  return c;
}

LlamaOptions options(const ParallelContext& par) {
  LlamaOptions o;
  o.dtype = DType::kF64;
  o.rope.method = RopeMethod::kYarn;
  o.rope.factor = 4;
  o.rope.original_max_position = 8;
  o.logit_scale.kind = LogitScaleKind::kLogPosition;  // entropy-aware ABF
  o.logit_scale.base_length = 4;
  o.logit_scale.skip_layers = {0};
  o.parallel = par;
  return o;
}

// rows x t tokens; documents of 11 tokens (row parity shifts them) when masking.
Batch make_batch(int64_t rows, int64_t t, bool masking, int64_t masked_from_row) {
  Batch b;
  b.input_ids = Tensor::empty({rows, t}, DType::kI32);
  b.targets = Tensor::empty({rows, t}, DType::kI32);
  b.positions = Tensor::empty({rows, t}, DType::kI32);
  if (masking) b.segments = Tensor::empty({rows, t}, DType::kI32);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < t; ++j) {
      const int64_t at = i * t + j;
      b.input_ids.data<int32_t>()[at] = static_cast<int32_t>(mix64(1000 + at) % 64);
      const int64_t doc = masking ? (j + 3 * i) / 11 : 0;
      const int64_t start = masking ? std::max<int64_t>(0, doc * 11 - 3 * i) : 0;
      b.positions.data<int32_t>()[at] = static_cast<int32_t>(j - start);
      if (masking) b.segments.data<int32_t>()[at] = static_cast<int32_t>(doc);
    }
    for (int64_t j = 0; j < t; ++j) {
      const int64_t at = i * t + j;
      const bool last = j + 1 == t || (masking && b.segments.data<int32_t>()[at + 1] != b.segments.data<int32_t>()[at]);
      b.targets.data<int32_t>()[at] =
          last || i >= masked_from_row ? -1 : b.input_ids.data<int32_t>()[at + 1];
    }
  }
  return b;
}

Batch rows_of(const Batch& b, int64_t first, int64_t count) {
  Batch s;
  s.input_ids = b.input_ids.narrow(first, count).clone();
  s.targets = b.targets.narrow(first, count).clone();
  s.positions = b.positions.narrow(first, count).clone();
  if (b.segments.defined()) s.segments = b.segments.narrow(first, count).clone();
  return s;
}

void check_layout(int tp, int cp, bool sp, bool masking, bool mask_last_dp_rank) {
  const int n = world().size();
  auto grid = ProcessGrid::create(world().split(0, world().rank(), "world"), tp, cp);
  ASSERT_TRUE(grid.ok()) << grid.status();
  const ParallelContext par = ParallelContext::of(**grid, sp);
  const int dp = n / (tp * cp);
  const int64_t rows_per_dp = 2, rows = rows_per_dp * dp, t = 64;
  const int64_t masked_from = mask_last_dp_rank && dp > 1 ? (dp - 1) * rows_per_dp : rows;
  const Batch full = make_batch(rows, t, masking, masked_from);

  // Reference: one process, whole batch.
  auto ref = LlamaModel::create(config(), options(ParallelContext{}));
  ASSERT_TRUE(ref.ok()) << ref.status();
  ref->init_weights(3);
  ref->zero_grad();
  LossSum want = ref->forward(full);
  ASSERT_GT(want.count, 0);
  ref->zero_grad();
  ref->forward_backward(full, 1.0 / static_cast<double>(want.count));
  ASSERT_TRUE(std::isfinite(want.sum) && want.sum > 0);

  // This rank: its dp rows, its cp shard of them.
  auto model = LlamaModel::create(config(), options(par));
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(3);
  model->zero_grad();
  const Batch mine = shard_for_context(rows_of(full, par.dp_rank() * rows_per_dp, rows_per_dp), par);
  LossSum got = model->forward_backward(mine, 1.0 / static_cast<double>(want.count));
  EXPECT_TRUE(std::isfinite(got.sum)) << "a rank with no counted token must add 0, not NaN";
  Tensor sums = Tensor::from_vector({got.sum, static_cast<double>(got.count)}, {2}, DType::kF64);
  par.dp_cp->all_reduce(sums);
  std::vector<Tensor> grads;
  for (Parameter& p : model->parameters()) grads.push_back(p.grad);
  GradientReducer(grads, par.dp_cp, /*bucket_bytes=*/4096).reduce();  // several buckets

  const std::string where = "rank " + std::to_string(world().rank()) + ", tp " + std::to_string(tp) +
                            (sp ? " (sp)" : "") + ", cp " + std::to_string(cp) + ", dp " + std::to_string(dp);
  EXPECT_NEAR(sums.item(0), want.sum, 1e-10 * want.sum) << where;
  EXPECT_EQ(static_cast<int64_t>(sums.item(1)), want.count) << where;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Parameter& p = ref->parameters()[i];
    const Parameter& mine_p = model->parameters()[i];
    ASSERT_EQ(mine_p.name, p.name);
    EXPECT_EQ(mine_p.global_shape, p.value.shape()) << p.name;
    testing::expect_finite_nonzero(p.grad, p.name);
    // Weights: this rank's shard of the one-rank init; gradients: the shard of the one-rank gradient.
    const Tensor want_w = tp_shard_of(p.value, mine_p.shard_dim, tp, par.tp_rank(), mine_p.tp_replicas);
    testing::expect_close(mine_p.value, want_w, 0, 0, p.name + " init, " + where);
    const Tensor want_g = tp_shard_of(p.grad, mine_p.shard_dim, tp, par.tp_rank(), mine_p.tp_replicas);
    testing::expect_close(grads[i], want_g, 1e-10 * testing::max_abs(p.grad), 0, p.name + ", " + where);
    // Checkpoints gather the whole tensor back.
    testing::expect_close(tp_gather_whole(par.tp, mine_p.value, mine_p.shard_dim, mine_p.tp_replicas), p.value, 0, 0,
                          p.name + " gathered, " + where);
  }
}

// Every (tp, cp) whose product divides the world (dp = world / (tp cp)). The
// tiny model has 4 query and 2 kv heads: tp 4 replicates each kv head on 2 ranks.
template <typename F>
void for_each_layout(F f) {
  for (int tp : {1, 2, 4})
    for (int cp : {1, 2, 4, 8}) {
      if (world().size() % (tp * cp) != 0) continue;
      SCOPED_TRACE("tp " + std::to_string(tp) + " cp " + std::to_string(cp));
      f(tp, cp);
    }
}

TEST(MpiModelParallel, EveryLayoutMatchesOneRank) {
  for_each_layout([](int tp, int cp) { check_layout(tp, cp, /*sp=*/true, false, false); });
}

TEST(MpiModelParallel, TensorParallelWithoutSequenceParallel) {
  for_each_layout([](int tp, int cp) {
    if (tp > 1) check_layout(tp, cp, /*sp=*/false, false, false);
  });
}

TEST(MpiModelParallel, DocumentMasking) {
  for_each_layout([](int tp, int cp) { check_layout(tp, cp, true, true, false); });
}

TEST(MpiModelParallel, RankWithNoCountedTokenAddsZero) {
  for_each_layout([](int tp, int cp) { check_layout(tp, cp, true, true, true); });
}

}  // namespace
}  // namespace rotor
