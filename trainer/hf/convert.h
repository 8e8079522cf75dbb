// Rotor checkpoints <-> Hugging Face LlamaForCausalLM directories
// (config.json + safetensors): what `rotor export-hf` and `rotor import-hf`
// do (trainer/cli/hf_command.h describes the commands).
//
// export_hf loads the checkpoint (a run directory means its latest
// checkpoint) with its checksums verified, through load_scoring_model
// (trainer/loading.h: the model is built from <ckpt>/recipe.yaml). The HF
// directory (created; must not exist or be empty) receives
//   config.json              make_hf_config (trainer/hf/config.h) of the
//                            recipe's model, rope and logit_scale, with
//                            max_position_embeddings = max(model.max_position_embeddings,
//                            data.sequence_length); torch_dtype from the dtype
//   generation_config.json   {"_from_model_config": true, "bos_token_id",
//                            "eos_token_id"} (ids of the checkpoint's tokenizer,
//                            when it has them; bytes: 256 / 257)
//   model.safetensors        every parameter by HF name, in the dtype (bf16
//                            and f16 rounded to nearest even, f16 refusing
//                            weights beyond 65504; f32 is exact),
//                            __metadata__ {"format": "pt"}; no lm_head.weight
//                            with tied embeddings
//   or, when the weights exceed max_shard bytes, shards
//   model-00001-of-0000N.safetensors ... filled in parameter order (a tensor
//   larger than the limit gets a shard of its own) plus
//   model.safetensors.index.json {"metadata": {"total_size": bytes of tensor
//   data}, "weight_map": {name: file}}
//   tokenizer.model          copied when the checkpoint has one
// A logit scalar (logit_scale.kind not none) is exported as the extra
// config.json field "rotor_logit_scale", which transformers ignores. With
// modeling_code also modeling_rotor_llama.py (trainer/hf/modeling_rotor_llama.py,
// embedded in the binary) and config.json "auto_map": {"AutoModelForCausalLM":
// "modeling_rotor_llama.RotorLlamaForCausalLM"}, so that transformers with
// trust_remote_code=True applies the scalar (a q_proj forward hook per layer).
//
// import_hf reads <hf_dir>/config.json (parse_hf_config) and the weights from
// model.safetensors or from every shard model.safetensors.index.json names.
// Every tensor the model needs must be there with its exact shape (F32, BF16,
// F16 or F64; converted to f32); "*.rotary_emb.inv_freq" is ignored, and so is
// lm_head.weight when the embeddings are tied; any other tensor is an error.
// The checkpoint directory (must not exist or be empty) becomes a rotor
// checkpoint directory itself (not a run directory), usable by `rotor score`,
// `rotor export-hf` and `model.init_from`: it is written with save_checkpoint
// (step 0, zero AdamW moments, state.json with CRC-32s) into a scratch run
// directory next to it and renamed into place. Its recipe.yaml is
// imported_recipe's (trainer/hf/imported_recipe.h). tokenizer.model is copied
// when present (and data.tokenizer names it), else data.tokenizer is bytes.
//
// Errors name the file or tensor. Input errors are InvalidArgument or
// NotFound (missing files, bad config, missing or misshapen tensors), a
// destination in the way AlreadyExists; write failures other codes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/rope.h"

namespace rotor {

struct ExportOptions {
  std::string checkpoint;  // a checkpoint directory, or a run directory (its latest)
  std::string hf_dir;      // the destination: must not exist or be empty
  std::string dtype = "bf16";             // bf16 | f16 | f32
  uint64_t max_shard = 5'000'000'000ULL;  // largest shard in bytes (> 0)
  bool modeling_code = false;             // also modeling_rotor_llama.py + auto_map
};

// What export_hf wrote.
struct ExportSummary {
  std::string checkpoint;  // the resolved checkpoint directory
  int64_t step = 0;
  size_t tensors = 0;
  uint64_t bytes = 0;  // tensor data
  size_t files = 0;    // safetensors files
  LogitScaleKind logit_scale = LogitScaleKind::kNone;  // exported as "rotor_logit_scale" unless none
};

// Exports `options.checkpoint` into `options.hf_dir` (see above). A
// checkpoint without a usable tokenizer is exported without bos/eos ids, and
// `warn` gets "no tokenizer (REASON): generation_config.json has no bos/eos ids".
absl::StatusOr<ExportSummary> export_hf(const ExportOptions& options,
                                        const std::function<void(const std::string&)>& warn);

// What import_hf wrote.
struct ImportSummary {
  size_t tensors = 0;
  int64_t parameters = 0;
  RopeMethod rope = RopeMethod::kNone;
};

// Imports the Hugging Face directory `hf_dir` as the checkpoint directory
// `ckpt_dir` (see above).
absl::StatusOr<ImportSummary> import_hf(const std::string& hf_dir, const std::string& ckpt_dir);

}  // namespace rotor
