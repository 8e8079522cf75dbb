// `rotor plan`: the command line of trainer/memory_plan.h. See plan_command.h.
#include "trainer/cli/plan_command.h"

#include <cstdio>
#include <numeric>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "trainer/cli/args.h"
#include "trainer/memory_plan.h"
#include "trainer/recipe/recipe.h"

namespace rotor {
namespace {

constexpr const char* kUsage =
    "usage: rotor plan RECIPE.yaml [--set KEY=VALUE ...] [--world N] [--memory SIZE]\n"
    "\n"
    "Predicts the peak tensor memory of one training step on each rank, by tag\n"
    "(parameters, gradients, optimizer, activations, transient; offloaded activations\n"
    "in host memory apart), from the recipe alone.\n"
    "\n"
    "  --set KEY=VALUE   override a recipe key; repeatable\n"
    "  --world N         ranks of the run (default parallel.tp x parallel.cp)\n"
    "  --memory SIZE     one rank's device memory (80GB, 141GB, 24GiB): does the step fit,\n"
    "                    and the longest sequence that does (status 1 when it does not fit)\n";

const char* recompute_name(Recompute r) {
  return r == Recompute::kFull ? "full" : r == Recompute::kSelective ? "selective" : "none";
}

std::string tokens(int64_t t) {
  std::string digits = std::to_string(t), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// 772K, 6.74B
std::string count(int64_t n) {
  char buf[32];
  const double x = static_cast<double>(n);
  if (x >= 1e9) std::snprintf(buf, sizeof buf, "%.2fB", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1fK", x / 1e3);
  return buf;
}

}  // namespace

// One recipe's plan (a stage's, for a staged recipe): 0, 1 when it does not fit `memory`, 2 on an error.
static int plan_one(const LoadedRecipe& recipe, const std::string& path, int ranks,
                    const std::optional<int64_t>& memory, const std::string& memory_text, std::ostream& out,
                    std::ostream& err) {
  absl::StatusOr<MemoryPlanInput> in = memory_plan_input(recipe, ranks);
  if (!in.ok()) {
    err << "rotor plan: " << in.status().message() << "\n";
    return 2;
  }
  const MemoryPlan plan = plan_memory(*in);
  const LlamaConfig& c = in->config;
  out << "rotor plan: " << path << " on " << ranks << " rank" << (ranks > 1 ? "s" : "") << " (tp " << in->tp
      << ", cp " << in->cp << ", dp " << in->dp << (in->zero1 ? ", ZeRO-1" : "") << ")\n";
  char line[256];
  std::snprintf(line, sizeof line, "model: %lld layers, hidden %lld, %lld heads (%lld kv), ffn %lld, vocab %lld: ",
                static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.num_attention_heads), static_cast<long long>(c.num_key_value_heads),
                static_cast<long long>(c.intermediate_size), static_cast<long long>(c.vocab_size));
  out << line << count(c.num_parameters()) << " parameters (" << count(plan.parameters) << " on each rank)\n";
  out << "step: " << in->micro_batch << " x " << tokens(in->sequence_length) << " tokens per micro-batch ("
      << tokens(in->micro_batch * in->sequence_length / in->cp) << " on each rank), " << in->micro_batches
      << " micro-batch" << (in->micro_batches > 1 ? "es" : "") << ", " << dtype_name(in->dtype)
      << ", recompute " << recompute_name(in->recompute) << ", MLP tile "
      << (in->tile_tokens > 0 ? tokens(in->tile_tokens) : "none") << ", offload "
      << (in->offload_activations ? "on" : "off") << "\n";
  out << plan.describe();
  if (!memory) return 0;

  const bool fits = plan.peak <= *memory;
  std::snprintf(line, sizeof line, "--memory %s: %s (%.0f%% of it)\n", memory_text.c_str(),
                fits ? "fits" : "does not fit", 100.0 * static_cast<double>(plan.peak) / static_cast<double>(*memory));
  out << line;
  const int64_t granule = std::lcm<int64_t>(1024, 2 * in->cp * in->tp);
  const int64_t longest = longest_fitting_sequence(*in, *memory, granule);
  if (longest > 0) {
    out << "  longest sequence that fits at this layout: " << tokens(longest) << " tokens\n";
  } else {
    out << "  no sequence of " << tokens(granule) << " tokens fits at this layout: the states alone take "
        << format_bytes(plan[MemoryTag::kParameters] + plan[MemoryTag::kGradients] + plan[MemoryTag::kOptimizer])
        << "\n";
  }
  const int64_t states = plan[MemoryTag::kParameters] + plan[MemoryTag::kGradients] + plan[MemoryTag::kOptimizer];
  const int64_t budget = *memory + states;  // the states do not change with T: the peak less them
  const int64_t longest_without = longest_fitting_sequence(*in, budget, granule);
  out << "  with parameters, gradients and optimizer state off the device (ZeRO-3 + CPU offload, as ALST): "
      << tokens(longest_without) << " tokens\n";
  return fits ? 0 : 1;
}

int run_plan_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (asks_for_help(args)) {
    out << kUsage;
    return 0;
  }
  std::string path;
  std::vector<std::string> overrides;
  std::optional<int> world;
  std::optional<int64_t> memory;
  std::string memory_text;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    if (w.name == "--set" || w.name == "--world" || w.name == "--memory") {
      absl::StatusOr<std::string> v = option_value(w, args, i);
      if (!v.ok()) {
        err << "rotor plan: " << v.status().message() << "\n";
        return 2;
      }
      if (w.name == "--set") {
        overrides.push_back(*v);
      } else if (w.name == "--world") {
        int n = 0;
        if (!absl::SimpleAtoi(*v, &n) || n < 1) {
          err << "rotor plan: --world: expected a number of ranks >= 1, got '" << *v << "'\n";
          return 2;
        }
        world = n;
      } else {
        absl::StatusOr<int64_t> bytes = parse_byte_size(*v, "--memory");
        if (!bytes.ok()) {
          err << "rotor plan: " << bytes.status().message() << "\n";
          return 2;
        }
        memory = *bytes;
        memory_text = *v;
      }
    } else if (path.empty() && !is_option(args[i])) {
      path = args[i];
    } else {
      err << "rotor plan: unexpected argument '" << args[i] << "'\n" << kUsage;
      return 2;
    }
  }
  if (path.empty()) {
    err << kUsage;
    return 2;
  }
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(path, overrides);
  if (!recipe.ok()) {
    err << "rotor plan: " << recipe.status().message() << "\n";
    return 2;
  }
  // A staged recipe: each stage's plan (its length, layout and batch), on a
  // world that fits every stage's layout.
  const std::vector<LoadedStage> stages = training_stages(*recipe);
  int64_t layout_lcm = 1;
  for (const LoadedStage& st : stages)
    layout_lcm = std::lcm(layout_lcm, st.recipe.proto.parallel().tp() * st.recipe.proto.parallel().cp());
  const int ranks = world.value_or(static_cast<int>(layout_lcm));
  int status = 0;
  for (const LoadedStage& st : stages) {
    if (!st.name.empty())
      out << (&st == &stages.front() ? "" : "\n") << "stage " << st.name << " (steps " << st.first_step << "-"
          << st.last_step() << "):\n";
    const int s = plan_one(st.recipe, path, ranks, memory, memory_text, out, err);
    if (s == 2) return 2;
    status = std::max(status, s);
  }
  return status;
}

}  // namespace rotor
