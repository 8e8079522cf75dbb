// `rotor train`: the command line of train() (trainer/train.h).
#include "trainer/cli/train_command.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "parallel/world.h"
#include "trainer/cli/args.h"
#include "trainer/fault_injection.h"
#include "trainer/memory_plan.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/recipe.h"
#include "trainer/train.h"

namespace rotor {

namespace {
constexpr const char* kUsage =
    "usage: rotor train RECIPE.yaml [--set KEY=VALUE ...] [--memory SIZE]\n"
    "  --memory SIZE   one rank's device memory (80GB, 24GiB): a step predicted not to fit\n"
    "                  (rotor plan) is refused before training\n";
}  // namespace

int run_train_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string path, memory_text;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--set" && i + 1 < args.size()) {
      overrides.push_back(args[++i]);
    } else if (args[i].rfind("--set=", 0) == 0) {
      overrides.push_back(args[i].substr(6));
    } else if (args[i] == "--memory" && i + 1 < args.size()) {
      memory_text = args[++i];
    } else if (args[i].rfind("--memory=", 0) == 0) {
      memory_text = args[i].substr(9);
    } else if (args[i] == "--help" || args[i] == "-h") {
      out << kUsage;
      return 0;
    } else if (path.empty() && args[i].rfind("--", 0) != 0) {
      path = args[i];
    } else {
      err << "rotor train: unexpected argument '" << args[i] << "'\n";
      return 2;
    }
  }
  if (path.empty()) {
    err << kUsage;
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
  std::optional<int64_t> memory;
  if (!memory_text.empty()) {
    absl::StatusOr<int64_t> bytes = parse_byte_size(memory_text, "--memory");
    if (!bytes.ok()) {
      err << "rotor train: " << bytes.status().message() << "\n";
      return 2;
    }
    memory = *bytes;
  }
  ProcessWorld world;
  // Refused before anything is allocated: every rank plans the same, for
  // every stage of a staged recipe.
  for (const LoadedStage& stage : memory ? training_stages(*recipe) : std::vector<LoadedStage>{}) {
    const std::string context = stage.name.empty() ? "" : absl::StrCat("stage ", stage.name, ": ");
    absl::StatusOr<MemoryPlanInput> in = memory_plan_input(stage.recipe, world.comm().size());
    if (!in.ok()) {
      err << "rotor train: " << context << in.status().message() << "\n";
      return 2;
    }
    const MemoryPlan plan = plan_memory(*in);
    if (plan.peak > *memory) {
      if (world.comm().rank() == 0)
        err << "rotor train: " << context << "the step does not fit --memory " << memory_text << " ("
            << format_bytes(*memory) << " per rank): " << plan.describe() << "(rotor plan " << path
            << " --memory SIZE gives the longest sequence that fits)\n";
      return 2;
    }
  }
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
