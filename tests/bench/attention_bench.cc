// Times rotor's flash attention (kernels/cuda/flash_attention.h) forward and
// backward on the GPU, causal, bf16, head dim 128, GQA 32:8 (Llama-3-8B's
// heads), at sequence 4K, 16K and 64K, and prints TFLOP/s; with a peer CSV
// from tests/bench/sdpa_peer.py (PyTorch scaled_dot_product_attention, flash
// and cuDNN backends, same shapes, measured on the same GPU) it prints the
// ratio rotor / best peer too.
//
//   bin/attention_bench [--peer-csv FILE] [--seqs 4096,16384,65536] [--iters N]
//
// Shapes: batch B = max(1, 16384 / S), so every call has at least 16K tokens
// (B*S = 16K at 4K and 16K, 64K tokens at 64K): with Hq = 32 the forward grid
// is B * 32 * S / 64 >= 8192 CTAs and the backward B * 8 * S / 64 >= 2048,
// many waves on an H100's 132 SMs. Positions 0..S-1 per row, no segments,
// scale 1/sqrt(128), lse in f32.
// FLOPs (causal, counted as the FlashAttention papers do):
//   forward  4 * B * Hq * S^2 * D / 2      (QK^T and PV, half the pairs)
//   backward 2.5 x forward                 (5 matmuls instead of 2)
// Times: cudaEvent around `iters` back-to-back calls after one warm-up call.
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
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/flash_attention.h"

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

struct Peer {
  double fwd_ms = INFINITY, bwd_ms = INFINITY;
  std::string fwd_backend, bwd_backend;
};

// CSV: seq,batch,hq,hkv,d,backend,fwd_ms,bwd_ms (header first; empty or
// non-numeric times = the backend could not run that shape).
std::map<int64_t, Peer> read_peer(const std::string& path) {
  std::map<int64_t, Peer> peers;
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
    if (f.size() < 8) continue;
    const int64_t seq = std::atoll(f[0].c_str());
    if (std::atoll(f[2].c_str()) != kHq || std::atoll(f[3].c_str()) != kHkv ||
        std::atoll(f[4].c_str()) != kD)
      continue;
    char* end = nullptr;
    const double fwd = std::strtod(f[6].c_str(), &end);
    const bool fwd_ok = end != f[6].c_str() && std::isfinite(fwd) && fwd > 0;
    const double bwd = std::strtod(f[7].c_str(), &end);
    const bool bwd_ok = end != f[7].c_str() && std::isfinite(bwd) && bwd > 0;
    Peer& p = peers[seq];
    if (fwd_ok && fwd < p.fwd_ms) {
      p.fwd_ms = fwd;
      p.fwd_backend = f[5];
    }
    if (bwd_ok && bwd < p.bwd_ms) {
      p.bwd_ms = bwd;
      p.bwd_backend = f[5];
    }
  }
  return peers;
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(std::atoll(x.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string peer_csv;
  std::vector<int64_t> seqs = {4096, 16384, 65536};
  int iters_arg = 0;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--peer-csv") == 0 && a + 1 < argc) {
      peer_csv = argv[++a];
    } else if (std::strcmp(argv[a], "--seqs") == 0 && a + 1 < argc) {
      seqs = parse_list(argv[++a]);
    } else if (std::strcmp(argv[a], "--iters") == 0 && a + 1 < argc) {
      iters_arg = std::atoi(argv[++a]);
    } else {
      std::fprintf(stderr, "usage: %s [--peer-csv FILE] [--seqs 4096,16384,65536] [--iters N]\n",
                   argv[0]);
      return 2;
    }
  }
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
  const std::map<int64_t, Peer> peers = peer_csv.empty() ? std::map<int64_t, Peer>{} : read_peer(peer_csv);

  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  cudaEvent_t t0, t1;
  BENCH_CHECK(cudaEventCreate(&t0));
  BENCH_CHECK(cudaEventCreate(&t1));

  std::printf("%-7s %-3s %-6s %10s %9s %10s %9s", "seq", "B", "Hq/Hkv", "fwd_ms", "fwd_TF/s", "bwd_ms",
              "bwd_TF/s");
  if (!peers.empty()) std::printf("  %-28s %-28s", "fwd rotor/best-peer", "bwd rotor/best-peer");
  std::printf("\n");

  for (const int64_t S : seqs) {
    const int64_t B = std::max<int64_t>(1, 16384 / S);
    const int iters = iters_arg > 0 ? iters_arg : (S <= 4096 ? 20 : S <= 16384 ? 10 : 3);
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
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *scratch;
    float* lse;  // f32 statistics
    int32_t* pos;
    BENCH_CHECK(cudaMalloc(&q, nq * 2));
    BENCH_CHECK(cudaMalloc(&out, nq * 2));
    BENCH_CHECK(cudaMalloc(&dout, nq * 2));
    BENCH_CHECK(cudaMalloc(&dq, nq * 2));
    BENCH_CHECK(cudaMalloc(&k, nk * 2));
    BENCH_CHECK(cudaMalloc(&v, nk * 2));
    BENCH_CHECK(cudaMalloc(&dk, nk * 2));
    BENCH_CHECK(cudaMalloc(&dv, nk * 2));
    BENCH_CHECK(cudaMalloc(reinterpret_cast<void**>(&lse), nstat * 4));
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
    auto fwd = [&] {
      rotor::cuda::flash_attention_forward(s, q, k, v, pos, pos, nullptr, nullptr, out, lse, nullptr, stream);
    };
    auto bwd = [&] {
      rotor::cuda::flash_attention_backward(s, q, k, v, pos, pos, nullptr, nullptr, out, lse, dout, dq, dk, dv,
                                            scratch, stream);
    };
    auto time_ms = [&](const auto& f) {
      f();  // warm-up
      BENCH_CHECK(cudaStreamSynchronize(stream));
      BENCH_CHECK(cudaEventRecord(t0, stream));
      for (int it = 0; it < iters; ++it) f();
      BENCH_CHECK(cudaEventRecord(t1, stream));
      BENCH_CHECK(cudaEventSynchronize(t1));
      BENCH_CHECK(cudaGetLastError());
      float ms = 0;
      BENCH_CHECK(cudaEventElapsedTime(&ms, t0, t1));
      return static_cast<double>(ms) / iters;
    };
    const double fwd_ms = time_ms(fwd);
    const double bwd_ms = time_ms(bwd);
    const double fwd_flop = 4.0 * B * kHq * static_cast<double>(S) * S * kD / 2.0;
    const double bwd_flop = 2.5 * fwd_flop;
    std::printf("%-7lld %-3lld %2lld/%-3lld %10.3f %9.1f %10.3f %9.1f", static_cast<long long>(S),
                static_cast<long long>(B), static_cast<long long>(kHq), static_cast<long long>(kHkv), fwd_ms,
                fwd_flop / (fwd_ms * 1e9), bwd_ms, bwd_flop / (bwd_ms * 1e9));
    if (!peers.empty()) {
      const auto it = peers.find(S);
      char fb[64] = "n/a", bb[64] = "n/a";
      if (it != peers.end() && std::isfinite(it->second.fwd_ms))
        std::snprintf(fb, sizeof fb, "%.3f (%s)", it->second.fwd_ms / fwd_ms, it->second.fwd_backend.c_str());
      if (it != peers.end() && std::isfinite(it->second.bwd_ms))
        std::snprintf(bb, sizeof bb, "%.3f (%s)", it->second.bwd_ms / bwd_ms, it->second.bwd_backend.c_str());
      std::printf("  %-28s %-28s", fb, bb);
    }
    std::printf("\n");
    std::fflush(stdout);
    for (void* p : {q, k, v, out, dout, dq, dk, dv, static_cast<void*>(lse), scratch, static_cast<void*>(pos)})
      BENCH_CHECK(cudaFree(p));
  }
  if (!peers.empty())
    std::printf("ratio = peer time / rotor time (= rotor TFLOP/s / best peer TFLOP/s; > 1: rotor faster)\n");
  BENCH_CHECK(cudaEventDestroy(t0));
  BENCH_CHECK(cudaEventDestroy(t1));
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}
