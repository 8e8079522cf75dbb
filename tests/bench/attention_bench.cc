// Times rotor's flash attention (kernels/cuda/flash_attention.h) forward and
// backward on the GPU, causal, bf16, head dim 128, GQA 32:8 (Llama-3-8B's
// heads), at sequence 4K, 16K and 64K, and prints TFLOP/s; with a peer CSV
// from tests/bench/sdpa_peer.py (PyTorch scaled_dot_product_attention, flash
// and cuDNN backends, same shapes, measured on the same GPU) it prints the
// ratio rotor / best peer too.
//
//   bin/attention_bench [--peer-csv FILE] [--csv OUT] [--seqs 4096,16384,65536] [--iters N]
//                       [--max-seconds S]
//
// --csv writes one row per (seq, peer backend): rotor's times and TFLOP/s,
// the backend's times and the ratios peer time / rotor time.
// --max-seconds caps each timed loop: iterations = S / (one call's time),
// at most --iters (the time cap the bring-up kit's bench stage runs under).
//
// Shapes: batch B = max(1, 16384 / S), so every call has at least 16K tokens
// (B*S = 16K at 4K and 16K, 64K tokens at 64K): with Hq = 32 the forward grid
// is B * 32 * S / 64 >= 8192 CTAs and the backward B * 8 * S / 64 >= 2048,
// many waves on an H100's 132 SMs. Positions 0..S-1 per row, no segments,
// scale 1/sqrt(128), lse in f32.
// FLOPs (causal, counted as the FlashAttention papers do):
//   forward  4 * B * Hq * S^2 * D / 2      (QK^T and PV, half the pairs)
//   backward 2.5 x forward                 (5 matmuls instead of 2)
// Times: cudaEvent around `iters` back-to-back calls after one warm-up call
// (and, under --max-seconds, one timed call that sizes the loop).
// The backward includes its preprocess (delta, dq accumulator) and the dq
// conversion; the peer's backward is autograd's, which does the same work.
// Without a usable CUDA device it prints "skipped: no usable CUDA device" and
// exits 0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/flash_attention.h"
#include "tests/bench/flags.h"

namespace {

constexpr int64_t kHq = 32, kHkv = 8, kD = 128;

bool cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "attention_bench: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}
#define BENCH_CHECK(x)                  \
  do {                                  \
    if (!cuda_ok((x), #x)) std::exit(1); \
  } while (0)

uint16_t to_bf16_bits(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Fills n bf16 values in [-1, 1) from a 1M-value random pattern, repeated.
void fill_bf16(void* dst, int64_t n, uint32_t seed) {
  const int64_t pat = std::min<int64_t>(n, int64_t{1} << 20);
  std::vector<uint16_t> host(static_cast<size_t>(pat));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& h : host) h = to_bf16_bits(dist(gen));
  for (int64_t off = 0; off < n; off += pat) {
    const int64_t c = std::min(pat, n - off);
    BENCH_CHECK(cudaMemcpy(static_cast<uint16_t*>(dst) + off, host.data(), static_cast<size_t>(c) * 2,
                           cudaMemcpyHostToDevice));
  }
}

struct PeerTimes {
  double fwd_ms = NAN, bwd_ms = NAN;  // NaN: the backend could not run the shape
};
// seq -> backend -> times.
using Peers = std::map<int64_t, std::map<std::string, PeerTimes>>;

double positive_or_nan(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end != s.c_str() && std::isfinite(v) && v > 0 ? v : NAN;
}

// CSV: seq,batch,hq,hkv,d,backend,fwd_ms,bwd_ms (header first; empty or
// non-numeric times = the backend could not run that shape).
Peers read_peer(const std::string& path) {
  Peers peers;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "attention_bench: cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    f.resize(8);  // a trailing empty field is dropped by getline
    if (std::atoll(f[2].c_str()) != kHq || std::atoll(f[3].c_str()) != kHkv ||
        std::atoll(f[4].c_str()) != kD)
      continue;
    peers[std::atoll(f[0].c_str())][f[5]] = {positive_or_nan(f[6]), positive_or_nan(f[7])};
  }
  return peers;
}

// The fastest backend's time and name, "n/a" when none ran.
std::string best_ratio(const std::map<std::string, PeerTimes>& backends, bool fwd, double rotor_ms) {
  double best = INFINITY;
  std::string name;
  for (const auto& [b, t] : backends) {
    const double ms = fwd ? t.fwd_ms : t.bwd_ms;
    if (ms < best) {  // false for NaN
      best = ms;
      name = b;
    }
  }
  if (!std::isfinite(best)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f (%s)", best / rotor_ms, name.c_str());
  return buf;
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(std::atoll(x.c_str()));
  return out;
}

struct Args {
  std::string peer_csv, csv_out;
  std::vector<int64_t> seqs = {4096, 16384, 65536};
  int iters = 0;            // 0: 20 / 10 / 3 by length
  double max_seconds = 0;  // 0: no cap
};

const char* kUsage =
    "usage: attention_bench [--peer-csv FILE] [--csv OUT] [--seqs 4096,16384,65536] [--iters N] "
    "[--max-seconds S]\n";

Args parse(int argc, char** argv) {
  Args a;
  rotor::bench::Flags f(kUsage);
  f.value("--peer-csv", [&](const char* v) { a.peer_csv = v; });
  f.value("--csv", [&](const char* v) { a.csv_out = v; });
  f.value("--seqs", [&](const char* v) { a.seqs = parse_list(v); });
  f.value("--iters", [&](const char* v) { a.iters = std::atoi(v); });
  f.value("--max-seconds", [&](const char* v) { a.max_seconds = std::atof(v); });
  f.parse(argc, argv);
  return a;
}

struct Timer {
  cudaStream_t stream;
  cudaEvent_t t0, t1;
  double max_seconds;

  double run(const std::function<void()>& f, int n) {
    BENCH_CHECK(cudaEventRecord(t0, stream));
    for (int it = 0; it < n; ++it) f();
    BENCH_CHECK(cudaEventRecord(t1, stream));
    BENCH_CHECK(cudaEventSynchronize(t1));
    BENCH_CHECK(cudaGetLastError());
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    return ms;
  }
  // ms per call over `iters` calls after a warm-up (fewer under the cap).
  double time_ms(const std::function<void()>& f, int iters) {
    f();  // warm-up
    BENCH_CHECK(cudaStreamSynchronize(stream));
    if (max_seconds > 0) {
      const double one = run(f, 1);
      iters = std::clamp(static_cast<int>(max_seconds * 1e3 / std::max(one, 1e-3)), 1, iters);
    }
    return run(f, iters) / iters;
  }
};

struct Result {
  int64_t seq, batch;
  double fwd_ms, bwd_ms, fwd_tflops, bwd_tflops;
};

// Forward and backward at sequence S (buffers allocated and freed here).
Result measure(int64_t S, int iters, Timer& timer) {
  const int64_t B = std::max<int64_t>(1, 16384 / S);
  rotor::cuda::AttentionShape s;
  s.b = B;
  s.tq = S;
  s.tk = S;
  s.hq = kHq;
  s.hkv = kHkv;
  s.d = kD;
  s.causal = true;
  s.scale = 1.0 / std::sqrt(static_cast<double>(kD));
  const int64_t nq = B * S * kHq * kD, nk = B * S * kHkv * kD, nstat = B * kHq * S;
  void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *lse, *scratch;
  int32_t* pos;
  BENCH_CHECK(cudaMalloc(&q, nq * 2));
  BENCH_CHECK(cudaMalloc(&out, nq * 2));
  BENCH_CHECK(cudaMalloc(&dout, nq * 2));
  BENCH_CHECK(cudaMalloc(&dq, nq * 2));
  BENCH_CHECK(cudaMalloc(&k, nk * 2));
  BENCH_CHECK(cudaMalloc(&v, nk * 2));
  BENCH_CHECK(cudaMalloc(&dk, nk * 2));
  BENCH_CHECK(cudaMalloc(&dv, nk * 2));
  BENCH_CHECK(cudaMalloc(&lse, nstat * 4));
  const size_t scratch_bytes = rotor::cuda::flash_attention_backward_scratch_bytes(s);
  BENCH_CHECK(cudaMalloc(&scratch, scratch_bytes));
  BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&pos), B * S * 4));
  fill_bf16(q, nq, 1);
  fill_bf16(k, nk, 2);
  fill_bf16(v, nk, 3);
  fill_bf16(dout, nq, 4);
  BENCH_CHECK(cudaMemset(dq, 0, nq * 2));
  BENCH_CHECK(cudaMemset(dk, 0, nk * 2));
  BENCH_CHECK(cudaMemset(dv, 0, nk * 2));
  {
    std::vector<int32_t> hp(static_cast<size_t>(B * S));
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < S; ++i) hp[static_cast<size_t>(r * S + i)] = static_cast<int32_t>(i);
    BENCH_CHECK(cudaMemcpy(pos, hp.data(), hp.size() * 4, cudaMemcpyHostToDevice));
  }
  cudaStream_t stream = timer.stream;
  float* lse_f32 = static_cast<float*>(lse);  // f32 statistics
  const double fwd_ms = timer.time_ms(
      [&] {
        rotor::cuda::flash_attention_forward(s, q, k, v, pos, pos, nullptr, nullptr, out, lse_f32, nullptr,
                                             stream);
      },
      iters);
  const double bwd_ms = timer.time_ms(
      [&] {
        rotor::cuda::flash_attention_backward(s, q, k, v, pos, pos, nullptr, nullptr, out, lse_f32, dout,
                                              dq, dk, dv, scratch, stream);
      },
      iters);
  for (void* p : {q, k, v, out, dout, dq, dk, dv, lse, scratch, static_cast<void*>(pos)}) BENCH_CHECK(cudaFree(p));
  const double fwd_flop = 4.0 * B * kHq * static_cast<double>(S) * S * kD / 2.0;
  return {S, B, fwd_ms, bwd_ms, fwd_flop / (fwd_ms * 1e9), 2.5 * fwd_flop / (bwd_ms * 1e9)};
}

FILE* open_csv(const std::string& path) {
  if (path.empty()) return nullptr;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "attention_bench: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fprintf(f, "%s\n", "seq,batch,fwd_ms,fwd_tflops,bwd_ms,bwd_tflops,backend,peer_fwd_ms,peer_bwd_ms,fwd_ratio,bwd_ratio");
  return f;
}

// One row per peer backend of r's length (one with an empty backend when
// there is none), flushed so that a run cut short keeps its finished rows.
void write_rows(FILE* f, const Result& r, const Peers& peers) {
  if (!f) return;
  const auto it = peers.find(r.seq);
  std::map<std::string, PeerTimes> backends;
  if (it != peers.end()) backends = it->second;
  if (backends.empty()) backends[""] = {};
  for (const auto& [b, t] : backends)
    std::fprintf(f, "%lld,%lld,%.6f,%.3f,%.6f,%.3f,%s,%.6f,%.6f,%.6g,%.6g\n", static_cast<long long>(r.seq),
                 static_cast<long long>(r.batch), r.fwd_ms, r.fwd_tflops, r.bwd_ms, r.bwd_tflops, b.c_str(),
                 t.fwd_ms, t.bwd_ms, t.fwd_ms / r.fwd_ms, t.bwd_ms / r.bwd_ms);
  std::fflush(f);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 || cudaSetDevice(0) != cudaSuccess ||
      cudaFree(nullptr) != cudaSuccess) {
    std::printf("skipped: no usable CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount);
  const Peers peers = a.peer_csv.empty() ? Peers{} : read_peer(a.peer_csv);

  Timer timer{nullptr, nullptr, nullptr, a.max_seconds};
  BENCH_CHECK(cudaStreamCreate(&timer.stream));
  BENCH_CHECK(cudaEventCreate(&timer.t0));
  BENCH_CHECK(cudaEventCreate(&timer.t1));

  std::printf("%-7s %-3s %-6s %10s %9s %10s %9s", "seq", "B", "Hq/Hkv", "fwd_ms", "fwd_TF/s", "bwd_ms",
              "bwd_TF/s");
  if (!peers.empty()) std::printf("  %-28s %-28s", "fwd rotor/best-peer", "bwd rotor/best-peer");
  std::printf("\n");
  FILE* csv = open_csv(a.csv_out);
  for (const int64_t S : a.seqs) {
    const int iters = a.iters > 0 ? a.iters : (S <= 4096 ? 20 : S <= 16384 ? 10 : 3);
    const Result r = measure(S, iters, timer);
    write_rows(csv, r, peers);
    std::printf("%-7lld %-3lld %2lld/%-3lld %10.3f %9.1f %10.3f %9.1f", static_cast<long long>(S),
                static_cast<long long>(r.batch), static_cast<long long>(kHq), static_cast<long long>(kHkv),
                r.fwd_ms, r.fwd_tflops, r.bwd_ms, r.bwd_tflops);
    if (!peers.empty()) {
      const auto it = peers.find(S);
      const std::map<std::string, PeerTimes> none;
      const auto& backends = it != peers.end() ? it->second : none;
      std::printf("  %-28s %-28s", best_ratio(backends, true, r.fwd_ms).c_str(),
                  best_ratio(backends, false, r.bwd_ms).c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  if (!peers.empty())
    std::printf("ratio = peer time / rotor time (= rotor TFLOP/s / best peer TFLOP/s; > 1: rotor faster)\n");
  if (csv) std::fclose(csv);
  BENCH_CHECK(cudaEventDestroy(timer.t0));
  BENCH_CHECK(cudaEventDestroy(timer.t1));
  BENCH_CHECK(cudaStreamDestroy(timer.stream));
  return 0;
}
