#include "kernels/random.h"
#include "kernels/cpu/threads.h"

#include <cmath>
#include <numbers>

namespace rotor {

uint64_t hash_name(const char* name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char* p = name; *p; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 0x100000001b3ull;
  }
  return h;
}

double normal01(uint64_t seed, uint64_t i) {
  const uint64_t s = mix64(seed ^ 0x5bd1e995u);
  // u1 in (0, 1] so that log(u1) is finite.
  const double u1 = 1.0 - uniform01(s, 2 * i);
  const double u2 = uniform01(s, 2 * i + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

namespace {
template <class T, class F>
void fill_with(const Tensor& t, F f) {
  T* p = t.data<T>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
  for (int64_t j = 0; j < n; ++j) p[j] = static_cast<T>(f(static_cast<uint64_t>(j)));
}

template <class F>
void fill_dispatch(const Tensor& t, F f) {
  if (!t.device().is_cpu()) {  // drawn on the host and copied once: the same values on every device
    Tensor host = Tensor::empty(t.shape(), t.dtype());
    fill_dispatch(host, f);
    t.copy_from(host);
    return;
  }
  check_cpu(t, "fill_random");
  switch (t.dtype()) {
    case DType::kF32: fill_with<float>(t, f); break;
    case DType::kF64: fill_with<double>(t, f); break;
    case DType::kBF16: {
      bf16* p = t.data<bf16>();
      for (int64_t j = 0; j < t.numel(); ++j) p[j] = bf16(static_cast<float>(f(j)));
      break;
    }
    default: ROTOR_CHECK(false) << "random fill of " << t.str();
  }
}
}  // namespace

void fill_uniform(const Tensor& t, uint64_t seed, double lo, double hi, uint64_t offset) {
  fill_dispatch(t, [=](uint64_t j) { return lo + (hi - lo) * uniform01(seed, offset + j); });
}

void fill_normal(const Tensor& t, uint64_t seed, double mean, double std, uint64_t offset) {
  fill_dispatch(t, [=](uint64_t j) { return mean + std * normal01(seed, offset + j); });
}

}  // namespace rotor
