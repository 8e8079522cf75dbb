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
#include "trainer/checkpoint.h"
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

// One stage of the run (the whole run without stages): what its steps use,
// built from the stage's recipe by build_stage. Heap-allocated: the pieces
// point at each other.
struct StageRun {
  const LoadedStage& stage;
  RecipeLayout layout;
  std::unique_ptr<LlamaModel> model;
  DataStream stream;
  std::unique_ptr<IndexedDataset> heldout;
  BatchShape shape;
  std::unique_ptr<TrainStep> train_step;
  std::unique_ptr<Checkpointer> checkpointer;
  NonfinitePolicy nonfinite;

  const recipe::Recipe& r() const { return stage.recipe.proto; }
};

// What every step uses besides its stage's pieces.
struct Loop {
  TrainObserver& observer;
  int world_rank;
  Metrics& metrics;
};

// The held-out evaluation at every eval.interval-th step and the stage's last one.
bool evaluation_due(const StageRun& run, int64_t step) {
  const recipe::EvalSection& e = run.r().eval();
  return run.heldout != nullptr && e.interval() > 0 && (step % e.interval() == 0 || step == run.stage.last_step());
}

absl::StatusOr<StepEvals> evaluate(StageRun& run) {
  StepEvals evals;
  for (int64_t l : run.r().eval().lengths()) {
    ROTOR_ASSIGN_OR_RETURN(HeldoutEval e, heldout_eval(*run.model, *run.heldout, l, run.r().eval().tokens(),
                                                       run.train_step->parallel()));
    evals.emplace_back(l, std::move(e));
  }
  return evals;
}

// Step `step` of the run: its data (the stage's stream from the stage's
// first step on), the optimizer step, the non-finite policy, the evaluation
// when due, the logs and the checkpoint when due.
absl::Status iterate(Loop& loop, StageRun& run, int64_t step) {
  ROTOR_RETURN_IF_ERROR(loop.observer.at_step_start(step, loop.world_rank));
  loop.metrics.begin_step();
  const int64_t stage_step = step - run.stage.first_step + 1;
  ROTOR_ASSIGN_OR_RETURN(std::vector<Batch> batches,
                         step_batches(run.stream, run.shape, stage_step, run.train_step->parallel()));
  ROTOR_ASSIGN_OR_RETURN(TrainStepResult result, run.train_step->step(step, batches));
  ROTOR_RETURN_IF_ERROR(run.nonfinite.after_step(result.nonfinite));
  if (!result.applied()) loop.metrics.report_skipped(result);
  loop.metrics.end_step();
  const bool evaluated = evaluation_due(run, step);
  StepEvals evals;
  if (evaluated) {
    ROTOR_ASSIGN_OR_RETURN(StepEvals e, evaluate(run));
    evals = std::move(e);
  }
  ROTOR_RETURN_IF_ERROR(loop.metrics.log(result, evaluated, evals));
  return run.checkpointer->after_step(step, *run.model, run.train_step->optimizer());
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

// Every stage's layout against the world size, before anything trains (a
// later stage that cannot run on this world must not end the run after the
// earlier ones): the world a multiple of tp * cp (as the process grid asks),
// and each dp rank taking global / dp sequences of every step, in
// micro-batches.
absl::Status check_stage_layouts(const std::vector<LoadedStage>& stages, int world_size) {
  for (const LoadedStage& stage : stages) {
    const recipe::Recipe& r = stage.recipe.proto;
    const int64_t tp = r.parallel().tp(), cp = r.parallel().cp();
    const std::string context = stage.name.empty() ? "" : absl::StrCat("stage ", stage.name, ": ");
    if (world_size % (tp * cp) != 0)
      return absl::InvalidArgumentError(absl::StrCat(context, "world size ", world_size,
                                                     " is not a multiple of tp * cp = ", tp * cp, " (tp ", tp,
                                                     ", cp ", cp, ")"));
    const BatchShape shape = BatchShape::of(r);
    const int64_t dp = world_size / (tp * cp);
    if (shape.global % (dp * shape.micro) != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          context, "the global batch (", shape.global, " sequences) must be a multiple of data-parallel size (", dp,
          " = world ", world_size, " / (tp ", tp, " * cp ", cp, ")) * train.micro_batch_size (", shape.micro, ")"));
  }
  return absl::OkStatus();
}

// The stage that holds `step` (the last stage past the end).
int stage_of(const std::vector<LoadedStage>& stages, int64_t step) {
  for (size_t k = 0; k < stages.size(); ++k)
    if (step <= stages[k].last_step()) return static_cast<int>(k);
  return static_cast<int>(stages.size()) - 1;
}

// The stage's metrics settings; `steps`: the run's.
MetricsSettings metrics_settings(const StageRun& run, int64_t steps, int world_size) {
  MetricsSettings m = MetricsSettings::of(run.r(), run.stage.recipe.model,
                                          run.shape.global * run.shape.sequence_length, world_size);
  m.stage = run.stage.name;
  m.steps = steps;
  return m;
}

// Stage k's pieces: the process grid of its layout, the model (initialised
// from train.seed; restore or load_step then replaces the weights), its data
// from `starts`, the step with the stage's schedule, the checkpointer.
absl::StatusOr<std::unique_ptr<StageRun>> build_stage(const std::vector<LoadedStage>& stages, int k,
                                                      const std::vector<DatasetStart>& starts, Device device,
                                                      Communicator& world, std::ostream& out,
                                                      TrainObserver* observer) {
  const LoadedStage& stage = stages[static_cast<size_t>(k)];
  const recipe::Recipe& r = stage.recipe.proto;
  ROTOR_ASSIGN_OR_RETURN(RecipeLayout layout, recipe_layout(r, world));
  ROTOR_ASSIGN_OR_RETURN(DataStream stream, open_stream(r, starts));
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<IndexedDataset> heldout, open_heldout(r));
  auto run = std::unique_ptr<StageRun>(new StageRun{.stage = stage,
                                                    .layout = std::move(layout),
                                                    .model = nullptr,
                                                    .stream = std::move(stream),
                                                    .heldout = std::move(heldout),
                                                    .shape = BatchShape::of(r),
                                                    .train_step = nullptr,
                                                    .checkpointer = nullptr,
                                                    .nonfinite = NonfinitePolicy::of(r.train())});
  const ParallelContext& par = run->layout.par;  // the batch layout: check_stage_layouts
  LlamaOptions opts = stage.recipe.training_options();
  opts.parallel = par;
  opts.device = device;
  ROTOR_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::create(stage.recipe.model, opts));
  run->model = std::make_unique<LlamaModel>(std::move(model));
  run->model->init_weights(static_cast<uint64_t>(r.train().seed()));
  TrainStepSettings settings = TrainStepSettings::of(r);
  settings.schedule.first_step = stage.first_step;
  Communicator& run_world = run->layout.grid->world();
  run->train_step = std::make_unique<TrainStep>(*run->model, settings, par, &run_world, observer);
  CheckpointerSettings ck = CheckpointerSettings::of(r, run->shape.global, recipe_to_yaml(r));
  ck.steps = stage.last_step();
  ck.stage = stage.name;
  ck.stage_index = k;
  ck.first_step = stage.first_step;
  run->checkpointer = std::make_unique<Checkpointer>(ck, run_world, par, out, observer);
  return run;
}

}  // namespace

absl::Status train(const LoadedRecipe& loaded, std::ostream& rank0_out, Communicator& world,
                   TrainObserver* observer) {
  TrainObserver no_observer;
  if (observer == nullptr) observer = &no_observer;
  const recipe::Recipe& r = loaded.proto;
  ROTOR_ASSIGN_OR_RETURN(const Device device, recipe_device(r));
  const bool rank0 = world.rank() == 0;
  std::ostringstream discard;
  std::ostream& out = rank0 ? rank0_out : discard;
  if (!r.model().init_from().empty() && (!loaded.head_dim_known || !r.model().has_hidden_size())) {
    // The model is built from the recipe's sizes; init_from supplies only its weights.
    return absl::UnimplementedError(
        "model.init_from currently needs the model sizes in the recipe too (inherit them from "
        "the base model's recipe with base:)");
  }
  ROTOR_RETURN_IF_ERROR(prepare_run_dir(r, recipe_to_yaml(r), rank0));
  const std::vector<LoadedStage> stages = training_stages(loaded);
  ROTOR_RETURN_IF_ERROR(check_stage_layouts(stages, world.size()));
  ROTOR_ASSIGN_OR_RETURN(const std::vector<std::vector<DatasetStart>> starts, stage_data_starts(stages));
  const auto build = [&](int k) -> absl::StatusOr<std::unique_ptr<StageRun>> {
    absl::StatusOr<std::unique_ptr<StageRun>> run = build_stage(stages, k, starts[static_cast<size_t>(k)], device,
                                                                world, out, observer);
    if (!run.ok() && !stages[static_cast<size_t>(k)].name.empty())
      return with_context(run.status(), absl::StrCat("stage ", stages[static_cast<size_t>(k)].name, ": "));
    return run;
  };

  // Resume: the stage of the step after the newest checkpoint; if that one
  // does not verify and an older one of an earlier stage is used instead,
  // that stage is built and restored from it.
  int k = stage_of(stages, newest_checkpoint_step(r.run().dir(), world) + 1);
  ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<StageRun> run, build(k));
  ROTOR_ASSIGN_OR_RETURN(RunStart start, run->checkpointer->restore(*run->model, run->train_step->optimizer()));
  if (const int at = stage_of(stages, start.step + 1); at != k) {
    k = at;
    run.reset();
    ROTOR_ASSIGN_OR_RETURN(run, build(k));
    ROTOR_ASSIGN_OR_RETURN(start, run->checkpointer->restore(*run->model, run->train_step->optimizer(), start.step));
  }
  if (!start.resumed_from.empty()) out << "resumed from " << start.resumed_from << " (step " << start.step << ")\n";
  ROTOR_ASSIGN_OR_RETURN(Metrics metrics, Metrics::open(metrics_settings(*run, r.train().steps(), world.size()), rank0, out, start.step,
                                                        !start.resumed_from.empty()));
  Loop loop{.observer = *observer, .world_rank = world.rank(), .metrics = metrics};
  for (int64_t step = start.step + 1; step <= r.train().steps(); ++step) {
    if (step > run->stage.last_step()) {
      // The next stage: its pieces, the weights and moments of the previous
      // stage's last checkpoint (saved after its last step).
      run.reset();
      ROTOR_ASSIGN_OR_RETURN(run, build(++k));
      ROTOR_RETURN_IF_ERROR(run->checkpointer->load_step(*run->model, run->train_step->optimizer(), step - 1));
      metrics.begin_stage(metrics_settings(*run, r.train().steps(), world.size()), step - 1);
    }
    const bool first = step == start.step + 1 || step == run->stage.first_step;
    if (first) {
      if (!run->stage.name.empty())
        out << "stage " << run->stage.name << " (" << k + 1 << " of " << stages.size() << "): steps "
            << run->stage.first_step << "-" << run->stage.last_step() << ", sequence length "
            << run->shape.sequence_length << "\n";
      reset_memory_peak(device);
      if (!device.is_cpu()) reset_memory_peak(Device::cpu());
    }
    ROTOR_RETURN_IF_ERROR(iterate(loop, *run, step));
    if (first) log_memory(out, device, step);
  }
  return absl::OkStatus();
}

}  // namespace rotor
