// The recipe.yaml of a checkpoint `rotor import-hf` makes from a Hugging Face
// directory (trainer/hf/convert.h: import_hf): the model, rope and
// logit_scale of its config.json, and nothing the directory does not say.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/hf/config.h"

namespace rotor {

// The recipe.yaml of an imported checkpoint: the model, rope and logit_scale
// sections from `hf`, data.tokenizer = `tokenizer` when not empty, and no
// other key (no data sets, no training settings: the checkpoint's commands
// load it in RecipeMode::kModel; a comment at its top says so). It is written
// to <scratch>/recipe.yaml and loaded to be checked. InvalidArgument
// "<hf_dir>/config.json: the model does not make a valid rotor recipe: ..."
// when it does not load.
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const std::filesystem::path& scratch);

}  // namespace rotor
