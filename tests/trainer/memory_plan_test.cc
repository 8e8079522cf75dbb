// The memory model (trainer/memory_plan.h) against the measured peak: each
// case trains one step with `rotor train` (the real loop, one process), which
// logs the step's peak tensor bytes by tag (kernels/memory.h); the plan of the
// same recipe must predict the peak within 10% (the issue's bar; the model
// leaves out only small buffers) and the states (parameters, gradients,
// optimizer) exactly, to the log's 0.1 MB.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "tests/trainer/corpus.h"
#include "trainer/cli/train_command.h"
#include "trainer/memory_plan.h"
#include "trainer/recipe/recipe.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// "memory at step 1 (cpu, rank 0): peak 12.3 MB: parameters 0.5 MB, ..." -> MB by name.
std::map<std::string, double> parse_memory_line(const std::string& log) {
  std::map<std::string, double> out;
  std::smatch m;
  const std::regex line(R"(memory at step 1 \([^)]*\): peak ([0-9.]+) MB:([^\n;]*))");
  if (!std::regex_search(log, m, line)) return out;
  out["peak"] = std::stod(m[1]);
  const std::string tags = m[2];
  const std::regex tag(R"(([a-z]+) ([0-9.]+) MB)");
  for (auto it = std::sregex_iterator(tags.begin(), tags.end(), tag); it != std::sregex_iterator(); ++it)
    out[(*it)[1]] = std::stod((*it)[2]);
  return out;
}

struct Case {
  std::string name;
  std::vector<std::string> sets;
};

TEST(MemoryPlan, PredictsTheMeasuredPeakWithinTenPercent) {
  const std::string dir = ::testing::TempDir() + "/memory_plan";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = testing::write_corpus(dir);
  const std::string recipe = dir + "/base.yaml";
  std::ofstream(recipe) << "model: {vocab_size: 260, hidden_size: 64, intermediate_size: 176,\n"
                           "        num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2}\n"
                           "rope: {method: none, theta: 10000}\n"
                           "data: {datasets: [{path: " << corpus << "}], sequence_length: 2048}\n"
                           "train: {steps: 1, global_batch_size: 1, lr: 1.0e-3, tile_tokens: 128}\n";
  const std::vector<Case> cases = {
      {"none, untiled", {"train.recompute=none", "train.tile_tokens=16777216"}},
      {"none, tiled", {"train.recompute=none"}},
      {"selective", {"train.recompute=selective"}},
      {"full, 2 micro-batches of 2", {"train.recompute=full", "train.global_batch_size=4", "train.micro_batch_size=2"}},
      {"selective + offload", {"train.recompute=selective", "train.offload_activations=true"}},
      {"none + offload, 4K", {"train.offload_activations=true", "data.sequence_length=4096"}},
      {"selective, eabf + document masking",
       {"train.recompute=selective", "logit_scale.kind=log_position", "logit_scale.base_length=512",
        "data.document_masking=true"}},
      {"bf16 selective on sim", {"train.recompute=selective", "train.precision=bf16", "device=sim"}},
      {"bf16 none on sim, untiled", {"train.precision=bf16", "device=sim", "train.tile_tokens=16777216"}},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> args = {recipe, "--set", "run.dir=" + dir + "/run" + std::to_string(i++)};
    for (const std::string& s : c.sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    std::ostringstream out, err;
    ASSERT_EQ(run_train_command(args, out, err), 0) << c.name << ": " << err.str();
    const std::map<std::string, double> measured = parse_memory_line(out.str());
    ASSERT_TRUE(measured.count("peak") && measured.count("transient")) << c.name << ": no memory line in\n" << out.str();
    std::vector<std::string> sets;
    for (const std::string& s : c.sets) sets.push_back(s);
    sets.push_back("run.dir=" + dir + "/unused");
    absl::StatusOr<LoadedRecipe> loaded = load_recipe(recipe, sets);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    absl::StatusOr<MemoryPlanInput> in = memory_plan_input(*loaded, 1);
    ASSERT_TRUE(in.ok()) << in.status();
    const MemoryPlan plan = plan_memory(*in);
    const double mb = 1e6;
    const double peak = measured.at("peak");
    ASSERT_GT(peak, 1.0) << c.name;  // a real step: MBs of activations
    EXPECT_NEAR(static_cast<double>(plan.peak) / mb, peak, 0.10 * peak)
        << c.name << "\nmeasured: " << out.str() << "plan: " << plan.describe();
    for (MemoryTag t : {MemoryTag::kParameters, MemoryTag::kGradients, MemoryTag::kOptimizer})
      EXPECT_NEAR(static_cast<double>(plan[t]) / mb, measured.at(memory_tag_name(t)), 0.051)
          << c.name << " " << memory_tag_name(t);
    std::printf("%-36s measured %7.1f MB  predicted %7.1f MB  (%+.1f%%)  activations %.1f / %.1f  transient %.1f / %.1f  [%s]\n",
                c.name.c_str(), peak, static_cast<double>(plan.peak) / mb, 100 * (static_cast<double>(plan.peak) / mb / peak - 1),
                measured.at("activations"), static_cast<double>(plan[MemoryTag::kActivations]) / mb,
                measured.at("transient"), static_cast<double>(plan[MemoryTag::kTransient]) / mb, plan.phase.c_str());
  }
}

}  // namespace
}  // namespace rotor
