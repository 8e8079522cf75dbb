// `rotor export-hf` and `rotor import-hf`: rotor checkpoints <-> Hugging Face
// LlamaForCausalLM directories (config.json + safetensors). The conversion is
// trainer/hf/convert.h's, which describes the files written and read.
//
//   rotor export-hf CHECKPOINT_OR_RUN_DIR HF_DIR [--dtype bf16|f16|f32]
//                   [--max-shard-size 5GB] [--with-modeling-code]
//
// A run directory means its latest checkpoint; HF_DIR must not exist or be
// empty. --dtype: the weights' precision (default bf16). --max-shard-size:
// the largest safetensors file (decimal units as HF: 5GB = 5e9 bytes; also
// MB, KB, B, and GiB/MiB/KiB), beyond which the weights are sharded.
// --with-modeling-code also writes modeling_rotor_llama.py and config.json
// "auto_map". A checkpoint without a tokenizer, or with a logit scalar (which
// transformers ignores unless loaded with the modeling code and
// trust_remote_code=True), gets a warning on stderr. One summary line on
// stdout.
//
//   rotor import-hf HF_DIR CHECKPOINT_DIR
//
// CHECKPOINT_DIR (must not exist or be empty) becomes a rotor checkpoint
// directory (step 0) usable by `rotor score`, `rotor export-hf` and
// `model.init_from`. One summary line on stdout.
//
// Errors are "rotor export-hf: MESSAGE" / "rotor import-hf: MESSAGE" on
// stderr; status 2 for usage and input errors (missing files, bad config,
// missing or misshapen tensors, a destination in the way), 1 for failures
// after that (write errors).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor {

// "5GB" -> 5000000000, "500MB", "100KB", "10B", "123" (bytes), "2GiB" ->
// 2 * 2^30. Must be > 0 (trainer/cli/args.h: parse_byte_size).
absl::StatusOr<uint64_t> parse_shard_size(const std::string& text);

int run_export_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);
int run_import_hf_command(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);

}  // namespace rotor
