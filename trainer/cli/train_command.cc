// `rotor train`: the command line of train() (trainer/train.h).
#include "trainer/cli/train_command.h"

#include "absl/strings/str_cat.h"
#include "parallel/world.h"
#include "trainer/fault_injection.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/recipe.h"
#include "trainer/train.h"

namespace rotor {

int run_train_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string path;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--set" && i + 1 < args.size()) {
      overrides.push_back(args[++i]);
    } else if (args[i].rfind("--set=", 0) == 0) {
      overrides.push_back(args[i].substr(6));
    } else if (args[i] == "--help" || args[i] == "-h") {
      out << "usage: rotor train RECIPE.yaml [--set KEY=VALUE ...]\n";
      return 0;
    } else if (path.empty() && args[i].rfind("--", 0) != 0) {
      path = args[i];
    } else {
      err << "rotor train: unexpected argument '" << args[i] << "'\n";
      return 2;
    }
  }
  if (path.empty()) {
    err << "usage: rotor train RECIPE.yaml [--set KEY=VALUE ...]\n";
    return 2;
  }
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(path, overrides);
  if (!recipe.ok()) {
    err << "rotor train: " << recipe.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<FaultPlan> faults = FaultPlan::from_env();
  if (!faults.ok()) {
    err << "rotor train: " << faults.status().message() << "\n";
    return 2;
  }
  ProcessWorld world;
  if (absl::StatusOr<Device> d = world.use_device(recipe_device_type(recipe->proto)); !d.ok()) {
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat("rotor train: ", d.status().message()));
    err << "rotor train: " << d.status().message() << "\n";
    return 1;
  }
  if (absl::Status s = train(*recipe, out, world.comm(), &*faults); !s.ok()) {
    // With several ranks, end them all (an error on one rank would leave the
    // others waiting in a collective); the message names this rank.
    if (world.comm().size() > 1) world.comm().abort(absl::StrCat("rotor train: ", s.message()));
    err << "rotor train: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace rotor
