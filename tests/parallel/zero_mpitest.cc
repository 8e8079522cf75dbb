// ZeRO-1 (parallel/zero.h) with dp = the world size against AdamWOptimizer on
// one rank (every rank runs the reference on its own copy): random f32
// parameters and gradients (same seeds on every rank, so the "already reduced"
// gradients are identical everywhere, as after GradientReducer), several steps
// with clipping active and inactive and weight decay on.
//
// Tolerance: 1e-6 relative to each parameter's largest element. Every element
// goes through the same adamw_step arithmetic (same gradient, same global norm
// summed in the same order, same step count), only in a different call (a
// piece of a parameter instead of the whole), so the results are in fact equal
// bit for bit; 1e-6 is f32 rounding (6e-8) with room for a future kernel that
// vectorises pieces differently (e.g. FMA contraction in a remainder loop).
//
// Parameter sizes are odd so the dp ranges cut through parameters; a second
// list has fewer elements than ranks at np 8 (ranks that own nothing).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "parallel/zero.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"
#include "trainer/optimizer.h"

namespace rotor {
namespace {

using testing_mpi::world;

std::vector<Parameter> make_params(const std::vector<Shape>& shapes, uint64_t seed) {
  std::vector<Parameter> ps;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Parameter p;
    p.name = "p" + std::to_string(i);
    p.value = testing::random_tensor(shapes[i], DType::kF32, seed + i);
    p.grad = Tensor::zeros(shapes[i], DType::kF32);
    ps.push_back(std::move(p));
  }
  return ps;
}

std::vector<Parameter> copy_params(const std::vector<Parameter>& ps) {
  std::vector<Parameter> out;
  for (const Parameter& p : ps) {
    Parameter c = p;
    c.value = p.value.clone();
    c.grad = p.grad.clone();
    out.push_back(c);
  }
  return out;
}

void fill_grads(std::vector<Parameter>& a, std::vector<Parameter>& b, uint64_t seed, double scale) {
  for (size_t i = 0; i < a.size(); ++i) {
    fill_uniform(a[i].grad, seed * 1000 + i, -scale, scale);
    b[i].grad.copy_from(a[i].grad);
  }
}

const std::vector<Shape> kOddShapes = {{37, 5}, {13}, {3, 7, 2}, {101}, {11, 9}, {1, 3}, {7}};

double rel_tol(const Tensor& t) { return 1e-6 * testing::max_abs(t); }

void expect_params_equal(const std::vector<Parameter>& got, const std::vector<Parameter>& want,
                         const std::string& where) {
  for (size_t i = 0; i < got.size(); ++i) {
    testing::expect_close(got[i].value, want[i].value, rel_tol(want[i].value), 0,
                          want[i].name + ", " + where);
  }
}

void expect_moments_equal(const ShardedAdamW& zero, const AdamWOptimizer& ref, size_t n,
                          const std::string& where) {
  const FullMoments full = zero.gather_moments();  // collective
  ASSERT_EQ(full.first.size(), n);
  for (size_t i = 0; i < n; ++i) {
    testing::expect_finite_nonzero(ref.second_moment(i), "v" + std::to_string(i));
    testing::expect_close(full.first[i], ref.first_moment(i), rel_tol(ref.first_moment(i)), 0,
                          "m" + std::to_string(i) + ", " + where);
    testing::expect_close(full.second[i], ref.second_moment(i), rel_tol(ref.second_moment(i)), 0,
                          "v" + std::to_string(i) + ", " + where);
  }
}

void run_against_reference(const std::vector<Shape>& shapes,
                           std::unique_ptr<Communicator> dp = nullptr) {
  if (dp == nullptr) dp = world().split(0, world().rank(), "dp");
  const int n = dp->size();
  AdamWHyper hyper;
  hyper.lr = 1e-2;
  hyper.weight_decay = 0.1;
  std::vector<Parameter> mine = make_params(shapes, 7);
  std::vector<Parameter> ref = copy_params(mine);
  ShardedAdamW zero(mine, hyper, dp.get());
  AdamWOptimizer want(ref, hyper);

  int64_t p_elems = 0;
  for (const Parameter& p : mine) p_elems += p.value.numel();
  ASSERT_EQ(zero.total_elements(), p_elems);
  ASSERT_EQ(zero.shard_elements(), (p_elems + n - 1) / n);

  // Steps 1..5; clip 1.0 binds when the scale is 1 (norm ~ sqrt(P/3)), not at 1e-3.
  const double scales[] = {1.0, 1e-3, 1.0, 0.5, 1e-3};
  double max_rel = 0;
  for (int s = 0; s < 5; ++s) {
    const std::string where = "step " + std::to_string(s + 1) + ", rank " +
                              std::to_string(world().rank()) + " of " + std::to_string(n);
    fill_grads(mine, ref, 100 + s, scales[s]);
    const double lr = hyper.lr * (1.0 - 0.1 * s);  // a changing schedule value
    dp->reset_stats();
    const ZeroStepInfo got = zero.step(mine, lr, /*grad_clip=*/1.0);
    const OptimizerStepInfo exp = want.step(ref, lr, /*grad_clip=*/1.0);
    EXPECT_EQ(got.grad_norm, exp.grad_norm) << where;
    EXPECT_EQ(got.clip_scale, exp.clip_scale) << where;
    if (scales[s] == 1.0) {
      EXPECT_LT(exp.clip_scale, 1.0) << "clipping should bind, " << where;
    }
    if (scales[s] == 1e-3) {
      EXPECT_EQ(exp.clip_scale, 1.0) << where;
    }
    EXPECT_EQ(zero.steps_taken(), want.steps_taken());
    expect_params_equal(mine, ref, where);
    for (size_t i = 0; i < mine.size(); ++i) {
      max_rel = std::max(max_rel, testing::max_abs_diff(mine[i].value, ref[i].value) /
                                      testing::max_abs(ref[i].value));
    }

    // Traffic: one all_gather of the padded flat vector, (n-1)/n of its bytes,
    // i.e. (n-1)/n of the parameter bytes up to the padding (< n elements).
    const CommStats& st = dp->stats();
    EXPECT_EQ(st.all_gather_bytes, static_cast<int64_t>(n - 1) * zero.shard_elements() * 4) << where;
    const double analytic = static_cast<double>(n - 1) / n * static_cast<double>(p_elems) * 4;
    EXPECT_LE(std::abs(static_cast<double>(st.all_gather_bytes) - analytic), 4.0 * n) << where;
    EXPECT_EQ(st.total(), st.all_gather_bytes) << "nothing else is sent, " << where;
  }
  if (world().rank() == 0) {
    std::printf("[zero] dp %d, P %lld: max relative parameter difference vs AdamWOptimizer %.3g\n",
                n, static_cast<long long>(p_elems), max_rel);
  }
  expect_moments_equal(zero, want, shapes.size(), "after 5 steps");

  // Checkpoint round trip: a fresh sharded optimizer loads the full moments
  // (layout-independent) and continues exactly as the reference.
  const FullMoments full = zero.gather_moments();
  std::vector<Parameter> resumed = copy_params(mine);
  ShardedAdamW again(resumed, hyper, dp.get());
  again.load_moments(full.first, full.second);
  again.restore_steps_taken(zero.steps_taken());
  fill_grads(resumed, ref, 999, 1.0);
  again.step(resumed, hyper.lr, 1.0);
  want.step(ref, hyper.lr, 1.0);
  expect_params_equal(resumed, ref, "after loading the moments");
  expect_moments_equal(again, want, shapes.size(), "after loading the moments");
}

TEST(MpiZero1, MatchesAdamWOnOneRank) { run_against_reference(kOddShapes); }

TEST(MpiZero1, FewerElementsThanRanks) { run_against_reference({{3}, {1, 2}}); }

// dp a proper subgroup: the dp ranks of a cp = 2 grid (ranks of one cp rank).
TEST(MpiZero1, DataParallelSubgroupOfAGrid) {
  if (world().size() % 2 != 0) GTEST_SKIP() << "needs an even world";
  const int cp_rank = world().rank() % 2;  // ProcessGrid: w = dp_rank * cp + cp_rank (tp 1)
  auto dp = world().split(cp_rank, world().rank(), "dp");
  ASSERT_EQ(dp->size(), world().size() / 2);
  run_against_reference(kOddShapes, std::move(dp));
}

// A norm given by the caller (the trainer's, summed over tp) is the one used.
TEST(MpiZero1, GivenGradientNorm) {
  auto dp = world().split(0, world().rank(), "dp");
  AdamWHyper hyper;
  std::vector<Parameter> a = make_params(kOddShapes, 5), b = copy_params(a);
  fill_grads(a, b, 42, 1.0);
  ShardedAdamW za(a, hyper, dp.get()), zb(b, hyper, dp.get());
  const ZeroStepInfo computed = za.step(a, 1e-3, 1.0);
  const ZeroStepInfo given = zb.step(b, 1e-3, 1.0, computed.grad_norm);
  EXPECT_EQ(given.clip_scale, computed.clip_scale);
  expect_params_equal(b, a, "same norm given");
  const ZeroStepInfo doubled = zb.step(b, 1e-3, 1.0, 2 * computed.grad_norm);
  EXPECT_EQ(doubled.grad_norm, 2 * computed.grad_norm);
  EXPECT_DOUBLE_EQ(doubled.clip_scale, 1.0 / (2 * computed.grad_norm));
}

// Zero gradients: a 2-D parameter only decays (p * (1 - lr wd)); a 1-D one is unchanged.
TEST(MpiZero1, NoWeightDecayOnOneDimensionalParameters) {
  auto dp = world().split(0, world().rank(), "dp");
  AdamWHyper hyper;
  hyper.lr = 0.1;
  hyper.weight_decay = 0.5;
  std::vector<Parameter> ps = make_params({{5, 3}, {17}, {4, 4}}, 11);
  std::vector<Parameter> before = copy_params(ps);
  ShardedAdamW zero(ps, hyper, dp.get());
  zero.step(ps, hyper.lr, 0.0);
  const float decay = static_cast<float>(1.0 - hyper.lr * hyper.weight_decay);
  for (size_t i : {0, 2}) {
    for (int64_t j = 0; j < ps[i].value.numel(); ++j) {
      EXPECT_FLOAT_EQ(ps[i].value.data<float>()[j], before[i].value.data<float>()[j] * decay)
          << ps[i].name << "[" << j << "]";
    }
  }
  EXPECT_EQ(testing::max_abs_diff(ps[1].value, before[1].value), 0) << "1-D parameter decayed";
}

}  // namespace
}  // namespace rotor
