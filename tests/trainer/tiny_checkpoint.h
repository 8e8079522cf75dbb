// Test helper: a checkpoint written the way `rotor train` writes one, without
// training, for tests of the commands that read checkpoints (score, eval,
// export-hf).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.h"

namespace rotor::testing {

// Saves checkpoint `step` into run_dir/checkpoints/: the model of
// `recipe_path` with init_weights(seed), zero AdamW moments and the resolved
// recipe. Returns the checkpoint directory; failures are gtest failures.
inline std::string save_tiny_checkpoint(const std::string& recipe_path, const std::string& run_dir,
                                        int64_t step, uint64_t seed) {
  absl::StatusOr<LoadedRecipe> r = load_recipe(recipe_path, {});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return "";
  absl::StatusOr<LlamaModel> m = LlamaModel::create(r->model, r->model_options());
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return "";
  m->init_weights(seed);
  AdamWOptimizer opt(m->parameters(), AdamWHyper{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95,
                                                .eps = 1e-8, .weight_decay = 0.1});
  CheckpointInfo info{.step = step, .sampler = {{"next_sample", step}}, .recipe_yaml = recipe_to_yaml(r->proto)};
  const absl::Status st = save_checkpoint(run_dir, info, m->parameters(), opt, 0);
  EXPECT_TRUE(st.ok()) << st;
  return absl::StrFormat("%s/checkpoints/step_%08d", run_dir, step);
}

}  // namespace rotor::testing
