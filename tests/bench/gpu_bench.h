// Helpers shared by the CUDA benchmarks that go through rotor's op API
// (gemm_bench, memory_bench, gpu_train_step_bench): the skip test, timing
// with CUDA events on the device's compute stream under a time cap, random
// device data, and the peer CSV reader. Header-only; CUDA builds only.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/device.h"
#include "kernels/random.h"
#include "kernels/tensor.h"

namespace rotor::bench {

// The line every GPU bench prints (and exits 0 after) without a usable
// device; tests/gpu/stages/bench looks for it.
inline constexpr const char* kSkipLine = "skipped: no usable CUDA device";

// True when cuda:0 can be used; otherwise prints the skip line with the reason.
inline bool have_gpu() {
  if (cuda_device_count() > 0 && cuda_select_device(0)) return true;
  std::printf("%s\n", kSkipLine);
  std::fprintf(stderr, "%s\n", cuda_unavailable_reason().c_str());
  return false;
}

// "NVIDIA H200 (sm_90, 132 SMs)".
inline std::string device_line() {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown device";
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs)", p.name, p.major, p.minor, p.multiProcessorCount);
  return buf;
}

inline void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

struct Timing {
  double ms = 0;  // per call
  int iters = 0;  // timed calls
};

// Times f() (work queued on cuda:0's compute stream) with CUDA events: a
// first untimed call (plans, caches), a second one timed alone to size the
// run, then n back-to-back calls, n = max_seconds / (that call's time)
// clamped to [1, max_iters], so a slow kernel costs at most about
// max_seconds plus two calls. Checks for asynchronous faults at the end.
template <class F>
Timing time_calls(F&& f, int max_iters, double max_seconds) {
  cudaStream_t s = cuda::device_context(0).stream;
  cudaEvent_t t0, t1;
  check_cuda(cudaEventCreate(&t0), "cudaEventCreate");
  check_cuda(cudaEventCreate(&t1), "cudaEventCreate");
  auto run = [&](int n) {
    check_cuda(cudaEventRecord(t0, s), "cudaEventRecord");
    for (int i = 0; i < n; ++i) f();
    check_cuda(cudaEventRecord(t1, s), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(t1), "cudaEventSynchronize (a kernel faulted?)");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
    return static_cast<double>(ms);
  };
  f();
  const double one = run(1);
  const int n = std::clamp(static_cast<int>(max_seconds * 1e3 / std::max(one, 1e-3)), 1, std::max(1, max_iters));
  Timing t{run(n) / n, n};
  check_cuda(cudaGetLastError(), "kernel launch");
  check_cuda(cudaEventDestroy(t0), "cudaEventDestroy");
  check_cuda(cudaEventDestroy(t1), "cudaEventDestroy");
  return t;
}

// Fills a float tensor on cuda:0 with uniform values in [lo, hi): a pattern
// of up to 1M values drawn on the host (kernels/random.h), uploaded once and
// repeated over the tensor by device-to-device copies (drawing every element
// on the host would take seconds for the GB-sized buffers; repeating 1M
// random values changes neither GEMM nor bandwidth timings).
inline void fill_random(const Tensor& t, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const int64_t n = t.numel();
  const Tensor flat = t.view({n});
  const int64_t pat = std::min<int64_t>(n, int64_t{1} << 20);
  Tensor host = Tensor::empty({pat}, t.dtype());
  fill_uniform(host, seed, lo, hi);
  flat.narrow(0, pat).copy_from(host);
  for (int64_t off = pat; off < n; off += pat) {
    const int64_t c = std::min(pat, n - off);
    flat.narrow(off, c).copy_from(flat.narrow(0, c));
  }
}

// Rows of a CSV file, header dropped, split on ','; exits when unreadable.
inline std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "bench: cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    if (!line.empty() && line.back() == ',') f.emplace_back();
    rows.push_back(std::move(f));
  }
  return rows;
}

// A positive finite number, or NaN for an empty / non-numeric field (a peer
// that could not run that case).
inline double parse_time(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end != s.c_str() && std::isfinite(v) && v > 0 ? v : NAN;
}

}  // namespace rotor::bench
