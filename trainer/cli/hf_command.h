// `rotor export-hf` and `rotor import-hf`: rotor checkpoints <-> Hugging Face
// LlamaForCausalLM directories (config.json + safetensors).
//
//   rotor export-hf CHECKPOINT_OR_RUN_DIR HF_DIR [--dtype bf16|f16|f32]
//                   [--max-shard-size 5GB] [--with-modeling-code]
//
// Loads the checkpoint (a run directory means its latest checkpoint) with its
// checksums verified, through the same path as `rotor score`: the model is
// built from <ckpt>/recipe.yaml. HF_DIR (created; must not exist or be empty)
// receives
//   config.json              make_hf_config (trainer/hf/config.h) of the
//                            recipe's model, rope and logit_scale, with
//                            max_position_embeddings = max(model.max_position_embeddings,
//                            data.sequence_length); torch_dtype from --dtype
//   generation_config.json   {"_from_model_config": true, "bos_token_id",
//                            "eos_token_id"} (ids of the checkpoint's tokenizer,
//                            when it has them; bytes: 256 / 257)
//   model.safetensors        every parameter by HF name, in --dtype (default
//                            bf16; bf16 and f16 rounded to nearest even, f16
//                            refusing weights beyond 65504; f32 is exact),
//                            __metadata__ {"format": "pt"}; no lm_head.weight
//                            with tied embeddings
//   or, when the weights exceed --max-shard-size (decimal units as HF:
//   5GB = 5e9 bytes; also MB, KB, B, and GiB/MiB/KiB), shards
//   model-00001-of-0000N.safetensors ... filled in parameter order (a tensor
//   larger than the limit gets a shard of its own) plus
//   model.safetensors.index.json {"metadata": {"total_size": bytes of tensor
//   data}, "weight_map": {name: file}}
//   tokenizer.model          copied when the checkpoint has one
// A logit scalar (logit_scale.kind not none) is exported as the extra
// config.json field "rotor_logit_scale", which transformers ignores: a
// warning says so on stderr. --with-modeling-code also writes
// modeling_rotor_llama.py (trainer/hf/modeling_rotor_llama.py, embedded in the
// binary) and config.json "auto_map": {"AutoModelForCausalLM":
// "modeling_rotor_llama.RotorLlamaForCausalLM"}, so that transformers with
// trust_remote_code=True applies the scalar (a q_proj forward hook per layer).
//
//   rotor import-hf HF_DIR CHECKPOINT_DIR
//
// Reads HF_DIR/config.json (parse_hf_config) and the weights from
// model.safetensors or from every shard model.safetensors.index.json names.
// Every tensor the model needs must be there with its exact shape (F32, BF16,
// F16 or F64; converted to f32); "*.rotary_emb.inv_freq" is ignored, and so is
// lm_head.weight when the embeddings are tied; any other tensor is an error.
// CHECKPOINT_DIR (must not exist or be empty) becomes a rotor checkpoint
// directory itself (not a run directory), usable by `rotor score`, `rotor
// export-hf` and `model.init_from`: it is written with save_checkpoint (step 0,
// zero AdamW moments, state.json with CRC-32s) into a scratch run directory
// next to it and renamed into place. Its recipe.yaml is resolved: model,
// rope and logit_scale from config.json; data and train hold placeholders
// (data.datasets [{path: "(imported from HF_DIR)"}], data.sequence_length =
// max_position_embeddings, train.steps 1, lr 1e-5, global_batch_size 1), so
// that the recipe loads; a comment at its top says so. tokenizer.model is
// copied when present (and data.tokenizer names it), else the recipe names no
// tokenizer (data.tokenizer absent).
//
// Errors are "rotor export-hf: MESSAGE" / "rotor import-hf: MESSAGE" on
// stderr; status 2 for usage and input errors (missing files, bad config,
// missing or misshapen tensors), 1 for failures after that (write errors).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor {

// "5GB" -> 5000000000, "500MB", "100KB", "10B", "123" (bytes), "2GiB" ->
// 2 * 2^30. Must be > 0.
absl::StatusOr<uint64_t> parse_shard_size(const std::string& text);

int run_export_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);
int run_import_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);

}  // namespace rotor
