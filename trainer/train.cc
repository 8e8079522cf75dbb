#include "trainer/train.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"
#include "eval/heldout.h"
#include "kernels/memory.h"
#include "model/llama.h"
#include "trainer/checkpointer.h"
#include "trainer/data_stream.h"
#include "trainer/metrics.h"
#include "trainer/nonfinite.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/layout.h"
#include "trainer/train_step.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// What one iteration of the loop uses; built by train().
struct Loop {
  const recipe::Recipe& r;
  TrainObserver& observer;
  int world_rank;
  DataStream& stream;
  BatchShape shape;
  const IndexedDataset* heldout;  // data.heldout; null: none
  TrainStep& train_step;
  NonfinitePolicy& nonfinite;
  Metrics& metrics;
  Checkpointer& checkpointer;
};

// The held-out evaluation at every eval.interval-th step and the last one.
bool evaluation_due(const Loop& loop, int64_t step) {
  const recipe::EvalSection& e = loop.r.eval();
  return loop.heldout != nullptr && e.interval() > 0 && (step % e.interval() == 0 || step == loop.r.train().steps());
}

absl::StatusOr<StepEvals> evaluate(const Loop& loop) {
  StepEvals evals;
  for (int64_t l : loop.r.eval().lengths()) {
    ROTOR_ASSIGN_OR_RETURN(HeldoutEval e, heldout_eval(loop.train_step.model(), *loop.heldout, l, loop.r.eval().tokens(),
                                                 loop.train_step.parallel()));
    evals.emplace_back(l, std::move(e));
  }
  return evals;
}

// Step `step`: its data, the optimizer step, the non-finite policy, the
// evaluation when due, the logs and the checkpoint when due.
absl::Status iterate(Loop& loop, int64_t step) {
  ROTOR_RETURN_IF_ERROR(loop.observer.at_step_start(step, loop.world_rank));
  loop.metrics.begin_step();
  ROTOR_ASSIGN_OR_RETURN(std::vector<Batch> batches, step_batches(loop.stream, loop.shape, step, loop.train_step.parallel()));
  ROTOR_ASSIGN_OR_RETURN(TrainStepResult result, loop.train_step.step(step, batches));
  ROTOR_RETURN_IF_ERROR(loop.nonfinite.after_step(result.nonfinite));
  if (!result.applied()) loop.metrics.report_skipped(result);
  loop.metrics.end_step();
  const bool evaluated = evaluation_due(loop, step);
  StepEvals evals;
  if (evaluated) {
    ROTOR_ASSIGN_OR_RETURN(StepEvals e, evaluate(loop));
    evals = std::move(e);
  }
  ROTOR_RETURN_IF_ERROR(loop.metrics.log(result, evaluated, evals));
  return loop.checkpointer.after_step(step, loop.train_step.model(), loop.train_step.optimizer());
}

// After this process's first step: its device's tensor memory by tag at the
// step's peak (kernels/memory.h), which trainer/memory_plan.h predicts.
void log_memory(std::ostream& out, Device device, int64_t step) {
  const MemoryUsage u = memory_usage(device);
  out << "memory at step " << step << " (" << device.str() << ", rank 0): " << u.peak_summary();
  const int64_t host = memory_usage(Device::cpu()).high_of(MemoryTag::kOffloaded);
  if (host > 0) out << "; activations offloaded to host " << static_cast<double>(host) / 1e6 << " MB";
  out << "\n";
}

// run.dir, with the resolved recipe (recipe.yaml, written by world rank 0).
absl::Status prepare_run_dir(const recipe::Recipe& r, const std::string& recipe_yaml, bool rank0) {
  const std::string run_dir = r.run().dir();
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(run_dir, ": ", ec.message()));
  if (rank0) std::ofstream(fs::path(run_dir) / "recipe.yaml") << recipe_yaml;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<IndexedDataset>> open_heldout(const recipe::Recipe& r) {
  if (r.data().heldout().empty()) return nullptr;
  ROTOR_ASSIGN_OR_RETURN(IndexedDataset h, IndexedDataset::open(r.data().heldout()));
  return std::make_unique<IndexedDataset>(std::move(h));
}

// Each dp rank takes global / dp sequences of every step, in micro-batches.
absl::Status check_batch_layout(const recipe::Recipe& r, const BatchShape& shape, const ParallelContext& par,
                                int world_size) {
  const int64_t dp = par.dp_size();
  if (shape.global % (dp * shape.micro) == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the global batch (", shape.global, " sequences) must be a multiple of data-parallel size (", dp,
      " = world ", world_size, " / (tp ", r.parallel().tp(), " * cp ", r.parallel().cp(),
      ")) * train.micro_batch_size (", shape.micro, ")"));
}

}  // namespace

absl::Status train(const LoadedRecipe& loaded, std::ostream& rank0_out, Communicator& world,
                   TrainObserver* observer) {
  TrainObserver no_observer;
  if (observer == nullptr) observer = &no_observer;
  const recipe::Recipe& r = loaded.proto;
  ROTOR_ASSIGN_OR_RETURN(const Device device, recipe_device(r));
  ROTOR_ASSIGN_OR_RETURN(RecipeLayout layout, recipe_layout(r, world));
  const ParallelContext& par = layout.par;
  Communicator& run_world = layout.grid->world();
  const bool rank0 = world.rank() == 0;
  std::ostringstream discard;
  std::ostream& out = rank0 ? rank0_out : discard;
  if (!r.model().init_from().empty() && (!loaded.head_dim_known || !r.model().has_hidden_size())) {
    // The model is built from the recipe's sizes; init_from supplies only its weights.
    return absl::UnimplementedError(
        "model.init_from currently needs the model sizes in the recipe too (inherit them from "
        "the base model's recipe with base:)");
  }
  const std::string recipe_yaml = recipe_to_yaml(r);
  ROTOR_RETURN_IF_ERROR(prepare_run_dir(r, recipe_yaml, rank0));

  LlamaOptions opts = loaded.training_options();
  opts.parallel = par;
  opts.device = device;
  ROTOR_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::create(loaded.model, opts));
  model.init_weights(static_cast<uint64_t>(r.train().seed()));
  ROTOR_ASSIGN_OR_RETURN(DataStream stream, open_stream(r));
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<IndexedDataset> heldout, open_heldout(r));
  const BatchShape shape = BatchShape::of(r);
  ROTOR_RETURN_IF_ERROR(check_batch_layout(r, shape, par, world.size()));

  TrainStep train_step(model, TrainStepSettings::of(r), par, &run_world, observer);
  Checkpointer checkpointer(CheckpointerSettings::of(r, shape.global, recipe_yaml), run_world, par, out, observer);
  ROTOR_ASSIGN_OR_RETURN(RunStart start, checkpointer.restore(model, train_step.optimizer()));
  ROTOR_ASSIGN_OR_RETURN(
      Metrics metrics,
      Metrics::open(MetricsSettings::of(r, loaded.model, shape.global * shape.sequence_length, world.size()),
                    rank0, out, start.step, !start.resumed_from.empty()));
  NonfinitePolicy nonfinite = NonfinitePolicy::of(r.train());
  Loop loop{.r = r,
            .observer = *observer,
            .world_rank = world.rank(),
            .stream = stream,
            .shape = shape,
            .heldout = heldout.get(),
            .train_step = train_step,
            .nonfinite = nonfinite,
            .metrics = metrics,
            .checkpointer = checkpointer};
  for (int64_t step = start.step + 1; step <= r.train().steps(); ++step) {
    const bool first = step == start.step + 1;
    if (first) {
      reset_memory_peak(device);
      if (!device.is_cpu()) reset_memory_peak(Device::cpu());
    }
    ROTOR_RETURN_IF_ERROR(iterate(loop, step));
    if (first) log_memory(out, device, step);
  }
  return absl::OkStatus();
}

}  // namespace rotor
