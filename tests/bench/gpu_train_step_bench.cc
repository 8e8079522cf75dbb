// One training step of a ~1B Llama on cuda:0 through rotor's TrainStep
// (trainer/train_step.h: forward, backward, global-norm clipping, AdamW),
// bf16 mixed precision, against transformers' LlamaForCausalLM measured by
// tests/bench/hf_train_step_peer.py on the same shape and GPU: tokens/s, MFU
// and peak memory.
//
//   bin/gpu_train_step_bench [--peer-json FILE] [--json OUT] [--steps N] [--max-seconds S]
//       [--layers 16 --hidden 2048 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000
//        --batch 1 --seq 4096] [--peak-tflops T]
//
// Model: LlamaOptions.dtype = bf16 (f32 master weights and gradients, bf16
// working copy and activations, f32 statistics), device cuda:0, untied head,
// rope theta 10000, no recompute; 0.82B matmul weights + 66M embedding at the
// default shape. Batches: random token ids and targets (every target
// counted), a fresh pair of host tensors per step, uploaded by the step.
// Timing: one warm-up step (its time is reported: plans, allocator), then up
// to --steps steps, stopping early once --max-seconds have passed (at least
// one); each TrainStep::step returns after its one device->host read (loss
// and norms), so wall-clock time around it is the step's time.
// MFU = tokens/s x LlamaConfig::training_flops_per_token(seq) (the PaLM
// count: 6 x matmul weights + 12 x layers x heads x head_dim x seq) / peak,
// with the GPU's dense bf16 tensor peak: 989 TFLOP/s for H100 SXM and H200
// (NVIDIA's H100 and H200 datasheets give 1,979 TFLOP/s "with sparsity", half
// of it dense), 835 for H100 NVL / H200 NVL (1,671 sparse), 756 for H100 PCIe
// (1,513 sparse), 312 for A100 (A100 datasheet); another GPU needs
// --peak-tflops. The peer's MFU uses the same count and peak.
// Peak memory: kernels/cuda/memory.h memory_stats().peak_allocated_bytes
// over the whole run (model, gradients, moments, activations); the peer's
// is torch.cuda.max_memory_allocated() over the same span.
// Without a usable CUDA device it prints "skipped: no usable CUDA device"
// and exits 0.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cuda/memory.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "tests/bench/gpu_bench.h"
#include "trainer/train_step.h"
#include "tests/bench/flags.h"

namespace {

using nlohmann::json;
using rotor::DType;
using rotor::Tensor;

struct Args {
  std::string peer_json, json_out;
  int steps = 5;
  double max_seconds = 10, peak_tflops = 0;
  int64_t layers = 16, hidden = 2048, heads = 16, kv_heads = 8, ffn = 5632, vocab = 32000;
  int64_t batch = 1, seq = 4096;
  // --cpu-check: two steps of a tiny model (2 layers, hidden 64) in bf16 on
  // the CPU: this program's model, settings and step loop, checked where no
  // GPU is.
  bool cpu_check = false;
};

const char* kUsage =
    "usage: gpu_train_step_bench [--peer-json FILE] [--json OUT] [--steps N] [--max-seconds S] "
    "[--layers 16 --hidden 2048 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000 --batch 1 --seq 4096] "
    "[--peak-tflops T] | --cpu-check\n";

Args parse(int argc, char** argv) {
  Args a;
  rotor::bench::Flags f(kUsage);
  f.on("--cpu-check", [&] {
    a.cpu_check = true;
    a.layers = 2, a.hidden = 64, a.heads = 4, a.kv_heads = 2, a.ffn = 128, a.vocab = 256, a.seq = 64;
    a.steps = 2;
  });
  f.value("--peer-json", [&](const char* v) { a.peer_json = v; });
  f.value("--json", [&](const char* v) { a.json_out = v; });
  f.value("--steps", [&](const char* v) { a.steps = std::atoi(v); });
  f.value("--max-seconds", [&](const char* v) { a.max_seconds = std::atof(v); });
  f.value("--peak-tflops", [&](const char* v) { a.peak_tflops = std::atof(v); });
  f.value("--layers", [&](const char* v) { a.layers = std::atoll(v); });
  f.value("--hidden", [&](const char* v) { a.hidden = std::atoll(v); });
  f.value("--heads", [&](const char* v) { a.heads = std::atoll(v); });
  f.value("--kv-heads", [&](const char* v) { a.kv_heads = std::atoll(v); });
  f.value("--ffn", [&](const char* v) { a.ffn = std::atoll(v); });
  f.value("--vocab", [&](const char* v) { a.vocab = std::atoll(v); });
  f.value("--batch", [&](const char* v) { a.batch = std::atoll(v); });
  f.value("--seq", [&](const char* v) { a.seq = std::atoll(v); });
  f.parse(argc, argv);
  return a;
}

// Dense bf16 tensor-core peak in TFLOP/s from the device name (sources in
// the header comment); 0 when unknown.
double peak_tflops_of(const std::string& name) {
  const auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H100") || has("H200")) {
    if (has("NVL")) return 835;
    if (has("PCIe")) return 756;
    return 989;
  }
  if (has("A100")) return 312;
  return 0;
}

rotor::Batch random_batch(const Args& a, uint64_t seed) {
  rotor::Batch b;
  b.input_ids = Tensor::empty({a.batch, a.seq}, DType::kI32);
  b.targets = Tensor::empty({a.batch, a.seq}, DType::kI32);
  for (int64_t i = 0; i < a.batch * a.seq; ++i) {
    b.input_ids.data<int32_t>()[i] = static_cast<int32_t>(rotor::mix64(seed + 2 * i) % a.vocab);
    b.targets.data<int32_t>()[i] = static_cast<int32_t>(rotor::mix64(seed + 2 * i + 1) % a.vocab);
  }
  return b;
}

struct Measured {
  double first_step_s = 0, step_s = 0, last_loss = NAN, grad_norm = NAN;
  int timed_steps = 0;
  int64_t peak_bytes = 0;
};

// Builds the model and runs the warm-up and timed steps; exits on an error
// or a step that was not applied (non-finite loss or norm).
Measured run_rotor(const Args& a, const rotor::LlamaConfig& c) {
  rotor::LlamaOptions o;
  o.dtype = DType::kBF16;
  o.device = a.cpu_check ? rotor::Device::cpu() : rotor::Device::cuda(0);
  o.rope.theta = c.rope_theta;
  absl::StatusOr<rotor::LlamaModel> model = rotor::LlamaModel::create(c, o);
  if (!model.ok()) {
    std::fprintf(stderr, "gpu_train_step_bench: %s\n", std::string(model.status().message()).c_str());
    std::exit(2);
  }
  model->init_weights(0);
  rotor::TrainStepSettings settings;
  settings.hyper = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  settings.grad_clip = 1.0;
  settings.schedule = {.lr = 1e-4, .min_lr = 1e-4, .shape = rotor::LrSchedule::Shape::kConstant};
  rotor::TrainStep step(*model, settings);
  Measured m;
  auto one = [&](int64_t s) {
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<rotor::TrainStepResult> r = step.step(s, {random_batch(a, 1000003ull * s)});
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok() || !r->applied()) {
      std::fprintf(stderr, "gpu_train_step_bench: step %lld: %s\n", static_cast<long long>(s),
                   r.ok() ? r->nonfinite.c_str() : std::string(r.status().message()).c_str());
      std::exit(1);
    }
    m.last_loss = r->loss.mean();
    m.grad_norm = r->grad_norm;
    return dt;
  };
  m.first_step_s = one(1);
  double total = 0;
  while (m.timed_steps < std::max(1, a.steps) && (m.timed_steps == 0 || total < a.max_seconds)) {
    total += one(2 + m.timed_steps);
    ++m.timed_steps;
  }
  m.step_s = total / m.timed_steps;
  if (!a.cpu_check) m.peak_bytes = rotor::cuda::memory_stats(0).peak_allocated_bytes;
  return m;
}

// The peer's modes ("amp", "bf16") with their tokens/s and peak bytes; the
// MFU is computed here with rotor's FLOP count.
json peer_results(const Args& a, double flops_per_token, double peak, double rotor_tps, int64_t rotor_peak) {
  json out = json::object();
  if (a.peer_json.empty()) return out;
  std::ifstream in(a.peer_json);
  const json p = json::parse(in, nullptr, false);
  if (p.is_discarded() || !p.contains("modes")) {
    std::fprintf(stderr, "gpu_train_step_bench: cannot read peer results %s\n", a.peer_json.c_str());
    std::exit(1);
  }
  for (const auto& [mode, r] : p["modes"].items()) {
    if (!r.contains("tokens_per_s")) {
      std::printf("hf %-5s failed: %s\n", mode.c_str(), r.value("error", std::string("?")).c_str());
      out[mode] = {{"error", r.value("error", std::string("?"))}};
      continue;
    }
    const double tps = r["tokens_per_s"].get<double>();
    const double bytes = r["peak_bytes"].get<double>();
    json m = {{"tokens_per_s", tps}, {"peak_bytes", bytes}, {"ratio_tokens_per_s", rotor_tps / tps},
              {"ratio_peak_bytes", static_cast<double>(rotor_peak) / bytes}};
    if (peak > 0) m["mfu"] = tps * flops_per_token / (peak * 1e12);
    std::printf("hf %-5s %9.0f tokens/s  MFU %5.1f%%  peak %6.2f GiB   rotor/hf: tokens/s %.3f, peak memory %.3f\n",
                mode.c_str(), tps, peak > 0 ? 100 * m["mfu"].get<double>() : NAN, bytes / (1 << 30),
                rotor_tps / tps, static_cast<double>(rotor_peak) / bytes);
    out[mode] = m;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (!a.cpu_check && !rotor::bench::have_gpu()) return 0;
  rotor::LlamaConfig c;
  c.num_hidden_layers = a.layers;
  c.hidden_size = a.hidden;
  c.num_attention_heads = a.heads;
  c.num_key_value_heads = a.kv_heads;
  c.intermediate_size = a.ffn;
  c.vocab_size = a.vocab;
  c.max_position_embeddings = a.seq;
  const std::string dev = a.cpu_check ? "cpu (--cpu-check)" : rotor::bench::device_line();
  const double peak = a.peak_tflops > 0 ? a.peak_tflops : peak_tflops_of(dev);
  std::printf("device: %s, dense bf16 peak %s\n", dev.c_str(),
              peak > 0 ? (std::to_string(static_cast<int>(peak)) + " TFLOP/s").c_str() : "unknown (no MFU)");
  std::printf("model: %lld layers, hidden %lld, heads %lld/%lld, ffn %lld, vocab %lld, %lld parameters; "
              "batch %lld x %lld tokens, bf16 mixed precision\n",
              (long long)a.layers, (long long)a.hidden, (long long)a.heads, (long long)a.kv_heads, (long long)a.ffn,
              (long long)a.vocab, (long long)c.num_parameters(), (long long)a.batch, (long long)a.seq);
  const Measured m = run_rotor(a, c);
  const double tokens = static_cast<double>(a.batch * a.seq);
  const double tps = tokens / m.step_s, fpt = c.training_flops_per_token(a.seq);
  json j = {{"device", dev},           {"peak_tflops", peak},         {"tokens_per_step", tokens},
            {"flops_per_token", fpt},  {"first_step_s", m.first_step_s}, {"step_s", m.step_s},
            {"timed_steps", m.timed_steps}, {"tokens_per_s", tps},    {"peak_bytes", m.peak_bytes},
            {"loss", m.last_loss},     {"grad_norm", m.grad_norm}};
  if (peak > 0) j["mfu"] = tps * fpt / (peak * 1e12);
  std::printf("rotor    %9.0f tokens/s  MFU %5.1f%%  peak %6.2f GiB   (%.3f s/step over %d steps; first step "
              "%.2f s; loss %.4f)\n",
              tps, peak > 0 ? 100 * j["mfu"].get<double>() : NAN, static_cast<double>(m.peak_bytes) / (1 << 30),
              m.step_s, m.timed_steps, m.first_step_s, m.last_loss);
  j["peer"] = peer_results(a, fpt, peak, tps, m.peak_bytes);
  if (!a.json_out.empty()) std::ofstream(a.json_out) << j.dump(2) << "\n";
  return 0;
}
