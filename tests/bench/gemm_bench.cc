// Times every GEMM of a Llama layer through rotor's matmul op
// (kernels/matmul.h -> cuBLASLt, kernels/cuda/matmul.cc) on cuda:0 and prints
// TFLOP/s; with a peer CSV from tests/bench/matmul_peer.py (torch.matmul on
// the same shapes and layouts, measured on the same GPU) the ratio too.
//
//   bin/gemm_bench [--peer-csv FILE] [--csv OUT] [--models 1b,8b] [--tokens 4096]
//                  [--iters N] [--max-seconds S]
//
// Shapes (N tokens, default 4096; bf16 activations and weights):
//   model  hidden  q_out  kv_out  ffn     (heads x head dim 128)
//   1b     2048    2048   1024    5632    16 / 8 heads: the train bench's ~1B
//   8b     4096    4096   1024    14336   Llama-3-8B: 32 / 8 heads
// Each linear layer W [out, in] (q, k, v: in = hidden; o: in = q_out;
// gate, up: out = ffn; down: in = ffn) runs its three GEMMs exactly as
// model/llama_block.cc calls them:
//   fwd    y [N, out]  = x [N, in] W^T     matmul(x, W, y, false, true)       bf16 out
//   dgrad  dx [N, in]  = dy [N, out] W     matmul(dy, W, dx)                  bf16 out
//   wgrad  dW [out, in] += dy^T x          matmul(dy, x, dW, true, false, 1, 1) f32 out
// (the model's dgrad of k, v and up accumulates into dx with beta 1; here
// every dgrad overwrites, a difference of one read of dx). FLOPs 2 m n k.
// The ratio is peer time / rotor time (> 1: rotor faster) against the peer
// row of the same output dtype: torch.matmul for fwd and dgrad; for wgrad
// torch.addmm(dW, dy^T, x, out_dtype=float32) when this torch has out_dtype
// (f32 accumulation into f32, like rotor), and also against plain bf16
// torch.matmul (what autograd does for a bf16 weight) as `ratio_bf16_out`.
// Without a usable CUDA device it prints "skipped: no usable CUDA device"
// and exits 0.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "tests/bench/gpu_bench.h"
#include "tests/bench/flags.h"

namespace {

using rotor::DType;
using rotor::Tensor;

struct ModelShape {
  std::string name;
  int64_t hidden, q_out, kv_out, ffn;
};

const ModelShape kModels[] = {{"1b", 2048, 2048, 1024, 5632}, {"8b", 4096, 4096, 1024, 14336}};

struct Linear {
  const char* name;
  int64_t in, out;
};

std::vector<Linear> layer_linears(const ModelShape& m) {
  return {{"q", m.hidden, m.q_out},   {"k", m.hidden, m.kv_out}, {"v", m.hidden, m.kv_out},
          {"o", m.q_out, m.hidden},   {"gate", m.hidden, m.ffn}, {"up", m.hidden, m.ffn},
          {"down", m.ffn, m.hidden}};
}

struct Args {
  std::string peer_csv, csv_out;
  std::vector<std::string> models = {"1b", "8b"};
  int64_t tokens = 4096;
  int iters = 50;
  double max_seconds = 0.15;  // per GEMM: 42 GEMMs x 3 calls-worth stay within ~10 s
  // --cpu-check: every GEMM call once on the CPU, untimed, at 16 tokens and
  // the model dims / 16 (the op contracts of these calls, checked where no
  // GPU is).
  bool cpu_check = false;
};

const char* kUsage =
    "usage: gemm_bench [--peer-csv FILE] [--csv OUT] [--models 1b,8b] [--tokens 4096] [--iters N] "
    "[--max-seconds S] | --cpu-check\n";

Args parse(int argc, char** argv) {
  Args a;
  rotor::bench::Flags f(kUsage);
  f.on("--cpu-check", [&] {
    a.cpu_check = true;
    a.tokens = 16;
  });
  f.value("--peer-csv", [&](const char* v) { a.peer_csv = v; });
  f.value("--csv", [&](const char* v) { a.csv_out = v; });
  f.value("--tokens", [&](const char* v) { a.tokens = std::atoll(v); });
  f.value("--iters", [&](const char* v) { a.iters = std::atoi(v); });
  f.value("--max-seconds", [&](const char* v) { a.max_seconds = std::atof(v); });
  f.value("--models", [&](const char* text) {
    const std::string v = text;
    a.models.clear();
    for (size_t p = 0, q; p <= v.size(); p = q + 1) {
      q = v.find(',', p);
      if (q == std::string::npos) q = v.size();
      a.models.push_back(v.substr(p, q - p));
    }
  });
  f.parse(argc, argv);
  return a;
}

// Peer CSV (matmul_peer.py): model,layer,pass,m,n,k,variant,ms. Key
// "model/layer/pass/variant" -> ms (NaN when the peer could not run it).
std::map<std::string, double> read_peer(const std::string& path) {
  std::map<std::string, double> peer;
  for (const auto& f : rotor::bench::read_csv(path)) {
    if (f.size() < 8) continue;
    peer[f[0] + "/" + f[1] + "/" + f[2] + "/" + f[6]] = rotor::bench::parse_time(f[7]);
  }
  return peer;
}

double peer_ms(const std::map<std::string, double>& peer, const std::string& key) {
  const auto it = peer.find(key);
  return it == peer.end() ? NAN : it->second;
}

struct Row {
  std::string model, layer, pass;
  int64_t m, n, k;
  double ms, tflops, ratio, ratio_bf16_out;
  std::string peer_variant;
};

// The three GEMMs of one linear layer, one Row per pass.
std::vector<Row> bench_linear(const Args& a, const ModelShape& ms, const Linear& l,
                              const std::map<std::string, double>& peer) {
  std::vector<Row> rows;
  const rotor::Device gpu = a.cpu_check ? rotor::Device::cpu() : rotor::Device::cuda(0);
  const int64_t n = a.tokens;
  Tensor x = Tensor::empty({n, l.in}, DType::kBF16, gpu), w = Tensor::empty({l.out, l.in}, DType::kBF16, gpu);
  Tensor y = Tensor::empty({n, l.out}, DType::kBF16, gpu), dy = Tensor::empty({n, l.out}, DType::kBF16, gpu);
  Tensor dx = Tensor::empty({n, l.in}, DType::kBF16, gpu), dw = Tensor::zeros({l.out, l.in}, DType::kF32, gpu);
  rotor::bench::fill_random(x, 1);
  rotor::bench::fill_random(w, 2, -0.05, 0.05);
  rotor::bench::fill_random(dy, 3, -1e-3, 1e-3);
  struct Pass {
    const char* name;
    int64_t m, n, k;
    std::function<void()> call;
  };
  const Pass passes[] = {
      {"fwd", n, l.out, l.in, [&] { rotor::matmul(x, w, y, false, true); }},
      {"dgrad", n, l.in, l.out, [&] { rotor::matmul(dy, w, dx); }},
      {"wgrad", l.out, l.in, n, [&] { rotor::matmul(dy, x, dw, true, false, 1.0, 1.0); }},
  };
  for (const Pass& p : passes) {
    if (a.cpu_check) {
      p.call();
      continue;
    }
    const rotor::bench::Timing t = rotor::bench::time_calls(p.call, a.iters, a.max_seconds);
    const double flop = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
    Row r{ms.name, l.name, p.name, p.m, p.n, p.k, t.ms, flop / (t.ms * 1e9), NAN, NAN, ""};
    const std::string key = ms.name + "/" + l.name + "/" + p.name + "/";
    const double bf16_peer = peer_ms(peer, key + "matmul");
    r.ratio_bf16_out = bf16_peer / t.ms;
    r.ratio = r.ratio_bf16_out;
    r.peer_variant = std::isnan(bf16_peer) ? "" : "matmul";
    if (std::string(p.name) == "wgrad") {
      for (const char* f32_variant : {"addmm_f32", "mm_f32"}) {
        const double f32_peer = peer_ms(peer, key + f32_variant);
        if (std::isnan(f32_peer)) continue;
        r.ratio = f32_peer / t.ms;
        r.peer_variant = f32_variant;
        break;
      }
    }
    rows.push_back(r);
  }
  return rows;
}

void print_header(bool have_peer) {
  std::printf("%-5s %-5s %-6s %6s %6s %6s %9s %8s", "model", "layer", "pass", "m", "n", "k", "ms", "TF/s");
  if (have_peer) std::printf(" %8s %-10s %10s", "ratio", "peer", "ratio_bf16");
  std::printf("\n");
}

FILE* open_csv(const std::string& path) {
  if (path.empty()) return nullptr;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "gemm_bench: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fprintf(f, "model,layer,pass,m,n,k,ms,tflops,ratio,peer_variant,ratio_bf16_out\n");
  return f;
}

// Prints the row and appends it to the CSV (flushed: a run cut short keeps
// its finished rows).
void emit(const Row& r, bool have_peer, FILE* csv) {
  std::printf("%-5s %-5s %-6s %6lld %6lld %6lld %9.4f %8.1f", r.model.c_str(), r.layer.c_str(), r.pass.c_str(),
              static_cast<long long>(r.m), static_cast<long long>(r.n), static_cast<long long>(r.k), r.ms, r.tflops);
  if (have_peer) std::printf(" %8.3f %-10s %10.3f", r.ratio, r.peer_variant.c_str(), r.ratio_bf16_out);
  std::printf("\n");
  std::fflush(stdout);
  if (!csv) return;
  std::fprintf(csv, "%s,%s,%s,%lld,%lld,%lld,%.6f,%.3f,%.6g,%s,%.6g\n", r.model.c_str(), r.layer.c_str(),
               r.pass.c_str(), static_cast<long long>(r.m), static_cast<long long>(r.n),
               static_cast<long long>(r.k), r.ms, r.tflops, r.ratio, r.peer_variant.c_str(), r.ratio_bf16_out);
  std::fflush(csv);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.cpu_check) {
    for (const ModelShape& m : kModels) {
      const ModelShape small{m.name, m.hidden / 16, m.q_out / 16, m.kv_out / 16, m.ffn / 16};
      for (const Linear& l : layer_linears(small)) bench_linear(a, small, l, {});
    }
    std::printf("cpu-check: every GEMM call ran on the CPU\n");
    return 0;
  }
  if (!rotor::bench::have_gpu()) return 0;
  std::printf("device: %s, %lld tokens\n", rotor::bench::device_line().c_str(), static_cast<long long>(a.tokens));
  const std::map<std::string, double> peer = a.peer_csv.empty() ? std::map<std::string, double>{} : read_peer(a.peer_csv);
  const bool have_peer = !peer.empty();
  FILE* csv = open_csv(a.csv_out);
  print_header(have_peer);
  for (const std::string& name : a.models) {
    const ModelShape* ms = nullptr;
    for (const ModelShape& m : kModels)
      if (m.name == name) ms = &m;
    if (!ms) {
      std::fprintf(stderr, "gemm_bench: unknown model %s (1b, 8b)\n", name.c_str());
      return 2;
    }
    for (const Linear& l : layer_linears(*ms))
      for (const Row& r : bench_linear(a, *ms, l, peer)) emit(r, have_peer, csv);
  }
  if (have_peer)
    std::printf("ratio = peer time / rotor time (> 1: rotor faster); ratio_bf16 against torch.matmul "
                "writing bf16 (for wgrad: rotor writes f32)\n");
  if (csv) std::fclose(csv);
  return 0;
}
