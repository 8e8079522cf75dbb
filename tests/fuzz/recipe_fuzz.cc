// libFuzzer target: trainer/recipe/recipe.h: load_recipe of the input as a .yaml file (base: only
// inside the temporary directory), expand_sweep, recipe_to_yaml and reload.
// Body in tests/fuzz/targets.h (shared with tests/trainer/fuzz_regression_test.cc).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rotor::fuzz::TempDir dir("recipe");  // removed at exit
  static const bool ready = (rotor::fuzz::recipe_setup(dir.path()), true);
  (void)ready;
  rotor::fuzz::recipe_one_input(dir.path(), data, size);
  return 0;
}
