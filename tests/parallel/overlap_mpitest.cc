// GradientReducer started from the model's backward (parallel/data_parallel.h)
// under mpirun, on the tiny Llama's real gradients in dp and dp x cp layouts
// (with tp 2 too where the world allows):
//   - the overlapped reduction (buckets started from LlamaModel's
//     set_gradient_ready hook in the last of two micro-batches, then finish())
//     gives the one-shot reduce()'s gradients bit for bit, and both equal a
//     plain per-tensor all_reduce (bit for bit over 2 ranks, where a sum of two
//     does not depend on the order; within a few f32 ulps otherwise);
//   - it overlaps: when the embedding (the last gradient backward produces)
//     is reported, every other bucket's all_reduce has already been started,
//     seen by the reducer and by the communicator's call count;
//   - buckets start in index order whatever order ready() is called in, so
//     ranks reporting in different orders still match their collectives.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "parallel/context.h"
#include "parallel/data_parallel.h"
#include "parallel/process_grid.h"
#include "tests/common/testing.h"
#include "tests/parallel/mpi_env.h"

namespace rotor {
namespace {

using testing_mpi::world;

// Small buckets (2 KiB, 512 f32) so the model's gradients fill many, some
// holding several parameters (norms, small projections), the embedding and
// head one each.
constexpr int64_t kBucketBytes = 2048;

LlamaConfig config(bool tied) {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.initializer_range = 0.2;
  c.tie_word_embeddings = tied;
  return c;
}

// Micro-batch `m` of this rank: rows differ by dp rank and micro-batch, then
// the rank's cp shard.
Batch micro_batch(const ParallelContext& par, int m) {
  const int64_t rows = 2, t = 32;
  Batch b;
  b.input_ids = Tensor::empty({rows, t}, DType::kI32);
  b.targets = Tensor::empty({rows, t}, DType::kI32);
  b.positions = Tensor::empty({rows, t}, DType::kI32);
  for (int64_t i = 0; i < rows * t; ++i) {
    const uint64_t seed = 7919 * static_cast<uint64_t>(par.dp_rank() * 2 + m) + static_cast<uint64_t>(i);
    b.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(seed) % 64);
    b.targets.data<int32_t>()[i] = static_cast<int32_t>(mix64(seed + 100000) % 64);
    b.positions.data<int32_t>()[i] = static_cast<int32_t>(i % t);
  }
  return shard_for_context(b, par);
}

std::vector<Tensor> gradients(LlamaModel& model) {
  std::vector<Tensor> g;
  for (Parameter& p : model.parameters()) g.push_back(p.grad);
  return g;
}

void expect_same_bits(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.nbytes(), want.nbytes()) << what;
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), got.nbytes()), 0)
      << what << ": differs, max |diff| " << testing::max_abs_diff(got, want);
}

// What the overlapped run saw when the model reported the embedding.
struct AtEmbedding {
  int64_t launched = -1;  // reducer.launched()
  int64_t calls = -1;     // dp_cp calls since the last micro-batch began
};

// Two micro-batches; the hook (overlap) or nothing (one-shot) in the last.
LlamaModel run(const ParallelContext& par, bool tied, bool overlap, AtEmbedding* seen) {
  LlamaOptions o;
  o.parallel = par;
  absl::StatusOr<LlamaModel> made = LlamaModel::create(config(tied), o);
  ROTOR_CHECK(made.ok()) << made.status();
  LlamaModel model = std::move(*made);
  model.init_weights(5);
  model.zero_grad();
  GradientReducer reducer(gradients(model), par.dp_cp, kBucketBytes);
  model.forward_backward(micro_batch(par, 0), 1.0 / 256);
  const int64_t calls_before = par.dp_cp->stats().calls;
  const size_t embed = 0;  // model.embed_tokens.weight comes first
  if (overlap) {
    model.set_gradient_ready([&](size_t i) {
      if (i == embed && seen != nullptr) *seen = {reducer.launched(), par.dp_cp->stats().calls - calls_before};
      reducer.ready(i);
    });
  }
  model.forward_backward(micro_batch(par, 1), 1.0 / 256);
  model.set_gradient_ready(nullptr);
  if (overlap) {
    reducer.finish();
  } else {
    reducer.reduce();
  }
  return model;
}

// Reference: the same micro-batches, each gradient all_reduced on its own.
LlamaModel run_per_tensor(const ParallelContext& par, bool tied) {
  LlamaOptions o;
  o.parallel = par;
  absl::StatusOr<LlamaModel> made = LlamaModel::create(config(tied), o);
  ROTOR_CHECK(made.ok()) << made.status();
  LlamaModel model = std::move(*made);
  model.init_weights(5);
  model.zero_grad();
  model.forward_backward(micro_batch(par, 0), 1.0 / 256);
  model.forward_backward(micro_batch(par, 1), 1.0 / 256);
  for (Parameter& p : model.parameters()) par.dp_cp->all_reduce(p.grad);
  return model;
}

void check_layout(int tp, int cp, bool tied) {
  auto grid = ProcessGrid::create(world().split(0, world().rank(), "world"), tp, cp);
  ASSERT_TRUE(grid.ok()) << grid.status();
  const ParallelContext par = ParallelContext::of(**grid, /*sequence_parallel=*/true);
  const std::string where = "rank " + std::to_string(world().rank()) + ", tp " + std::to_string(tp) +
                            ", cp " + std::to_string(cp) + (tied ? ", tied" : ", untied");
  AtEmbedding seen;
  LlamaModel overlapped = run(par, tied, /*overlap=*/true, &seen);
  LlamaModel one_shot = run(par, tied, /*overlap=*/false, nullptr);

  LlamaModel plain = run_per_tensor(par, tied);
  const int reducers = par.dp_cp->size();
  for (size_t i = 0; i < overlapped.parameters().size(); ++i) {
    const Parameter& p = overlapped.parameters()[i];
    const Tensor& want = plain.parameters()[i].grad;
    testing::expect_finite_nonzero(want, p.name + ", " + where);
    expect_same_bits(p.grad, one_shot.parameters()[i].grad, "overlapped vs one-shot " + p.name + ", " + where);
    if (reducers <= 2) {
      expect_same_bits(p.grad, want, "overlapped vs per-tensor " + p.name + ", " + where);
    } else {
      // Over more ranks MPI may associate the sums differently by position in
      // the buffer: a few f32 ulps of the largest element.
      testing::expect_close(p.grad, want, 1e-6 * testing::max_abs(want), 0, p.name + ", " + where);
    }
  }

  // Overlap: the embedding is the last gradient and sits alone in the last
  // bucket; when it is reported, all the others are in flight, and they are
  // the only dp_cp operations of the micro-batch's backward.
  GradientReducer layout(gradients(overlapped), par.dp_cp, kBucketBytes);
  if (reducers == 1) {
    EXPECT_EQ(layout.buckets(), 0) << where;
    return;
  }
  EXPECT_GT(layout.buckets(), 4) << where;
  EXPECT_EQ(layout.bucket_of(0), layout.buckets() - 1) << where;
  EXPECT_EQ(seen.launched, layout.buckets() - 1) << where;
  EXPECT_EQ(seen.calls, layout.buckets() - 1) << where;
}

TEST(MpiGradientOverlap, OverlappedEqualsOneShotOnModelGradients) {
  const int n = world().size();
  for (int tp : {1, 2})
    for (int cp : {1, 2}) {
      if (n % (tp * cp) != 0 || (tp > 1 && n == tp * cp)) continue;  // tp 2 only with dp_cp > 1
      SCOPED_TRACE("tp " + std::to_string(tp) + " cp " + std::to_string(cp));
      check_layout(tp, cp, /*tied=*/false);
    }
  check_layout(1, 1, /*tied=*/true);
}

// Reverse parameter order: bucket indices never decrease as the parameter
// index falls, bucket 0 holds the last parameter.
TEST(MpiGradientOverlap, BucketsInReverseParameterOrder) {
  std::vector<Tensor> grads;
  for (int64_t i = 0; i < 20; ++i) grads.push_back(Tensor::zeros({1 + (i * 37) % 300}, DType::kF32));
  GradientReducer r(grads, &world(), /*bucket_bytes=*/1024);
  if (world().size() == 1) {
    EXPECT_EQ(r.buckets(), 0);
    return;
  }
  EXPECT_GT(r.buckets(), 3);
  EXPECT_EQ(r.bucket_of(grads.size() - 1), 0);
  EXPECT_EQ(r.bucket_of(0), r.buckets() - 1);
  for (size_t i = 1; i < grads.size(); ++i) EXPECT_GE(r.bucket_of(i - 1), r.bucket_of(i)) << i;
}

// Each rank reports its gradients in its own random order (a bucket completes
// at different moments on different ranks): the launches still pair up, and
// the sums equal reduce()'s. Known values: element k of gradient i on rank r
// is r + 1 + i + k, so the sum is n (n + 1) / 2 + n (i + k).
TEST(MpiGradientOverlap, AnyReadyOrderGivesTheSameSums) {
  const int n = world().size(), r = world().rank();
  auto make = [&]() {
    std::vector<Tensor> g;
    for (int64_t i = 0; i < 24; ++i) {
      std::vector<double> v(static_cast<size_t>(1 + (i * 53) % 200));
      for (size_t k = 0; k < v.size(); ++k) v[k] = r + 1 + static_cast<double>(i + static_cast<int64_t>(k));
      g.push_back(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, DType::kF32));
    }
    return g;
  };
  std::vector<Tensor> a = make(), b = make();
  GradientReducer overlapped(a, &world(), 512), one_shot(b, &world(), 512);
  for (int step = 0; step < 2; ++step) {  // twice: finish() resets the step
    std::vector<size_t> order(a.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(1234 + 17 * r + step));
    for (size_t i : order) overlapped.ready(i);
    EXPECT_EQ(overlapped.launched(), overlapped.buckets());
    overlapped.finish();
    EXPECT_EQ(overlapped.launched(), 0);
    one_shot.reduce();
    for (size_t i = 0; i < a.size(); ++i) {
      expect_same_bits(a[i], b[i], "gradient " + std::to_string(i));
      for (int64_t k = 0; k < a[i].numel(); ++k) {
        // After step 0 the inputs are the sums; step 1 multiplies them by n.
        const double once = n * (n + 1) / 2.0 + n * static_cast<double>(static_cast<int64_t>(i) + k);
        ASSERT_EQ(a[i].item(k), step == 0 ? once : once * n) << "gradient " << i << " element " << k;
      }
    }
  }
}

}  // namespace
}  // namespace rotor
