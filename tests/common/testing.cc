#include "tests/common/testing.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "kernels/random.h"

namespace rotor::testing {

bool gpu_required() {
  const char* v = std::getenv("ROTOR_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double lo, double hi) {
  Tensor t = Tensor::empty(shape, dtype);
  if (dtype == DType::kI32 || dtype == DType::kI64) {
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double v = std::floor(lo + (hi - lo) * uniform01(seed, i));
      if (dtype == DType::kI32) t.data<int32_t>()[i] = static_cast<int32_t>(v);
      else t.data<int64_t>()[i] = static_cast<int64_t>(v);
    }
    return t;
  }
  fill_uniform(t, seed, lo, hi);
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape()) << a.str() << " vs " << b.str();
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.item(i) - b.item(i)));
  return m;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t.item(i)));
  return m;
}

void expect_finite_nonzero(const Tensor& ref, const std::string& what) {
  bool nonzero = false;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double v = ref.item(i);
    ASSERT_TRUE(std::isfinite(v)) << what << ": reference element " << i << " is " << v;
    if (v != 0) nonzero = true;
  }
  EXPECT_TRUE(nonzero) << what << ": reference is all zeros; the test would pass vacuously";
}

void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what << ": " << got.str() << " vs " << want.str();
  expect_finite_nonzero(want, what);
  double worst = -1;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double g = got.item(i), w = want.item(i);
    const double excess = std::fabs(g - w) - (atol + rtol * std::fabs(w));
    if (!(excess <= 0) && (worst_i < 0 || excess > worst || std::isnan(excess))) {
      worst = excess;
      worst_i = i;
    }
  }
  if (worst_i >= 0) {
    ADD_FAILURE() << what << ": element " << worst_i << " got " << got.item(worst_i)
                  << " want " << want.item(worst_i) << " (atol " << atol << ", rtol "
                  << rtol << ")";
  }
}

void expect_gradient_matches(const Tensor& input, const Tensor& analytic,
                             const std::function<double()>& loss, const std::string& what,
                             double h, double atol, double rtol) {
  ASSERT_EQ(input.dtype(), DType::kF64) << what << ": finite differences need f64";
  ASSERT_EQ(input.shape(), analytic.shape()) << what;
  Tensor fd = Tensor::empty(input.shape(), DType::kF64);
  double* x = input.data<double>();
  for (int64_t i = 0; i < input.numel(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double up = loss();
    x[i] = x0 - h;
    const double down = loss();
    x[i] = x0;
    fd.data<double>()[i] = (up - down) / (2 * h);
  }
  expect_close(analytic, fd, atol, rtol, what + " (analytic vs finite differences)");
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

double weighted_sum(const Tensor& y, const Tensor& w) {
  EXPECT_EQ(y.numel(), w.numel());
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += y.item(i) * w.item(i);
  return s;
}

std::filesystem::path source_root() { return ROTOR_SOURCE_DIR; }

}  // namespace rotor::testing
