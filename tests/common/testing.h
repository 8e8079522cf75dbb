// Shared helpers for rotor's tests: random tensors, closeness checks that
// refuse a vacuous reference, and central finite differences in f64.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/tensor.h"

namespace rotor::testing {

// ROTOR_REQUIRE_GPU=1 in the environment: the GPU kit's runs
// (tests/gpu/README.md), where a GPU test that finds no GPU must fail rather
// than skip, so that a GPU the process cannot see (driver, container,
// CUDA_VISIBLE_DEVICES) does not pass as a clean run.
bool gpu_required();

// Uniform in [lo, hi) from a counter-based stream (see kernels/random.h).
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double lo = -1.0,
                     double hi = 1.0);

// Max |a - b| over elements (shapes must match).
double max_abs_diff(const Tensor& a, const Tensor& b);
// Max |a|.
double max_abs(const Tensor& t);

// Fails the test if `ref` has a non-finite element or is all zeros: a test
// against such a reference could pass vacuously.
void expect_finite_nonzero(const Tensor& ref, const std::string& what);

// Per element: |got - want| <= atol + rtol * |want|. Reports the worst element.
void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                  const std::string& what);

// Central finite differences of loss() with respect to every element of
// `input` (f64, cpu), compared with `analytic` (same shape):
//   fd_i = (loss(x + h e_i) - loss(x - h e_i)) / (2h)
// With f64 math and h = 1e-6 the truncation error is O(h^2 |f'''|) ~ 1e-12 and
// the rounding error ~ eps_f64 |loss| / h ~ 1e-10 |loss|, so
// |fd - analytic| <= atol + rtol |analytic| with atol = rtol = 1e-6 holds with a
// wide margin for smooth functions of O(1) inputs.
// `input` is restored afterwards. Also checks the analytic gradient is finite
// and non-zero.
void expect_gradient_matches(const Tensor& input, const Tensor& analytic,
                             const std::function<double()>& loss, const std::string& what,
                             double h = 1e-6, double atol = 1e-6, double rtol = 1e-6);

// Whole-file byte access, for tests that inspect or corrupt file layouts.
std::vector<uint8_t> read_file_bytes(const std::string& path);
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

// sum_i w_i * y_i in f64: turns a tensor output into a scalar loss with
// random weights, so every output element's gradient path is exercised.
double weighted_sum(const Tensor& y, const Tensor& w);

// The repository root (the source tree the tests were built from), for tests
// that read its recipes, scripts and corpora.
std::filesystem::path source_root();

}  // namespace rotor::testing

// First statement of a test that needs a GPU: skips with CUDA's reason when
// none is usable, or fails with it under ROTOR_REQUIRE_GPU=1.
#define ROTOR_SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                        \
    if (::rotor::cuda_device_count() == 0) {                                                  \
      if (::rotor::testing::gpu_required())                                                   \
        GTEST_FAIL() << "ROTOR_REQUIRE_GPU=1 but no GPU: " << ::rotor::cuda_unavailable_reason(); \
      GTEST_SKIP() << ::rotor::cuda_unavailable_reason();                                     \
    }                                                                                         \
  } while (0)
