// Achieved bandwidth of rotor's memory-bound kernels on cuda:0 (through the
// op API, kernels/*.h) against a device-to-device copy of the same bytes
// (cudaMemcpyAsync on the same stream, measured in the same run): the copy is
// the practical ceiling of a kernel that streams its operands once.
//
//   bin/memory_bench [--csv OUT] [--tokens 16384] [--hidden 4096] [--ffn 14336]
//                    [--heads 32] [--vocab 128256] [--adamw-params 268435456]
//                    [--iters N] [--max-seconds S]
//
// Shapes: Llama-3-8B's (hidden 4096, ffn 14336, 32 heads of 128, vocab
// 128256) at 16K tokens, so that every operand (128 MiB and up) is well past
// the 50 MiB L2 of an H100/H200 and the timings are HBM's. bf16 activations,
// f32 statistics and weight gradients (the mixed-precision contract). Bytes
// counted are the least the op must move (every operand read once, every
// result written once), B = 2 bytes per bf16 element:
//   rmsnorm_fwd   x [N,D] -> y [N,D], rstd [N] f32          2B ND + 2B ND + 4N + 2D
//   rmsnorm_bwd   dy, x, w, rstd -> dx; dw [D] f32 +=       3 x 2ND + 4N + 2D + 8D
//   swiglu_fwd    gate, up [N,F] -> h                       3 x 2NF
//   swiglu_bwd    dh, gate, up -> dgate, dup                5 x 2NF
//   rope_fwd      q [1,N,H,128] -> y, pos [1,N] i32         2 x 2NHd + 4N + 4 d/2
//   embedding_fwd ids [N] i32, rows of table [V,D] -> out   4N + 2 x 2ND
//   embedding_bwd dout [N,D], dtable rows f32 +=            4N + 2ND + 2 x 4ND
//   adamw         param, grad, m, v f32 (+= all but grad),
//                 working bf16 written                      (4 x 4 + 3 x 4 + 2) P
//   add           a + b -> out [N,D] bf16                   3 x 2ND
//   cast_f32_bf16 [N,D] f32 -> bf16                         (4 + 2) ND
//   cast_bf16_f32 [N,D] bf16 -> f32                         (2 + 4) ND
// GB/s = bytes / time; the copy moves the same bytes (reads bytes/2, writes
// bytes/2: cudaMemcpyAsync of bytes/2), and ratio = kernel GB/s / copy GB/s
// (= copy time / kernel time; 1: as fast as a copy). Embedding ids are
// uniform over the vocabulary (few repeats, as with real text at this N).
// Without a usable CUDA device it prints "skipped: no usable CUDA device"
// and exits 0.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope_apply.h"
#include "kernels/swiglu.h"
#include "tests/bench/gpu_bench.h"
#include "tests/bench/flags.h"

namespace {

using rotor::DType;
using rotor::Tensor;

struct Args {
  std::string csv_out;
  int64_t tokens = 16384, hidden = 4096, ffn = 14336, heads = 32, vocab = 128256;
  int64_t adamw_params = int64_t{1} << 28;
  int iters = 50;
  double max_seconds = 0.25;  // per kernel and per copy
  // --cpu-check: every kernel once at small sizes on the CPU, untimed (the
  // op contracts these calls rely on, checked where no GPU is).
  bool cpu_check = false;
  rotor::Device device = rotor::Device::cuda(0);
};

const char* kUsage =
    "usage: memory_bench [--csv OUT] [--tokens 16384] [--hidden 4096] [--ffn 14336] [--heads 32] "
    "[--vocab 128256] [--adamw-params 268435456] [--iters N] [--max-seconds S] | --cpu-check\n";

Args parse(int argc, char** argv) {
  Args a;
  rotor::bench::Flags f(kUsage);
  f.on("--cpu-check", [&] {
    a.cpu_check = true;
    a.device = rotor::Device::cpu();
    a.tokens = 64, a.hidden = 128, a.ffn = 256, a.heads = 4, a.vocab = 512, a.adamw_params = 4096;
  });
  f.value("--csv", [&](const char* v) { a.csv_out = v; });
  f.value("--tokens", [&](const char* v) { a.tokens = std::atoll(v); });
  f.value("--hidden", [&](const char* v) { a.hidden = std::atoll(v); });
  f.value("--ffn", [&](const char* v) { a.ffn = std::atoll(v); });
  f.value("--heads", [&](const char* v) { a.heads = std::atoll(v); });
  f.value("--vocab", [&](const char* v) { a.vocab = std::atoll(v); });
  f.value("--adamw-params", [&](const char* v) { a.adamw_params = std::atoll(v); });
  f.value("--iters", [&](const char* v) { a.iters = std::atoi(v); });
  f.value("--max-seconds", [&](const char* v) { a.max_seconds = std::atof(v); });
  f.parse(argc, argv);
  return a;
}

// One kernel to time: its least bytes moved and the call (whose lambda owns
// the tensors it uses).
struct Kernel {
  std::string name;
  double bytes;
  std::function<void()> call;
};

Tensor on(rotor::Device d, const rotor::Shape& s, DType t) { return Tensor::empty(s, t, d); }
Tensor random_on(rotor::Device d, const rotor::Shape& s, DType t, uint64_t seed) {
  Tensor x = on(d, s, t);
  rotor::bench::fill_random(x, seed);
  return x;
}

// i32 tensor on `d` from host values v(i).
Tensor ints_on(rotor::Device d, int64_t n, const std::function<int32_t(int64_t)>& v) {
  Tensor host = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) host.data<int32_t>()[i] = v(i);
  return host.to(d);
}

std::vector<Kernel> norm_and_elementwise(const Args& a) {
  const int64_t n = a.tokens, d = a.hidden;
  const double nd = static_cast<double>(n * d);
  Tensor x = random_on(a.device, {n, d}, DType::kBF16, 1), w = random_on(a.device, {d}, DType::kBF16, 2);
  Tensor y = on(a.device, {n, d}, DType::kBF16), rstd = on(a.device, {n}, DType::kF32);
  Tensor dy = random_on(a.device, {n, d}, DType::kBF16, 3), dx = on(a.device, {n, d}, DType::kBF16);
  Tensor dw = Tensor::zeros({d}, DType::kF32, a.device);
  Tensor xf = random_on(a.device, {n, d}, DType::kF32, 4);
  rotor::rmsnorm_forward(x, w, 1e-5, y, rstd);  // rstd for the backward
  return {
      {"rmsnorm_fwd", 4 * nd + 4.0 * n + 2.0 * d, [=] { rotor::rmsnorm_forward(x, w, 1e-5, y, rstd); }},
      {"rmsnorm_bwd", 6 * nd + 4.0 * n + 10.0 * d, [=] { rotor::rmsnorm_backward(dy, x, w, rstd, dx, dw); }},
      {"add", 6 * nd, [=] { rotor::add(x, dy, y); }},
      {"cast_f32_bf16", 6 * nd, [=] { rotor::cast(xf, y); }},
      {"cast_bf16_f32", 6 * nd, [=] { rotor::cast(x, xf); }},
  };
}

std::vector<Kernel> swiglu_and_rope(const Args& a) {
  const int64_t n = a.tokens, f = a.ffn, h = a.heads, hd = 128;
  const double nf = static_cast<double>(n * f);
  Tensor gate = random_on(a.device, {n, f}, DType::kBF16, 5), up = random_on(a.device, {n, f}, DType::kBF16, 6);
  Tensor out = on(a.device, {n, f}, DType::kBF16), dh = random_on(a.device, {n, f}, DType::kBF16, 7);
  Tensor dgate = on(a.device, {n, f}, DType::kBF16), dup = on(a.device, {n, f}, DType::kBF16);
  Tensor q = random_on(a.device, {1, n, h, hd}, DType::kBF16, 8), qy = on(a.device, {1, n, h, hd}, DType::kBF16);
  Tensor pos = ints_on(a.device, n, [](int64_t i) { return static_cast<int32_t>(i); }).view({1, n});
  std::vector<double> inv(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) inv[i] = std::pow(500000.0, -2.0 * static_cast<double>(i) / hd);
  Tensor inv_freq = Tensor::from_vector(inv, {hd / 2}, DType::kF32).to(a.device);
  const double nhd = static_cast<double>(n * h * hd);
  return {
      {"swiglu_fwd", 6 * nf, [=] { rotor::swiglu_forward(gate, up, out); }},
      {"swiglu_bwd", 10 * nf, [=] { rotor::swiglu_backward(dh, gate, up, dgate, dup); }},
      {"rope_fwd", 4 * nhd + 4.0 * n + 2.0 * hd,
       [=] { rotor::rope_forward(q, pos, inv_freq, 1.0, Tensor(), qy); }},
  };
}

std::vector<Kernel> embedding_and_adamw(const Args& a) {
  const int64_t n = a.tokens, d = a.hidden, v = a.vocab, p = a.adamw_params;
  const double nd = static_cast<double>(n * d);
  Tensor ids = ints_on(a.device, n, [v](int64_t i) { return static_cast<int32_t>(rotor::mix64(i) % v); });
  Tensor table = random_on(a.device, {v, d}, DType::kBF16, 9), out = on(a.device, {n, d}, DType::kBF16);
  Tensor dout = random_on(a.device, {n, d}, DType::kBF16, 10);
  Tensor dtable = Tensor::zeros({v, d}, DType::kF32, a.device);
  Tensor param = random_on(a.device, {p}, DType::kF32, 11), grad = random_on(a.device, {p}, DType::kF32, 12);
  Tensor m = Tensor::zeros({p}, DType::kF32, a.device);
  Tensor vv = Tensor::zeros({p}, DType::kF32, a.device), working = on(a.device, {p}, DType::kBF16);
  const rotor::AdamWHyper hyper{.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  return {
      {"embedding_fwd", 4 * nd + 4.0 * n, [=] { rotor::embedding_forward(ids, table, out); }},
      {"embedding_bwd", 10 * nd + 4.0 * n, [=] { rotor::embedding_backward(ids, dout, dtable); }},
      {"adamw", 30.0 * static_cast<double>(p),
       [=] { rotor::adamw_step(param, grad, m, vv, 1, hyper, 1.0, working); }},
  };
}

// Times each kernel and a copy of its bytes; prints a line and appends a CSV
// row (flushed: a run cut short keeps its finished rows) per kernel.
void run_group(const Args& a, const std::vector<Kernel>& kernels, FILE* csv) {
  double most = 0;
  for (const Kernel& k : kernels) most = std::max(most, k.bytes);
  const int64_t half = static_cast<int64_t>(most / 2 / 4) + 1;  // f32 elements
  Tensor src = Tensor::zeros({half}, DType::kF32, rotor::Device::cuda(0)), dst = Tensor::empty_like(src);
  cudaStream_t s = rotor::cuda::device_context(0).stream;
  for (const Kernel& k : kernels) {
    const size_t copy_bytes = static_cast<size_t>(k.bytes / 2);
    const rotor::bench::Timing t = rotor::bench::time_calls(k.call, a.iters, a.max_seconds);
    const rotor::bench::Timing c = rotor::bench::time_calls(
        [&] {
          rotor::bench::check_cuda(
              cudaMemcpyAsync(dst.device_ptr(), src.device_ptr(), copy_bytes, cudaMemcpyDeviceToDevice, s),
              "cudaMemcpyAsync");
        },
        a.iters, a.max_seconds);
    const double gbps = k.bytes / (t.ms * 1e6), copy_gbps = k.bytes / (c.ms * 1e6);
    std::printf("%-14s %8.3f GB %9.4f ms %8.1f GB/s   copy %8.1f GB/s   ratio %.3f\n", k.name.c_str(),
                k.bytes / 1e9, t.ms, gbps, copy_gbps, c.ms / t.ms);
    std::fflush(stdout);
    if (!csv) continue;
    std::fprintf(csv, "%s,%.0f,%.6f,%.2f,%.6f,%.2f,%.6g\n", k.name.c_str(), k.bytes, t.ms, gbps, c.ms, copy_gbps,
                 c.ms / t.ms);
    std::fflush(csv);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.cpu_check) {
    int count = 0;
    for (const auto& group : {norm_and_elementwise(a), swiglu_and_rope(a), embedding_and_adamw(a)})
      for (const Kernel& k : group) {
        k.call();
        ++count;
      }
    std::printf("cpu-check: %d kernels ran on the CPU\n", count);
    return 0;
  }
  if (!rotor::bench::have_gpu()) return 0;
  std::printf("device: %s; %lld tokens, hidden %lld, ffn %lld, %lld heads, vocab %lld, AdamW %lld params\n",
              rotor::bench::device_line().c_str(), static_cast<long long>(a.tokens),
              static_cast<long long>(a.hidden), static_cast<long long>(a.ffn), static_cast<long long>(a.heads),
              static_cast<long long>(a.vocab), static_cast<long long>(a.adamw_params));
  FILE* csv = nullptr;
  if (!a.csv_out.empty()) {
    csv = std::fopen(a.csv_out.c_str(), "w");
    if (!csv) {
      std::fprintf(stderr, "memory_bench: cannot write %s\n", a.csv_out.c_str());
      return 1;
    }
    std::fprintf(csv, "kernel,bytes,ms,gbps,copy_ms,copy_gbps,ratio\n");
  }
  // One group at a time, so that its buffers go back to the cache before the next.
  run_group(a, norm_and_elementwise(a), csv);
  run_group(a, swiglu_and_rope(a), csv);
  run_group(a, embedding_and_adamw(a), csv);
  std::printf("ratio = copy time / kernel time for the same bytes (1: copy speed)\n");
  if (csv) std::fclose(csv);
  return 0;
}
