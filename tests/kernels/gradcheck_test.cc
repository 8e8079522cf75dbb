// One table of backward-vs-finite-difference cases for the CPU reference ops
// (attention has its own file). Every case runs the shipped kernels in f64:
// loss = sum(W * forward(inputs)) with random W, the analytic gradient from
// the op's backward with dout = W, and central differences of the same loss.
// Tolerance (see tests/common/testing.h): atol = rtol = 1e-6, far above the
// ~1e-10 error of f64 central differences with h = 1e-6 on O(1) values.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

using testing::random_tensor;
constexpr DType kF64 = DType::kF64;

struct GradInput {
  std::string name;
  Tensor value;     // f64, perturbed by the finite differences
  Tensor analytic;  // filled by `backward`
};

struct GradCase {
  std::string name;
  std::vector<GradInput> inputs;
  std::function<double()> loss;     // forward, reduced with the weights
  std::function<void()> backward;   // fills every inputs[i].analytic
};

GradCase embedding_case() {
  GradCase c{"embedding", {}, {}, {}};
  Tensor ids = Tensor::from_vector({3, 1, 3, 0, 4, 1, 3}, {7}, DType::kI32);  // repeats
  Tensor table = random_tensor({5, 6}, kF64, 1);
  Tensor w = random_tensor({7, 6}, kF64, 2);
  c.inputs = {{"table", table, Tensor::zeros({5, 6}, kF64)}};
  c.loss = [=] {
    Tensor out = Tensor::empty({7, 6}, kF64);
    embedding_forward(ids, table, out);
    return testing::weighted_sum(out, w);
  };
  Tensor dtable = c.inputs[0].analytic;
  c.backward = [=] { embedding_backward(ids, w, dtable); };
  return c;
}

GradCase rmsnorm_case() {
  GradCase c{"rmsnorm", {}, {}, {}};
  Tensor x = random_tensor({5, 7}, kF64, 3);
  Tensor g = random_tensor({7}, kF64, 4, 0.5, 1.5);
  Tensor w = random_tensor({5, 7}, kF64, 5);
  c.inputs = {{"x", x, Tensor::zeros({5, 7}, kF64)}, {"weight", g, Tensor::zeros({7}, kF64)}};
  c.loss = [=] {
    Tensor y = Tensor::empty({5, 7}, kF64), r = Tensor::empty({5}, kF64);
    rmsnorm_forward(x, g, 1e-5, y, r);
    return testing::weighted_sum(y, w);
  };
  Tensor dx = c.inputs[0].analytic, dg = c.inputs[1].analytic;
  c.backward = [=] {
    Tensor y = Tensor::empty({5, 7}, kF64), r = Tensor::empty({5}, kF64);
    rmsnorm_forward(x, g, 1e-5, y, r);
    rmsnorm_backward(w, x, g, r, dx, dg);
  };
  return c;
}

GradCase matmul_case(bool ta, bool tb) {
  GradCase c{std::string("matmul_") + (ta ? "T" : "N") + (tb ? "T" : "N"), {}, {}, {}};
  const int64_t m = 3, k = 5, n = 4;
  Shape sa = ta ? Shape{k, m} : Shape{m, k};
  Shape sb = tb ? Shape{n, k} : Shape{k, n};
  Tensor a = random_tensor(sa, kF64, 6), b = random_tensor(sb, kF64, 7);
  Tensor w = random_tensor({m, n}, kF64, 8);
  const double alpha = 0.75;
  c.inputs = {{"a", a, Tensor::zeros(sa, kF64)}, {"b", b, Tensor::zeros(sb, kF64)}};
  c.loss = [=] {
    Tensor y = Tensor::empty({m, n}, kF64);
    matmul(a, b, y, ta, tb, alpha);
    return testing::weighted_sum(y, w);
  };
  Tensor da = c.inputs[0].analytic, db = c.inputs[1].analytic;
  // y = alpha op(a) op(b): d op(a) = alpha W op(b)^T, d op(b) = alpha op(a)^T W.
  c.backward = [=] {
    if (!ta) matmul(w, b, da, false, !tb, alpha);
    else matmul(b, w, da, tb, true, alpha);
    if (!tb) matmul(a, w, db, !ta, false, alpha);
    else matmul(w, a, db, true, ta, alpha);
  };
  return c;
}

GradCase rope_case(bool with_scale) {
  GradCase c{with_scale ? "rope_with_query_scale" : "rope", {}, {}, {}};
  const int64_t b = 2, t = 3, h = 2, d = 8;
  Tensor x = random_tensor({b, t, h, d}, kF64, 9);
  Tensor pos = Tensor::from_vector({0, 5, 4096, 7, 8191, 32767}, {b, t}, DType::kI32);
  Tensor inv_freq = Tensor::from_vector({1.0, 0.1, 0.01, 0.0003}, {d / 2}, DType::kF32);
  Tensor scale = with_scale ? random_tensor({b, t}, kF64, 10, 1.0, 1.3) : Tensor();
  Tensor w = random_tensor({b, t, h, d}, kF64, 11);
  const double af = 1.2;
  c.inputs = {{"x", x, Tensor::zeros({b, t, h, d}, kF64)}};
  c.loss = [=] {
    Tensor y = Tensor::empty({b, t, h, d}, kF64);
    rope_forward(x, pos, inv_freq, af, scale, y);
    return testing::weighted_sum(y, w);
  };
  Tensor dx = c.inputs[0].analytic;
  c.backward = [=] { rope_backward(w, pos, inv_freq, af, scale, dx); };
  return c;
}

GradCase swiglu_case() {
  GradCase c{"swiglu", {}, {}, {}};
  Tensor g = random_tensor({4, 5}, kF64, 12, -3, 3), u = random_tensor({4, 5}, kF64, 13);
  Tensor w = random_tensor({4, 5}, kF64, 14);
  c.inputs = {{"gate", g, Tensor::zeros({4, 5}, kF64)}, {"up", u, Tensor::zeros({4, 5}, kF64)}};
  c.loss = [=] {
    Tensor y = Tensor::empty({4, 5}, kF64);
    swiglu_forward(g, u, y);
    return testing::weighted_sum(y, w);
  };
  Tensor dg = c.inputs[0].analytic, du = c.inputs[1].analytic;
  c.backward = [=] { swiglu_backward(w, g, u, dg, du); };
  return c;
}

// Chunk sizes that do not divide N = 7 or V = 10, and an ignored target.
GradCase cross_entropy_case() {
  GradCase c{"cross_entropy_chunked", {}, {}, {}};
  const int64_t n = 7, v = 10, d = 6;
  Tensor h = random_tensor({n, d}, kF64, 15), w = random_tensor({v, d}, kF64, 16);
  Tensor targets = Tensor::from_vector({3, 9, 0, -100, 5, 5, 1}, {n}, DType::kI32);
  Tensor dl = random_tensor({n}, kF64, 17, 0.1, 1.0);
  const CrossEntropyChunks chunks{3, 4};
  c.inputs = {{"h", h, Tensor::zeros({n, d}, kF64)}, {"w", w, Tensor::zeros({v, d}, kF64)}};
  c.loss = [=] {
    Tensor loss = Tensor::empty({n}, kF64), lse = Tensor::empty({n}, kF64);
    cross_entropy_forward(h, w, targets, loss, lse, chunks);
    return testing::weighted_sum(loss, dl);
  };
  Tensor dh = c.inputs[0].analytic, dw = c.inputs[1].analytic;
  c.backward = [=] {
    Tensor loss = Tensor::empty({n}, kF64), lse = Tensor::empty({n}, kF64);
    cross_entropy_forward(h, w, targets, loss, lse, chunks);
    cross_entropy_backward(h, w, targets, lse, dl, dh, dw, chunks);
  };
  return c;
}

// The training path: loss and gradients in one pass, tiles of 3 rows x V.
GradCase cross_entropy_fused_case() {
  GradCase c = cross_entropy_case();
  c.name = "cross_entropy_fused";
  const int64_t n = 7, v = 10;
  Tensor h = c.inputs[0].value, w = c.inputs[1].value;
  Tensor targets = Tensor::from_vector({3, 9, 0, -100, 5, 5, 1}, {n}, DType::kI32);
  Tensor dl = random_tensor({n}, kF64, 17, 0.1, 1.0);
  Tensor dh = c.inputs[0].analytic, dw = c.inputs[1].analytic;
  c.backward = [=] {
    Tensor loss = Tensor::empty({n}, kF64), lse = Tensor::empty({n}, kF64);
    cross_entropy_forward_backward(h, w, targets, dl, loss, lse, dh, dw,
                                   CrossEntropyChunks{.fused_tile_elements = 3 * v});
  };
  return c;
}

std::vector<std::function<GradCase()>> grad_cases() {
  return {embedding_case,
          rmsnorm_case,
          [] { return matmul_case(false, false); },
          [] { return matmul_case(false, true); },
          [] { return matmul_case(true, false); },
          [] { return matmul_case(true, true); },
          [] { return rope_case(false); },
          [] { return rope_case(true); },
          swiglu_case,
          cross_entropy_case,
          cross_entropy_fused_case};
}

class KernelGradcheck : public ::testing::TestWithParam<int> {};

TEST_P(KernelGradcheck, BackwardMatchesFiniteDifferences) {
  GradCase c = grad_cases()[GetParam()]();
  SCOPED_TRACE(c.name);
  c.backward();
  for (GradInput& in : c.inputs) {
    testing::expect_gradient_matches(in.value, in.analytic, c.loss, c.name + " d" + in.name);
  }
}

INSTANTIATE_TEST_SUITE_P(AllOps, KernelGradcheck,
                         ::testing::Range(0, static_cast<int>(grad_cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return grad_cases()[info.param]().name;
                         });

}  // namespace
}  // namespace rotor
