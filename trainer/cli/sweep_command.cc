// `rotor sweep`: see sweep_command.h.
#include "trainer/cli/sweep_command.h"

#include "absl/strings/str_cat.h"
#include "trainer/recipe/recipe.h"
#include "trainer/train.h"
#include "parallel/world.h"
#include "trainer/recipe/convert.h"

namespace rotor {
namespace {

constexpr char kUsage[] =
    "usage: rotor sweep RECIPE.yaml [--set KEY=VALUE ...] [--run]\n"
    "\n"
    "Lists the runs of the recipe's sweep: grid (name, run directory, swept values),\n"
    "or with --run trains them one after another, each in <run.dir>/<name>.\n";

}  // namespace

int run_sweep_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string path;
  std::vector<std::string> overrides;
  bool run = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--set" && i + 1 < args.size()) {
      overrides.push_back(args[++i]);
    } else if (args[i].rfind("--set=", 0) == 0) {
      overrides.push_back(args[i].substr(6));
    } else if (args[i] == "--run") {
      run = true;
    } else if (args[i] == "--help" || args[i] == "-h") {
      out << kUsage;
      return 0;
    } else if (path.empty() && args[i].rfind("--", 0) != 0) {
      path = args[i];
    } else {
      err << "rotor sweep: unexpected argument '" << args[i] << "'\n" << kUsage;
      return 2;
    }
  }
  if (path.empty()) {
    err << kUsage;
    return 2;
  }
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(path, overrides);
  if (!recipe.ok()) {
    err << "rotor sweep: " << recipe.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(*recipe);
  if (!runs.ok()) {
    err << "rotor sweep: " << runs.status().message() << "\n";
    return 2;
  }
  if (!run) {
    err << runs->size() << " run(s) in " << path << "\n";
    for (const NamedRun& r : *runs) {
      out << r.name << "\t" << r.recipe.proto.run().dir();
      for (const auto& [key, value] : r.values) out << "\t" << key << "=" << value;
      out << "\n";
    }
    return 0;
  }
  ProcessWorld world;
  if (absl::StatusOr<Device> d = world.use_device(recipe_device_type(runs->front().recipe.proto)); !d.ok()) {
    err << "rotor sweep: " << d.status().message() << "\n";
    return 1;
  }
  int failed = 0;
  for (size_t i = 0; i < runs->size(); ++i) {
    const NamedRun& r = (*runs)[i];
    out << "== sweep run " << i + 1 << "/" << runs->size() << ": " << r.name << " ("
        << r.recipe.proto.run().dir() << ")" << std::endl;
    if (absl::Status s = train(r.recipe, out, world.comm()); !s.ok()) {
      if (world.comm().size() > 1)  // the other ranks may be inside a collective
        world.comm().abort(absl::StrCat("rotor sweep: run ", r.name, ": ", s.message()));
      err << "rotor sweep: run " << r.name << ": " << s.message() << "\n";
      ++failed;
    }
  }
  if (failed > 0) {
    err << "rotor sweep: " << failed << " of " << runs->size() << " run(s) failed\n";
    return 1;
  }
  return 0;
}

}  // namespace rotor
