// Benchmark: training at long context on one CPU process (issue 20), rotor vs
// eager PyTorch measured in the same run.
//
//   long_context_bench [--seqs 8192,32768,131072] [--configs none,selective,full,offload]
//                      [--attention-seqs 8192,32768] [--peer-seqs 2048,4096,8192]
//                      [--budget 16GB] [--threads 2] [--skip-peer] [--skip-steps]
//
// The benchmark model: 4 layers, hidden 256, 8 heads, 4 kv heads, FFN 688,
// vocab 4096, batch 1, f32 (the issue's; ~5M parameters).
//
// 1. Memory: one training step (TrainStep: forward, backward, clipping,
//    AdamW) at each of --seqs in each configuration, each in a child process:
//      none       train.recompute none, the MLP in one piece
//      selective  selective recompute, MLP tiles of 1024
//      full       full recompute, MLP tiles of 1024
//      offload    selective + tiles + activations offloaded to the host pool
//    Reports the tensor peak (kernels/memory.h), the process's peak RSS, the
//    memory model's prediction (trainer/memory_plan.h) and the step's time;
//    and per configuration the longest sequence the model predicts within
//    --budget. (Run first, so the children inherit no buffers of 2 and 3.)
// 2. sgemm: rotor's matmul (OpenBLAS) on [2048, 2048] x [2048, 2048], the
//    machine's GEMM throughput in this process.
// 3. Attention: the CPU kernel's causal forward + backward at each of
//    --attention-seqs (B 1, Hq 8, Hkv 4, head dim 32), in GFLOP/s counted as
//    the FlashAttention papers count them (forward 4 B Hq T^2 D / 2, backward
//    2.5x that) and as a fraction of the sgemm rate.
// 4. PyTorch (tests/bench/torch_train_step.py, /usr/bin/python3): the same
//    model and step at --peer-seqs, peak RSS and time, each under an address-
//    space limit of --budget; a quadratic fit of its peak RSS gives the
//    longest sequence within the budget, and one more run there checks it.
// Ratios printed: rotor's peak RSS / PyTorch's at the same length, and the
// longest lengths within the budget.
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/memory.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "tests/bench/flags.h"
#include "trainer/cli/args.h"
#include "trainer/memory_plan.h"
#include "trainer/train_step.h"

#ifndef ROTOR_SOURCE_DIR
#define ROTOR_SOURCE_DIR "."
#endif

namespace rotor {
namespace {

constexpr const char* kUsage =
    "usage: long_context_bench [--seqs 8192,32768,131072] [--configs none,selective,full,offload]\n"
    "                          [--attention-seqs 8192,32768] [--peer-seqs 2048,4096,8192]\n"
    "                          [--budget 16GB] [--threads 2] [--skip-peer] [--skip-steps]\n";

std::vector<int64_t> int_list(const char* text) {
  std::vector<int64_t> out;
  for (const char* p = text; *p;) {
    out.push_back(std::atoll(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

std::vector<std::string> word_list(const char* text) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = text;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*p == 0) break;
    } else {
      cur += *p;
    }
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

LlamaConfig bench_config() {
  LlamaConfig c;
  c.num_hidden_layers = 4;
  c.hidden_size = 256;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.intermediate_size = 688;
  c.vocab_size = 4096;
  c.max_position_embeddings = 1 << 20;
  return c;
}

struct Config {
  std::string name;
  Recompute recompute;
  int64_t tile;
  bool offload;
};

Config config_named(const std::string& name) {
  if (name == "none") return {name, Recompute::kNone, 0, false};
  if (name == "selective") return {name, Recompute::kSelective, 1024, false};
  if (name == "full") return {name, Recompute::kFull, 1024, false};
  if (name == "offload") return {name, Recompute::kSelective, 1024, true};
  std::fprintf(stderr, "unknown config %s (none, selective, full, offload)\n", name.c_str());
  std::exit(2);
}

MemoryPlanInput plan_input(const Config& c, int64_t seq) {
  MemoryPlanInput in;
  in.config = bench_config();
  in.recompute = c.recompute;
  in.tile_tokens = c.tile;
  in.offload_activations = c.offload;
  in.sequence_length = seq;
  in.micro_batches = 1;
  in.host_is_device = true;
  return in;
}

double sgemm_gflops() {
  const int64_t n = 2048;
  Tensor a = Tensor::empty({n, n}, DType::kF32), b = Tensor::empty({n, n}, DType::kF32);
  Tensor c = Tensor::empty({n, n}, DType::kF32);
  fill_normal(a, 1, 0, 1);
  fill_normal(b, 2, 0, 1);
  matmul(a, b, c);  // warm-up
  const int iters = 5;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) matmul(a, b, c);
  return 2.0 * n * n * n * iters / seconds_since(t0) / 1e9;
}

// Causal attention forward + backward at T: {forward s, backward s, GFLOP/s}.
void attention_rate(int64_t t, double sgemm) {
  const int64_t hq = 8, hkv = 4, hd = 32;
  Tensor q = Tensor::empty({1, t, hq, hd}, DType::kF32), k = Tensor::empty({1, t, hkv, hd}, DType::kF32);
  Tensor v = Tensor::empty_like(k), out = Tensor::empty_like(q), dout = Tensor::empty_like(q);
  Tensor lse = Tensor::empty({1, hq, t}, DType::kF32);
  for (auto [x, s] : {std::pair{&q, 1}, {&k, 2}, {&v, 3}, {&dout, 4}}) fill_normal(*x, static_cast<uint64_t>(s), 0, 1);
  Tensor pos = Tensor::empty({1, t}, DType::kI32);
  for (int64_t i = 0; i < t; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  AttentionMask mask;
  mask.q_pos = mask.k_pos = pos;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto t0 = std::chrono::steady_clock::now();
  attention_forward(q, k, v, mask, scale, out, lse);
  const double fwd = seconds_since(t0);
  Tensor dq = Tensor::zeros_like(q), dk = Tensor::zeros_like(k), dv = Tensor::zeros_like(v);
  t0 = std::chrono::steady_clock::now();
  attention_backward(q, k, v, mask, scale, out, lse, dout, dq, dk, dv);
  const double bwd = seconds_since(t0);
  const double flops_fwd = 4.0 * hq * static_cast<double>(t) * t * hd / 2;
  const double rate = 3.5 * flops_fwd / (fwd + bwd) / 1e9;
  std::printf("attention T=%-7lld forward %8.2f s  backward %8.2f s  %6.1f GFLOP/s  (%.2f of sgemm)\n",
              static_cast<long long>(t), fwd, bwd, rate, rate / sgemm);
  std::fflush(stdout);
}

struct StepResult {
  double seconds = 0;
  int64_t peak = 0;  // tensor bytes on the device ledger
  int64_t offloaded = 0;
  int64_t activations = 0, transient = 0;  // at the peak
  double loss = 0;
};

// One training step of the benchmark model in this process.
StepResult train_one_step(const Config& c, int64_t seq) {
  LlamaOptions o;
  o.rope.theta = 10000;
  o.recompute = c.recompute;
  o.tile_tokens = c.tile;
  o.offload_activations = c.offload;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(bench_config(), o);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    std::exit(1);
  }
  model->init_weights(1);
  TrainStepSettings settings;
  settings.hyper.lr = 1e-4;
  settings.grad_clip = 1.0;
  TrainStep step(*model, settings);
  Batch b;
  b.input_ids = Tensor::empty({1, seq}, DType::kI32);
  b.targets = Tensor::empty({1, seq}, DType::kI32);
  for (int64_t i = 0; i < seq; ++i) {
    b.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(2 * i) % 4096);
    b.targets.data<int32_t>()[i] = static_cast<int32_t>(mix64(2 * i + 1) % 4096);
  }
  reset_memory_peak(Device::cpu());
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<TrainStepResult> r = step.step(1, {b});
  StepResult out;
  out.seconds = seconds_since(t0);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
    std::exit(1);
  }
  const MemoryUsage u = memory_usage(Device::cpu());
  out.peak = u.peak;
  out.offloaded = u.high_of(MemoryTag::kOffloaded);
  out.activations = u.peak_of(MemoryTag::kActivations);
  out.transient = u.peak_of(MemoryTag::kTransient);
  out.loss = r->loss.mean();
  return out;
}

// Runs the step in a child process: its result and the child's peak RSS (bytes).
bool step_in_child(const Config& c, int64_t seq, StepResult& result, int64_t& rss) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const StepResult r = train_one_step(c, seq);
    if (write(fds[1], &r, sizeof r) != sizeof r) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  const ssize_t got = read(fds[0], &result, sizeof result);
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  rss = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  return got == sizeof result && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The PyTorch peer at T: {ok, peak RSS bytes, step seconds}; the budget is its
// address-space limit.
struct PeerResult {
  bool ok = false;
  double rss = 0, seconds = 0;
  std::string error;
};

PeerResult run_peer(int64_t seq, int threads, int64_t budget) {
  const std::string cmd = "ulimit -v " + std::to_string(budget / 1024) + "; /usr/bin/python3 " ROTOR_SOURCE_DIR
                          "/tests/bench/torch_train_step.py 4 256 8 4 688 4096 1 " + std::to_string(seq) +
                          " 1 " + std::to_string(threads) + " 2>&1";
  PeerResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  const size_t at = out.rfind("{\"tokens_per_s\"");
  if (status == 0 && at != std::string::npos) {
    const size_t rss_at = out.find("\"peak_rss\": ", at), step_at = out.find("\"step_s\": ", at);
    if (rss_at != std::string::npos && step_at != std::string::npos) {
      r.ok = true;
      r.rss = std::atof(out.c_str() + rss_at + 12);
      r.seconds = std::atof(out.c_str() + step_at + 10);
      return r;
    }
  }
  r.error = WIFEXITED(status) && WEXITSTATUS(status) == 77 ? "no torch" : "failed (out of memory under the budget?)";
  if (out.find("memory") != std::string::npos || out.find("Memory") != std::string::npos) r.error = "out of memory";
  return r;
}

}  // namespace
}  // namespace rotor

int main(int argc, char** argv) {
  using namespace rotor;
  std::vector<int64_t> seqs = {8192, 32768, 131072}, attention_seqs = {8192, 32768}, peer_seqs = {2048, 4096, 8192};
  std::vector<std::string> configs = {"none", "selective", "full", "offload"};
  std::string budget_text = "16GB";
  int threads = 2;
  bool skip_peer = false, skip_steps = false;
  bench::Flags f(kUsage);
  f.value("--seqs", [&](const char* v) { seqs = int_list(v); });
  f.value("--attention-seqs", [&](const char* v) { attention_seqs = int_list(v); });
  f.value("--peer-seqs", [&](const char* v) { peer_seqs = int_list(v); });
  f.value("--configs", [&](const char* v) { configs = word_list(v); });
  f.value("--budget", [&](const char* v) { budget_text = v; });
  f.value("--threads", [&](const char* v) { threads = std::atoi(v); });
  f.on("--skip-peer", [&] { skip_peer = true; });
  f.on("--skip-steps", [&] { skip_steps = true; });
  f.parse(argc, argv);
  absl::StatusOr<int64_t> budget = parse_byte_size(budget_text, "--budget");
  if (!budget.ok()) {
    std::fprintf(stderr, "%s\n", std::string(budget.status().message()).c_str());
    return 2;
  }
  omp_set_num_threads(threads);
  std::printf("benchmark model: 4 layers, hidden 256, 8 heads (4 kv), ffn 688, vocab 4096, batch 1, f32; %d threads\n",
              threads);
  double rotor_rss_at[64] = {};  // by index of seqs, the selective config's (or first) RSS
  if (!skip_steps) {
    std::printf("\nPer token (KB): kept activations on the device / transient at the peak / all tensors at the peak.\n");
    std::printf("%-10s %8s %8s %10s %10s %10s %10s %16s\n", "config", "T", "step s", "tensors", "predicted",
                "peak RSS", "offloaded", "KB/token a/t/all");
    for (const std::string& name : configs) {
      const Config c = config_named(name);
      for (size_t i = 0; i < seqs.size(); ++i) {
        StepResult r;
        int64_t rss = 0;
        if (!step_in_child(c, seqs[i], r, rss)) {
          std::printf("%-10s %8lld  failed\n", name.c_str(), static_cast<long long>(seqs[i]));
          continue;
        }
        const MemoryPlan plan = plan_memory(plan_input(c, seqs[i]));
        const double per = static_cast<double>(seqs[i]) * 1e3;
        std::printf("%-10s %8lld %8.1f %7.0f MB %7.0f MB %7.0f MB %7.0f MB %5.1f/%4.1f/%5.1f\n", name.c_str(),
                    static_cast<long long>(seqs[i]), r.seconds, r.peak / 1e6, plan.peak / 1e6, rss / 1e6,
                    r.offloaded / 1e6, r.activations / per, r.transient / per, r.peak / per);
        std::fflush(stdout);
        if (i < 64 && (name == "selective" || rotor_rss_at[i] == 0)) rotor_rss_at[i] = static_cast<double>(rss);
      }
      const int64_t longest = longest_fitting_sequence(plan_input(c, 1024), *budget, 1024);
      std::printf("%-10s longest sequence within %s (memory model, tensors): %lld tokens\n", name.c_str(),
                  budget_text.c_str(), static_cast<long long>(longest));
    }
  }

  // After the steps, whose children would otherwise inherit these buffers.
  const double sgemm = sgemm_gflops();
  std::printf("\nsgemm [2048x2048x2048]: %.1f GFLOP/s\n", sgemm);
  for (int64_t t : attention_seqs) attention_rate(t, sgemm);

  if (skip_peer) return 0;
  std::printf("\nPyTorch %s (tests/bench/torch_train_step.py), address space limited to %s:\n",
              "eager", budget_text.c_str());
  std::vector<std::pair<double, double>> points;  // (T, RSS)
  for (int64_t t : peer_seqs) {
    const PeerResult p = run_peer(t, threads, *budget);
    if (!p.ok) {
      std::printf("torch      %8lld  %s\n", static_cast<long long>(t), p.error.c_str());
      if (p.error == "no torch") return 0;
      continue;
    }
    points.emplace_back(static_cast<double>(t), p.rss);
    std::printf("torch      %8lld %10.1f s %8.0f MB peak RSS\n", static_cast<long long>(t), p.seconds, p.rss / 1e6);
    for (size_t i = 0; i < seqs.size() && i < 64; ++i)
      if (seqs[i] == t && rotor_rss_at[i] > 0)
        std::printf("  rotor (selective) / torch peak RSS at %lld: %.3f\n", static_cast<long long>(t),
                    rotor_rss_at[i] / p.rss);
    std::fflush(stdout);
  }
  if (points.size() >= 3) {
    // RSS = a + b T + c T^2 through the last three points.
    const auto [x0, y0] = points[points.size() - 3];
    const auto [x1, y1] = points[points.size() - 2];
    const auto [x2, y2] = points[points.size() - 1];
    const double c = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0);
    const double b = (y1 - y0) / (x1 - x0) - c * (x0 + x1);
    const double a = y0 - b * x0 - c * x0 * x0;
    const double budget_bytes = static_cast<double>(*budget);
    const double t_max = c > 0 ? (-b + std::sqrt(b * b - 4 * c * (a - budget_bytes))) / (2 * c) : 0;
    const int64_t longest = static_cast<int64_t>(t_max) / 256 * 256;
    std::printf("torch longest sequence within %s (quadratic fit of peak RSS): %lld tokens\n", budget_text.c_str(),
                static_cast<long long>(longest));
    if (longest > 0) {
      const PeerResult p = run_peer(longest, threads, *budget);
      std::printf("  check at %lld: %s\n", static_cast<long long>(longest),
                  p.ok ? ("ran, peak RSS " + std::to_string(static_cast<int64_t>(p.rss / 1e6)) + " MB").c_str()
                       : p.error.c_str());
    }
  }
  return 0;
}
