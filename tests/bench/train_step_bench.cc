// Benchmark: one training step (forward + backward + AdamW with clipping) of
// a small Llama on the CPU, rotor vs PyTorch measured in the same run.
//
//   train_step_bench [--steps N] [--threads N] [--layers 4 --hidden 256 --heads 4
//                     --kv-heads 4 --ffn 688 --vocab 8192 --batch 4 --seq 512]
//
// Prints tokens/s of each and the ratio rotor / torch (target: >= 1).
// Both sides use the same thread count (OpenMP for rotor's loops and
// OpenBLAS; torch.set_num_threads for PyTorch).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/optimizer.h"

#ifndef ROTOR_SOURCE_DIR
#define ROTOR_SOURCE_DIR "."
#endif

namespace {

struct Args {
  int steps = 5, threads = 2;
  int64_t layers = 4, hidden = 256, heads = 4, kv_heads = 4, ffn = 688, vocab = 8192;
  int64_t batch = 4, seq = 512;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (k == "--steps") a.steps = static_cast<int>(v);
    else if (k == "--threads") a.threads = static_cast<int>(v);
    else if (k == "--layers") a.layers = v;
    else if (k == "--hidden") a.hidden = v;
    else if (k == "--heads") a.heads = v;
    else if (k == "--kv-heads") a.kv_heads = v;
    else if (k == "--ffn") a.ffn = v;
    else if (k == "--vocab") a.vocab = v;
    else if (k == "--batch") a.batch = v;
    else if (k == "--seq") a.seq = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rotor;
  const Args a = parse(argc, argv);
  omp_set_num_threads(a.threads);
  setenv("OPENBLAS_NUM_THREADS", std::to_string(a.threads).c_str(), 1);

  LlamaConfig c;
  c.num_hidden_layers = a.layers;
  c.hidden_size = a.hidden;
  c.num_attention_heads = a.heads;
  c.num_key_value_heads = a.kv_heads;
  c.intermediate_size = a.ffn;
  c.vocab_size = a.vocab;
  LlamaOptions o;
  auto model = LlamaModel::create(c, o);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 2;
  }
  model->init_weights(0);
  Batch batch;
  batch.input_ids = Tensor::empty({a.batch, a.seq}, DType::kI32);
  batch.targets = Tensor::empty({a.batch, a.seq}, DType::kI32);
  for (int64_t i = 0; i < a.batch * a.seq; ++i) {
    batch.input_ids.data<int32_t>()[i] = static_cast<int32_t>(mix64(2 * i) % a.vocab);
    batch.targets.data<int32_t>()[i] = static_cast<int32_t>(mix64(2 * i + 1) % a.vocab);
  }
  AdamWOptimizer opt(model->parameters(), AdamWHyper{.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95,
                                                    .eps = 1e-8, .weight_decay = 0.1});
  auto one = [&] {
    model->zero_grad();
    model->forward_backward(batch);
    opt.step(model->parameters(), 1e-4, 1.0);
  };
  one();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < a.steps; ++s) one();
  const double rotor_step =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.steps;
  const double tokens = static_cast<double>(a.batch * a.seq);
  std::printf("model: %lld layers, hidden %lld, heads %lld/%lld, ffn %lld, vocab %lld, "
              "batch %lld x seq %lld, %d threads, %d timed steps\n",
              (long long)a.layers, (long long)a.hidden, (long long)a.heads, (long long)a.kv_heads,
              (long long)a.ffn, (long long)a.vocab, (long long)a.batch, (long long)a.seq,
              a.threads, a.steps);
  std::printf("rotor  %10.0f tokens/s  (%.3f s/step)\n", tokens / rotor_step, rotor_step);

  char cmd[1024];
  std::snprintf(cmd, sizeof(cmd),
                "/usr/bin/python3 %s/tests/bench/torch_train_step.py %lld %lld %lld %lld %lld %lld "
                "%lld %lld %d %d",
                ROTOR_SOURCE_DIR, (long long)a.layers, (long long)a.hidden, (long long)a.heads,
                (long long)a.kv_heads, (long long)a.ffn, (long long)a.vocab, (long long)a.batch,
                (long long)a.seq, a.steps, a.threads);
  FILE* p = popen(cmd, "r");
  std::string out;
  char buf[512];
  while (p && fgets(buf, sizeof(buf), p)) out += buf;
  const int rc = p ? pclose(p) : -1;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || j.is_discarded() || !j.contains("tokens_per_s")) {
    std::printf("torch  unavailable (%s)\n", out.c_str());
    return 0;
  }
  const double torch_tps = j["tokens_per_s"].get<double>();
  std::printf("torch  %10.0f tokens/s  (%.3f s/step)\n", torch_tps, j["step_s"].get<double>());
  std::printf("ratio rotor/torch: %.2fx\n", (tokens / rotor_step) / torch_tps);
  return 0;
}
