// The recipe.yaml of a checkpoint `rotor import-hf` makes from a Hugging Face
// directory (trainer/hf/convert.h: import_hf): the model, rope and
// logit_scale of its config.json, and placeholder data and train sections.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/hf/config.h"

namespace rotor {

// The recipe.yaml of an imported checkpoint (resolved, validated by loading
// it): model, rope and logit_scale from `hf`; data.datasets [{path:
// "(imported from HF_DIR)"}], data.sequence_length = max_position_embeddings,
// data.tokenizer = `tokenizer` when not empty (a directory without a
// tokenizer gives a recipe that names none: nothing is invented); train.steps 1, lr 1e-5,
// global_batch_size 1; a comment at its top says so. The recipe is written to
// <scratch>/recipe.yaml to be loaded. InvalidArgument "<hf_dir>/config.json:
// the model does not make a valid rotor recipe: ..." when it does not load.
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const std::filesystem::path& scratch);

}  // namespace rotor
