// Writes what tests/model/torch_parity.py needs to check rotor against an
// independent PyTorch implementation of the same tiny Llama: the config, the
// RoPE/logit-scale settings, the initial weights, a batch, and rotor's
// logits, loss, every gradient and the weights after three AdamW steps.
//
//   torch_parity_dump OUT_DIR f32|f64 ROPE_METHOD
//
// Tensors are raw little-endian f64 files named after the HF parameter name;
// manifest.json lists them with shapes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "model/llama.h"
#include "trainer/optimizer.h"

namespace rotor {
namespace {

void write_tensor(const std::filesystem::path& dir, const std::string& name, const Tensor& t,
                  nlohmann::json& manifest) {
  const std::vector<double> v = t.to_vector();
  std::ofstream f(dir / (name + ".f64"), std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 8));
  manifest["tensors"][name] = t.shape().vec();
}

int run(const std::filesystem::path& dir, DType dtype, const std::string& method) {
  std::filesystem::create_directories(dir);
  LlamaConfig c;
  c.vocab_size = 37;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = method == "linear";  // cover the tied head too
  c.initializer_range = 0.3;
  LlamaOptions o;
  o.dtype = dtype;
  o.ce_chunks = {5, 16};
  o.rope.theta = 500.0;
  absl::StatusOr<RopeMethod> m = parse_rope_method(method);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", std::string(m.status().message()).c_str());
    return 2;
  }
  o.rope.method = *m;
  o.rope.factor = 4;
  o.rope.original_max_position = 8;
  o.logit_scale.kind = LogitScaleKind::kLogPosition;
  o.logit_scale.base_length = 4;
  o.logit_scale.skip_layers = {0};
  auto model = LlamaModel::create(c, o);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 2;
  }
  model->init_weights(42);

  const int64_t b = 2, t = 12;
  Batch batch;
  batch.input_ids = Tensor::empty({b, t}, DType::kI32);
  batch.targets = Tensor::empty({b, t}, DType::kI32);
  batch.positions = Tensor::empty({b, t}, DType::kI32);
  batch.segments = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b * t; ++i) {
    batch.input_ids.data<int32_t>()[i] = static_cast<int32_t>((i * 7 + 3) % c.vocab_size);
    batch.targets.data<int32_t>()[i] = i % 11 == 5 ? -100 : static_cast<int32_t>((i * 5 + 1) % c.vocab_size);
    // Row 0: one document at positions 0..11. Row 1: two documents (8 + 4
    // tokens), positions reset per document, and an offset as if this row were
    // a later shard of a long sequence (global positions 20..27 then 0..3).
    const int64_t r = i / t, j = i % t;
    batch.segments.data<int32_t>()[i] = r == 0 ? 0 : (j < 8 ? 0 : 1);
    batch.positions.data<int32_t>()[i] = static_cast<int32_t>(r == 0 ? j : (j < 8 ? 20 + j : j - 8));
  }

  nlohmann::json manifest;
  manifest["config"] = {{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size},
                        {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"num_key_value_heads", c.num_key_value_heads}, {"head_dim", c.head_dim},
                        {"rms_norm_eps", c.rms_norm_eps},
                        {"tie_word_embeddings", c.tie_word_embeddings}};
  manifest["rope"] = {{"method", method}, {"theta", o.rope.theta}, {"factor", o.rope.factor},
                      {"original_max_position", o.rope.original_max_position}};
  manifest["logit_scale"] = {{"base_length", o.logit_scale.base_length}, {"skip_layers", {0}}};
  manifest["dtype"] = dtype_name(dtype);
  for (const Parameter& p : model->parameters()) write_tensor(dir, "init." + p.name, p.value, manifest);
  write_tensor(dir, "input_ids", batch.input_ids, manifest);
  write_tensor(dir, "targets", batch.targets, manifest);
  write_tensor(dir, "positions", batch.positions, manifest);
  write_tensor(dir, "segments", batch.segments, manifest);

  write_tensor(dir, "logits", model->logits(batch), manifest);
  model->zero_grad();
  manifest["loss"] = model->forward_backward(batch);
  for (const Parameter& p : model->parameters()) write_tensor(dir, "grad." + p.name, p.grad, manifest);

  // Three AdamW steps (weight decay on matrices only), re-computing gradients.
  AdamWOptimizer opt(model->parameters(), AdamWHyper{.lr = 0, .beta1 = 0.9, .beta2 = 0.95,
                                                    .eps = 1e-8, .weight_decay = 0.1});
  manifest["adamw"] = {{"lr", 1e-2}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8},
                       {"weight_decay", 0.1}, {"steps", 3}};
  for (int s = 0; s < 3; ++s) {
    if (s > 0) {
      model->zero_grad();
      model->forward_backward(batch);
    }
    opt.step(model->parameters(), 1e-2, 0.0);
  }
  for (const Parameter& p : model->parameters()) write_tensor(dir, "adamw." + p.name, p.value, manifest);
  std::ofstream(dir / "manifest.json") << manifest.dump(1);
  return 0;
}

}  // namespace
}  // namespace rotor

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: torch_parity_dump OUT_DIR f32|f64 ROPE_METHOD\n");
    return 2;
  }
  const std::string dt = argv[2];
  return rotor::run(argv[1], dt == "f64" ? rotor::DType::kF64 : rotor::DType::kF32, argv[3]);
}
